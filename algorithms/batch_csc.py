"""fjord:batchcsc — a restartable sweep of CSC and U-Net jobs from a job table, in the worker
or on a Dask cluster."""

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..core.errors import FjordError
from ..core.run.batch import batch_csc
from ..core.run.scheduler import parse_scheduler
from .base import FjordAlgorithm
from .launcher import run_in_worker
from .parameters import add_device_and_seed, add_phase_two_parameters, add_scale_switch, scale_switch
from .styling import style_on_load

# Seconds a cancelled run gets to release its jobs and close its cluster before it is killed.
CANCEL_GRACE = 20.0


class BatchCsc(FjordAlgorithm):
    JOBS = "JOBS"
    SCHEDULER = "SCHEDULER"
    OUTPUT = "OUTPUT"
    FRONTS = "FRONTS"
    JOBS_RUN = "JOBS_RUN"
    JOBS_FAILED = "JOBS_FAILED"
    SAMPLES_PER_CLASS = "SAMPLES_PER_CLASS"
    MAX_EPOCHS = "MAX_EPOCHS"
    SMOOTHING = "SMOOTHING"
    RECOGNITION_THRESHOLD = "RECOGNITION_THRESHOLD"
    BOUNDARY_MARGIN = "BOUNDARY_MARGIN"
    DEVICE = "DEVICE"
    SEED = "SEED"
    IGNORE_SCALE_MISMATCH = "IGNORE_SCALE_MISMATCH"

    def name(self):
        return "batchcsc"

    def displayName(self):
        return self.tr("Batch CSC from a job table")

    def groupId(self):
        return "classify"

    def shortHelpString(self):
        return self.tr(
            "Runs the classification of every row of a job table (CSV) whose Done is 0: "
            "CNN-supervised classification, or a U-Net, for sweeps over models, tile sizes and "
            "patch sizes and for many scenes; here, or on a Dask cluster.\n\n"
            "Columns: <b>Model</b> (phase-one model file: a tile classifier, or a U-Net whose map "
            "is then phase one), <b>DataSource</b> (an image, a folder "
            "of images or a pattern such as images/*.tif), <b>OutFolder</b> (outputs go to "
            "&lt;OutFolder&gt;_patch&lt;PatchSize&gt;), <b>ExpShortHand</b> (prefix of the output "
            "names), <b>Dims</b> (bands used: the first Dims of each image), <b>PatchSize</b> "
            "(1, 3, 5, 7, 15), <b>TileSize</b> (checked against a tile classifier; the window of a "
            "U-Net), <b>Patience</b> and "
            "<b>Done</b>. Optional: <b>Validation</b> (a reference raster or a folder of them; "
            "otherwise SCLS_&lt;image&gt;.tif or &lt;image&gt;_classes.tif beside each image) and "
            "WholeImage (ignored: Fjord always predicts in strips); <b>Method</b>: csc (default) "
            "or unet (Model is then a U-Net from 'Train U-Net'; PatchSize, TileSize and Patience "
            "may be empty; outputs go to &lt;OutFolder&gt;_unet); <b>Front</b>: a GeoPackage "
            "line layer that receives the calving front of each classified image (classes "
            "found by the glacial schema's names) with its acquisition date; "
            "<b>GlacierClasses</b>, <b>OceanClasses</b>, <b>RockClasses</b>: the class values "
            "of each role, separated by spaces, for a model whose classes are named otherwise "
            "(a job whose roles are missing fails at once, before classifying). Relative paths "
            "are read from the table's folder; fields may be separated by commas, semicolons or "
            "tabs.\n\n"
            "<b>SCHEDULER</b>: empty = here, one job at a time; local:N = a Dask cluster of N "
            "worker processes on this machine (one thread each), started for the run and closed "
            "after it; tcp://host:8786 = an existing Dask cluster (its workers must import "
            "Fjord and see the table's files under the same paths). Each worker loads the "
            "deep-learning engine and each model file once and reuses them for every job. The "
            "same SEED gives the same class rasters wherever a job runs.\n\n"
            "Only this run writes the table: when a job finishes, its Done (1 when it "
            "succeeded), Status and Error are rewritten at once, so an interrupted sweep "
            "resumes where it stopped. A failing job is recorded and the others go on; a worker "
            "that dies mid-job is replaced and its job rerun. Outputs are written under "
            "temporary names and renamed when complete. Cancel stops the running jobs and "
            "closes a local cluster. OUTPUT receives one line per job and image with the "
            "scores (phase one, CSC or U-Net: weighted and macro F1, accuracy, F1 per class); "
            "FRONTS, the fronts of every done job in one dated layer that 'Terminus change' "
            "reads as it is; JOBS_FAILED counts the failed jobs.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFile(self.JOBS, self.tr("Job table (CSV)"), extension="csv"))
        self.addParameter(QgsProcessingParameterString(
            self.SCHEDULER, self.tr("Scheduler (empty = here; local:N = N local worker processes; "
                                 "tcp://host:8786 = a Dask cluster)"), defaultValue="",
            optional=True))
        add_phase_two_parameters(self)
        add_device_and_seed(self)
        add_scale_switch(self)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Summary of the scores"), fileFilter=self.tr("CSV files (*.csv)")))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.FRONTS, self.tr("Fronts of all jobs (dated)"), type=QgsProcessing.TypeVectorLine,
            optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.JOBS_RUN, self.tr("Jobs run")))
        self.addOutput(QgsProcessingOutputNumber(self.JOBS_FAILED, self.tr("Jobs failed")))

    def processAlgorithm(self, parameters, context, feedback):
        jobs = self.parameterAsFile(parameters, self.JOBS, context)
        if not jobs or not os.path.isfile(jobs):
            raise QgsProcessingException(self.tr("Choose the job table (a CSV file)."))
        summary = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        scheduler = (self.parameterAsString(parameters, self.SCHEDULER, context) or "").strip()
        try:
            parse_scheduler(scheduler)
        except FjordError as exc:
            raise QgsProcessingException(str(exc)) from None
        fronts = self.parameterAsOutputLayer(parameters, self.FRONTS, context) or None
        if fronts and not fronts.lower().endswith(".gpkg"):
            raise QgsProcessingException(self.tr("Write the fronts as a GeoPackage (.gpkg)."))
        kwargs = {
            "jobs": jobs, "summary": summary, "fronts": fronts, "scheduler": scheduler,
            "samples_per_class": self.parameterAsInt(parameters, self.SAMPLES_PER_CLASS, context),
            "max_epochs": self.parameterAsInt(parameters, self.MAX_EPOCHS, context),
            "smoothing": self.parameterAsInt(parameters, self.SMOOTHING, context),
            "recognition_threshold": self.parameterAsDouble(parameters, self.RECOGNITION_THRESHOLD, context),
            "boundary_margin": self.parameterAsInt(parameters, self.BOUNDARY_MARGIN, context),
            "device": (self.parameterAsString(parameters, self.DEVICE, context) or "auto").strip(),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
            "ignore_scale_mismatch": scale_switch(self, parameters, context),
        }
        result = run_in_worker(batch_csc, kwargs, feedback,
                         outputs=[p for p in (summary, fronts) if p], grace=CANCEL_GRACE)
        if fronts:
            style_on_load(context, fronts, fronts[:-5] + ".qml")
        if result["failed"]:
            feedback.reportError(self.tr(
                f"{result['failed']} of {result['ran'] + result['failed']} job(s) FAILED; their "
                "messages are in the log, in the Error column of the job table and in the Message "
                "column of the summary."), False)
        return {self.OUTPUT: summary, self.FRONTS: fronts, self.JOBS_RUN: result["ran"],
                self.JOBS_FAILED: result["failed"]}
