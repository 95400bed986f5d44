"""Mutation testing: break a module in small ways, one at a time, and count the broken versions the tests notice.

    python scripts/mutation.py kit/data/mix.py tests/test_mix.py          # score, and each surviving mutant
    python scripts/mutation.py kit/data/mix.py tests/test_mix.py --list   # the mutants only, nothing run

Each mutant flips one comparison (< <=, == !=, in / not in), one arithmetic or boolean operator, shifts one integer
constant by one, swaps True/False, drops a `not`, or replaces one statement by `pass`; docstrings and logging are left
alone. It runs in a copy of the repository (the working tree is never touched), with the given tests stopping at the
first failure: a failing test kills the mutant. Survivors are printed with their line, so each can be fixed by a test
or judged equivalent (tests/mutation_equivalent.txt lists those with the reason; they count as killed). mutmut does the
same job but rewrites the tree in place and needs its own config; this is the kit's tests and nothing else.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import tokenize
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tests" / "mutation_equivalent.txt"  # "path | statement (joined) | mutation  # why it is harmless"
SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
         ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.Add: ast.Sub, ast.Sub: ast.Add,
         ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult, ast.And: ast.Or, ast.Or: ast.And}


def _docstring(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _logging(node: ast.AST) -> bool:
    """A print or a warning call: what it says is the tests' business only where they read it."""
    call = node.value if isinstance(node, ast.Expr) else None
    return isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print"


def sites(tree: ast.Module) -> list[tuple[ast.AST, str, str]]:
    """(node, field, what) for every mutation of the module, in source order. `zip(..., strict=True)` is left alone:
    it only asserts what the code already makes true."""
    out, asserts = [], {id(k.value) for k in ast.walk(tree) if isinstance(k, ast.keyword) and k.arg == "strict"}
    for node in ast.walk(tree):
        if id(node) in asserts:
            continue
        if isinstance(node, ast.Compare):
            out += [(node, f"ops.{i}", type(op).__name__) for i, op in enumerate(node.ops) if type(op) in SWAPS]
        elif isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in SWAPS:
            out.append((node, "op", type(node.op).__name__))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, bool):
            out.append((node, "value", repr(node.value)))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append((node, "not", "not"))
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if isinstance(node, ast.Module) or not isinstance(statements, list):
                continue  # module level: deleting a definition only fails the import
            for i, stmt in enumerate(statements):
                if not (_docstring(stmt) or _logging(stmt) or isinstance(stmt, (ast.Pass, ast.FunctionDef,
                                                                                  ast.ClassDef, ast.Import,
                                                                                  ast.ImportFrom))):
                    out.append((node, f"{field}.{i}", f"delete {type(stmt).__name__}"))
    return sorted(out, key=lambda s: (_line(s), s[1]))


def _line(site) -> int:
    node, field, _ = site
    if field.startswith(("body.", "orelse.", "finalbody.")):
        name, i = field.split(".")
        return getattr(node, name)[int(i)].lineno
    return node.lineno


class _Mutate(ast.NodeTransformer):
    def __init__(self, site):
        self.node, self.field, _ = site

    def visit(self, node):
        if node is not self.node:
            return self.generic_visit(node)
        if self.field.startswith("ops."):
            i = int(self.field[4:])
            node.ops[i] = SWAPS[type(node.ops[i])]()
        elif self.field == "op":
            node.op = SWAPS[type(node.op)]()
        elif self.field == "value":
            node.value = (not node.value) if isinstance(node.value, bool) else node.value + 1
        elif self.field == "not":
            return node.operand
        else:
            name, i = self.field.split(".")
            getattr(node, name)[int(i)] = ast.Pass()
        return node


def mutant(source: str, index: int) -> tuple[str, int, str]:
    """The module's source with its `index`-th mutation, the line and what changed."""
    tree = ast.parse(source)
    site = sites(tree)[index]
    line, what = _line(site), site[2]
    return ast.unparse(_Mutate(site).visit(tree)), line, what


def statements(source: str) -> dict[int, str]:
    """Each line's whole logical line (a statement spread over several lines joined), comments cut and whitespace
    collapsed: the key an equivalent mutant is listed by, so that it matches wherever the statement breaks. A text
    the module holds more than once (`return None`) gets ` @n`, its n-th occurrence, so one entry covers one."""
    lines, spans, first = source.splitlines(), [], None
    for token in tokenize.generate_tokens(iter(source.splitlines(keepends=True)).__next__):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            lines[row - 1] = lines[row - 1][:col]
        elif token.type == tokenize.NEWLINE:
            spans.append((first, token.start[0], " ".join(" ".join(lines[first - 1:token.start[0]]).split())))
            first = None
        elif first is None and token.type not in (tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            first = token.start[0]
    out, seen, texts = {}, Counter(), Counter(text for _, _, text in spans)
    for first, last, text in spans:
        seen[text] += 1
        out.update(dict.fromkeys(range(first, last + 1), f"{text} @{seen[text]}" if texts[text] > 1 else text))
    return out


def equivalent(module: str) -> set[tuple[str, str]]:
    """(the statement's code, the mutation) of each mutant judged equivalent: by code, not number, so edits above
    it do not lose it."""
    if not EQUIVALENT.is_file():
        return set()
    entries = [line.split("#")[0].split(" | ") for line in EQUIVALENT.read_text(encoding="utf-8").splitlines()]
    return {(code.strip(), what.strip()) for path, code, what in (e for e in entries if len(e) == 3)
            if path.strip() == module}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="the module to break, relative to the repository root")
    parser.add_argument("tests", nargs="+", help="the test files (or node ids) that should notice")
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument("--timeout", type=int, default=300, help="seconds a mutant's tests may take (then killed)")
    args = parser.parse_args()
    source = (ROOT / args.module).read_text(encoding="utf-8")
    count = len(sites(ast.parse(source)))
    if args.list:
        for i in range(count):
            _, line, what = mutant(source, i)
            print(f"{args.module}:{line}: {what}")
        return
    known, survivors, keys = equivalent(args.module), [], statements(source)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv*", "runs", "__pycache__"))
        if (ROOT.parent / "shared").is_dir():  # the fixtures beside the repository (the real Qwen3 tokenizer)
            (Path(tmp) / "shared").symlink_to(ROOT.parent / "shared")
        env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args.tests]
        if subprocess.run(command, cwd=copy, env=env, capture_output=True).returncode:
            sys.exit(f"error: the tests fail on the unbroken code; fix them first ({' '.join(args.tests)}).")
        for i in range(count):
            text, line, what = mutant(source, i)
            (copy / args.module).write_text(text, encoding="utf-8")
            try:
                killed = subprocess.run(command, cwd=copy, env=env, capture_output=True,
                                        timeout=args.timeout).returncode != 0
            except subprocess.TimeoutExpired:
                killed = True  # a mutant that hangs the tests is noticed
            same = (keys[line], what) in known
            if not killed and not same:  # with its entry for tests/mutation_equivalent.txt, should it be one
                survivors.append(f"{args.module}:{line}: {what}\n    {args.module} | {keys[line]} | {what}  # why")
            status = "killed" if killed else "equivalent" if same else "SURVIVED"
            print(f"{i + 1}/{count} {args.module}:{line}: {what}: {status}", flush=True)
    score = 1 - len(survivors) / max(1, count)
    print(f"{args.module}: {count - len(survivors)} of {count} mutants killed or judged equivalent ({score:.0%}); "
          "survivors:", *survivors, sep="\n")


if __name__ == "__main__":
    main()
