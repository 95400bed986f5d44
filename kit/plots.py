"""Plots for the notebooks: what a person would rather look at than read.

Each function takes the kit's own results and returns a matplotlib Figure (shown inline by Jupyter).
"""

from __future__ import annotations

import json
from pathlib import Path


def _figure(width: float = 7, height: float = 3.5):
    """A figure already closed in pyplot: Jupyter shows the returned figure once, and nothing is left open."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    plt.close(fig)
    return fig, ax


def token_lengths(prepared, bins: int = 40):
    """Histogram of training-row token lengths per source of a prepared mix."""
    import numpy as np

    fig, ax = _figure()
    lengths: dict[str, list[int]] = {}
    for source, ids in zip(prepared.train["source"], prepared.train["input_ids"], strict=True):
        lengths.setdefault(source, []).append(len(ids))
    top = max(max(v) for v in lengths.values())
    edges = np.linspace(0, top, bins + 1)
    for source, values in sorted(lengths.items()):
        ax.hist(values, bins=edges, alpha=0.6, label=f"{source} ({len(values)} rows)")
    ax.set(xlabel="tokens per row", ylabel="rows", title="Row lengths in the mix")
    ax.legend()
    return fig


def ratio_composition(sweep: list[dict]):
    """Chat share of rows, tokens and trained tokens across chat ratios (from `kit.data.ratio_sweep`)."""
    fig, ax = _figure()
    ratios = [s["chat_ratio"] for s in sweep]
    ax.plot(ratios, [s["chat_share_rows"] for s in sweep], "o-", label="chat share of rows")
    ax.plot(ratios, [s["chat_share_tokens"] for s in sweep], "s-", label="chat share of tokens")
    ax.plot(ratios, [s["chat_share_trained_tokens"] for s in sweep], "^-", label="chat share of trained tokens")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="asked")
    by = "rows" if sweep[0]["by"] == "rows" else "trained tokens"
    ax.set(xlabel=f"data.chat_ratio (by {by})", ylabel="share of the mix", xlim=(0, 1), ylim=(0, 1),
           title="What the ratio means in rows and in tokens")
    ax.legend()
    return fig


def _metrics(run_dir: str | Path) -> list[dict]:
    lines = (Path(run_dir) / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def losses(run_dir: str | Path):
    """Training and eval loss of a run, from its logs/metrics.jsonl."""
    fig, ax = _figure()
    records = _metrics(run_dir)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set(xlabel="step", ylabel="loss", title=Path(run_dir).name)
    ax.legend()
    return fig


def rewards(run_dir: str | Path):
    """A GRPO run's rewards by step (the weighted sum and each reward's mean, from logs/metrics.jsonl), with the mean
    completion length on the right axis: a length penalty, or traces cut off at the limit, show there."""
    fig, ax = _figure()
    records = [r for r in _metrics(run_dir) if "reward" in r]
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["reward"] for r in records], lw=2.5, label="reward (weighted sum)")
    for key in sorted({k for r in records for k in r if k.startswith("rewards/") and k.endswith("/mean")}):
        ax.plot(steps, [r[key] for r in records], label=f"{key.split('/')[1]} (mean, before its weight)")
    tokens = ax.twinx()
    tokens.plot(steps, [r["completions/mean_length"] for r in records], ":", color="grey")
    tokens.set_ylabel("completion tokens, mean (dotted)")
    ax.set(xlabel="step", ylabel="reward", title=f"{Path(run_dir).name}: rewards")
    ax.legend(loc="upper left")
    return fig


def evaluation(reports: dict[str, dict]):
    """Base vs tuned bars for every evaluation share, each labelled with its value; n under each metric."""
    import numpy as np

    from kit.evaluate import METRICS, NOISE

    first = next(iter(reports.values()))
    metrics = [m for m in METRICS if first[m] is not None]
    fig, ax = _figure(width=10, height=4.5)
    x = np.arange(len(metrics))
    width = 0.8 / len(reports)
    for i, (name, report) in enumerate(reports.items()):
        bars = ax.bar(x + i * width, [report[m] for m in metrics], width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    labels = []
    for m in metrics:
        what, _, mode = m.partition("_thinking_")
        labels.append(f"{what.replace('_', ' ')}\nthinking {mode}\nn={first[METRICS[m]]}")
    ax.set_xticks(x + width * (len(reports) - 1) / 2, labels, fontsize=7)
    title = "Before and after training (share of prompts passing)"
    if any(r.get("noise") for r in reports.values()):
        title = f"{title}\n{NOISE}"
        ax.set_facecolor("#f4f4f4")
    ax.set(ylim=(0, 1.12), ylabel="share", title=title)
    ax.legend(loc="upper right")
    return fig


def live_loss_plot():
    """A TrainerCallback redrawing the loss in a notebook cell as training runs: `train(cfg, callbacks=[...])`."""
    from transformers import TrainerCallback

    class LiveLossPlot(TrainerCallback):
        def __init__(self):
            self.steps, self.values, self.handle = [], [], None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            from IPython.display import display

            self.steps.append(state.global_step)
            self.values.append(logs["loss"])
            fig, ax = _figure(height=3)
            ax.plot(self.steps, self.values)
            ax.set(xlabel="step", ylabel="train loss", title=f"step {state.global_step} / {state.max_steps}")
            if self.handle is None:
                self.handle = display(fig, display_id=True)
            else:
                self.handle.update(fig)

    return LiveLossPlot()
