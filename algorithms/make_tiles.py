"""fjord:maketiles — a training dataset (tiles or image/mask windows) streamed to disk."""

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..core.prepare.normalise import NORMALISATIONS
from ..core.prepare.tiles import AUGMENTS, MODES, SPLITS, count_table, make_tiles
from .base import FjordAlgorithm
from .launcher import run_in_worker


class MakeTiles(FjordAlgorithm):
    PREVIEW = "PREVIEW"
    TRAIN_COUNT = "TRAIN_COUNT"
    VALIDATION_COUNT = "VALIDATION_COUNT"

    INPUT = "INPUT"
    LABELS = "LABELS"
    MODE = "MODE"
    TILE_SIZE = "TILE_SIZE"
    STRIDE = "STRIDE"
    PURITY = "PURITY"
    MAX_UNLABELLED = "MAX_UNLABELLED"
    MIN_LABELLED = "MIN_LABELLED"
    AUGMENT = "AUGMENT"
    NOISE = "NOISE"
    MAX_PER_CLASS = "MAX_PER_CLASS"
    VALIDATION_FRACTION = "VALIDATION_FRACTION"
    SPLIT = "SPLIT"
    BLOCK_SIZE = "BLOCK_SIZE"
    SEED = "SEED"
    APPEND = "APPEND"
    NORMALISATION = "NORMALISATION"
    OUTPUT = "OUTPUT"

    def name(self):
        return "maketiles"

    def displayName(self):
        return self.tr("Make training tiles")

    def groupId(self):
        return "prepare"

    def shortHelpString(self):
        return self.tr(
            "Cuts an image and its class raster (from 'Rasterize training labels', on the same grid) "
            "into a training dataset folder, streamed to disk in bounded memory.\n\n"
            "<b>Tile classification</b> (for the phase-one CNN): windows of TILE_SIZE (default 50 px) "
            "every STRIDE (default half a tile); a tile is kept when at most MAX_UNLABELLED of it is "
            "unlabelled and its majority class covers at least PURITY of its labelled pixels; its "
            "label is that class; at most MAX_PER_CLASS distinct tiles per class (random thinning).\n"
            "<b>Segmentation</b> (for the U-Net): windows of TILE_SIZE (default 256 px) with at least "
            "MIN_LABELLED of their pixels labelled, written as image/mask pairs.\n\n"
            "Nodata and NaN pixels count as unlabelled and are filled with 0. AUGMENT writes the 4 "
            "rotations (or 8 rotations and flips) of every training tile, with optional integer "
            "NOISE (DN) on the copies; validation tiles are never augmented. SPLIT random draws "
            "validation tiles at random (stratified by class); spatial blocks sends whole blocks of "
            "the image to one split and drops windows that straddle both, so no pixel is shared. "
            "APPEND adds another image/label pair to an existing dataset.\n\n"
            "NORMALISATION decides how values become network input, in training and in every "
            "classification with a model trained on the dataset: <i>dataset</i> scales them by the "
            "dataset's rule and the training statistics; <i>image</i> standardises every image by "
            "its own median and 2-98 % spread per band, which cancels the gain and offset that "
            "another date, sensor or processing gives a whole scene; <i>range</i> does the same "
            "but centres on the middle of the 2-98 % range, which moves less than the median "
            "when the images' class mix differs (mostly rock in one, mostly ice in another).\n\n"
            "The folder holds dataset.json (bands, scaling rule, training statistics, class schema, "
            "counts), one .npy shard per source and split, and preview.png.")

    def initAlgorithm(self, config=None):
        num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Image")))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.LABELS, self.tr("Class raster (same grid as the image; 0 = unlabelled)")))
        self.addParameter(QgsProcessingParameterEnum(
            self.MODE, self.tr("Mode"), options=[self.tr("tile classification"), self.tr("segmentation")],
            defaultValue=0))
        self.addParameter(num(self.TILE_SIZE, self.tr("Tile size in pixels (0: 50 for tiles, 256 for segmentation)"),
                              num.Integer, defaultValue=0, minValue=0))
        self.addParameter(num(self.STRIDE, self.tr("Stride in pixels (0: half a tile)"), num.Integer,
                              defaultValue=0, minValue=0))
        self.addParameter(num(self.PURITY, self.tr("Purity: least share of the majority class (tiles)"),
                              num.Double, defaultValue=0.95, minValue=0, maxValue=1))
        self.addParameter(num(self.MAX_UNLABELLED, self.tr("Most unlabelled share of a tile"), num.Double,
                              defaultValue=0.10, minValue=0, maxValue=1))
        self.addParameter(num(self.MIN_LABELLED, self.tr("Least labelled share of a window (segmentation)"),
                              num.Double, defaultValue=0.25, minValue=0, maxValue=1))
        self.addParameter(QgsProcessingParameterEnum(
            self.AUGMENT, self.tr("Augmentation of the training split"),
            options=[self.tr("none"), self.tr("rotations"), self.tr("rotations and flips")], defaultValue=0))
        self.addParameter(num(self.NOISE, self.tr("Noise added to augmented copies (DN, 0 = none)"),
                              num.Integer, defaultValue=0, minValue=0))
        self.addParameter(num(self.MAX_PER_CLASS, self.tr("Most tiles per class (0 = all)"), num.Integer,
                              defaultValue=5000, minValue=0))
        self.addParameter(num(self.VALIDATION_FRACTION, self.tr("Validation fraction"), num.Double,
                              defaultValue=0.2, minValue=0, maxValue=0.9))
        self.addParameter(QgsProcessingParameterEnum(
            self.SPLIT, self.tr("Split"), options=[self.tr("random"), self.tr("spatial blocks")], defaultValue=0))
        block = num(self.BLOCK_SIZE, self.tr("Block size for the spatial split, pixels (0: automatic)"),
                    num.Integer, defaultValue=0, minValue=0)
        block.setFlags(block.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(block)
        self.addParameter(num(self.SEED, self.tr("Random seed"), num.Integer, defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.APPEND, self.tr("Append to the dataset already in the folder"), defaultValue=False))
        self.addParameter(QgsProcessingParameterEnum(
            self.NORMALISATION, self.tr("Normalisation"),
            options=[self.tr("dataset: the training data's statistics"),
                     self.tr("image: each image by its own robust statistics"),
                     self.tr("range: each image by its own 2-98 % range")], defaultValue=0))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, self.tr("Dataset folder")))
        self.addOutput(QgsProcessingOutputFile(self.PREVIEW, self.tr("Preview figure")))
        self.addOutput(QgsProcessingOutputNumber(self.TRAIN_COUNT, self.tr("Training windows")))
        self.addOutput(QgsProcessingOutputNumber(self.VALIDATION_COUNT, self.tr("Validation windows")))

    def processAlgorithm(self, parameters, context, feedback):
        image = self.raster_file(parameters, self.INPUT, context, "image")
        labels = self.raster_file(parameters, self.LABELS, context, "class raster")
        output = self.parameterAsString(parameters, self.OUTPUT, context)
        if os.path.isfile(output):
            raise QgsProcessingException(self.tr("The dataset folder is a file; choose a folder."))
        def number(name):
            return self.parameterAsDouble(parameters, name, context)

        def integer(name):
            return self.parameterAsInt(parameters, name, context)
        options = {
            "mode": MODES[self.parameterAsEnum(parameters, self.MODE, context)],
            "tile_size": integer(self.TILE_SIZE) or None, "stride": integer(self.STRIDE) or None,
            "purity": number(self.PURITY), "max_unlabelled": number(self.MAX_UNLABELLED),
            "min_labelled": number(self.MIN_LABELLED),
            "augment": AUGMENTS[self.parameterAsEnum(parameters, self.AUGMENT, context)],
            "noise": integer(self.NOISE), "max_per_class": integer(self.MAX_PER_CLASS),
            "validation_fraction": number(self.VALIDATION_FRACTION),
            "split": SPLITS[self.parameterAsEnum(parameters, self.SPLIT, context)],
            "block_size": integer(self.BLOCK_SIZE) or None, "seed": integer(self.SEED),
            "append": self.parameterAsBoolean(parameters, self.APPEND, context),
            "normalisation": NORMALISATIONS[self.parameterAsEnum(parameters, self.NORMALISATION,
                                                                 context)],
        }
        summary = run_in_worker(make_tiles, dict(image=image, labels=labels, output=output, **options),
                          feedback, outputs=[output])
        feedback.pushInfo(self.tr(f"Added from this image ({summary['mode']}, {summary['tile_size']} px):"))
        for line in count_table(summary, added=True):
            feedback.pushInfo(line)
        if summary["sources"] > 1:
            feedback.pushInfo(self.tr(f"Whole dataset ({summary['sources']} images):"))
            for line in count_table(summary):
                feedback.pushInfo(line)
        for cls, why in sorted(summary["rejected"].items(), key=lambda kv: int(kv[0])):
            feedback.pushInfo(self.tr(f"Rejected candidates, class {cls}: ")
                              + ", ".join(f"{n} by {rule}" for rule, n in why.items()))
        return {self.OUTPUT: output, self.PREVIEW: summary["preview"],
                self.TRAIN_COUNT: summary["windows"]["train"],
                self.VALIDATION_COUNT: summary["windows"]["validation"]}
