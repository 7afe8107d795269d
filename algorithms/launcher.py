"""Launch core jobs in a worker: a child Python process, never inside QGIS.

An algorithm passes the core function itself (``run_in_worker(classify_csc, kwargs, …)``),
so an IDE follows the call; the launcher sends its import name (:func:`job_name`) as JSON on
the child's standard input, turns the JSON lines it
prints into progress and log messages, stops it within about a second of a cancel, and turns
a failure (an error the core reported, a crash, a kill) into a QgsProcessingException that
carries the child's own last lines. See ``core/run/worker.py`` for the child's side.

The interpreter is, in this order: the environment variable ``FJORD_PYTHON``; the provider
setting (Processing > Options > Providers > Fjord); the environment that ``checkenvironment``
creates in the QGIS profile folder; the Python that runs QGIS.
"""

import collections
import json
import os
import shutil
import signal
import sys
import threading

from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

from ..core.environment import venv_python
from ..core.errors import Cancelled
from ..core.learn.session import checkpoint_dir
from ..core.outputs import remove_partials
from ..core.process import run_streaming
from . import training_events

SETTING_PYTHON = "FJORD_PYTHON"
PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def managed_environment_dir():
    """Where ``checkenvironment`` creates the dedicated environment: the QGIS profile folder."""
    return os.path.join(QgsApplication.qgisSettingsDirPath(), "fjord", "venv")


def qgis_python():
    """The interpreter of the Python that runs QGIS.

    ``sys.executable`` cannot be trusted inside QGIS: it may be the QGIS binary, or whatever
    ``python3`` comes first on PATH (a pyenv shim, say). The interpreter installed under
    ``sys.exec_prefix`` with the same version is the one that imports QGIS's own GDAL.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if os.name == "nt":
        names, subs = ["python.exe", f"python{version}.exe", "python3.exe"], ["", "bin", "Scripts"]
    else:
        names, subs = [f"python{version}", "python3", "python"], ["bin"]
    for prefix in dict.fromkeys(p for p in (sys.exec_prefix, sys.base_exec_prefix, sys.prefix) if p):
        for sub in subs:
            for name in names:
                candidate = os.path.join(prefix, sub, name)
                if os.path.isfile(candidate):
                    return candidate
    exe = sys.executable or ""
    if os.path.basename(exe).lower().startswith("python") and os.path.isfile(exe):
        return exe
    return shutil.which(f"python{version}") or shutil.which("python3")


def _setting_python():
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return None
    value = ProcessingConfig.getSetting(SETTING_PYTHON)
    return str(value).strip() if value else None


def worker_python():
    """The interpreter that runs worker jobs, and where that choice came from."""
    chosen = (
        (os.environ.get("FJORD_PYTHON", "").strip(), "FJORD_PYTHON",
         "the environment variable FJORD_PYTHON", "Point it at a Python interpreter or unset it."),
        (_setting_python(), "provider setting", "the Fjord provider setting 'Python interpreter'",
         "Fix it in Processing > Options > Providers > Fjord, or clear it."),
    )
    for path, source, where, fix in chosen:
        if path:
            if not os.path.isfile(path):
                raise QgsProcessingException(f"{where[0].upper()}{where[1:]} names {path!r}, "
                                             f"which does not exist. {fix}")
            return path, source
    managed = venv_python(managed_environment_dir())
    if os.path.isfile(managed):
        return managed, "Fjord environment"
    found = qgis_python()
    if not found:
        raise QgsProcessingException(
            "No Python interpreter found for the Fjord worker. Run 'Check environment' with "
            "INSTALL=true, or set FJORD_PYTHON or Processing > Options > Providers > Fjord.")
    return found, "QGIS Python"


def _signal_name(code):
    try:
        return signal.Signals(-code).name
    except (ValueError, AttributeError):
        return f"signal {-code}"


def job_name(function):
    """The name by which the worker imports ``function``: ``package.module:function``.

    Only a module-level function of an importable module can cross to the worker.
    """
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not callable(function) or not module or module == "__main__" or not name.isidentifier():
        raise QgsProcessingException(
            f"{function!r} cannot run in the worker: pass a module-level function of the core.")
    return f"{module}:{name}"


def run_in_worker(function, kwargs, feedback=None, outputs=(), python=None, extra_env=None,
                  on_record=None, grace=1.0):
    """Run the core ``function`` with ``kwargs`` in a worker process.

    Progress and messages go to ``feedback``, structured records (``core.errors.send_record``)
    to ``on_record(kind, record)``; returns the function's result. On cancel the worker gets
    ``grace`` seconds to stop by itself (to close what it started) before it and its process
    group are killed. Raises
    QgsProcessingException on error, crash or cancel, after removing partial ``outputs``.
    """
    feedback = feedback or QgsProcessingFeedback()
    if python is None:
        python, _ = worker_python()
    package = os.path.basename(PLUGIN_DIR)
    if not package.isidentifier():
        raise QgsProcessingException(
            f"The plugin folder {PLUGIN_DIR!r} must be named 'fjord' for the worker to import it.")
    job = {"function": job_name(function), "kwargs": kwargs, "outputs": list(outputs)}
    listener = _WorkerListener(feedback, on_record)
    cmd = [python, "-m", f"{package}.core", "run"]
    feedback.pushDebugInfo(f"Worker: {' '.join(cmd)}")
    try:
        with Interrupt() as interrupt:
            code = run_streaming(cmd, listener.on_stdout, listener.on_stderr,
                                 should_stop=lambda: feedback.isCanceled() or interrupt.hit,
                                 env=_worker_env(extra_env), stdin_data=json.dumps(job) + "\n",
                                 grace=grace)
    except Cancelled:
        _remove_partials(outputs)
        if interrupt.hit:
            feedback.reportError("Interrupted (Ctrl+C): the worker was stopped and no output "
                                 "was written.")
            interrupt.carry_on()
        raise QgsProcessingException("Cancelled: the worker was stopped and no output was written.") from None
    except OSError as exc:
        raise QgsProcessingException(f"Cannot start the worker Python {python!r}: {exc}.") from None
    if code == 0 and listener.done:
        return listener.result
    _remove_partials(outputs)
    raise QgsProcessingException(listener.failure(code, python))


class Interrupt:
    """Ctrl+C (SIGINT) while a worker runs, in ``qgis_process`` or a script: ``hit`` turns
    true, so the worker is stopped and the partial outputs removed like on a cancel; then
    :meth:`carry_on` ends as the interrupt would have — KeyboardInterrupt in Python, else the
    process ends by SIGINT (exit status 130 in a shell), also where it was ignored before.
    Signals reach only the main thread: in the desktop, which runs algorithms in a background
    thread, the Cancel button does this."""

    def __enter__(self):
        self.hit, self.previous, self.installed = False, None, False
        if hasattr(signal, "SIGINT") and threading.current_thread() is threading.main_thread():
            try:
                self.previous = signal.signal(signal.SIGINT, self._on_signal)
                self.installed = True
            except (ValueError, OSError):
                pass
        return self

    def _on_signal(self, signum, frame):
        self.hit = True

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGINT, self.previous if self.previous is not None
                          else signal.SIG_DFL)

    def carry_on(self):
        previous = self.previous
        if previous is signal.default_int_handler and _in_a_python_program():
            raise KeyboardInterrupt
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signal.SIGINT, None)
            return
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


def _in_a_python_program():
    """Whether this process is a Python program (a script, the tests) rather than
    ``qgis_process`` or the desktop, whose Python turns Ctrl+C into a traceback."""
    exe = QgsApplication.applicationFilePath() or sys.executable or ""
    return os.path.basename(exe).lower().startswith("python")


def _worker_env(extra_env):
    """The worker's environment: ours, with the plugin's parent folder on PYTHONPATH."""
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(PLUGIN_DIR)] + paths)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("GDAL_CACHEMAX", "256")  # MB: GDAL's block cache, so memory stays bounded
    env.update(extra_env or {})
    return env


def _remove_partials(outputs):
    for path in outputs:
        remove_partials(path)


class _WorkerListener:
    """Reads the worker's lines: JSON messages on stdout (progress, records, the result or the
    error), anything else and stderr as debug text, whose tail goes into failure messages."""

    def __init__(self, feedback, on_record):
        self.feedback, self.on_record = feedback, on_record
        self.result, self.done, self.error, self.kind = None, False, None, None
        self.tail = collections.deque(maxlen=25)

    def on_stdout(self, line):
        try:
            msg = json.loads(line)
        except ValueError:
            self.feedback.pushDebugInfo(line)
            return
        if "progress" in msg:
            if msg["progress"] is not None:
                self.feedback.setProgress(100.0 * msg["progress"])
            if msg.get("message"):
                self.feedback.pushInfo(msg["message"])
        elif "record" in msg:
            if self.on_record is not None:
                self.on_record(msg["record"], msg.get("data"))
        elif "result" in msg:
            self.result, self.done = msg["result"], True
        elif "error" in msg:
            self.error, self.kind = msg["error"], msg.get("kind")

    def on_stderr(self, line):
        self.tail.append(line)
        self.feedback.pushDebugInfo(line)

    def failure(self, code, python):
        """The message for a worker that gave no result: its error, else how it ended."""
        if self.kind == "input":
            return self.error
        last = "\n".join(line for line in self.tail if line.strip())
        last = f"\nLast worker messages:\n{last}" if last else ""
        if self.error:
            return f"The worker failed: {self.error}{last}"
        if code < 0:
            why = _signal_name(code)
            if -code == getattr(signal, "SIGKILL", 9):
                why += " (often: the system ran out of memory)"
            return f"The worker process was killed by {why}.{last}"
        return f"The worker process {python} exited with code {code} without a result.{last}"


def run_training(alg, job, kwargs, feedback, output):
    """Run a training job in the worker, publishing its epochs as training events (the live
    curves of the desktop's training monitor); after a cancel, say that its checkpoint is kept."""
    run = training_events.new_run()
    training_events.publish({"event": "start", "run": run, "title": alg.displayName(),
                             "model": output})

    def on_record(kind, record):
        if kind == "epoch":
            training_events.publish({"event": "epoch", "run": run, "row": record})

    status, curves = "failed", None
    try:
        result = run_in_worker(job, kwargs, feedback, outputs=[output], on_record=on_record)
        status, curves = "finished", result["report"].get("curves")
        return result
    except QgsProcessingException:
        if feedback.isCanceled():
            status = "cancelled"
            if os.path.isdir(checkpoint_dir(output)):
                feedback.pushInfo(alg.tr("The checkpoint of the last finished epoch is kept: run "
                                         "again with the same model file and settings to resume."))
        raise
    finally:
        training_events.publish({"event": "end", "run": run, "status": status, "curves": curves})
