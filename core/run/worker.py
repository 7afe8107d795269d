"""The worker side of a job: run one core function in this process, report as JSON lines.

A job is a JSON object::

    {"function": "fjord.core.prepare.rasterize:rasterize_labels", "kwargs": {...},
     "outputs": [paths]}

``function`` names ``module:callable``, the import name of a module-level function that the
QGIS side passed to ``algorithms.launcher.run_in_worker``. The callable gets ``kwargs`` plus
``progress(fraction, message)`` and ``should_stop()``, and returns a JSON-serialisable value.

The protocol goes to the original standard output, one JSON object per line:
``{"progress": f, "message": m}`` (f may be null: a log line), ``{"result": value}`` or
``{"error": message, "kind": "input" | "cancelled" | "internal"}``, and
``{"record": kind, "data": {...}}`` for structured records (see ``errors.send_record``). Anything else a library
prints to standard output is sent to standard error, so it cannot corrupt the protocol.
SIGTERM asks the job to stop (``should_stop()`` turns true); when the job was read from
standard input, the end of standard input (the parent has gone) ends the process.
"""

import importlib
import json
import os
import signal
import sys
import threading
import traceback

from ..errors import Cancelled, FjordError
from ..outputs import disk_full_message

_stop = threading.Event()


def resolve(name):
    """The function named ``module:function`` (an absolute module name)."""
    module, _, func = name.partition(":")
    if not module or not func or module.startswith("."):
        raise FjordError(f"Job function {name!r} must look like 'package.module:function'.")
    return getattr(importlib.import_module(module), func)


class _Protocol:
    def __init__(self):
        self._out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        self._lock = threading.Lock()

    def send(self, **message):
        text = json.dumps(message, default=str)
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()


def _watch_stdin():
    try:
        while sys.stdin.readline():
            pass
    except (OSError, ValueError):
        pass
    _stop.set()
    # The parent is gone: nobody reads our output any more.
    threading.Timer(1.0, lambda: os._exit(3)).start()


def run_job(job_file=None):
    """Entry point of ``python -m fjord.core run [JOB.json]``; returns the exit code."""
    proto = _Protocol()
    try:
        if job_file in (None, "-"):
            job = json.loads(sys.stdin.readline())
            threading.Thread(target=_watch_stdin, daemon=True).start()
        else:
            with open(job_file, encoding="utf-8") as f:
                job = json.load(f)
    except (OSError, ValueError) as exc:
        proto.send(error=f"Cannot read the job description: {exc}", kind="internal")
        return 2
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, lambda *_: _stop.set())

    def progress(fraction, message=None):
        proto.send(progress=None if fraction is None else float(fraction), message=message)

    progress.record = lambda kind, record: proto.send(record=kind, data=record)

    try:
        func = resolve(job["function"])
        result = func(**job.get("kwargs", {}), progress=progress, should_stop=_stop.is_set)
        proto.send(result=result)
        return 0
    except Cancelled as exc:
        proto.send(error=str(exc), kind="cancelled")
        return 130
    except FjordError as exc:
        proto.send(error=str(exc), kind="input")
        return 2
    except Exception as exc:  # anything unexpected: message to the user, traceback to stderr
        full = disk_full_message(exc, job.get("outputs", ()))
        if full:
            proto.send(error=full, kind="input")
            return 2
        traceback.print_exc()
        proto.send(error=f"{type(exc).__name__}: {exc}", kind="internal")
        return 1
