"""Write the small sample data sets in `data/` in the real schemas of the public data sets.

    python scripts/make_sample_data.py

- `data/openmath_sample.parquet`: nvidia/OpenMathReasoning `cot` columns; every problem is generated with its
  answer computed, so `expected_answer` is right and a `<think>` trace leads to a `\\boxed{}` answer.
- `data/openmath_heldout.parquet`: other problems of the same kinds, for evaluation only.
- `data/finetome_sample.jsonl`: mlabonne/FineTome-100k rows (`conversations` of `{from, value}`, `source`, `score`),
  with system prompts and multi-turn conversations.
- `data/custom_{messages,sharegpt,alpaca}.jsonl`: a user's own data in the three accepted formats.
Deterministic: the same files every run.
"""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parent.parent / "data"


def _frac(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"\\frac{{{x.numerator}}}{{{x.denominator}}}"


def linear(rng: random.Random):
    a, x, b = rng.randint(2, 12), rng.randint(-20, 20), rng.randint(-50, 50)
    c = a * x + b
    problem = f"Solve for $x$: ${a}x {'+' if b >= 0 else '-'} {abs(b)} = {c}$."
    think = (f"We need x with {a}x + ({b}) = {c}. Subtract {b} from both sides: {a}x = {c} - ({b}) = {c - b}.\n"
             f"Divide by {a}: x = {c - b}/{a} = {x}.\nCheck: {a}*{x} + ({b}) = {a * x + b}, which is {c}. Good.")
    answer = f"Subtracting {b} gives ${a}x = {c - b}$, so $x = {x}$.\n\n\\boxed{{{x}}}"
    return problem, think, answer, str(x)


def arithmetic_sum(rng: random.Random):
    a, d, n = rng.randint(1, 20), rng.randint(1, 9), rng.randint(5, 40)
    last = a + (n - 1) * d
    total = n * (a + last) // 2
    problem = f"Find the sum of the first {n} terms of the arithmetic sequence {a}, {a + d}, {a + 2 * d}, ..."
    think = (f"First term {a}, common difference {d}, n = {n}.\nThe last term is {a} + ({n}-1)*{d} = {last}.\n"
             f"Sum = n(first + last)/2 = {n}*({a}+{last})/2 = {n}*{a + last}/2 = {total}.")
    answer = f"The {n}th term is {last}, so the sum is $\\frac{{{n}({a}+{last})}}{{2}} = {total}$.\n\n\\boxed{{{total}}}"
    return problem, think, answer, str(total)


def gcd_lcm(rng: random.Random):
    g = rng.randint(2, 15)
    p, q = rng.sample([2, 3, 5, 7, 11, 13], 2)
    a, b = g * p * rng.randint(1, 3), g * q
    lcm = a * b // math.gcd(a, b)
    problem = f"What is the least common multiple of {a} and {b}?"
    think = (f"gcd({a}, {b}): {a} = {math.gcd(a, b)} * {a // math.gcd(a, b)}, {b} = {math.gcd(a, b)} * "
             f"{b // math.gcd(a, b)}, so gcd = {math.gcd(a, b)}.\nlcm = {a}*{b}/gcd = {a * b}/{math.gcd(a, b)} = {lcm}.")
    answer = f"Since $\\gcd({a},{b}) = {math.gcd(a, b)}$, $\\operatorname{{lcm}}({a},{b}) = {lcm}$.\n\n\\boxed{{{lcm}}}"
    return problem, think, answer, str(lcm)


def fraction_sum(rng: random.Random):
    x = Fraction(rng.randint(1, 9), rng.randint(2, 12))
    y = Fraction(rng.randint(1, 9), rng.randint(2, 12))
    s = x + y
    problem = f"Compute ${_frac(x)} + {_frac(y)}$ and give the answer in lowest terms."
    common = x.denominator * y.denominator // math.gcd(x.denominator, y.denominator)
    think = (f"Common denominator of {x.denominator} and {y.denominator} is {common}.\n"
             f"{x} = {x.numerator * common // x.denominator}/{common}, {y} = {y.numerator * common // y.denominator}/"
             f"{common}.\nSum = {x.numerator * common // x.denominator + y.numerator * common // y.denominator}/{common}"
             f" which reduces to {s}.")
    answer = f"Over the common denominator {common} the sum reduces to ${_frac(s)}$.\n\n\\boxed{{{_frac(s)}}}"
    return problem, think, answer, _frac(s)


def percentage(rng: random.Random):
    price, pct = rng.randint(2, 40) * 10, rng.choice([5, 10, 15, 20, 25, 30, 40, 50])
    final = Fraction(price * (100 - pct), 100)
    problem = f"A jacket costs ${price}$ dollars and is discounted by ${pct}\\%$. What is the sale price in dollars?"
    think = (f"Discount = {pct}% of {price} = {price}*{pct}/100 = {Fraction(price * pct, 100)}.\n"
             f"Sale price = {price} - {Fraction(price * pct, 100)} = {final}.")
    shown = str(final) if final.denominator == 1 else f"{float(final):g}"
    answer = f"The discount is ${float(Fraction(price * pct, 100)):g}$ dollars, so the price is ${shown}$.\n\n\\boxed{{{shown}}}"
    return problem, think, answer, shown


def dice(rng: random.Random):
    target = rng.randint(2, 12)
    ways = sum(1 for i in range(1, 7) for j in range(1, 7) if i + j == target)
    p = Fraction(ways, 36)
    problem = f"Two fair six-sided dice are rolled. What is the probability that the sum is {target}?"
    pairs = [(i, target - i) for i in range(1, 7) if 1 <= target - i <= 6]
    think = (f"There are 36 equally likely outcomes. Pairs summing to {target}: {pairs}, that is {ways} outcomes.\n"
             f"Probability = {ways}/36 = {p}.")
    answer = f"{ways} of the 36 outcomes give a sum of {target}, so the probability is ${_frac(p)}$.\n\n\\boxed{{{_frac(p)}}}"
    return problem, think, answer, _frac(p)


def quadratic(rng: random.Random):
    r1, r2 = rng.randint(-9, 9), rng.randint(-9, 9)
    b, c = -(r1 + r2), r1 * r2
    problem = f"Find the sum of the roots of $x^2 {'+' if b >= 0 else '-'} {abs(b)}x {'+' if c >= 0 else '-'} {abs(c)} = 0$."
    think = (f"By Vieta, the sum of the roots of x^2 + bx + c is -b. Here b = {b}, so the sum is {-b}.\n"
             f"Check by factoring: (x - ({r1}))(x - ({r2})), roots {r1} and {r2}, sum {r1 + r2}.")
    answer = f"By Vieta's formulas the sum of the roots is ${-b}$.\n\n\\boxed{{{-b}}}"
    return problem, think, answer, str(-b)


def remainder(rng: random.Random):
    base, exp, mod = rng.randint(2, 9), rng.randint(5, 60), rng.choice([5, 7, 9, 11, 13])
    r = pow(base, exp, mod)
    problem = f"What is the remainder when ${base}^{{{exp}}}$ is divided by ${mod}$?"
    cycle = []
    v = 1
    for _ in range(mod):
        v = v * base % mod
        if v in cycle:
            break
        cycle.append(v)
    think = (f"Powers of {base} mod {mod} cycle: {cycle} (length {len(cycle)}).\n"
             f"{exp} mod {len(cycle)} = {exp % len(cycle)}, so {base}^{exp} = {r} (mod {mod}).")
    answer = f"The powers of {base} modulo {mod} repeat with period {len(cycle)}, giving remainder ${r}$.\n\n\\boxed{{{r}}}"
    return problem, think, answer, str(r)


def choose(rng: random.Random):
    n = rng.randint(5, 14)
    k = rng.randint(2, min(5, n - 1))
    value = math.comb(n, k)
    problem = f"In how many ways can a committee of {k} people be chosen from {n} people?"
    think = (f"Order does not matter, so this is C({n}, {k}) = {n}!/({k}!*{n - k}!).\n"
             f"= {' * '.join(str(n - i) for i in range(k))} / {math.factorial(k)} = {value}.")
    answer = f"The number of committees is $\\binom{{{n}}}{{{k}}} = {value}$.\n\n\\boxed{{{value}}}"
    return problem, think, answer, str(value)


def rectangle(rng: random.Random):
    w, extra = rng.randint(2, 30), rng.randint(1, 20)
    length = w + extra
    perimeter = 2 * (w + length)
    problem = (f"A rectangle is {extra} cm longer than it is wide and its perimeter is {perimeter} cm. "
               "What is its area in square centimetres?")
    think = (f"Let the width be w. Then 2(w + w + {extra}) = {perimeter}, so 4w + {2 * extra} = {perimeter}, "
             f"4w = {perimeter - 2 * extra}, w = {w}.\nLength = {length}. Area = {w}*{length} = {w * length}.")
    answer = f"The width is {w} cm and the length {length} cm, so the area is ${w * length}$.\n\n\\boxed{{{w * length}}}"
    return problem, think, answer, str(w * length)


GENERATORS = [linear, arithmetic_sum, gcd_lcm, fraction_sum, percentage, dice, quadratic, remainder, choose, rectangle]


def openmath_rows(n: int, seed: int, drop_kaggle_column: bool) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        problem, think, answer, expected = GENERATORS[i % len(GENERATORS)](rng)
        row = {
            "expected_answer": expected,
            "problem_type": "has_answer_extracted" if rng.random() < 0.85 else "no_answer_extracted",
            "problem_source": rng.choice(["aops_c4_high_school_math", "aops_c6_high_school_olympiads", "kit_sample"]),
            "generation_model": "DeepSeek-R1",
            "pass_rate_72b_tir": "n/a" if rng.random() < 0.2 else f"{rng.randint(1, 32) / 32:.6f}",
            "problem": problem,
            "generated_solution": f"<think>\n{think}\n</think>\n\n{answer}",
            "inference_mode": "cot",
        }
        if not drop_kaggle_column:
            row["used_in_kaggle"] = rng.random() < 0.1
        rows.append(row)
    return rows


TOPICS = [
    ("photosynthesis", "Photosynthesis is how plants turn light, water and carbon dioxide into glucose and oxygen. "
     "Chlorophyll in the chloroplasts absorbs the light, and the energy drives the reactions that build sugar.",
     "A leaf in sunlight releases oxygen bubbles when placed under water: that oxygen comes from split water."),
    ("a binary search", "A binary search finds an item in a sorted list by repeatedly halving the range: compare "
     "with the middle element and keep the half that can still contain the target. It takes O(log n) steps.",
     "To find 37 in [3, 8, 15, 22, 37, 41, 56], look at 22, then at 41, then at 37: three comparisons."),
    ("inflation", "Inflation is the general rise of prices over time, which lowers what a unit of money buys. "
     "Central banks usually aim for a low, stable rate, often around two percent a year.",
     "If bread costs 2.00 this year and 2.10 next year, its price rose by five percent."),
    ("the water cycle", "Water evaporates from oceans and lakes, condenses into clouds, falls as precipitation, and "
     "flows back through rivers and groundwater. The sun's heat drives the whole cycle.",
     "A puddle that disappears on a sunny afternoon has evaporated into the air."),
    ("recursion", "Recursion is when a function solves a problem by calling itself on smaller instances of it, "
     "with a base case that stops the calls. It suits problems with a self-similar structure.",
     "factorial(n) = n * factorial(n - 1), with factorial(0) = 1 as the base case."),
    ("plate tectonics", "The Earth's outer shell is broken into plates that float on the mantle and move a few "
     "centimetres a year. Where they meet, they build mountains, open oceans, and cause earthquakes.",
     "The Himalayas rise where the Indian plate pushes into the Eurasian plate."),
    ("a hash table", "A hash table stores key-value pairs in an array, using a hash function to turn each key into "
     "an index. Lookups, inserts and deletes take constant time on average.",
     "Python's dict is a hash table: d['apple'] = 3 stores 3 at the slot computed from hash('apple')."),
    ("supply and demand", "Prices settle where the quantity buyers want equals the quantity sellers offer. When "
     "demand rises and supply stays the same, the price goes up until the two balance again.",
     "Concert tickets for a popular band sell out quickly and resell for more than their face value."),
    ("the immune system", "The immune system defends the body against pathogens. Innate defences respond at once, "
     "while adaptive immunity learns to recognise specific invaders and remembers them.",
     "A vaccine trains adaptive immunity so the body recognises a virus before a real infection."),
    ("gradient descent", "Gradient descent minimises a function by taking repeated steps against its gradient. "
     "The learning rate sets the step size: too large diverges, too small is slow.",
     "Minimising f(x) = x^2 from x = 4 with learning rate 0.25 gives 4, 2, 1, 0.5, ..."),
    ("the French Revolution", "The French Revolution (1789-1799) overthrew the monarchy, proclaimed the rights of "
     "citizens, and reshaped politics in Europe. Financial crisis and inequality fuelled it.",
     "The storming of the Bastille on 14 July 1789 is still celebrated as France's national day."),
    ("compound interest", "Compound interest earns interest on previously earned interest, so savings grow "
     "exponentially: A = P(1 + r)^t for yearly compounding.",
     "1,000 at 5% a year becomes 1,000 * 1.05^10, about 1,629, after ten years."),
]
SYSTEMS = ["You are a helpful assistant.", "You are a patient teacher who explains things simply.",
           "You are a concise assistant. Answer in a few sentences."]
ASKS = ["Can you explain {t}?", "What is {t}?", "Explain {t} to a beginner.", "I keep hearing about {t}. What is it?",
        "Give me a short explanation of {t}."]
FOLLOWUPS = ["Can you give an example?", "Could you show me a concrete example?", "What would be an example of that?"]
TASKS = [
    ("Write a haiku about {w}.", "{W} in the morning,\nquiet light on open hands,\nthe day begins slow."),
    ("Suggest three names for a cafe about {w}.", "1. The {W} Corner\n2. {W} & Co.\n3. Little {W} House"),
    ("Translate 'good morning' into French, then use it in a sentence about {w}.",
     "'Good morning' is 'bonjour'. Bonjour ! Le {w} est magnifique aujourd'hui."),
    ("Give me one tip for learning about {w}.", "Start small: spend ten minutes a day on {w} and write down one "
     "thing you learned each time. Consistency beats long, rare sessions."),
]
WORDS = ["rain", "coffee", "mountains", "books", "music", "gardens", "the sea", "cities", "winter", "bicycles"]


def finetome_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        conversation = []
        if i % 4 == 0:
            conversation.append({"from": "system", "value": rng.choice(SYSTEMS)})
        if i % 3 == 2:
            word = rng.choice(WORDS)
            ask, reply = rng.choice(TASKS)
            conversation += [{"from": "human", "value": ask.format(w=word)},
                             {"from": "gpt", "value": reply.format(w=word, W=word.capitalize())}]
        else:
            topic, explanation, example = rng.choice(TOPICS)
            conversation += [{"from": "human", "value": rng.choice(ASKS).format(t=topic)},
                             {"from": "gpt", "value": explanation}]
            if i % 3 == 1:
                conversation += [{"from": "human", "value": rng.choice(FOLLOWUPS)},
                                 {"from": "gpt", "value": f"Sure. {example}"}]
        rows.append({"conversations": conversation, "source": "kit_sample", "score": round(rng.uniform(4.0, 5.2), 3)})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    DATA.mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(openmath_rows(400, seed=1, drop_kaggle_column=False)),
                   DATA / "openmath_sample.parquet")
    # Held-out problems come from another seed and lack the newer `used_in_kaggle` column (schema drift).
    pq.write_table(pa.Table.from_pylist(openmath_rows(60, seed=2, drop_kaggle_column=True)),
                   DATA / "openmath_heldout.parquet")
    write_jsonl(DATA / "finetome_sample.jsonl", finetome_rows(300, seed=3))
    write_jsonl(DATA / "finetome_heldout.jsonl", finetome_rows(40, seed=4))
    chat = finetome_rows(12, seed=5)
    role = {"human": "user", "gpt": "assistant", "system": "system"}
    write_jsonl(DATA / "custom_sharegpt.jsonl", chat)
    write_jsonl(DATA / "custom_messages.jsonl",
                [{"messages": [{"role": role[t["from"]], "content": t["value"]} for t in r["conversations"]]}
                 for r in chat])
    write_jsonl(DATA / "custom_alpaca.jsonl", [
        {"instruction": "Convert the temperature to Fahrenheit.", "input": "25 C", "output": "25 C is 77 F."},
        {"instruction": "Name the capital of Japan.", "input": "", "output": "Tokyo."},
        {"instruction": "Summarise in one sentence.", "input": "The cat sat on the mat all afternoon, asleep.",
         "output": "A cat napped on a mat all afternoon."},
    ])


if __name__ == "__main__":
    main()
