"""Exceptions the core raises for bad input (their message is shown to the user as is), the
neutral progress and cancel callables of a job run without a watcher, and the channel for
structured records (one training epoch's scores) beside the progress messages."""


class FjordError(Exception):
    """Bad input or an impossible request. The message says what is wrong and what to do."""


class Cancelled(FjordError):
    """The user cancelled the job; nothing was written."""

    def __init__(self, message="Cancelled by the user; no output was written."):
        super().__init__(message)


def no_progress(fraction, message=None):
    """The ``progress`` of a job nobody watches."""


def span_progress(progress, start, end):
    """A progress callable mapping 0..1 onto ``start .. end`` of ``progress`` (one step of a
    job that has several); records (:func:`send_record`) pass through."""
    def inner(fraction, message=None):
        progress(None if fraction is None else start + (end - start) * fraction, message)
    if getattr(progress, "record", None) is not None:
        inner.record = progress.record
    return inner


def never_stop():
    """The ``should_stop`` of a job nobody cancels."""
    return False


def send_record(progress, kind, record):
    """Give a structured ``record`` of ``kind`` (``"epoch"``: one training epoch's scores) to
    whoever watches the job.

    A ``progress`` callable that takes records has a ``record(kind, record)`` attribute (the
    worker's forwards them to QGIS, where the training monitor draws live curves); any other
    ``progress`` (a notebook's, the command line's) ignores them.
    """
    sink = getattr(progress, "record", None)
    if sink is not None:
        sink(kind, record)
