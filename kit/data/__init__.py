"""Data: sources -> conversations -> Qwen3 chat template -> tokens and labels -> the reasoning/chat mix."""

from kit.data.formats import BadRow
from kit.data.prepare import Prepared, format_report, prepare_data, ratio_sweep
from kit.data.render import render, show_row, trained_spans

__all__ = ["BadRow", "Prepared", "format_report", "prepare_data", "ratio_sweep", "render", "show_row", "trained_spans"]
