"""fjord:validatefront — distances from a reference calving front to the predicted one."""

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsVectorLayer,
)

from ..core.evaluate.fronterror import validate_front
from .base import FjordAlgorithm
from .launcher import run_in_worker
from .styling import style_on_load


class ValidateFront(FjordAlgorithm):
    INPUT = "INPUT"
    REFERENCE = "REFERENCE"
    SPACING = "SPACING"
    OUTPUT = "OUTPUT"
    REPORT = "REPORT"
    FIGURE = "FIGURE"
    CATASTROPHIC = "CATASTROPHIC"

    def name(self):
        return "validatefront"

    def displayName(self):
        return self.tr("Validate calving front")

    def groupId(self):
        return "validate"

    def shortHelpString(self):
        return self.tr(
            "Measures how far a predicted calving front lies from a reference front. Each may be "
            "a line layer or a class raster with a 'calving front' class (such as OUTPUT_RASTER of "
            "'Extract calving front'). The reference is turned into points (its vertices densified "
            "to the pixel size, or SPACING; or its front pixels) and each point gets its distance "
            "in metres to the nearest part of the predicted front (Marochov et al. 2021).\n\n"
            "OUTPUT: the points with their distance, styled by distance. REPORT (CSV, or JSON by "
            "extension): mean, median, mode (10 m bins), standard deviation, 90th percentile, "
            "maximum, the share under 100 m, and CATASTROPHIC when the maximum is over 1000 m; "
            "also returned as outputs. MDE_M is the mean distance error of the CaFFe benchmark "
            "(Gourmelon et al. 2022): the mean over both directions together, every reference "
            "point to the predicted front and every predicted point (its vertices densified the "
            "same way, or its front pixels) to the reference, so that published front-detection "
            "results compare. FIGURE: a histogram. Layers in other CRSs are reprojected "
            "to the reference's, which measures them when it is true to scale there (within "
            "0.1 %, as UTM in its own zone); any other reference CRS (degrees, Web Mercator, a "
            "far UTM zone...) is measured in a local azimuthal equidistant projection centred on "
            "the reference, so distances are true metres. "
            "SPACING and the pixel size it defaults to are in metres, also for a raster in "
            "degrees (EPSG:4326).")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterMapLayer(
            self.INPUT, self.tr("Predicted front (line layer or class raster)")))
        self.addParameter(QgsProcessingParameterMapLayer(
            self.REFERENCE, self.tr("Reference front (line layer or class raster)")))
        spacing = QgsProcessingParameterNumber(
            self.SPACING, self.tr("Reference point spacing in metres (0: the pixel size, else 10 m)"),
            QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0)
        spacing.setFlags(spacing.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(spacing)
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, self.tr("Front error points"), type=QgsProcessing.TypeVectorPoint))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, self.tr("Front error report"), fileFilter=self.tr("CSV files (*.csv);;JSON files (*.json)"),
            optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.FIGURE, self.tr("Front error histogram"), fileFilter=self.tr("PNG images (*.png)"),
            optional=True, createByDefault=False))
        for key, label in (("MEAN_M", "Mean error (m)"), ("MEDIAN_M", "Median error (m)"),
                           ("MODE_M", "Mode of the error (m, 10 m bins)"), ("STD_M", "Standard deviation (m)"),
                           ("P90_M", "90th percentile (m)"), ("MAX_M", "Largest error (m)"),
                           ("SHARE_UNDER_100M", "Share of points within 100 m"),
                           ("MDE_M", "Mean distance error, both directions (m; CaFFe)"),
                           ("POINTS", "Reference points")):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))
        self.addOutput(QgsProcessingOutputBoolean(self.CATASTROPHIC, self.tr("Catastrophic failure "
                                                                          "(largest error over 1000 m)")))

    def _source(self, parameters, name, context, what):
        layer = self.parameterAsLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(self.tr(f"The {what} could not be loaded."))
        if isinstance(layer, QgsRasterLayer) and layer.providerType() == "gdal":
            return layer.source(), None
        if isinstance(layer, QgsVectorLayer) and layer.providerType() == "ogr":
            parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
            return parts["path"], parts.get("layerName") or None
        raise QgsProcessingException(self.tr(f"The {what} must be a file: a line layer (GeoPackage, "
                                             "Shapefile...) or a GeoTIFF class raster."))

    def processAlgorithm(self, parameters, context, feedback):
        predicted, predicted_layer = self._source(parameters, self.INPUT, context, "predicted front")
        reference, reference_layer = self._source(parameters, self.REFERENCE, context, "reference front")
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not output.lower().endswith(".gpkg"):
            raise QgsProcessingException(self.tr("Write the error points as a GeoPackage (.gpkg)."))
        report = self.parameterAsFileOutput(parameters, self.REPORT, context) or None
        figure = self.parameterAsFileOutput(parameters, self.FIGURE, context) or None
        kwargs = dict(input=predicted, reference=reference, output=output,
                      input_layer=predicted_layer, reference_layer=reference_layer,
                      spacing=self.parameterAsDouble(parameters, self.SPACING, context) or None,
                      report=report, figure=figure)
        stats = run_in_worker(validate_front, kwargs, feedback,
                        outputs=[p for p in (output, report, figure) if p])
        style_on_load(context, output, os.path.splitext(output)[0] + ".qml")
        return {self.OUTPUT: output, self.REPORT: report, self.FIGURE: figure, "MEAN_M": stats["mean_m"],
                "MEDIAN_M": stats["median_m"], "MODE_M": stats["mode_m"], "STD_M": stats["std_m"],
                "P90_M": stats["p90_m"], "MAX_M": stats["max_m"],
                "SHARE_UNDER_100M": stats["share_under_100m"], "MDE_M": stats["mde_m"],
                "POINTS": stats["points"],
                self.CATASTROPHIC: stats["catastrophic"]}
