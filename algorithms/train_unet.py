"""fjord:trainunet — train a U-Net on a segmentation dataset, in the worker."""

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
)

from ..core.learn.session import CLASS_WEIGHTS
from ..core.learn.unet import AUGMENTS, LOSSES, SCHEDULES, train_unet
from ..models import UNET_PRESETS
from .base import FjordAlgorithm
from .launcher import run_training
from .parameters import add_device_and_seed

PRESETS = tuple(UNET_PRESETS)


class TrainUnet(FjordAlgorithm):
    DATASET = "DATASET"
    PRESET = "PRESET"
    DEPTH = "DEPTH"
    FILTERS = "FILTERS"
    DROPOUT = "DROPOUT"
    LOSS = "LOSS"
    CLASS_WEIGHTS = "CLASS_WEIGHTS"
    AUGMENT = "AUGMENT"
    EPOCHS = "EPOCHS"
    BATCH_SIZE = "BATCH_SIZE"
    LEARNING_RATE = "LEARNING_RATE"
    LR_SCHEDULE = "LR_SCHEDULE"
    PATIENCE = "PATIENCE"
    MIXED_PRECISION = "MIXED_PRECISION"
    INITIAL_MODEL = "INITIAL_MODEL"
    OUTPUT = "OUTPUT"
    REPORT = "REPORT"
    CURVES = "CURVES"
    CONFUSION_MATRIX = "CONFUSION_MATRIX"
    STOPPED = "STOPPED"
    DEVICE = "DEVICE"
    SEED = "SEED"
    ENSEMBLE = "ENSEMBLE"

    def name(self):
        return "trainunet"

    def displayName(self):
        return self.tr("Train U-Net (segmentation)")

    def groupId(self):
        return "train"

    def shortHelpString(self):
        return self.tr(
            "Trains a U-Net on a segmentation dataset from 'Make training tiles' (image/mask "
            "windows), in a separate worker process (on the GPU when there is one).\n\n"
            "<b>PRESET</b> lulc: the land-cover U-Net (depth 4, 32 base filters: 10,743,309 "
            "parameters for 14 bands and 13 classes; Nadam). glacier: depth 5, 16 base filters, "
            "dropout 0.2 in every block (Adam). none: DEPTH, FILTERS and DROPOUT as given. Each "
            "encoder block is two 3x3 convolutions with batch normalisation and ReLU, then 2x2 "
            "max-pooling; each decoder level a 4x4 stride-2 transposed convolution, the skip "
            "connection and a 3x3 convolution. Window sizes must be multiples of 2^DEPTH.\n\n"
            "Bands are standardised as the dataset's NORMALISATION says: with its training "
            "statistics, or each image by its own (the rule is stored in the model). "
            "Unlabelled pixels take no part in the loss or the accuracy. LOSS: cross-entropy, "
            "weighted cross-entropy (balanced class weights), soft Dice, or cross-entropy + "
            "Dice; CLASS_WEIGHTS balanced weights any of them by the dataset's pixel counts. "
            "AUGMENT applies random rotations, flips and crops anew every epoch; radiometric "
            "changes add a random gain and offset per window and band; sub-area statistics "
            "(per-image datasets) standardise each window by the statistics of its whole image "
            "or of one of 8 random quarter-size areas of it, so the network also sees the shifts "
            "an image's own statistics take when its class mix changes.\n\n"
            "LR_SCHEDULE cosine (default) lowers the learning rate from LEARNING_RATE to 0 along a "
            "half cosine over the EPOCHS, so the last epochs settle instead of jumping between "
            "solutions; constant keeps it.\n\n"
            "Training runs EPOCHS epochs; with PATIENCE > 0 it stops earlier when the validation "
            "loss has not improved for PATIENCE epochs (the best weights are kept). The default, "
            "0, lets the cosine schedule run to its end: on a small validation set the 'best' "
            "epoch is often an early, noisy one. Each epoch is logged and checkpointed: run "
            "again with the same model file and settings to resume. REPORT receives history.csv, "
            "curves.png, the validation confusion matrix and per-class precision, recall, F1 and "
            "IoU of the validation pixels.\n\n"
            "ENSEMBLE N &gt; 1 trains N networks with the seeds SEED, SEED + 1, ...: members 2..N "
            "go to &lt;OUTPUT&gt;_member2.keras and so on (reports in REPORT/member2 ...), then "
            "the first to OUTPUT, which lists them. Classifying with OUTPUT averages all N; "
            "training and classification take N times as long.")

    def initAlgorithm(self, config=None):
        num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterFile(
            self.DATASET, self.tr("Segmentation dataset folder (from 'Make training tiles')"),
            behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterEnum(
            self.PRESET, self.tr("Network preset"), options=list(PRESETS), defaultValue=0))
        self.addParameter(num(self.DEPTH, self.tr("Depth: encoder blocks (preset none)"), num.Integer,
                              defaultValue=5, minValue=1, maxValue=7))
        self.addParameter(num(self.FILTERS, self.tr("Base filters (preset none)"), num.Integer,
                              defaultValue=16, minValue=1, maxValue=512))
        self.addParameter(num(self.DROPOUT, self.tr("Dropout in every block (preset none)"), num.Double,
                              defaultValue=0.0, minValue=0.0, maxValue=0.9))
        self.addParameter(QgsProcessingParameterEnum(
            self.LOSS, self.tr("Loss"), options=[self.tr("cross-entropy"), self.tr("weighted cross-entropy"),
                                               self.tr("soft Dice"), self.tr("cross-entropy + Dice")],
            defaultValue=3))
        self.addParameter(QgsProcessingParameterEnum(
            self.CLASS_WEIGHTS, self.tr("Class weights"), options=list(CLASS_WEIGHTS), defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.AUGMENT, self.tr("On-the-fly augmentation"),
            options=[self.tr("none"), self.tr("rotations and flips"),
                     self.tr("rotations, flips and random crops"),
                     self.tr("rotations, flips, random crops and radiometric changes"),
                     self.tr("rotations, flips, random crops and sub-area statistics "
                             "(datasets made with NORMALISATION image or range)")],
            defaultValue=2))
        self.addParameter(num(self.EPOCHS, self.tr("Most epochs"), num.Integer, defaultValue=30, minValue=1))
        self.addParameter(num(self.BATCH_SIZE, self.tr("Batch size"), num.Integer, defaultValue=8, minValue=1))
        self.addParameter(num(self.LEARNING_RATE, self.tr("Learning rate"), num.Double, defaultValue=2e-3,
                              minValue=1e-9, maxValue=1.0))
        self.addParameter(QgsProcessingParameterEnum(
            self.LR_SCHEDULE, self.tr("Learning-rate schedule"),
            options=[self.tr("cosine decay to 0 over the epochs"), self.tr("constant")],
            defaultValue=0))
        self.addParameter(num(self.PATIENCE, self.tr("Stop after this many epochs without a better "
                                                  "validation loss (0 = never)"),
                              num.Integer, defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.MIXED_PRECISION, self.tr("Mixed precision"), options=["auto", "on", "off"], defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(
            self.INITIAL_MODEL, self.tr("U-Net to fine-tune"), extension="keras", optional=True))
        add_device_and_seed(self)
        self.addParameter(num(self.ENSEMBLE, self.tr("Ensemble: networks to train with seeds SEED, "
                                                  "SEED + 1, ... (classifying averages them)"),
                              num.Integer, defaultValue=1, minValue=1, maxValue=20))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Model file"), fileFilter=self.tr("Keras model (*.keras)")))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.REPORT, self.tr("Training report folder"), optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputFile(self.CURVES, self.tr("Training curves")))
        self.addOutput(QgsProcessingOutputFile(self.CONFUSION_MATRIX, self.tr("Validation confusion matrix")))
        for key, label in (("VALIDATION_ACCURACY", "Validation pixel accuracy"),
                           ("VALIDATION_MACRO_F1", "Validation macro F1"),
                           ("VALIDATION_MEAN_IOU", "Validation mean IoU"), ("EPOCHS_RUN", "Epochs run")):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))
        self.addOutput(QgsProcessingOutputString(self.STOPPED, self.tr("Why training stopped")))

    def processAlgorithm(self, parameters, context, feedback):
        dataset = self.parameterAsFile(parameters, self.DATASET, context)
        if not dataset or not os.path.isdir(dataset):
            raise QgsProcessingException(self.tr("Choose the dataset folder made by 'Make training tiles'."))
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not output.lower().endswith(".keras"):
            output = os.path.splitext(output)[0] + ".keras"
        report = self.parameterAsString(parameters, self.REPORT, context) or None
        kwargs = {
            "dataset": dataset, "output": output, "report": report,
            "preset": PRESETS[self.parameterAsEnum(parameters, self.PRESET, context)],
            "depth": self.parameterAsInt(parameters, self.DEPTH, context),
            "filters": self.parameterAsInt(parameters, self.FILTERS, context),
            "dropout": self.parameterAsDouble(parameters, self.DROPOUT, context),
            "loss": tuple(LOSSES)[self.parameterAsEnum(parameters, self.LOSS, context)],
            "class_weights": CLASS_WEIGHTS[self.parameterAsEnum(parameters, self.CLASS_WEIGHTS, context)],
            "augment": AUGMENTS[self.parameterAsEnum(parameters, self.AUGMENT, context)],
            "epochs": self.parameterAsInt(parameters, self.EPOCHS, context),
            "batch_size": self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            "learning_rate": self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            "schedule": SCHEDULES[self.parameterAsEnum(parameters, self.LR_SCHEDULE, context)],
            "patience": self.parameterAsInt(parameters, self.PATIENCE, context),
            "mixed_precision": ("auto", "on", "off")[self.parameterAsEnum(parameters, self.MIXED_PRECISION,
                                                                          context)],
            "initial_model": self.parameterAsFile(parameters, self.INITIAL_MODEL, context) or None,
            "device": (self.parameterAsString(parameters, self.DEVICE, context) or "auto").strip(),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
            "ensemble": self.parameterAsInt(parameters, self.ENSEMBLE, context),
        }
        result = run_training(self, train_unet, kwargs, feedback, output)
        for cls in result["classes"]:
            feedback.pushInfo(f"  class {cls['value']}: precision {cls['precision']:.3f}, recall "
                              f"{cls['recall']:.3f}, F1 {cls['f1']:.3f}, IoU {cls['iou']:.3f}, "
                              f"support {cls['support']} px")
        files = result["report"]
        return {self.OUTPUT: result["model"], self.REPORT: report, self.CURVES: files.get("curves"),
                self.CONFUSION_MATRIX: files.get("confusion_png"),
                "VALIDATION_ACCURACY": result["accuracy"], "VALIDATION_MACRO_F1": result["macro_f1"],
                "VALIDATION_MEAN_IOU": result["mean_iou"], "EPOCHS_RUN": result["epochs_run"],
                self.STOPPED: result["stopped"]}
