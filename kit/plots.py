"""Plots for the notebooks: each function takes the kit's own results and returns a matplotlib Figure.
"""

from __future__ import annotations

from pathlib import Path


def _figure(width: float = 7, height: float = 3.5, **grid):
    """A figure already closed in pyplot, so Jupyter shows it once; `grid`: plt.subplots' own (ncols=2, ...)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), layout="constrained", **grid)
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


def _draw_losses(ax, records: list[dict], title: str) -> None:
    """The training loss, each source's eval loss with its step-0 value dotted across (what a climbing chat loss is
    read against), and the thinking switch on the right axis where it was checked."""
    from kit.training.metrics import eval_curves, switch_curve

    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    if train:
        ax.plot(*zip(*train, strict=True), color="grey", linewidth=1, label="train loss")
    # Runs from before per-source evaluation logged one eval loss: drawn alone.
    curves = eval_curves(records) or {"": [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]}
    for source, curve in curves.items():
        if not curve:
            continue
        (line,) = ax.plot(*zip(*curve, strict=True), "o-", markersize=3, label=f"eval loss {source}".strip())
        if curve[0][0] == 0:
            ax.axhline(curve[0][1], color=line.get_color(), linestyle=":", linewidth=1,
                       label=f"{source or 'eval'} at step 0")
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.legend(fontsize=7)
    if switch := switch_curve(records):
        right = ax.twinx()
        right.plot(*zip(*switch, strict=True), "s--", color="tab:purple", markersize=3, label="thinking switch")
        right.set(ylim=(-0.05, 1.05), ylabel="thinking switch (share of replies)")
        right.legend(loc="center right", fontsize=7)


def losses(run_dir: str | Path):
    """Training loss and each source's eval loss of a run, from its logs/metrics.jsonl."""
    from kit.training.metrics import read_metrics

    fig, ax = _figure()
    _draw_losses(ax, read_metrics(run_dir), Path(run_dir).name)
    return fig


def sweep_losses(points: list[dict]):
    """Each point of a chat-ratio sweep (`kit.evaluation.sweep`): its losses as `losses` draws them, side by side."""
    from kit.training.metrics import read_metrics

    fig, axes = _figure(4.5 * len(points), 3.5, ncols=len(points), sharey=True, squeeze=False)
    for ax, p in zip(axes[0], points, strict=True):
        _draw_losses(ax, read_metrics(p["run"]), f"chat_ratio {p['chat_ratio']:g}")
    return fig


def rewards(run_dir: str | Path):
    """A GRPO run's rewards by step (sum and each reward), with the mean completion length dotted on the right axis."""
    from kit.training.metrics import read_metrics

    fig, ax = _figure()
    records = [r for r in read_metrics(run_dir) if "reward" in r]
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

    from kit.evaluation.scores import METRICS

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
    ax.set(ylim=(0, 1.12), ylabel="share", title="Before and after training (share of prompts passing)")
    ax.legend(loc="upper right")
    return fig


def ratio_front(points: list[dict]):
    """A sweep's rows: math gain against instruction change, the front ringed, a broken switch a red cross."""

    def xy(rows):
        return [p["math_gain"] for p in rows], [p["instructions_change"] for p in rows]

    fig, ax = _figure(width=6.5, height=4.5)
    shown = [p for p in points if p["math_gain"] is not None and p["instructions_change"] is not None]
    front = sorted((p for p in shown if p["on_front"]), key=lambda p: p["math_gain"])
    if front:
        named = ", ".join(f"{p['chat_ratio']:g}" for p in front)
        ax.plot(*xy(front), "-", color="tab:green", alpha=0.5)
        ax.scatter(*xy(front), s=220, facecolors="none", edgecolors="tab:green",
                   label=f"front ({named}): no other ratio does better on both")
    for kept, style in ((True, dict(marker="o", color="tab:blue", label="switch kept")),
                        (False, dict(marker="x", color="tab:red", s=80, label="switch broken"))):
        group = [p for p in shown if p["switch_kept"] == kept]
        if group:
            ax.scatter(*xy(group), **style)
    for p in shown:
        ax.annotate(f"{p['chat_ratio']:g}", (p["math_gain"], p["instructions_change"]), textcoords="offset points",
                    xytext=(8, 8))
    ax.axhline(0, color="grey", linewidth=0.8, linestyle=":")
    ax.axvline(0, color="grey", linewidth=0.8, linestyle=":")
    ax.plot([0], [0], "k+", markersize=12, label="base model")
    ax.set(xlabel="math gain over the base (thinking on)", ylabel="instruction following change (on/off mean)",
           title="Chat-ratio sweep (labels: data.chat_ratio)")
    ax.legend(fontsize=7)
    return fig


def live_loss_plot():
    """A TrainerCallback redrawing `losses` in a notebook cell as training runs (`train(cfg, callbacks=[...])`)."""
    from transformers import TrainerCallback

    from kit.training.metrics import SWITCH, source_losses

    class LiveLossPlot(TrainerCallback):
        def __init__(self):
            self.records, self.handle = [], None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or ("loss" not in logs and SWITCH not in logs and not source_losses(logs)):
                return
            from IPython.display import display

            self.records.append({"step": state.global_step, **logs})
            fig, ax = _figure(height=3)
            _draw_losses(ax, self.records, f"step {state.global_step} / {state.max_steps}")
            if self.handle is None:
                self.handle = display(fig, display_id=True)
            else:
                self.handle.update(fig)

    return LiveLossPlot()
