"""`qwen3-kit`: one command with a subcommand per step; scripts/*.py run the same subcommands.

    qwen3-kit train configs/smoke.yaml                      # = python scripts/train.py --config configs/smoke.yaml
    qwen3-kit train configs/qwen3-14b-math.yaml data.chat_ratio=0.3 train.max_steps=300
    qwen3-kit grpo configs/qwen3-14b-math.yaml              # then reinforce math with GRPO, from the SFT adapter
    qwen3-kit prepare configs/qwen3-14b-math.yaml           # the data mix and its report, no training
    qwen3-kit sweep configs/qwen3-14b-math.yaml data.chat_ratio=0.1,0.25,0.5   # a run per ratio, the front named
    qwen3-kit download Qwen3-14B                            # from ModelScope onto the data disk, verified
    qwen3-kit download --plan --gpu-gb 24                   # which Qwen3 and batch fit a 24 GB GPU
    qwen3-kit probe configs/qwen3-14b-math.yaml --price-per-hour 2.5   # on the rented GPU: fits? how fast, long, dear?
    qwen3-kit chat --run runs/smoke                         # a conversation: /think, /no_think, /quit
    qwen3-kit export --run runs/smoke                       # the adapter and merged 16-bit weights for vLLM
    qwen3-kit eval --run runs/smoke eval.n_math=100         # the base model against the tuned one
    qwen3-kit config configs/smoke.yaml                     # every key: its default, this file's value, its meaning
    qwen3-kit setup                                         # AutoDL: caches on the data disk, Jupyter kernel, GPU

Settings are key=value with dotted keys (`qwen3-kit config` lists them all); the config file can be given with or
without --config. A mistake ends in one `error:` line and exit status 1.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from kit.errors import KitError
from kit.files import disk_full, free_gb


class UsageError(KitError):
    """A command line the kit cannot read; the message says what to write instead."""


class Terminated(BaseException):
    """SIGTERM outside the training loop: unwinds like Ctrl-C (atomic writes clean up), exit status 143."""


def _stop(signum, frame):
    """Ctrl-C or SIGTERM: unwind from where the program is. Python drops what a finalizer (`__del__`) raises, and
    loading a model runs many: there the signal is sent again once the finalizer is done, rather than lost."""
    import os
    import signal
    import threading

    caller = frame
    while caller is not None:
        if caller.f_code.co_name == "__del__":
            again = threading.Timer(0.05, os.kill, (os.getpid(), signum))
            again.daemon = True
            again.start()
            return
        caller = caller.f_back
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


def run_command(main) -> None:
    """Run a script's main(): a KitError ends it with `error: <message>` and exit status 1, a full disk the same way,
    Ctrl-C with a line and status 130 and SIGTERM with a line and 143, never a traceback."""
    import signal

    for name in ("SIGTERM", "SIGINT"):
        if signal.getsignal(getattr(signal, name)) is not signal.SIG_IGN:  # nohup and background jobs ignore SIGINT
            signal.signal(getattr(signal, name), _stop)
    try:
        main()
    except KitError as e:
        sys.exit(f"error: {e}")
    except (KeyboardInterrupt, Terminated) as e:
        name, status = ("SIGTERM", 143) if isinstance(e, Terminated) else ("Ctrl-C", 130)
        print(f"\nstopped ({name}); what was complete is kept, nothing half-written: run the same command again to "
              "go on.", file=sys.stderr)
        sys.exit(status)
    except BrokenPipeError:  # the reader closed early (`| head`): it read what it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else the exit's own flush raises again
        sys.exit(141)  # 128 + SIGPIPE, as a program the signal ended
    except NotADirectoryError as e:  # a folder setting or option naming a file (--cache-dir, an output folder)
        sys.exit(f"error: {e.filename} cannot be made: a file stands where a folder is needed on its path; name a "
                 "folder.")
    except Exception as e:
        if not disk_full(e):
            raise
        from kit.paths import cache_root

        where = getattr(e, "filename", None) or cache_root()  # no name given: the cache holds what is written then
        sys.exit(f"error: the disk holding {where} is full ({free_gb(where):.2f} GB free): free space there (models "
                 "and prepared data live in the kit's cache, QWEN3_KIT_CACHE), then run the same command again.")


def split_settings(items: list[str], config: str | None = None, *,
                   file_allowed: bool = True) -> tuple[str | None, list[str]]:
    """(the config file, the key=value overrides) from the positional arguments and --config."""
    files, overrides = [config] if config else [], []
    for item in items:
        if "=" in item:
            overrides.append(item)
        elif item.endswith((".yaml", ".yml")) and file_allowed:
            files.append(item)
        else:
            what = "a config file (.yaml) nor " if file_allowed else ""
            raise UsageError(f"'{item}' is neither {what}a key=value setting (e.g. train.max_steps=10).")
    if len(files) > 1:
        raise UsageError(f"one config file at a time: got {' and '.join(files)}.")
    return (files[0] if files else None), overrides


def explain_flags(argv: list[str], unknown: set[str]) -> None:
    """`--max_steps 10`, as TRL, LLaMA-Factory and ms-swift take settings, answered in one line with the key=value
    to write instead (kit.config.parse.home knows their names); `unknown` holds the options argparse did not know."""
    from kit.config.parse import home

    told, i = [], 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        if flag in unknown:
            following = argv[i + 1] if i + 1 < len(argv) else "-"
            if not eq and not following.startswith("-") and "=" not in following and not following.endswith(".yaml"):
                value, i = following, i + 1
            key = home(flag[2:].replace("-", "_"), "grpo" if argv[0] == "grpo" else "train")
            given = f"{flag} {value}".strip()
            told.append(f"for {given} write {key}={value or '...'}" if key and " " not in key
                        else f"for {given} use {key}" if key else f"{flag} is not a setting of the kit")
        i += 1
    if told:
        raise UsageError(f"settings are key=value, not --options: {'; '.join(told)} (`qwen3-kit config` lists them).")


def load(args, *, required: bool):
    """The config from the command line, validated; a config file is `required` for train and prepare."""
    from kit.config import load_config

    path, overrides = split_settings(args.settings, args.config)
    if required and path is None:
        raise UsageError(f"name a config file, e.g. `qwen3-kit {args.command} configs/smoke.yaml` (configs/ holds the "
                         "shipped ones).")
    return load_config(path, overrides)


def run_config(run: Path, overrides: list[str]):
    """A run's own config (with `overrides`); a folder that is not a run, in one sentence. Whether it has the
    adapter a command needs is that command's to say (eval can take a checkpoint: eval.adapter=newest)."""
    from kit.config import load_config
    from kit.config.parse import read_yaml
    from kit.paths import shown

    if not (run / "config.yaml").is_file():
        raise UsageError(f"{shown(run)} is not a run folder (it has no config.yaml); runs live under "
                         "train.output_dir, e.g. runs/smoke.")
    if not read_yaml(run / "config.yaml"):  # the defaults would stand in for what the run was trained with
        raise UsageError(f"{run / 'config.yaml'} is empty, so what the run was trained with is unknown; put back the "
                         "config it was trained with (the file given to train, with its key=value settings).")
    return load_config(run / "config.yaml", overrides)


def train(args) -> None:
    """Train a LoRA adapter: the data report and the plan print first; run the same command again to resume.

    qwen3-kit train configs/smoke.yaml                                  # the tiny model on a CPU, about a minute
    qwen3-kit train configs/qwen3-14b-math.yaml                         # the reference recipe on a GPU
    qwen3-kit train configs/qwen3-14b-math.yaml data.chat_ratio=0.3 train.max_steps=200
    torchrun --nproc_per_node 2 scripts/train.py --config configs/qwen3-8b-4090.yaml train.backend=hf   # 2 GPUs
    """
    from kit.training.backends import activate_backend

    cfg = load(args, required=True)
    activate_backend(cfg.train.backend, cfg.model.name)  # before anything imports transformers; a GPU checked

    from kit.training.sft import train as train_run

    result = train_run(cfg)
    _exit_if_stopped(result, cfg, "" if cfg.train.run_name else "train.run_name")
    first, last = result.losses[0][1], result.losses[-1][1]
    print(f"done: {result.steps} steps, loss {first:.3f} -> {last:.3f}; adapter in {result.adapter_dir}")


def _exit_if_stopped(result, cfg, named: str) -> None:
    """After SIGTERM or Ctrl-C (a checkpoint saved) say how to resume and exit 128 + the signal (143, 130); on the
    other ranks of a distributed run exit quietly, rank 0 reports. The same command resumes, unless it named no run
    (`named`, the key that would: a new timestamp each time) or train.resume was not auto (never starts over)."""
    status = 128 + result.signal if result.interrupted else 0
    if not result.main_process:
        sys.exit(status)
    if result.interrupted:
        add = ([f"{named}={result.run_dir.name}"] if named else []) + \
            ([] if cfg.train.resume == "auto" else ["train.resume=auto"])
        print(f"stopped at step {result.steps}; a checkpoint is in {result.run_dir / 'checkpoints'}. Run the same "
              f"command again{' with ' + ' '.join(add) if add else ''} to resume.")
        sys.exit(status)


def grpo(args) -> None:
    """After SFT, reinforce math with GRPO: rewards for a right boxed answer and a well-formed reply; resumable.

    qwen3-kit grpo configs/smoke.yaml                                   # runs/smoke's adapter -> runs/smoke-grpo
    qwen3-kit grpo configs/qwen3-14b-math.yaml grpo.max_steps=200 grpo.num_generations=8
    qwen3-kit grpo configs/qwen3-14b-math.yaml grpo.start_from=base     # a new LoRA on the base model

    The prompts report and the plan print first; the model is scored on eval.* before and after (thinking on and
    off), since RL on thinking traces can erode the non-thinking mode. The run folder takes export and eval as an
    SFT run does: qwen3-kit export --run runs/smoke-grpo; qwen3-kit eval --run runs/smoke-grpo.
    """
    from kit.training.backends import activate_backend

    cfg = load(args, required=True)
    activate_backend(cfg.train.backend, cfg.model.name)  # before anything imports transformers; a GPU checked

    from kit.evaluation.scores import compare
    from kit.training.reinforce import grpo as grpo_run

    result = grpo_run(cfg)
    _exit_if_stopped(result, cfg, "" if cfg.grpo.run_name or cfg.train.run_name else "grpo.run_name")
    if {"before", "after"} <= result.checks.keys():
        print(compare({"before": result.checks["before"], "after": result.checks["after"]}))
    rewards = f", reward {result.rewards[0][1]:.3f} -> {result.rewards[-1][1]:.3f}" if result.rewards else ""
    print(f"done: {result.steps} steps{rewards}; adapter in {result.adapter_dir}\n"
          f"next: qwen3-kit export --run {result.run_dir}; qwen3-kit eval --run {result.run_dir}")


def sweep(args) -> None:
    """Train a short run per chat ratio, evaluate each, and name the ratios on the front; rerun to continue.

    qwen3-kit sweep configs/smoke.yaml data.chat_ratio=0.1,0.25 train.max_steps=20         # the tiny model, CPU
    qwen3-kit sweep configs/qwen3-14b-math.yaml data.chat_ratio=0.1,0.25,0.5 train.max_steps=200 eval.n_math=200
    qwen3-kit sweep configs/qwen3-14b-math.yaml data.chat_ratio=0.1,0.25,0.5 --plan        # the cost, then stop

    Each ratio is a run folder in <train.output_dir>/<train.run_name>-sweep/, with sweep.md, sweep.json and
    front.png beside them. The sources are tokenized once for every ratio. How to read the front: docs/data.md.
    """
    from kit.evaluation.sweep import split_ratios
    from kit.training.backends import activate_backend

    ratios, args.settings = split_ratios(args.settings)
    cfg = load(args, required=True)
    activate_backend(cfg.train.backend, cfg.model.name)  # before anything imports transformers; a GPU checked

    from kit.evaluation.sweep import format_table, plan_sweep, run_sweep

    if args.plan:
        print(plan_sweep(cfg, ratios))
        return
    result = run_sweep(cfg, ratios)
    if result.interrupted:
        print(f"stopped during chat_ratio {result.ratios[len(result.points)]:g}; run the same command again to "
              "continue the sweep from there.")
        sys.exit(128 + result.signal)
    print(format_table(result))
    print(f"table and plot: {result.folder / 'sweep.md'}, {result.folder / 'front.png'}")


def probe(args) -> None:
    """Before paying for hours: does the config fit this GPU, how fast, how long and how much (about a minute).

    qwen3-kit probe configs/qwen3-14b-math.yaml --price-per-hour 2.5   # on the rented GPU, before training
    qwen3-kit probe configs/qwen3-8b-4090.yaml --cap-gib 24            # on a larger card: what a 24 GB one takes
    qwen3-kit probe configs/smoke.yaml                                 # the tiny model on a CPU: the probe's path

    The config's model loads as training loads it, and the kit's trainer runs a few steps on the config's own data
    (the time per step, the ETA of the run's steps, the cost) and on rows of the full model.max_seq_length (the peak
    memory against the card, tokens/s, MFU). Then the longest sequence at its batch and the largest batch at its
    length are searched, a training step each, and what to change in the config is printed. Everything is saved in
    <run folder>/probe.json as it is measured. A real model on a machine without a usable GPU is refused.
    """
    from kit.training.probe import probe as run_probe

    run_probe(load(args, required=True), price_per_hour=args.price_per_hour, steps=args.steps,
              search=not args.no_search, cap_gib=args.cap_gib, max_seq=args.max_seq)


def prepare(args) -> None:
    """Prepare the reasoning/chat mix a config describes and print its report (cached: training reuses it).

    qwen3-kit prepare configs/smoke.yaml
    qwen3-kit prepare configs/qwen3-14b-math.yaml data.chat_ratio=0.3 data.ratio_by=tokens --report mix.json
    """
    import json

    from kit.data import format_report, prepare_data
    from kit.training.backends import load_tokenizer

    cfg = load(args, required=True)
    prepared = prepare_data(cfg, load_tokenizer(cfg))
    print(format_report(prepared.report))
    print(f"{'reused' if prepared.cached else 'prepared'}: {prepared.path}")
    if args.report:
        Path(args.report).write_text(json.dumps(prepared.report, indent=2), encoding="utf-8")


def download(args) -> None:
    """Download Qwen3 weights from ModelScope (default) or Hugging Face onto the data disk, verified; or plan VRAM.

    qwen3-kit download Qwen3-14B                          # Unsloth dynamic 4-bit, for training
    qwen3-kit download Qwen3-14B --variant base_16bit     # Qwen/Qwen3-14B, for the merged export
    qwen3-kit download Qwen3-8B --tokenizer-only          # config and tokenizer files only
    qwen3-kit download --plan --gpu-gb 24                 # which Qwen3 and batch fit a 24 GB GPU

    Interrupted? Run the same command again: finished files are kept and partial ones resume.
    """
    from kit.hub import catalog_table, download_model
    from kit.models.memory import plan_report

    if args.plan:
        print(plan_report(args.model or "", gpu_gb=args.gpu_gb, seq_len=args.seq_len, batch=args.batch))
        return
    if not args.model:
        print(catalog_table())
        raise UsageError("name a model (e.g. Qwen3-14B), or use --plan.")
    patterns = ["*.json", "*.jinja", "*.txt", "*.model"] if args.tokenizer_only else None
    result = download_model(args.model, source=args.source, variant=args.variant, cache_dir=args.cache_dir,
                            revision=args.revision, allow_patterns=patterns)
    state = "already complete" if result.cached else "downloaded and verified"
    print(f"{result.repo_id}: {result.files} files, {result.bytes / 1e9:.2f} GB, {state}\n{result.path}")


def chat(args) -> None:
    """Chat with a finished run (--run), or a model, adapter or export folder: one prompt, or a conversation.

    qwen3-kit chat --run runs/smoke                                     # a conversation: /think, /no_think, /quit
    qwen3-kit chat --run runs/qwen3-14b-math "Solve x^2 - 5x + 6 = 0."  # one prompt, thinking on and off
    qwen3-kit chat runs/qwen3-14b-math/export/merged_16bit "Explain recursion." --thinking off
    """
    from kit.training.backends import activate_backend

    folder, prompt, backend, model_name, max_new_tokens = _chat_target(args)
    backend = activate_backend(backend, model_name, asked=(f"--backend {backend}", "--backend hf to chat"))
    from kit.inference.generate import chat as reply_to
    from kit.inference.generate import load_for_inference
    from kit.inference.repl import converse

    model, tokenizer = load_for_inference(folder, base=args.base, backend=backend)
    if prompt is None:
        converse(model, tokenizer, thinking=args.thinking != "off", system=args.system, max_new_tokens=max_new_tokens)
        return
    for thinking in {"on": [True], "off": [False], "both": [True, False], None: [True, False]}[args.thinking]:
        reply = reply_to(model, tokenizer, prompt, thinking=thinking, system=args.system,
                         max_new_tokens=max_new_tokens)
        print(f"=== thinking {'on' if thinking else 'off'} ===")
        if reply.reasoning:
            print(f"[reasoning]\n{reply.reasoning}\n")
        print(f"[answer]\n{reply.answer}\n")


def _chat_target(args) -> tuple[Path, str | None, str, str, int]:
    """(folder, prompt or None, backend, the model's name for the GPU check, max new tokens) from chat's arguments."""
    from kit.paths import shown
    from kit.training.runs import has_adapter

    items = list(args.items)
    if args.run:
        if len(items) > 1:
            raise UsageError("with --run give at most one prompt (quote it).")
        cfg = run_config(Path(args.run), [])
        if not has_adapter(Path(args.run)):
            raise UsageError(f"{shown(Path(args.run))} has no adapter yet: its training has not finished; rerun the "
                             "train command to resume it.")
        return (Path(args.run) / "adapter", items[0] if items else None, args.backend or cfg.train.backend,
                cfg.model.name, args.max_new_tokens or cfg.eval.max_new_tokens)
    if not items or len(items) > 2:
        raise UsageError("name a run (--run runs/smoke) or a model, adapter or export folder, then optionally a "
                         "prompt (quoted).")
    return Path(items[0]), items[1] if len(items) > 1 else None, args.backend or "auto", "", args.max_new_tokens or 1024


def export(args) -> None:
    """Export a finished run: the adapter, and merged 16-bit weights that vLLM serves (merged on the CPU).

    qwen3-kit export --run runs/smoke
    qwen3-kit export --run runs/qwen3-14b-math export.thinking_default=false
    qwen3-kit export --run runs/qwen3-14b-math "export.formats=[merged_16bit]" export.overwrite=true

    The run's own config.yaml is read; key=value settings override it. For a real Qwen3 the 16-bit base
    (Qwen/Qwen3-<size>) is downloaded from ModelScope; the merge needs no GPU and about one tensor's memory.
    """
    run = Path(args.run)
    cfg = run_config(run, split_settings(args.settings, file_allowed=False)[1])

    from kit.export.export import export_run

    result = export_run(run, cfg)
    for fmt, folder in result.folders.items():
        kept = " (kept: complete from an earlier export; export.overwrite=true makes it again)" if fmt in result.kept \
            else ""
        print(f"{fmt:>20}: {folder}{kept}")
    if result.max_logit_diff is not None:
        print(f"merged weights checked against peft's merge; logits of the first layers differ from base + adapter "
              f"by at most {result.max_logit_diff:.4f} (largest logit {result.logit_scale:.2f})")
    print(f"\nserve:\n  {result.serve_command}\n\nclient:\n{result.client_snippet}")


def evaluate(args) -> None:
    """Compare the base model and a run's tuned adapter: held-out math, the thinking switch, instruction following.

    qwen3-kit eval --run runs/smoke
    qwen3-kit eval --run runs/qwen3-14b-math eval.n_math=200 eval.max_new_tokens=4096
    qwen3-kit eval --run runs/qwen3-14b-math eval.math=math500 eval.endpoint=http://localhost:8000/v1

    Math comes from eval.math (default: the problems data.reasoning.heldout kept out of training), instructions from
    eval.instructions; generation is local (batches of eval.batch_size) or by an OpenAI-compatible server serving the
    tuned model (eval.endpoint, e.g. vLLM serving the export; eval.base_endpoint for the base). Results go to
    <run>/eval.json and a printed table, with Qwen's published figures for the model's size beside it.

    qwen3-kit eval --run runs/qwen3-14b-math --harnesses    # EvalScope and lm-eval configs for the served export
    """
    from kit.training.backends import activate_backend

    run = Path(args.run)
    cfg = run_config(run, split_settings(args.settings, file_allowed=False)[1])
    if args.harnesses:
        from kit.evaluation.harnesses import write_configs

        print(write_configs(run / "harnesses", cfg))
        return
    if not (cfg.eval.endpoint and cfg.eval.base_endpoint):  # a local model will load
        activate_backend(cfg.train.backend, cfg.model.name)  # unsloth before transformers, on a GPU

    from kit.evaluation.harnesses import published_table
    from kit.evaluation.scores import compare, evaluate_run, show_replies

    reports = evaluate_run(run, cfg)
    for section in ("math", "instructions"):
        if args.show and reports["tuned"]["details"][section]:
            print(show_replies(reports, section, args.show), end="\n\n")
    print(compare(reports))
    if published := published_table(reports, cfg):
        print(published)
    print(f"details: {run / 'eval.json'}")


def config(args) -> None:
    """Every config key with its default and what it does; with a file (and settings), its values beside them.

    qwen3-kit config                                      # the defaults
    qwen3-kit config configs/qwen3-14b-math.yaml          # what this file changes, marked *
    """
    from kit.config.help import describe

    path, overrides = split_settings(args.settings, args.config)
    print(describe(load(args, required=False) if path or overrides else None, path or "value"))


def setup(args) -> None:
    """AutoDL: every cache on the data disk (an env file new shells read), a Jupyter kernel, a GPU/driver/torch check.

    bash scripts/setup_autodl.sh                  # on a fresh instance: the venv and install first, then this
    qwen3-kit setup --root /root/autodl-tmp       # this part alone, in the kit's venv
    """
    from kit.autodl import check_driver, env_lines
    from kit.autodl import setup as set_up

    if args.check_driver:  # for scripts/setup_autodl.sh, before it installs torch
        print(check_driver())
        return
    if args.print_env:  # for scripts/setup_autodl.sh, before the venv exists
        print(env_lines(Path(args.root)))
        return
    print(set_up(Path(args.root).resolve()))


def _settings(p: argparse.ArgumentParser, *, config: bool = True) -> None:
    if config:
        p.add_argument("--config", help="YAML config file (it can also be given without --config)")
    p.add_argument("settings", nargs="*", metavar="[config.yaml] key=value" if config else "key=value",
                   help="settings, e.g. train.max_steps=100 (qwen3-kit config lists every key)")


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="the run folder train wrote (holds config.yaml and adapter/)")
    _settings(p, config=False)


def _prepare_args(p: argparse.ArgumentParser) -> None:
    _settings(p)
    p.add_argument("--report", help="also write the data report (JSON) here")


def _probe_args(p: argparse.ArgumentParser) -> None:
    _settings(p)
    p.add_argument("--price-per-hour", type=_positive(float),
                   help="what an hour of this machine costs: the run's cost is printed")
    p.add_argument("--steps", type=_positive(int), default=3,
                   help="steps timed on the data and at full length (the first warms up)")
    p.add_argument("--cap-gib", type=float, default=0, help="measure as on a card of this many GiB (24: an RTX 4090)")
    p.add_argument("--max-seq", type=_positive(int), default=32768, help="the longest sequence the search tries")
    p.add_argument("--no-search", action="store_true", help="skip the longest-sequence and largest-batch search")


def _sweep_args(p: argparse.ArgumentParser) -> None:
    _settings(p)
    p.add_argument("--plan", action="store_true", help="print what the sweep costs (runs x steps, each mix), then stop")


def _download_args(p: argparse.ArgumentParser) -> None:
    from kit.models.profiles import TRAINABLE, VARIANTS

    p.add_argument("model", nargs="?", help=f"one of Qwen3-{', Qwen3-'.join(TRAINABLE)}, or a repo id")
    p.add_argument("--source", default="modelscope", choices=["modelscope", "huggingface"])
    p.add_argument("--variant", default="dynamic_4bit", choices=VARIANTS)
    p.add_argument("--cache-dir", default="", help="default: /root/autodl-tmp/qwen3-kit or ~/.cache/qwen3-kit")
    p.add_argument("--revision", default="")
    p.add_argument("--tokenizer-only", action="store_true", help="only *.json, *.jinja and *.txt files")
    p.add_argument("--plan", action="store_true", help="print the VRAM plan instead of downloading")
    p.add_argument("--gpu-gb", type=_positive(float), help="with --plan: your GPU's memory")
    p.add_argument("--seq-len", type=_positive(int), default=2048, help="with --plan: the sequence length to plan for")
    p.add_argument("--batch", type=_positive(int), default=2, help="with --plan and a model: the batch to estimate")


def _chat_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("items", nargs="*", metavar="[folder] [prompt]",
                   help="a model, adapter or export folder (not with --run), then a prompt; no prompt: a conversation")
    p.add_argument("--run", help="a finished run folder: chat with its adapter, with its config's backend")
    p.add_argument("--thinking", choices=["on", "off", "both"], help="one prompt: both by default; a conversation: "
                   "on by default (switch with /think and /no_think)")
    p.add_argument("--system", help="a system prompt")
    p.add_argument("--max-new-tokens", type=_positive(int), help="default: the run's eval.max_new_tokens, else 1024")
    p.add_argument("--backend", choices=["auto", "unsloth", "hf"], help="default: the run's train.backend, else auto")
    p.add_argument("--base", help="the base model folder for an adapter (default: the one the adapter names)")


def _eval_args(p: argparse.ArgumentParser) -> None:
    _run(p)
    p.add_argument("--show", type=int, default=2, help="print the replies to this many prompts in full")
    p.add_argument("--harnesses", action="store_true", help="write EvalScope and lm-evaluation-harness configs for "
                   "the served export (eval.endpoint) into <run>/harnesses/, print how to run them, and stop")


def _setup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default="/root/autodl-tmp", help="the data disk (default /root/autodl-tmp)")
    p.add_argument("--print-env", action="store_true", help="only print the cache variables as shell exports")
    p.add_argument("--check-driver", action="store_true",
                   help="only check the NVIDIA driver against torch's CUDA build")


COMMANDS = {  # name -> (function, its arguments)
    "train": (train, _settings),
    "grpo": (grpo, _settings),
    "probe": (probe, _probe_args),
    "prepare": (prepare, _prepare_args),
    "sweep": (sweep, _sweep_args),
    "download": (download, _download_args),
    "chat": (chat, _chat_args),
    "export": (export, _run),
    "eval": (evaluate, _eval_args),
    "config": (config, _settings),
    "setup": (setup, _setup_args),
}


class _Parser(argparse.ArgumentParser):
    """argparse, its mistakes ending as every other: one `error:` line (naming the help to read), status 1."""

    def error(self, message):
        raise UsageError(f"{message} (`{self.prog} --help` lists what it takes).")


def _positive(kind):
    """An argparse type: `kind` (int, float) above 0, or one sentence."""
    def read(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number above 0")
        return value
    return read


def parser(script: str = "") -> argparse.ArgumentParser:
    """The argument parser; `script` (e.g. scripts/train.py) names the program in a script's usage lines."""
    top = _Parser(prog="qwen3-kit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="command")
    for name, (function, add_arguments) in COMMANDS.items():
        sub = commands.add_parser(name, help=function.__doc__.splitlines()[0],
                                  description=inspect.cleandoc(function.__doc__),
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  **({"prog": f"python {script}"} if script else {}))
        add_arguments(sub)
        sub.set_defaults(function=function)
    return top


def run(argv: list[str], script: str = "") -> None:
    """Parse `argv` (the subcommand first) and run the subcommand."""
    from kit.quiet import install

    install()  # before anything imports torch
    top = parser(script)
    args, extra = top.parse_known_args(argv)
    flags = {item.partition("=")[0] for item in extra if item.startswith("--")}
    if flags and hasattr(args, "settings"):
        explain_flags(argv, flags)
    if extra:
        top.error(f"unrecognized arguments: {' '.join(extra)}")
    args.function(args)


def main(command: str = "", script: str = "") -> None:
    """The `qwen3-kit` console script; scripts/<name>.py call it with their subcommand and their own path."""
    run_command(lambda: run(([command] if command else []) + sys.argv[1:], script))


if __name__ == "__main__":
    main()
