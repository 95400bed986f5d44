"""The kit's errors: each message is meant for the user, in one sentence naming what to fix."""


class KitError(Exception):
    """Base of every error the scripts print as `error: <message>` instead of a traceback."""
