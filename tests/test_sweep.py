"""The chat-ratio sweep: its command line, its front, its plan before anything trains, and a real 2-point sweep of
the tiny model that is preempted and continued (the `smoke_sweep` fixture, which notebook 08 also reads)."""

import json
import re

import pytest

from kit.evaluation.sweep import SweepError, pareto_front, plan_sweep, split_ratios
from kit.training.metrics import eval_curves, read_metrics


def test_the_ratios_are_read_from_one_setting():
    assert split_ratios(["configs/smoke.yaml", "data.chat_ratio=0.5,0.1", "train.max_steps=20"]) == \
        ([0.1, 0.5], ["configs/smoke.yaml", "train.max_steps=20"])
    with pytest.raises(SweepError, match=r"name the ratios to compare once, e.g. data.chat_ratio=0.1,0.25,0.5"):
        split_ratios(["train.max_steps=20"])
    with pytest.raises(SweepError, match=r"data.chat_ratio=0.1,a: the ratios are numbers separated by commas"):
        split_ratios(["data.chat_ratio=0.1,a"])
    with pytest.raises(SweepError, match=r"a sweep compares two ratios or more"):
        split_ratios(["data.chat_ratio=0.1,0.1"])


def test_the_front_keeps_what_nothing_beats_on_both():
    assert pareto_front([(0.1, -0.2), (0.05, 0.0), (0.0, -0.1), (0.1, -0.2)]) == [0, 1, 3]
    assert pareto_front([(0.0, 0.0), (0.1, 0.1)]) == [1]
    assert pareto_front([]) == []


def test_ratios_the_data_cannot_keep_stop_the_sweep_before_anything_trains(tiny_dir, smoke_cfg, tmp_path, capsys):
    cfg = smoke_cfg(f"train.output_dir={tmp_path}")
    with pytest.raises(SweepError) as error:
        plan_sweep(cfg, [0.1, 0.6, 0.8], progress=False)
    lines = str(error.value).splitlines()
    assert lines[0] == "2 of the 3 ratios cannot be trained as asked, so nothing was trained:"
    assert lines[1].startswith("  data.chat_ratio=0.6: chat runs short: its ")
    assert lines[2].startswith("  data.chat_ratio=0.8: chat runs short: ") and "data.allow_shortfall=true" in lines[2]
    assert not (tmp_path / "smoke-sweep").exists()
    plan = plan_sweep(smoke_cfg(f"train.output_dir={tmp_path}", "data.allow_shortfall=true"), [0.1, 0.6],
                      progress=False)
    assert "cost: 2 runs x 100 steps = 200 optimizer steps of 8 rows" in plan
    assert "data.allow_shortfall=true, so the smaller mix is used" in capsys.readouterr().out


def test_a_preempted_sweep_continues_with_the_points_left(smoke_sweep):
    code, output = smoke_sweep["first"]
    assert code == 143 and "stopped during chat_ratio 0.25; run the same command again" in output, output[-3000:]
    plan = output.index("cost: 2 runs x 100 steps = 200 optimizer steps")
    assert plan < output.index("SIGTERM: stopping after this step")  # the estimate before anything trained
    assert "sweep: chat_ratio 0 done (1 of 2" in output
    code, output = smoke_sweep["again"]
    assert code == 0, output[-3000:]
    assert "data.chat_ratio=0 was trained and evaluated before, with these settings: kept" in output
    assert re.search(r"resuming from checkpoint-\d+ \(step \d+ of 100\)", output)  # the second point, where it stopped
    assert len(smoke_sweep["pools"]) == 2  # the reasoning and the chat source, tokenized once for both ratios


def test_a_sweep_writes_its_table_plot_and_a_run_per_point(smoke_sweep):
    folder = smoke_sweep["out"] / "smoke-sweep"
    sweep = json.loads((folder / "sweep.json").read_text())
    assert [p["chat_ratio"] for p in sweep["points"]] == [0, 0.25] and sweep["front"]
    assert sweep["front"] == [p["chat_ratio"] for p in sweep["points"] if p["on_front"]]
    table = (folder / "sweep.md").read_text()
    assert table.count("| 0 |") == 1 and "eval loss reasoning: step 0 -> end" in table
    assert "On the front (no other ratio" in table and (folder / "front.png").stat().st_size > 10_000
    for p in sweep["points"]:
        run = folder / f"smoke-chat{p['chat_ratio']:g}"
        assert p["run"] == str(run) and (run / "adapter" / "adapter_config.json").is_file()
        assert "group: smoke-sweep" in (run / "config.yaml").read_text()  # one wandb group for the sweep
        assert abs(json.loads((run / "data_report.json").read_text())["mix"]["chat_share_rows"] - p["chat_ratio"]) \
            < 0.01
        curves = eval_curves(read_metrics(run))  # each source's eval loss, from the base (step 0) to the end
        assert list(curves) == ["reasoning", "chat"][:1 + (p["chat_ratio"] > 0)]  # no chat rows, no chat eval rows
        assert [s for s, _ in curves["reasoning"]] == [0, 25, 50, 75, 100]
        assert p["eval_loss"]["reasoning"] == {"step_0": curves["reasoning"][0][1], "end": curves["reasoning"][-1][1]}


def test_the_sweep_shows_what_the_chat_rows_keep(smoke_sweep):
    """The trade-off the front is drawn for, on the toy world: without chat rows the model still learns the sums, but
    loses the toy chat's instructions and its thinking-off mode; a quarter of chat rows keeps both. Measured on this
    sandbox (40 held-out sums, 20 instruction prompts, each in both modes): instructions kept 0.33 at ratio 0 and
    0.88 at 0.25, the thinking-off switch 0.63 and 1.00, math 0.90 and 0.78; the margins below are a third of that."""
    none, quarter = json.loads((smoke_sweep["out"] / "smoke-sweep" / "sweep.json").read_text())["points"]
    assert none["math"] >= 0.5 and quarter["math"] >= 0.5
    assert quarter["instructions"] - none["instructions"] >= 0.2
    assert quarter["switch_thinking_off"] - none["switch_thinking_off"] >= 0.1


def test_a_ratio_with_no_held_out_problem_to_score_stops_the_sweep_before_anything_trains(tiny_dir, smoke_cfg,
                                                                                            tmp_path):
    with pytest.raises(SweepError, match=r"1 of the 2 ratios cannot be trained as asked, so nothing was trained:\n"
                                         r"  data.chat_ratio=1: reads no reasoning row, so no held-out problem for "
                                         r"eval.math=heldout to score"):
        plan_sweep(smoke_cfg(f"train.output_dir={tmp_path}"), [0.25, 1.0], progress=False)
    assert not (tmp_path / "smoke-sweep").exists()


def _sweep_copy(smoke_sweep, tmp_path):
    import shutil

    from kit.config import load_config
    from tests.conftest import ROOT, SWEEP

    shutil.copytree(smoke_sweep["out"] / "smoke-sweep", tmp_path / "smoke-sweep",
                    ignore=shutil.ignore_patterns(".lock", "checkpoints"))
    return lambda *extra: load_config(ROOT / "configs" / "smoke.yaml",
                                      [o for o in SWEEP if "chat_ratio" not in o] + [f"train.output_dir={tmp_path}",
                                                                                     *extra])


def test_a_point_is_reused_only_when_everything_that_shaped_it_matches(smoke_sweep, tmp_path, capsys):
    """Notebook 08 after a CLI sweep of other steps used to report the CLI's points as its own; now that is refused
    before anything trains, and a point's damaged row is made again (evaluated anew) rather than trusted or fatal."""
    from kit.evaluation.sweep import run_sweep

    config = _sweep_copy(smoke_sweep, tmp_path)
    before = (tmp_path / "smoke-sweep" / "sweep.md").read_text()
    with pytest.raises(SweepError, match=r"smoke-chat0 was trained with other settings \(train.max_steps 100 then, "
                                         r"10 now\), so it is not this sweep's point at data.chat_ratio=0; rerun"):
        run_sweep(config("train.max_steps=10"), [0, 0.25], progress=False)
    assert (tmp_path / "smoke-sweep" / "sweep.md").read_text() == before  # nothing overwritten
    point = tmp_path / "smoke-sweep" / "smoke-chat0.25" / "sweep_point.json"
    point.write_text(point.read_text()[:100])
    sweep = run_sweep(config(), [0, 0.25], progress=False)
    out = capsys.readouterr().out
    assert "sweep_point.json is damaged (cut short or edited): making it again" in out
    assert "data.chat_ratio=0 was trained and evaluated before, with these settings: kept" in out
    assert [p["chat_ratio"] for p in sweep.points] == [0, 0.25] and json.loads(point.read_text())["value"]
