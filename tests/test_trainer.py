"""The trainer the kit builds: what it does with the prepared rows (nothing trains here)."""

from kit.data import prepare_data
from kit.data.template import IGNORE
from kit.training.backends import load_tokenizer
from kit.training.trainer import build_trainer


def test_packing_fills_sequences_and_keeps_every_label(smoke_cfg, tiny_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    cfg = smoke_cfg("train.packing=true")
    tokenizer = load_tokenizer(cfg)
    rows = prepare_data(cfg, tokenizer, progress=False).train.remove_columns("source")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir),
                           LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    packed = build_trainer(cfg, model, tokenizer, rows, None, tmp_path, progress=False).train_dataset

    def count(dataset, column, keep=lambda t: True):
        return sum(sum(1 for t in row if keep(t)) for row in dataset[column])

    assert len(packed) < len(rows) / 2  # several rows per sequence
    assert max(len(ids) for ids in packed["input_ids"]) <= cfg.model.max_seq_length
    assert count(packed, "input_ids") == count(rows, "input_ids")  # no token dropped or added
    assert count(packed, "labels", lambda t: t != IGNORE) == count(rows, "labels", lambda t: t != IGNORE)
