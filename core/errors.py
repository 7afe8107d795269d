"""Exceptions the core raises for bad input: their message is shown to the user as is."""


class FjordError(Exception):
    """Bad input or an impossible request. The message says what is wrong and what to do."""


class Cancelled(FjordError):
    """The user cancelled the job; nothing was written."""

    def __init__(self, message="Cancelled by the user; no output was written."):
        super().__init__(message)
