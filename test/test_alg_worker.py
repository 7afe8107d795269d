"""The worker launcher: progress, errors, crashes and cancel, with a real child Python."""

import os
import sys
import threading
import time

import pytest
import worker_jobs
from conftest import PLUGIN_PATH

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
ENV = {"PYTHONPATH": os.pathsep.join([PLUGIN_PATH, TEST_DIR])}


@pytest.fixture()
def feedback(qgis_app):
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.infos, self.progress_values = [], []
            self.progressChanged.connect(self.progress_values.append)

        def pushInfo(self, info):
            self.infos.append(info)

    return Recorder()


def run_job(*args, **kwargs):
    from fjord.algorithms.launcher import run_in_worker
    kwargs.setdefault("extra_env", ENV)
    return run_in_worker(*args, **kwargs)


def test_progress_and_result_come_back(feedback):
    result = run_job(worker_jobs.steps, {"n": 4}, feedback)
    assert result["steps"] == 4 and result["pid"] != os.getpid()
    assert feedback.infos == [f"step {i} of 4" for i in range(1, 5)]
    assert feedback.progress_values == [25.0, 50.0, 75.0, 100.0]


def test_core_functions_run_by_their_import_name(feedback):
    from fjord.core.environment import report

    rep = run_job(report, {}, feedback)
    assert rep["executable"] == sys.executable and rep["libraries"]["numpy"]


def test_input_error_carries_the_childs_message(feedback):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="stack the NIR band first"):
        run_job(worker_jobs.bad_input, {}, feedback)


def test_unexpected_error_carries_its_type_and_the_last_lines(feedback):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as err:
        run_job(worker_jobs.bug, {}, feedback)
    assert "ZeroDivisionError" in str(err.value) and "about to divide" in str(err.value)


@pytest.mark.parametrize("job, words", [("killed", "SIGKILL (often: the system ran out of memory)"),
                                        ("segfault", "SIGSEGV")])
def test_a_crashed_child_becomes_an_exception(feedback, job, words):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as err:
        run_job(getattr(worker_jobs, job), {}, feedback)
    assert words in str(err.value)
    assert ("allocating" if job == "killed" else "calling into native code") in str(err.value)
    # The launcher survives and runs the next job.
    assert run_job(worker_jobs.steps, {"n": 1}, feedback)["steps"] == 1


def test_cancel_stops_the_child_within_two_seconds_and_removes_partials(feedback, tmp_path):
    from qgis.core import QgsProcessingException

    out = str(tmp_path / "result.tif")
    started = threading.Event()
    feedback.progressChanged.connect(lambda v: started.set())
    stamps = {}

    def cancel_soon():
        started.wait(30)
        stamps["cancel"] = time.monotonic()
        feedback.cancel()

    threading.Thread(target=cancel_soon, daemon=True).start()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run_job(worker_jobs.stubborn_writer, {"path": out}, feedback, outputs=[out])
    assert time.monotonic() - stamps["cancel"] < 2.0
    assert os.listdir(tmp_path) == []


def test_a_missing_interpreter_is_reported(feedback):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="Cannot start the worker Python"):
        run_job(worker_jobs.steps, {"n": 1}, feedback, python="/nonexistent/python3")


def test_interpreter_order(qgis_app, monkeypatch, tmp_path):
    from fjord.algorithms import launcher as worker
    from fjord.core.environment import venv_python

    fake = tmp_path / "python"
    fake.write_text("")
    monkeypatch.setenv("FJORD_PYTHON", str(fake))
    assert worker.worker_python() == (str(fake), "FJORD_PYTHON")
    monkeypatch.setenv("FJORD_PYTHON", str(tmp_path / "missing"))
    from qgis.core import QgsProcessingException
    with pytest.raises(QgsProcessingException, match="FJORD_PYTHON names .* which does not exist"):
        worker.worker_python()
    monkeypatch.delenv("FJORD_PYTHON")
    managed = venv_python(worker.managed_environment_dir())
    if not os.path.exists(managed):
        assert worker.worker_python()[1] == "QGIS Python"
    assert os.path.basename(worker.qgis_python()).startswith("python")


@pytest.mark.parametrize("job, words", [
    (worker_jobs.fill_disk, r"The disk is full: {out} needs about 3\.8 MB \(1000 x 1000 px, 1 "
                            r"band\(s\) of Float32, before compression\) and 0\.2 MB was free"),
    (worker_jobs.fill_disk_with_numpy, r"The disk is full \(no space left on device\) while "
                                       r"writing {out}: free now 0\.2 MB in"),
])
def test_a_full_disk_in_the_worker_names_the_output_and_the_space(feedback, full_disk, job,
                                                                   words):
    from qgis.core import QgsProcessingException

    out = full_disk / "big.tif"
    with pytest.raises(QgsProcessingException, match=words.format(out=out)):
        run_job(job, {"path": str(out)}, feedback, outputs=[str(out)])
    assert list(full_disk.iterdir()) == []
