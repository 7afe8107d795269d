"""fjord:classifyunet — U-Net classification over overlapping, blended windows, in the worker."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.data import schema as schemas
from ..core.learn.unet import classify_unet
from .base import FjordAlgorithm
from .launcher import run_in_worker
from .parameters import add_device, add_scale_switch, scale_switch
from .styling import style_on_load

BLENDS = ("cosine", "linear", "none")
PROBABILITIES = ("float32", "byte", "none")


class ClassifyUnet(FjordAlgorithm):
    INPUT = "INPUT"
    MODEL = "MODEL"
    ENSEMBLE_MODELS = "ENSEMBLE_MODELS"
    WINDOW = "WINDOW"
    OVERLAP = "OVERLAP"
    BLEND = "BLEND"
    TTA = "TTA"
    PROBABILITIES = "PROBABILITIES"
    OUTPUT = "OUTPUT"
    PIXELS_PER_SECOND = "PIXELS_PER_SECOND"
    DEVICE = "DEVICE"
    IGNORE_SCALE_MISMATCH = "IGNORE_SCALE_MISMATCH"

    def name(self):
        return "classifyunet"

    def displayName(self):
        return self.tr("Classify with U-Net (blended windows)")

    def groupId(self):
        return "classify"

    def shortHelpString(self):
        return self.tr(
            "Classifies an image with a U-Net from 'Train U-Net', in a separate worker process.\n\n"
            "The image is cut into windows of WINDOW pixels (0 = the model's training window; a "
            "multiple of the network's down-sampling, 2^depth) that overlap by OVERLAP pixels "
            "(-1 = a quarter of the window). Each window's probabilities are weighted by a "
            "profile that falls to the window's edges (BLEND cosine or linear; none stitches "
            "hard, for comparison) and every pixel gets the weighted mean of the windows over "
            "it, so window borders leave no seams. The image edge is reflected; an image "
            "smaller than a window is padded. TTA averages over the image and its three flips "
            "(four times the work). The image is read and the result written in strips: memory "
            "does not grow with the image size.\n\n"
            "OUTPUT: band 1 = class (styled with the model's classes), bands 2..N+1 = the "
            "probability of each class in the model's class order (PROBABILITIES float32, nodata "
            "NaN; byte: round(p x 254), nodata 255; none: the class band alone). Input nodata "
            "stays nodata.\n\n"
            "<b>Ensembles</b>: the probabilities of MODEL and of ENSEMBLE_MODELS (U-Nets with the "
            "same bands, classes and normalisation) are averaged; a model file written by 'Train "
            "U-Net' with ENSEMBLE &gt; 1 brings its members along by itself. Each member adds "
            "its own prediction time.")

    def initAlgorithm(self, config=None):
        num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Image")))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, self.tr("U-Net model (.keras from 'Train U-Net')"), extension="keras"))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.ENSEMBLE_MODELS, self.tr("More U-Net models to average with it (an ensemble)"),
            layerType=QgsProcessing.TypeFile, optional=True))
        self.addParameter(num(self.WINDOW, self.tr("Window size in pixels (0 = the model's)"),
                              num.Integer, defaultValue=0, minValue=0))
        self.addParameter(num(self.OVERLAP, self.tr("Window overlap in pixels (-1 = a quarter of the window)"),
                              num.Integer, defaultValue=-1, minValue=-1))
        self.addParameter(QgsProcessingParameterEnum(
            self.BLEND, self.tr("Blending of overlapping windows"), options=list(BLENDS), defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.TTA, self.tr("Test-time augmentation (average over flips)"), defaultValue=False))
        self.addParameter(QgsProcessingParameterEnum(
            self.PROBABILITIES, self.tr("Probability bands"),
            options=[self.tr("float32"), self.tr("byte (0-254, 255 nodata)"), self.tr("none")],
            defaultValue=0))
        add_device(self)
        add_scale_switch(self)
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT, self.tr("U-Net classes and probabilities")))
        self.addOutput(QgsProcessingOutputNumber(self.PIXELS_PER_SECOND, self.tr("Pixels per second")))

    def processAlgorithm(self, parameters, context, feedback):
        image = self.raster_file(parameters, self.INPUT, context, "image")
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        kwargs = {
            "image": image,
            "model": [self.parameterAsFile(parameters, self.MODEL, context)]
            + [path for path in self.parameterAsFileList(parameters, self.ENSEMBLE_MODELS, context)
               if path],  # an empty optional list comes back as ['']
            "output": output,
            "window": self.parameterAsInt(parameters, self.WINDOW, context),
            "overlap": self.parameterAsInt(parameters, self.OVERLAP, context),
            "blend": BLENDS[self.parameterAsEnum(parameters, self.BLEND, context)],
            "tta": self.parameterAsBoolean(parameters, self.TTA, context),
            "probabilities": PROBABILITIES[self.parameterAsEnum(parameters, self.PROBABILITIES, context)],
            "device": (self.parameterAsString(parameters, self.DEVICE, context) or "auto").strip(),
            "ignore_scale_mismatch": scale_switch(self, parameters, context),
        }
        result = run_in_worker(classify_unet, kwargs, feedback, outputs=[output])
        style_on_load(context, output, schemas.sidecar_paths(output)["qml"])
        return {self.OUTPUT: output, self.PIXELS_PER_SECOND: result["pixels_per_second"]}
