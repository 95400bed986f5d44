"""Prepare the reasoning/chat mix a config describes, and print the data report.

    python scripts/prepare_data.py --config configs/smoke.yaml
    python scripts/prepare_data.py --config configs/qwen3-14b-math.yaml data.chat_ratio=0.3 data.ratio_by=tokens

The prepared set is cached by fingerprint; training with the same config reuses it.
"""

import argparse
import json

from kit.backends import load_tokenizer
from kit.config import load_config
from kit.data import format_report, prepare_data
from kit.errors import cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("--report", help="also write the data report (JSON) here")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.chat_ratio=0.3")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    prepared = prepare_data(cfg, load_tokenizer(cfg))
    print(format_report(prepared.report))
    print(f"{'reused' if prepared.cached else 'prepared'}: {prepared.path}")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(prepared.report, f, indent=2)


if __name__ == "__main__":
    cli(main)
