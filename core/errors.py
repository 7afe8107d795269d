"""Exceptions the core raises for bad input (their message is shown to the user as is), and the
neutral progress and cancel callables of a job run without a watcher."""


class FjordError(Exception):
    """Bad input or an impossible request. The message says what is wrong and what to do."""


class Cancelled(FjordError):
    """The user cancelled the job; nothing was written."""

    def __init__(self, message="Cancelled by the user; no output was written."):
        super().__init__(message)


def no_progress(fraction, message=None):
    """The ``progress`` of a job nobody watches."""


def never_stop():
    """The ``should_stop`` of a job nobody cancels."""
    return False
