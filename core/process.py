"""Run a child process, stream its output lines, and stop it promptly on request.

Used by the worker launcher (deep-learning jobs in a child Python) and by the environment
set-up (pip). Output is read by background threads so that a stop request is noticed within
``poll`` seconds even while the child prints nothing.
"""

import os
import queue
import signal
import subprocess
import threading
import time

from .errors import Cancelled

_EOF = object()


def _pump(stream, tag, out):
    try:
        for line in iter(stream.readline, ""):
            out.put((tag, line.rstrip("\r\n")))
    except (OSError, ValueError):
        pass
    finally:
        out.put((tag, _EOF))


def terminate(proc, grace=1.0):
    """Stop ``proc`` and its process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        proc.wait(timeout=grace)
    except (subprocess.TimeoutExpired, ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        try:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


def run_streaming(cmd, on_stdout, on_stderr=None, should_stop=None, env=None, cwd=None,
                  stdin_data=None, poll=0.1, grace=1.0):
    """Run ``cmd``; call ``on_stdout(line)`` / ``on_stderr(line)`` for each line as it comes.

    Raises :class:`Cancelled` (after stopping the child and its group within ``grace``
    seconds) when ``should_stop()`` turns true. Returns the exit code: negative for a signal.
    """
    on_stderr = on_stderr or (lambda line: None)
    should_stop = should_stop or (lambda: False)
    kwargs = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True
    else:
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=cwd, text=True, encoding="utf-8", errors="replace", bufsize=1, **kwargs)
    lines = queue.Queue()
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, "out", lines), daemon=True),
             threading.Thread(target=_pump, args=(proc.stderr, "err", lines), daemon=True)]
    for t in pumps:
        t.start()
    try:
        if stdin_data is not None:
            proc.stdin.write(stdin_data)
            proc.stdin.flush()
    except (BrokenPipeError, OSError):
        pass
    # stdin stays open: the child watches it and exits if this process dies.
    open_streams = 2
    try:
        while open_streams:
            if should_stop():
                terminate(proc, grace)
                raise Cancelled()
            try:
                tag, line = lines.get(timeout=poll)
            except queue.Empty:
                continue
            if line is _EOF:
                open_streams -= 1
            elif tag == "out":
                on_stdout(line)
            else:
                on_stderr(line)
        while proc.poll() is None:
            if should_stop():
                terminate(proc, grace)
                raise Cancelled()
            time.sleep(poll)
        return proc.returncode
    except BaseException:
        terminate(proc, grace)
        raise
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
