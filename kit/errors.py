"""The kit's errors: each message is meant for the user, in one sentence naming what to fix."""


class KitError(Exception):
    """Base of every error the scripts print as `error: <message>` instead of a traceback."""


class Terminated(BaseException):
    """SIGTERM outside the training loop: unwinds like Ctrl-C (atomic writes clean up), exit status 143."""


def _stop(signum, frame):
    """Ctrl-C or SIGTERM: unwind from where the program is. Python drops what a finalizer (`__del__`) raises, and
    loading a model runs many: there the signal is sent again once the finalizer is done, rather than lost."""
    import os
    import signal
    import threading

    caller = frame
    while caller is not None:
        if caller.f_code.co_name == "__del__":
            again = threading.Timer(0.05, os.kill, (os.getpid(), signum))
            again.daemon = True
            again.start()
            return
        caller = caller.f_back
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


def cli(main) -> None:
    """Run a script's main(): a KitError ends it with `error: <message>` and exit status 1, a full disk the same way,
    Ctrl-C with a line and status 130 and SIGTERM with a line and 143, never a traceback."""
    import signal
    import sys

    from kit.files import disk_full, free_gb

    for name in ("SIGTERM", "SIGINT"):
        if signal.getsignal(getattr(signal, name)) is not signal.SIG_IGN:  # nohup and background jobs ignore SIGINT
            signal.signal(getattr(signal, name), _stop)
    try:
        main()
    except KitError as e:
        sys.exit(f"error: {e}")
    except (KeyboardInterrupt, Terminated) as e:
        name, status = ("SIGTERM", 143) if isinstance(e, Terminated) else ("Ctrl-C", 130)
        print(f"\nstopped ({name}); what was complete is kept, nothing half-written: run the same command again to "
              "go on.", file=sys.stderr)
        sys.exit(status)
    except Exception as e:
        if not disk_full(e):
            raise
        from kit.paths import cache_root

        where = getattr(e, "filename", None) or cache_root()  # no name given: the cache holds what is written then
        sys.exit(f"error: the disk holding {where} is full ({free_gb(where):.2f} GB free): free space there (models "
                 "and prepared data live in the kit's cache, QWEN3_KIT_CACHE), then run the same command again.")
