"""Every documented bound of every setting loads, and one step past it is refused naming the key (fast)."""

import dataclasses
import functools

import pytest

from kit.config import Config, ConfigError, load_config


def bounds(node, where=""):
    """(key, low, high, above, open) for each field whose metadata declares a range, through the whole tree."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield from bounds(value, f"{where}{f.name}.")
        elif "range" in f.metadata:
            m = f.metadata
            yield f"{where}{f.name}", *m["range"], m.get("above", False), m.get("open", False)


# A bound usable only beside another setting: that setting, as a user would pair them.
COMPANIONS = {"train.max_steps": ["train.num_train_epochs=1"], "train.num_train_epochs": ["train.max_steps=10"],
              "grpo.num_generations": ["grpo.per_device_train_batch_size=2"]}
# The recipe's two sources take their shares from data.chat_ratio, so their own `share` is not theirs to set.
BOUNDS = [b for b in bounds(Config()) if b[0] not in ("data.reasoning.share", "data.chat.share")]


def kind(key: str) -> type:
    value = functools.reduce(getattr, key.split("."), Config())
    return int if isinstance(value, int) and not isinstance(value, bool) else float


@pytest.mark.parametrize("key,low,high,above,open_", BOUNDS, ids=[b[0] for b in BOUNDS])
def test_each_bound_loads_and_one_step_past_it_is_refused(key, low, high, above, open_):
    t, extra = kind(key), COMPANIONS.get(key, [])
    tiny = 1 if t is int else 1e-3
    for value in (None if low is None else t(low) + (tiny if above else 0), None if open_ else high):
        if value is not None:
            load_config(None, [f"{key}={t(value)}", *extra])
    for value in (None if low is None else t(low) - (0 if above else tiny),
                  None if high is None else t(high) + (0 if open_ else tiny)):
        if value is not None:
            with pytest.raises(ConfigError, match=f"{key} is "):
                load_config(None, [f"{key}={value}", *extra])
