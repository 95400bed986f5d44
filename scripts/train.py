"""Train a LoRA adapter on Qwen3: the command to rerun on a rented GPU.

    python scripts/train.py --config configs/smoke.yaml                       # tiny model, CPU, about a minute
    python scripts/train.py --config configs/qwen3-14b-math.yaml              # the reference recipe on a GPU
    python scripts/train.py --config configs/qwen3-14b-math.yaml data.chat_ratio=0.3 train.max_steps=200
    torchrun --nproc_per_node 2 scripts/train.py --config configs/qwen3-8b-4090.yaml train.backend=hf   # 2 GPUs

Preempted or stopped with Ctrl-C? A checkpoint is saved; run the same command again to resume.
"""

import argparse
import sys

from kit.backends import activate_backend
from kit.config import load_config
from kit.errors import cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    activate_backend(cfg.train.backend)  # imports unsloth (GPU) before anything imports transformers

    from kit.train import train

    result = train(cfg)
    status = 128 + result.signal if result.interrupted else 0  # 130 after Ctrl-C, 143 after SIGTERM
    if not result.main_process:  # under torchrun / accelerate launch, rank 0 reports
        sys.exit(status)
    if result.interrupted:
        print(f"stopped at step {result.steps}; a checkpoint is in {result.run_dir / 'checkpoints'}. "
              "Run the same command again to resume.")
        sys.exit(status)
    first, last = result.losses[0][1], result.losses[-1][1]
    print(f"done: {result.steps} steps, loss {first:.3f} -> {last:.3f}; adapter in {result.adapter_dir}")


if __name__ == "__main__":
    cli(main)
