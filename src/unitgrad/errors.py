"""One exception type for every user-facing failure: the CLI prints its message as one line."""


class UnitgradError(Exception):
    """A failure the user can fix; the message says what failed and how to fix it, in one line."""
