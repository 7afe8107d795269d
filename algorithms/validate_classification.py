"""fjord:validateclassification — accuracy of a class raster against reference classes."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.evaluate.validate import validate_classification
from .base import FjordAlgorithm
from .launcher import run_in_worker

OGR_FORMATS = ["gpkg", "shp", "geojson", "json", "fgb", "sqlite", "gml", "kml", "tab", "mif"]


class ValidateClassification(FjordAlgorithm):
    INPUT = "INPUT"
    REFERENCE = "REFERENCE"
    REFERENCE_VECTOR = "REFERENCE_VECTOR"
    FIELD = "FIELD"
    OUTPUT = "OUTPUT"
    OUTPUT_CONFUSION = "OUTPUT_CONFUSION"
    FIGURE = "FIGURE"

    def name(self):
        return "validateclassification"

    def displayName(self):
        return self.tr("Validate classification")

    def groupId(self):
        return "validate"

    def shortHelpString(self):
        return self.tr(
            "Scores a class raster against reference classes: a reference class raster on the same "
            "grid (REFERENCE), or reference polygons (REFERENCE_VECTOR with their class FIELD, "
            "rasterised onto the class raster's grid with its class schema). Only pixels whose "
            "reference is labelled count; a prediction of 0 or nodata there is an error.\n\n"
            "OUTPUT (CSV): per class precision, recall, F1 with 95 % confidence intervals and "
            "support; then overall accuracy and Cohen's kappa (with intervals), macro and "
            "weighted averages. The intervals come from a bootstrap of the confusion matrix and "
            "treat pixels as independent, so they are optimistic for spatially clustered errors. "
            "OUTPUT_CONFUSION: the confusion matrix (CSV). FIGURE: the matrix with class names, "
            "counts and row shares (PNG). The main numbers are also outputs, for modeler chains "
            "and qgis_process --json.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Class raster")))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE, self.tr("Reference class raster"), optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.REFERENCE_VECTOR, self.tr("Reference polygons"),
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.FIELD, self.tr("Class field of the reference polygons"),
            parentLayerParameterName=self.REFERENCE_VECTOR, optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Scores"), fileFilter=self.tr("CSV files (*.csv)")))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_CONFUSION, self.tr("Confusion matrix"), fileFilter=self.tr("CSV files (*.csv)"),
            optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.FIGURE, self.tr("Confusion matrix figure"), fileFilter=self.tr("PNG images (*.png)"),
            optional=True, createByDefault=False))
        for key, label in (("OVERALL_ACCURACY", "Overall accuracy"), ("KAPPA", "Cohen's kappa"),
                           ("MACRO_F1", "Macro F1"), ("WEIGHTED_F1", "Weighted F1"),
                           ("REFERENCE_PIXELS", "Reference pixels scored")):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        source = self.raster_file(parameters, self.INPUT, context, "class raster")
        reference = self.raster_file(parameters, self.REFERENCE, context, "reference raster", optional=True)
        vector = layer_name = None
        if parameters.get(self.REFERENCE_VECTOR):
            vector, layer_name = self.parameterAsCompatibleSourceLayerPathAndLayerName(
                parameters, self.REFERENCE_VECTOR, context, OGR_FORMATS, "gpkg", feedback)
            if not vector:
                raise QgsProcessingException(self.tr("The reference polygons could not be loaded."))
        outputs = {key: self.parameterAsFileOutput(parameters, key, context) or None
                   for key in (self.OUTPUT, self.OUTPUT_CONFUSION, self.FIGURE)}
        kwargs = dict(input=source, output=outputs[self.OUTPUT], reference=reference,
                      reference_vector=vector, layer=layer_name,
                      field=self.parameterAsString(parameters, self.FIELD, context) or None,
                      output_confusion=outputs[self.OUTPUT_CONFUSION], figure=outputs[self.FIGURE])
        result = run_in_worker(validate_classification, kwargs, feedback,
                         outputs=[p for p in outputs.values() if p])
        for cls in result["classes"]:
            feedback.pushInfo(f"  {cls['name']}: precision {cls['precision']:.3f}, recall "
                              f"{cls['recall']:.3f}, F1 {cls['f1']:.3f}, support {cls['support']}")
        return dict(outputs, OVERALL_ACCURACY=result["accuracy"], KAPPA=result["kappa"],
                    MACRO_F1=result["macro_f1"], WEIGHTED_F1=result["weighted_f1"],
                    REFERENCE_PIXELS=result["total"])
