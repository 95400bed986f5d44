"""Data: sources -> conversations -> Qwen3 chat template -> tokens and labels -> the reasoning/chat mix."""

from kit.data.formats import BadRow
from kit.data.prepare import Prepared, prepare_data
from kit.data.report import format_report, ratio_sweep
from kit.data.template import render, show_row

__all__ = ["BadRow", "Prepared", "format_report", "prepare_data", "ratio_sweep", "render", "show_row"]
