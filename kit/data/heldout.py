"""Problems kept out of training for evaluation, chosen by a hash of the problem's own text.

A row is held out when a keyed hash of its first user turn (whitespace-normalised) falls below `share`. The choice
depends on the text alone, so it is the same in every process, for any row order, shard or `max_rows`, and every
copy of a problem (OpenMathReasoning has several solutions per problem) lands on the same side: what
`scripts/eval.py` scores was never trained on, by construction. `SourceConfig.heldout` is part of the prepared
data's fingerprint, so changing it prepares the data again.
"""

from __future__ import annotations

import hashlib

KEY = b"qwen3-kit held-out v1"  # changing it moves every problem: a new held-out slice


def problem_text(conversation: list[dict]) -> str:
    """The first user turn, whitespace-normalised: what identifies a problem."""
    first = next((m["content"] for m in conversation if m["role"] == "user"), "")
    return " ".join(first.split())


def held_out(conversation: list[dict], share: float) -> bool:
    """Is this conversation's problem in the held-out `share` (0..1) of all problems?"""
    if share <= 0:
        return False
    digest = hashlib.blake2b(problem_text(conversation).encode(), digest_size=8, key=KEY).digest()
    return int.from_bytes(digest, "big") < share * 2**64
