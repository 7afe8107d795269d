"""fjord:batchcsc — a restartable sweep of CSC jobs from a job table, in the worker."""

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
)

from .base import FjordAlgorithm
from .classify_csc import add_device_and_seed, add_phase_two_parameters
from .worker import run_job


class BatchCsc(FjordAlgorithm):
    def name(self):
        return "batchcsc"

    def displayName(self):  # noqa: N802 (QGIS API name)
        return self.tr("Batch CSC from a job table")

    def groupId(self):  # noqa: N802 (QGIS API name)
        return "classify"

    def shortHelpString(self):  # noqa: N802 (QGIS API name)
        return self.tr(
            "Runs CNN-supervised classification for every row of a job table (CSV) whose Done is "
            "0, for sweeps over models, tile sizes and patch sizes.\n\n"
            "Columns: <b>Model</b> (phase-one model file), <b>DataSource</b> (an image, a folder "
            "of images or a pattern such as images/*.tif), <b>OutFolder</b> (outputs go to "
            "&lt;OutFolder&gt;_patch&lt;PatchSize&gt;), <b>ExpShortHand</b> (prefix of the output "
            "names), <b>Dims</b> (bands used: the first Dims of each image), <b>PatchSize</b> "
            "(1, 3, 5, 7, 15), <b>TileSize</b> (checked against the model), <b>Patience</b> and "
            "<b>Done</b>. Optional: <b>Validation</b> (a reference raster or a folder of them; "
            "otherwise SCLS_&lt;image&gt;.tif or &lt;image&gt;_classes.tif beside each image) and "
            "WholeImage (ignored: Fjord always predicts in strips). Relative paths are read from "
            "the table's folder.\n\n"
            "When a job finishes its Done becomes 1 and the table is rewritten at once, so an "
            "interrupted sweep resumes where it stopped. A failing job is reported and the sweep "
            "goes on. OUTPUT receives one line per job and image with the phase-one and CSC "
            "scores (weighted and macro F1, accuracy, F1 per class).")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(QgsProcessingParameterFile("JOBS", self.tr("Job table (CSV)"), extension="csv"))
        add_phase_two_parameters(self)
        add_device_and_seed(self)
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT", self.tr("Summary of the scores"), fileFilter=self.tr("CSV files (*.csv)")))
        self.addOutput(QgsProcessingOutputNumber("JOBS_RUN", self.tr("Jobs run")))
        self.addOutput(QgsProcessingOutputNumber("JOBS_FAILED", self.tr("Jobs failed")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        jobs = self.parameterAsFile(parameters, "JOBS", context)
        if not jobs or not os.path.isfile(jobs):
            raise QgsProcessingException(self.tr("Choose the job table (a CSV file)."))
        summary = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        kwargs = {
            "jobs": jobs, "summary": summary,
            "samples_per_class": self.parameterAsInt(parameters, "SAMPLES_PER_CLASS", context),
            "max_epochs": self.parameterAsInt(parameters, "MAX_EPOCHS", context),
            "smoothing": self.parameterAsInt(parameters, "SMOOTHING", context),
            "recognition_threshold": self.parameterAsDouble(parameters, "RECOGNITION_THRESHOLD", context),
            "device": (self.parameterAsString(parameters, "DEVICE", context) or "auto").strip(),
            "seed": self.parameterAsInt(parameters, "SEED", context),
        }
        result = run_job(".batch:batch_csc", kwargs, feedback, outputs=[summary])
        if result["failed"]:
            feedback.reportError(self.tr(f"{result['failed']} job(s) failed; see the log and the "
                                         "Message column of the summary."), False)
        return {"OUTPUT": summary, "JOBS_RUN": result["ran"], "JOBS_FAILED": result["failed"]}
