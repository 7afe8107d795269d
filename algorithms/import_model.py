"""fjord:importmodel — a network trained elsewhere made a Fjord model file, in the worker."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.data import schema as schemas
from ..core.learn.imported import import_model
from .base import FjordAlgorithm
from .launcher import run_in_worker
from .rasterize_labels import PRESET_LABELS


class ImportModel(FjordAlgorithm):
    INPUT = "INPUT"
    KIND = "KIND"
    BANDS = "BANDS"
    TILE_SIZE = "TILE_SIZE"
    SCALING = "SCALING"
    MEAN = "MEAN"
    STD = "STD"
    CLASSES = "CLASSES"
    PRESET = "PRESET"
    OUTPUT = "OUTPUT"
    PARAMETERS = "PARAMETERS"

    def name(self):
        return "importmodel"

    def displayName(self):
        return self.tr("Import a model (Keras .h5 / .keras, SavedModel, ONNX)")

    def groupId(self):
        return "setup"

    def shortHelpString(self):
        return self.tr(
            "Makes a Fjord model file of a network trained elsewhere, which 'Classify with CSC', "
            "'Batch CSC' and 'Classify with U-Net' then take like their own: a phase-one tile "
            "classifier saved as a Keras 2 .h5 file by the CSC / SEE_ICE scripts (VGG16 and a "
            "dense softmax head), a U-Net, a Keras 3 .keras file, a TensorFlow SavedModel (its "
            "folder, or the saved_model.pb in it), or an ONNX network (from the Deepness model "
            "zoo or PyTorch work).\n\n"
            "Nothing in the file runs: a .h5 network is rebuilt from its layout of standard "
            "Keras layers and its weights are copied in; a Lambda layer, a TensorFlow operation "
            "stored as a layer or a custom class is refused, named. A .keras file is loaded in "
            "Keras's safe mode after the same check. An ONNX network (operators only, no code) is "
            "kept as it is and runs on ONNX Runtime; it is read as Deepness reads it — input "
            "(batch, bands, rows, columns), values / 255 then its standardization_mean / "
            "standardization_std, the task from its output — and its Deepness metadata "
            "(class_names, tiles_size, resolution) fills what is left empty; a single sigmoid "
            "output gives two classes, background and the class. A SavedModel's serving "
            "signature (a graph of TensorFlow operations) is converted to ONNX and runs the "
            "same way, with the parameters as given.\n\n"
            "KIND: tile classifier (phase one of CSC: one class per tile) or segmentation (one "
            "class per pixel, U-Net like). BANDS: the band names in the network's input order, "
            "comma-separated (B4,B3,B2,B8); images to classify must have those bands in that "
            "order. TILE_SIZE: 0 reads it from the network's input shape (needed for a network "
            "that takes any size). SCALING: what the network was trained on — the values as "
            "they are, values / 255 (8-bit images, the CSC scripts), values / 10000 "
            "(reflectance kept as integers), or per band (value - MEAN) / STD with MEAN and STD "
            "comma lists, one number per band. CLASSES: value:name[:#colour] items in the "
            "network's output order (1:open water,2:glacier ice:#e6f5ff), or empty for a "
            "built-in PRESET with as many classes as the network has outputs.")

    def initAlgorithm(self, config=None):
        num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, self.tr("Model to import (.h5, .keras, .onnx, or a SavedModel's "
                                "saved_model.pb)"),
            fileFilter="Models (*.h5 *.hdf5 *.keras *.onnx saved_model.pb)"))
        self.addParameter(QgsProcessingParameterEnum(
            self.KIND, self.tr("Kind of network"),
            options=[self.tr("tile classifier (phase one)"), self.tr("segmentation (U-Net like)")],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, self.tr("Band names in the network's input order (comma-separated)"),
            optional=True))
        self.addParameter(num(self.TILE_SIZE, self.tr("Tile size in pixels (0 = from the input shape)"),
                              num.Integer, defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.SCALING, self.tr("Input scaling the network was trained with"),
            options=[self.tr("none"), self.tr("÷255"), self.tr("÷10000"),
                     self.tr("per band (MEAN and STD)")], defaultValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.MEAN, self.tr("Per-band means (comma-separated)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.STD, self.tr("Per-band standard deviations (comma-separated)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASSES, self.tr("Classes in output order (value:name[:#colour], comma-separated)"),
            optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.PRESET, self.tr("Built-in class schema (when CLASSES is empty)"),
            options=[self.tr(p) for p in PRESET_LABELS], defaultValue=0))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Fjord model file"), fileFilter="Fjord model (*.keras)"))
        self.addOutput(QgsProcessingOutputNumber(self.PARAMETERS, self.tr("Network parameters")))

    def processAlgorithm(self, parameters, context, feedback):
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        preset = self.parameterAsEnum(parameters, self.PRESET, context)
        kwargs = {
            "input": self.parameterAsFile(parameters, self.INPUT, context),
            "output": output,
            "kind": self.parameterAsEnum(parameters, self.KIND, context),
            "bands": self.parameterAsString(parameters, self.BANDS, context),
            "tile_size": self.parameterAsInt(parameters, self.TILE_SIZE, context),
            "scaling": self.parameterAsEnum(parameters, self.SCALING, context),
            "mean": self.parameterAsString(parameters, self.MEAN, context),
            "std": self.parameterAsString(parameters, self.STD, context),
            "classes": self.parameterAsString(parameters, self.CLASSES, context),
            "preset": schemas.PRESETS[preset - 1] if preset else None,
        }
        result = run_in_worker(import_model, kwargs, feedback, outputs=[output])
        return {self.OUTPUT: output, self.PARAMETERS: result["parameters"]}
