"""fjord:trainphaseone — train the phase-one CNN (tile classifier) in the worker."""

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.learn.phase_one import TARGET_METRICS, train_phase_one
from ..core.learn.session import CLASS_WEIGHTS, PRECISIONS
from ..core.prepare.tiles import AUGMENTS
from ..models import ARCHITECTURES
from .base import FjordAlgorithm
from .launcher import run_training


class TrainPhaseOne(FjordAlgorithm):
    CURVES = "CURVES"
    CONFUSION_MATRIX = "CONFUSION_MATRIX"
    VALIDATION_ACCURACY = "VALIDATION_ACCURACY"
    EPOCHS_RUN = "EPOCHS_RUN"
    STOPPED = "STOPPED"

    DATASET = "DATASET"
    ARCHITECTURE = "ARCHITECTURE"
    EPOCHS = "EPOCHS"
    BATCH_SIZE = "BATCH_SIZE"
    LEARNING_RATE = "LEARNING_RATE"
    TARGET_ACCURACY = "TARGET_ACCURACY"
    TARGET_METRIC = "TARGET_METRIC"
    PATIENCE = "PATIENCE"
    INITIAL_MODEL = "INITIAL_MODEL"
    CLASS_WEIGHTS = "CLASS_WEIGHTS"
    AUGMENT = "AUGMENT"
    MIXED_PRECISION = "MIXED_PRECISION"
    DEVICE = "DEVICE"
    SEED = "SEED"
    OUTPUT = "OUTPUT"
    REPORT = "REPORT"

    def name(self):
        return "trainphaseone"

    def displayName(self):
        return self.tr("Train phase-one CNN (tile classifier)")

    def groupId(self):
        return "train"

    def shortHelpString(self):
        return self.tr(
            "Trains the phase-one CNN of CNN-supervised classification on a tile classification "
            "dataset from 'Make training tiles', in a separate worker process (on the GPU when "
            "there is one).\n\n"
            "<b>vgg16</b>: the VGG16 convolutional base trained from scratch for any band count, "
            "then Dense 512, Dropout 0.5, Dense 256 and a softmax (Marochov et al. 2021); tiles of "
            "at least 32 px. <b>compact</b>: a small VGG-style network with over ten times fewer "
            "operations per tile, for CPUs and quick trials.\n\n"
            "Adam (AMSGrad), categorical cross-entropy. Training stops when the validation "
            "score TARGET_METRIC reaches TARGET_ACCURACY, when the validation loss has not improved for "
            "PATIENCE epochs (the best weights are kept; 0 = never), or after EPOCHS. Each epoch "
            "is logged and checkpointed: after a cancel or a crash, run again with the same model "
            "file and settings to resume. TARGET_METRIC <b>balanced accuracy</b> (default) is the "
            "mean of the per-class recalls, so training goes on while a rare class (sediment, "
            "mélange, debris) is still missed; <b>accuracy</b>, the published rule, counts every "
            "tile alike, and easy tiles of the common classes can reach the target on their own "
            "after one epoch. INITIAL_MODEL fine-tunes an existing model (same bands, "
            "classes and tile size), typically at a learning rate of 1e-5.\n\n"
            "MIXED_PRECISION auto uses float16 (bfloat16 from Ampere GPUs on) where the GPU has "
            "tensor cores; DEVICE is auto, cpu or a GPU index. Several GPUs train data-parallel.\n\n"
            "The model file (.keras) carries the class schema, bands, tile size, scaling and "
            "statistics, so classification needs nothing else. REPORT receives history.csv, "
            "curves.png, the validation confusion matrix (CSV and PNG) and per-class scores.")

    def initAlgorithm(self, config=None):
        num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterFile(
            self.DATASET, self.tr("Tile dataset folder (from 'Make training tiles')"),
            behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterEnum(
            self.ARCHITECTURE, self.tr("Architecture"), options=list(ARCHITECTURES), defaultValue=0))
        self.addParameter(num(self.EPOCHS, self.tr("Most epochs"), num.Integer, defaultValue=120, minValue=1))
        self.addParameter(num(self.BATCH_SIZE, self.tr("Batch size"), num.Integer, defaultValue=50, minValue=1))
        self.addParameter(num(self.LEARNING_RATE, self.tr("Learning rate"), num.Double, defaultValue=1e-4,
                              minValue=1e-9, maxValue=1.0))
        self.addParameter(num(self.TARGET_ACCURACY, self.tr("Stop at this validation accuracy (0 = never)"),
                              num.Double, defaultValue=0.985, minValue=0, maxValue=1))
        self.addParameter(QgsProcessingParameterEnum(
            self.TARGET_METRIC, self.tr("Score the target applies to"),
            options=[self.tr("balanced accuracy (mean recall over the classes)"),
                     self.tr("accuracy (the published rule)")], defaultValue=0))
        self.addParameter(num(self.PATIENCE, self.tr("Stop after this many epochs without a better "
                                                     "validation loss (0 = never)"),
                              num.Integer, defaultValue=20, minValue=0))
        self.addParameter(QgsProcessingParameterFile(
            self.INITIAL_MODEL, self.tr("Model to fine-tune"), extension="keras", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.CLASS_WEIGHTS, self.tr("Class weights"), options=list(CLASS_WEIGHTS), defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.AUGMENT, self.tr("On-the-fly augmentation of training tiles"),
            options=[self.tr("none"), self.tr("rotations"), self.tr("rotations and flips")], defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.MIXED_PRECISION, self.tr("Mixed precision"), options=list(PRECISIONS), defaultValue=0))
        device = QgsProcessingParameterString(self.DEVICE, self.tr("Device (auto, cpu or a GPU index)"),
                                              defaultValue="auto")
        device.setFlags(device.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(device)
        self.addParameter(num(self.SEED, self.tr("Random seed"), num.Integer, defaultValue=0))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Model file"), fileFilter=self.tr("Keras model (*.keras)")))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.REPORT, self.tr("Training report folder"), optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputFile(self.CURVES, self.tr("Training curves")))
        self.addOutput(QgsProcessingOutputFile(self.CONFUSION_MATRIX, self.tr("Validation confusion matrix")))
        self.addOutput(QgsProcessingOutputNumber(self.VALIDATION_ACCURACY, self.tr("Validation accuracy")))
        self.addOutput(QgsProcessingOutputNumber(self.EPOCHS_RUN, self.tr("Epochs run")))
        self.addOutput(QgsProcessingOutputString(self.STOPPED, self.tr("Why training stopped")))

    def processAlgorithm(self, parameters, context, feedback):
        dataset = self.parameterAsFile(parameters, self.DATASET, context)
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not output.lower().endswith(".keras"):
            output = os.path.splitext(output)[0] + ".keras"
        report = self.parameterAsString(parameters, self.REPORT, context) or None
        if not dataset or not os.path.isdir(dataset):
            raise QgsProcessingException(self.tr("Choose the dataset folder made by 'Make training tiles'."))
        kwargs = {
            "dataset": dataset, "output": output, "report": report,
            "architecture": ARCHITECTURES[self.parameterAsEnum(parameters, self.ARCHITECTURE, context)],
            "epochs": self.parameterAsInt(parameters, self.EPOCHS, context),
            "batch_size": self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            "learning_rate": self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            "target_accuracy": self.parameterAsDouble(parameters, self.TARGET_ACCURACY, context),
            "target_metric": TARGET_METRICS[self.parameterAsEnum(parameters, self.TARGET_METRIC, context)],
            "patience": self.parameterAsInt(parameters, self.PATIENCE, context),
            "initial_model": self.parameterAsFile(parameters, self.INITIAL_MODEL, context) or None,
            "class_weights": CLASS_WEIGHTS[self.parameterAsEnum(parameters, self.CLASS_WEIGHTS, context)],
            "augment": AUGMENTS[self.parameterAsEnum(parameters, self.AUGMENT, context)],
            "mixed_precision": PRECISIONS[self.parameterAsEnum(parameters, self.MIXED_PRECISION, context)],
            "device": (self.parameterAsString(parameters, self.DEVICE, context) or "auto").strip(),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
        }
        result = run_training(self, train_phase_one, kwargs, feedback, output)
        for cls in result["classes"]:
            feedback.pushInfo(f"  class {cls['value']}: precision {cls['precision']:.3f}, recall "
                              f"{cls['recall']:.3f}, F1 {cls['f1']:.3f}, support {cls['support']}")
        files = result["report"]
        return {self.OUTPUT: result["model"], self.REPORT: report,
                self.CURVES: files.get("curves"), self.CONFUSION_MATRIX: files.get("confusion_png"),
                self.VALIDATION_ACCURACY: result["accuracy"], self.EPOCHS_RUN: result["epochs_run"],
                self.STOPPED: result["stopped"]}
