"""The environment dialog: what the Fjord worker runs on, and setting up its environment.

It runs ``fjord:checkenvironment`` as a QGIS background task (so QGIS stays responsive while
pip downloads), shows the worker's Python, Keras backend, library versions and GPUs, and with
"Set up environment" creates the dedicated environment in the QGIS profile, with a progress bar
and pip's messages.
"""

import json
import os
import tempfile

from qgis.core import QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext, QgsProcessingFeedback
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
)

from ..algorithms.launcher import managed_environment_dir
from ..core.environment import REQUIREMENTS, report_html


class _Feedback(QgsProcessingFeedback):
    """Feedback whose messages reach the dialog as a signal (queued to the GUI thread)."""

    message = pyqtSignal(str, bool)

    def pushInfo(self, info):
        self.message.emit(info, False)

    def reportError(self, error, fatalError=False):
        self.message.emit(error, True)


class EnvironmentDialog(QDialog):
    """Check (and on request set up) the worker's deep-learning environment."""

    finished_run = pyqtSignal(bool)  # a check or set-up ended (True: it ran to the end)

    def __init__(self, parent=None, requirements=REQUIREMENTS):
        super().__init__(parent)
        self.requirements = requirements
        self.setWindowTitle(self.tr("Fjord environment"))
        self.resize(640, 620)
        self.report = None
        self._task = None
        self._tmp = tempfile.TemporaryDirectory(prefix="fjord-env-")

        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setPlaceholderText(self.tr("Messages of the check and of the set-up"))
        self.check_button = QPushButton(self.tr("Check again"))
        self.setup_button = QPushButton(self.tr("Set up environment…"))
        self.setup_button.setToolTip(self.tr(
            f"Create a virtual environment in {managed_environment_dir()} and install the "
            "pinned requirements (TensorFlow, Keras, scikit-image, …) with pip."))
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.addButton(self.check_button, QDialogButtonBox.ActionRole)
        buttons.addButton(self.setup_button, QDialogButtonBox.ActionRole)
        buttons.rejected.connect(self.reject)
        self.check_button.clicked.connect(self.check)
        self.setup_button.clicked.connect(self._confirm_setup)

        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 3)
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        layout.addWidget(self.log, 2)
        layout.addWidget(buttons)

    def showEvent(self, event):
        super().showEvent(event)
        if self.report is None and self._task is None:
            self.check()

    def running(self):
        return self._task is not None

    def check(self):
        """Report on the worker's environment (in the background)."""
        self._run(install=False)

    def setup(self):
        """Create the dedicated environment and install the requirements (in the background)."""
        self._run(install=True)

    def _confirm_setup(self):
        answer = QMessageBox.question(self, self.tr("Set up the Fjord environment"), self.tr(
            f"Create a Python environment in\n{managed_environment_dir()}\nand install the "
            f"packages listed in\n{self.requirements}\nwith pip? This downloads about 1 GB "
            "(TensorFlow) and takes a few minutes."))
        if answer == QMessageBox.Yes:
            self.setup()

    def _run(self, install):
        if self._task is not None:
            return
        alg = QgsApplication.processingRegistry().createAlgorithmById("fjord:checkenvironment")
        if alg is None:
            self.status.setText(self.tr("The Fjord Processing provider is not loaded."))
            return
        self._out = os.path.join(self._tmp.name, "environment.json")
        if os.path.exists(self._out):
            os.remove(self._out)
        params = {"INSTALL": install, "REQUIREMENTS": self.requirements, "OUTPUT": self._out}
        self._context = QgsProcessingContext()
        self._feedback = _Feedback()
        self._feedback.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        self._feedback.message.connect(self._message)
        self._task = QgsProcessingAlgRunnerTask(alg, params, self._context, self._feedback)
        self._task.executed.connect(self._done)
        self.progress.setValue(0)
        self.log.clear()
        self.status.setText(self.tr("Setting up the environment with pip…") if install
                            else self.tr("Asking the worker what it runs on…"))
        self.check_button.setEnabled(False)
        self.setup_button.setEnabled(False)
        QgsApplication.taskManager().addTask(self._task)

    def _message(self, text, error):
        self.log.appendPlainText(("Error: " if error else "") + text)

    def _done(self, ok, results):
        self._task = None
        self.check_button.setEnabled(True)
        self.setup_button.setEnabled(True)
        if ok and os.path.isfile(self._out):
            with open(self._out, encoding="utf-8") as f:
                self.report = json.load(f)
            self.browser.setHtml(report_html(self.report))
            self.progress.setValue(100)
            self.status.setText(self.tr("The environment is complete.") if self.report["ok"] else
                                self.tr("The environment is incomplete: see Problems, or set it up."))
        else:
            self.status.setText(self.tr("The check failed: see the messages below."))
        self.finished_run.emit(bool(ok))

    def reject(self):
        if self._task is not None:
            self._feedback.cancel()
        super().reject()
