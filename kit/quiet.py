"""Lines a user cannot act on, filtered by their exact message in one place, each with why; errors always get through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

# (logger, start of the message template): lines dropped wherever they are logged.
NOISE = [
    # torchao registers its enums with torch's pytree at import; torch 2.14 logs a deprecation per enum, aimed at
    # torchao's developers.
    ("torch.utils._pytree", "%s is an Enum subclass and is now natively supported by torch.compile"),
    # bitsandbytes on a CPU with AVX-512 bf16 looks for an optional fused kernel from the `kernels` package; the kit
    # never runs 4-bit on a CPU (fp32 there), so the advice to install it does not apply.
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community"),
]
RETRY = re.compile(r"retry(ing)? in \d")  # modelscope_hub: "... retrying in 2s (1/3)", "... retry in 1s (1/4)"


class _Drop(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING or not str(record.msg).startswith(self.prefix)


def install() -> None:
    """Drop the lines in NOISE; idempotent; call it before torch and bitsandbytes are imported."""
    for name, prefix in NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_Drop(prefix))


class _HoldRetries(logging.Filter):
    def __init__(self):
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and RETRY.search(record.getMessage()):
            self.held.append(record)
            return False
        return True


@contextmanager
def retries_held_back() -> Iterator[None]:
    """ModelScope's client retries a dropped transfer or listing by itself and says so at each attempt; a retry that
    then succeeds is not news. The warnings are kept back and printed only if the block raises."""
    from modelscope_hub.utils.logger import get_logger

    handlers = get_logger().handlers  # the SDK's own handler; its child loggers propagate to it
    hold = _HoldRetries()
    for handler in handlers:
        handler.addFilter(hold)
    failed = True
    try:
        yield
        failed = False
    finally:
        for handler in handlers:
            handler.removeFilter(hold)
            for record in hold.held if failed else []:
                handler.handle(record)
