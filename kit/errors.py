"""The kit's errors: each message is meant for the user, in one sentence naming what to fix."""


class KitError(Exception):
    """Base of every error the scripts print as `error: <message>` instead of a traceback."""


def cli(main) -> None:
    """Run a script's main(): a KitError ends it with `error: <message>` and exit status 1, and Ctrl-C with status
    130, not a traceback."""
    import sys

    try:
        main()
    except KitError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        print("\nstopped (Ctrl-C).", file=sys.stderr)
        sys.exit(130)
