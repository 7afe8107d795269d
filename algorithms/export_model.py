"""fjord:exportmodel — a Fjord model file as an ONNX network for Deepness, in the worker."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
)

from ..core.learn.exported import export_model
from .base import FjordAlgorithm
from .launcher import run_in_worker


class ExportModel(FjordAlgorithm):
    INPUT = "INPUT"
    FORMAT = "FORMAT"
    OUTPUT = "OUTPUT"
    MAX_DIFFERENCE = "MAX_DIFFERENCE"

    def name(self):
        return "exportmodel"

    def displayName(self):
        return self.tr("Export a model (ONNX for Deepness)")

    def groupId(self):
        return "setup"

    def shortHelpString(self):
        return self.tr(
            "Writes the network of a Fjord model file (a phase-one tile classifier or a U-Net) "
            "as an ONNX file (operator set 17) with the metadata of Deepness, the QGIS "
            "inference plugin, so that Deepness (or any ONNX runtime) classifies with it.\n\n"
            "The network takes tiles of (batch, bands, rows, columns) and gives the probability "
            "of each class at every pixel, (batch, classes, rows, columns); a tile classifier "
            "gives its tile's probabilities at every pixel of the tile. Metadata: model_type "
            "Segmentor, class_names (output index to class name), tiles_size (the model's tile "
            "or window), tiles_overlap, and standardization_mean / standardization_std that "
            "turn Deepness's input (8-bit values / 255) into the input the network was trained "
            "on; Fjord's own description rides along under 'fjord'. Deepness reads 8-bit "
            "images: a model trained on reflectance or 16-bit values gets, through this "
            "standardisation, the same numbers only from an image on that scale.\n\n"
            "The export runs both networks on random tiles and refuses a file whose "
            "probabilities differ from Keras's by more than 1e-4 (MAX_DIFFERENCE says by how "
            "much they do).")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, self.tr("Fjord model file"), extension="keras"))
        self.addParameter(QgsProcessingParameterEnum(
            self.FORMAT, self.tr("Format"), options=[self.tr("ONNX (Deepness)")], defaultValue=0))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("ONNX file"), fileFilter="ONNX (*.onnx)"))
        self.addOutput(QgsProcessingOutputNumber(
            self.MAX_DIFFERENCE, self.tr("Largest difference from Keras's probabilities")))

    def processAlgorithm(self, parameters, context, feedback):
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        kwargs = {"input": self.parameterAsFile(parameters, self.INPUT, context),
                  "output": output,
                  "format": self.parameterAsEnum(parameters, self.FORMAT, context)}
        result = run_in_worker(export_model, kwargs, feedback, outputs=[output])
        return {self.OUTPUT: output, self.MAX_DIFFERENCE: result["max_difference"]}
