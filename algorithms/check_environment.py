"""fjord:checkenvironment — report (and on request set up) the deep-learning environment."""

import json
import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
)

from ..core.environment import REQUIREMENTS, create_environment, manual_commands, report, report_html, report_lines
from ..core.outputs import AtomicOutputs, check_writable
from .base import FjordAlgorithm, core_call, progress_to
from .launcher import managed_environment_dir, qgis_python, run_in_worker, worker_python


class CheckEnvironment(FjordAlgorithm):
    PYTHON = "PYTHON"
    BACKEND = "BACKEND"
    GPU_COUNT = "GPU_COUNT"
    OK = "OK"

    INSTALL = "INSTALL"
    REQUIREMENTS = "REQUIREMENTS"
    OUTPUT = "OUTPUT"

    def name(self):
        return "checkenvironment"

    def displayName(self):
        return self.tr("Check environment")

    def groupId(self):
        return "setup"

    def shortHelpString(self):
        return self.tr(
            "Reports what the Fjord worker (the separate Python process that runs training and "
            "classification) sees: Python, numpy, GDAL, Keras and its backend, TensorFlow, "
            "scikit-image and scikit-learn versions, and the GPUs with their memory. The report "
            "is written as JSON or HTML (by the file extension).\n\n"
            "With <b>Install</b> on, it creates a dedicated virtual environment in the QGIS "
            "profile folder (with the system site packages, so GDAL comes from QGIS) and installs "
            "the pinned requirements with pip; the worker then uses it. Where that cannot work "
            "the log gives the exact commands to run by hand.\n\n"
            "The worker's interpreter is chosen in this order: the environment variable "
            "FJORD_PYTHON; Processing > Options > Providers > Fjord; the environment made here; "
            "the Python that runs QGIS.\n\n"
            "In the desktop the same check and set-up are in Plugins > Fjord > Fjord environment…")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterBoolean(
            self.INSTALL, self.tr("Install: create the Fjord environment and install the requirements"),
            defaultValue=False))
        requirements = QgsProcessingParameterFile(
            self.REQUIREMENTS, self.tr("Requirements file (default: the pinned one shipped with Fjord)"),
            behavior=QgsProcessingParameterFile.File, fileFilter="Requirements (*.txt)", optional=True)
        requirements.setFlags(requirements.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(requirements)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Report"), fileFilter="JSON (*.json);;HTML (*.html)", optional=True))
        self.addOutput(QgsProcessingOutputString(self.PYTHON, self.tr("Worker Python")))
        self.addOutput(QgsProcessingOutputString(self.BACKEND, self.tr("Keras backend")))
        self.addOutput(QgsProcessingOutputNumber(self.GPU_COUNT, self.tr("GPUs seen")))
        self.addOutput(QgsProcessingOutputBoolean(self.OK, self.tr("Environment complete")))

    def processAlgorithm(self, parameters, context, feedback):
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if output:
            if os.path.splitext(output)[1].lower() not in (".json", ".html", ".htm"):
                raise QgsProcessingException(self.tr("The report must be a .json or .html file."))
            core_call(check_writable, output, "report")
        python = None
        given = (self.parameterAsFile(parameters, self.REQUIREMENTS, context) or "").strip()
        if given and not os.path.isfile(given):
            raise QgsProcessingException(self.tr(
                f"The requirements file {given!r} does not exist. Give an existing pip "
                "requirements file, or leave REQUIREMENTS empty for the one shipped with Fjord."))
        if self.parameterAsBoolean(parameters, self.INSTALL, context):
            requirements = given or REQUIREMENTS
            venv_dir = managed_environment_dir()
            base = qgis_python()
            feedback.pushInfo(self.tr(f"Creating the Fjord environment in {venv_dir} from {base}"))
            feedback.pushInfo(self.tr("The same by hand:\n  ")
                              + "\n  ".join(manual_commands(base or "python3", venv_dir, requirements)))
            python = core_call(create_environment, venv_dir, base, requirements,
                               progress=progress_to(feedback, 0.0, 0.8), should_stop=feedback.isCanceled)
            chosen, source = worker_python()
            if os.path.abspath(chosen) != os.path.abspath(python):
                feedback.reportError(self.tr(
                    f"The worker will still use {chosen} ({source}), which comes before the new "
                    "environment; clear it to use the new environment."), False)
        if python is None:
            python, source = worker_python()
            feedback.pushInfo(self.tr(f"Worker Python: {python} (from: {source})"))
        rep = run_in_worker(report, {}, feedback, python=python)
        for line in report_lines(rep):
            (feedback.reportError(line, False) if line.startswith("Problem:") else feedback.pushInfo(line))
        if output:
            with AtomicOutputs() as out:
                tmp = out.add(output)
                with open(tmp, "w", encoding="utf-8") as f:
                    if output.lower().endswith(".json"):
                        json.dump(rep, f, indent=2)
                    else:
                        f.write(report_html(rep))
        return {self.OUTPUT: output, self.PYTHON: python, self.BACKEND: rep["backend"] or "",
                self.GPU_COUNT: len([g for g in rep["gpus"] if "error" not in g]), self.OK: rep["ok"]}
