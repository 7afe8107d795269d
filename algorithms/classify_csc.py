"""fjord:classifycsc — CNN-supervised classification of one image, in the worker."""

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.data import schema as schemas
from ..core.learn.csc import classify_csc
from ..models import PATCH_SIZES
from .base import FjordAlgorithm
from .launcher import run_in_worker
from .parameters import add_device_and_seed, add_phase_two_parameters, add_scale_switch, scale_switch
from .styling import style_on_load


class ClassifyCsc(FjordAlgorithm):
    INPUT = "INPUT"
    MODEL = "MODEL"
    PATCH_SIZE = "PATCH_SIZE"
    PATIENCE = "PATIENCE"
    TILE_STRIDE = "TILE_STRIDE"
    VALIDATION = "VALIDATION"
    OUTPUT = "OUTPUT"
    OUTPUT_PHASE_ONE = "OUTPUT_PHASE_ONE"
    OUTPUT_PROBABILITIES = "OUTPUT_PROBABILITIES"
    PHASE_TWO_MODEL = "PHASE_TWO_MODEL"
    REPORT = "REPORT"
    FIGURE = "FIGURE"
    SAMPLES_PER_CLASS = "SAMPLES_PER_CLASS"
    MAX_EPOCHS = "MAX_EPOCHS"
    RECOGNITION_THRESHOLD = "RECOGNITION_THRESHOLD"
    BOUNDARY_MARGIN = "BOUNDARY_MARGIN"
    SMOOTHING = "SMOOTHING"
    DEVICE = "DEVICE"
    SEED = "SEED"
    IGNORE_SCALE_MISMATCH = "IGNORE_SCALE_MISMATCH"

    def name(self):
        return "classifycsc"

    def displayName(self):
        return self.tr("Classify with CSC (CNN-supervised classification)")

    def groupId(self):
        return "classify"

    def shortHelpString(self):
        return self.tr(
            "CNN-supervised classification (Carbonneau et al. 2020; Marochov et al. 2021), in a "
            "separate worker process.\n\n"
            "<b>Phase one</b>: the phase-one model (from 'Train phase-one CNN') classifies tiles of "
            "the image; every pixel gets the class of its tile (tiles every TILE_STRIDE pixels, "
            "the last row and column ending at the image edge, overlapping tiles averaged). "
            "MODEL may also be a U-Net (from 'Train U-Net', an ensemble file included): its "
            "per-pixel probabilities over blended windows are then phase one, which joins the "
            "context a U-Net learns with phase two's adaptation to this image. "
            "Pixels under the RECOGNITION_THRESHOLD stay unlabelled, and phase two trains only on "
            "phase-one pixels at least BOUNDARY_MARGIN pixels from a class change.\n\n"
            "<b>Phase two</b>: SAMPLES_PER_CLASS pixels of each phase-one class, each with the "
            "PATCH_SIZE x PATCH_SIZE patch around it, train a network for this image alone: an "
            "MLP on the band values (PATCH_SIZE 1) or a compact CNN (3, 5, 7, 15), with early "
            "stopping on validation accuracy (PATIENCE). The network then classifies every pixel, "
            "run fully convolutionally over strips of the image (bounded memory, image edges "
            "reflected), and a modal filter of radius SMOOTHING cleans the result.\n\n"
            "Bands, tile size, scaling and classes come from the model file. Input nodata stays "
            "nodata. With a VALIDATION class raster on the image's grid, the REPORT folder gets "
            "CNN_&lt;image&gt;.csv (phase one) and CSC_&lt;image&gt;.csv (final): precision, "
            "recall, F1 and support per class, accuracy, macro and weighted averages; and the "
            "4-panel figure CSC_&lt;image&gt;.png.")

    def initAlgorithm(self, config=None):
        num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Image")))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, self.tr("Phase-one model (.keras from 'Train phase-one CNN' or 'Train U-Net')"),
            extension="keras"))
        self.addParameter(num(self.PATCH_SIZE, self.tr("Phase-two patch size: 1 (MLP) or 3, 5, 7, 15 "
                                                    "(compact CNN)"),
                              num.Integer, defaultValue=7, minValue=1, maxValue=15))
        add_phase_two_parameters(self)
        self.addParameter(num(self.PATIENCE, self.tr("Phase-two early-stopping patience in epochs "
                                                  "(0 = never)"),
                              num.Integer, defaultValue=10, minValue=0))
        self.addParameter(num(self.TILE_STRIDE, self.tr("Phase-one tile stride in pixels (0 = the tile "
                                                     "size; smaller strides average overlapping tiles)"),
                              num.Integer, defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.VALIDATION, self.tr("Reference classes for validation"), optional=True))
        add_device_and_seed(self)
        add_scale_switch(self)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("CSC classes")))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_PHASE_ONE, self.tr("Phase-one classes"), optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_PROBABILITIES, self.tr("Phase-two class probabilities"), optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.PHASE_TWO_MODEL, self.tr("Phase-two model"), fileFilter=self.tr("Keras model (*.keras)"),
            optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.REPORT, self.tr("Report folder"), optional=True, createByDefault=False))
        for key, label in (("PHASE_ONE_WEIGHTED_F1", "Phase one: weighted F1"),
                           ("CSC_WEIGHTED_F1", "CSC: weighted F1"), ("CSC_MACRO_F1", "CSC: macro F1"),
                           ("CSC_ACCURACY", "CSC: overall accuracy")):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))
        self.addOutput(QgsProcessingOutputFile(self.FIGURE, self.tr("4-panel figure")))

    def processAlgorithm(self, parameters, context, feedback):
        image = self.raster_file(parameters, self.INPUT, context, "image")
        validation = self.raster_file(parameters, self.VALIDATION, context, "validation raster",
                                      optional=True)
        patch = self.parameterAsInt(parameters, self.PATCH_SIZE, context)
        if patch not in PATCH_SIZES:
            raise QgsProcessingException(self.tr(
                f"PATCH_SIZE must be 1 (MLP) or 3, 5, 7 or 15 (compact CNN), not {patch}."))
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        optional = {}
        for key in (self.OUTPUT_PHASE_ONE, self.OUTPUT_PROBABILITIES):
            optional[key] = self.parameterAsOutputLayer(parameters, key, context) or None
        p2_model = self.parameterAsFileOutput(parameters, self.PHASE_TWO_MODEL, context) or None
        if p2_model and not p2_model.lower().endswith(".keras"):
            p2_model = os.path.splitext(p2_model)[0] + ".keras"
        report = self.parameterAsString(parameters, self.REPORT, context) or None
        kwargs = {
            "image": image, "model": self.parameterAsFile(parameters, self.MODEL, context),
            "output": output, "patch_size": patch,
            "samples_per_class": self.parameterAsInt(parameters, self.SAMPLES_PER_CLASS, context),
            "patience": self.parameterAsInt(parameters, self.PATIENCE, context),
            "max_epochs": self.parameterAsInt(parameters, self.MAX_EPOCHS, context),
            "recognition_threshold": self.parameterAsDouble(parameters, self.RECOGNITION_THRESHOLD, context),
            "boundary_margin": self.parameterAsInt(parameters, self.BOUNDARY_MARGIN, context),
            "tile_stride": self.parameterAsInt(parameters, self.TILE_STRIDE, context) or None,
            "smoothing": self.parameterAsInt(parameters, self.SMOOTHING, context),
            "validation": validation, "output_phase_one": optional[self.OUTPUT_PHASE_ONE],
            "output_probabilities": optional[self.OUTPUT_PROBABILITIES], "phase_two_model": p2_model,
            "report": report,
            "device": (self.parameterAsString(parameters, self.DEVICE, context) or "auto").strip(),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
            "ignore_scale_mismatch": scale_switch(self, parameters, context),
        }
        outputs = [p for p in (output, optional[self.OUTPUT_PHASE_ONE], optional[self.OUTPUT_PROBABILITIES],
                               p2_model) if p]
        result = run_in_worker(classify_csc, kwargs, feedback, outputs=outputs)
        style_on_load(context, output, schemas.sidecar_paths(output)["qml"])
        if optional[self.OUTPUT_PHASE_ONE]:
            style_on_load(context, optional[self.OUTPUT_PHASE_ONE],
                          schemas.sidecar_paths(optional[self.OUTPUT_PHASE_ONE])["qml"])
        values = {self.OUTPUT: output, self.OUTPUT_PHASE_ONE: optional[self.OUTPUT_PHASE_ONE],
                  self.OUTPUT_PROBABILITIES: optional[self.OUTPUT_PROBABILITIES],
                  self.PHASE_TWO_MODEL: p2_model, self.REPORT: report,
                  self.FIGURE: result["report"].get("figure")}
        scores = result["scores"]
        if scores:
            values.update({"PHASE_ONE_WEIGHTED_F1": scores["phase_one"]["weighted"]["f1"],
                           "CSC_WEIGHTED_F1": scores["csc"]["weighted"]["f1"],
                           "CSC_MACRO_F1": scores["csc"]["macro"]["f1"],
                           "CSC_ACCURACY": scores["csc"]["accuracy"]})
        return values
