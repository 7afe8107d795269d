"""fjord:rasterizelabels — training polygons to a class raster on the grid of an image."""

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.data import schema as schemas
from ..core.prepare.rasterize import rasterize_labels
from .base import FjordAlgorithm, core_call, progress_to
from .styling import style_on_load

PRESET_LABELS = ("none: classes from the field", "glacial (7 classes)",
                 "clean ice / debris / background", "CORINE land cover (13 classes)",
                 "glacier outlines: not glacier / glacier")
_OGR_FORMATS = ["gpkg", "shp", "geojson", "json", "fgb", "sqlite", "gml", "kml", "tab", "mif", "csv"]


class RasterizeLabels(FjordAlgorithm):
    SCHEMA_FILE = "SCHEMA_FILE"
    CLASS_COUNT = "CLASS_COUNT"
    LABELLED_PIXELS = "LABELLED_PIXELS"

    INPUT = "INPUT"
    FIELD = "FIELD"
    CLASS = "CLASS"
    BACKGROUND = "BACKGROUND"
    REFERENCE = "REFERENCE"
    SCHEMA = "SCHEMA"
    PRESET = "PRESET"
    ALL_TOUCHED = "ALL_TOUCHED"
    OUTPUT = "OUTPUT"

    def name(self):
        return "rasterizelabels"

    def displayName(self):
        return self.tr("Rasterize training labels")

    def groupId(self):
        return "prepare"

    def shortHelpString(self):
        return self.tr(
            "Burns training polygons into a class raster on the grid (extent, size, pixel size, "
            "CRS) of a reference image, ready for 'Make training tiles'.\n\n"
            "<b>Class field</b>: integer class values, or text labels. Text labels are matched to "
            "the class names of the schema; without a schema they become classes 1..N in sorted "
            "order.\n"
            "<b>One class for every polygon</b> (CLASS, instead of a class field): a class value "
            "or name, for layers that outline one kind of thing, such as glacier inventories "
            "(RGI, GLIMS, national ones).\n"
            "<b>Background class</b> (BACKGROUND): a class value or name for every pixel of the "
            "grid outside all polygons (pixels where the reference image is nodata stay "
            "unlabelled); empty: they stay 0 = unlabelled. It must not be the class of any "
            "polygon. Outlines mark glacier and nothing else, so with the built-in schema "
            "'glacier outlines' use CLASS 'glacier' and BACKGROUND 'not glacier'.\n"
            "<b>Class schema</b>: a JSON or CSV file (value, name, color) or a built-in preset; "
            "without either, classes are named after the field values.\n"
            "<b>Overlaps</b>: where polygons overlap, the smallest polygon wins (a lake inside a "
            "forest stays a lake). A polygon of class 0 clears labels.\n\n"
            "The output is a Byte GeoTIFF (UInt16 beyond 255 classes) where 0 means unlabelled, "
            "with the class schema stored inside it and beside it (.schema.json) and a .qml style "
            "so it opens as a paletted layer with the class names and colours. Polygons in another "
            "CRS are reprojected on the fly; null class values, empty or non-polygon geometries are "
            "skipped and counted; invalid geometries are repaired.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.INPUT, self.tr("Training polygons"), [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField(
            self.FIELD, self.tr("Class field"), parentLayerParameterName=self.INPUT,
            type=QgsProcessingParameterField.Any, optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS, self.tr("One class for every polygon, instead of a class field "
                                "(value or name)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.BACKGROUND, self.tr("Background class for pixels outside all polygons "
                                     "(value or name; empty: unlabelled)"), optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE, self.tr("Reference image (grid of the output)")))
        self.addParameter(QgsProcessingParameterFile(
            self.SCHEMA, self.tr("Class schema file (JSON or CSV: value, name, color)"),
            behavior=QgsProcessingParameterFile.File,
            fileFilter="Class schema (*.json *.csv)", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.PRESET, self.tr("Built-in class schema"), options=[self.tr(p) for p in PRESET_LABELS],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.ALL_TOUCHED, self.tr("Burn every pixel a polygon touches"), defaultValue=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT, self.tr("Class raster")))
        self.addOutput(QgsProcessingOutputFile(self.SCHEMA_FILE, self.tr("Class schema (JSON)")))
        self.addOutput(QgsProcessingOutputNumber(self.CLASS_COUNT, self.tr("Classes present")))
        self.addOutput(QgsProcessingOutputNumber(self.LABELLED_PIXELS, self.tr("Labelled pixels")))

    def checkParameterValues(self, parameters, context):
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        if (self.parameterAsFile(parameters, self.SCHEMA, context)
                and self.parameterAsEnum(parameters, self.PRESET, context) != 0):
            return False, self.tr("Give either a class schema file or a built-in schema, not both.")
        field = self.parameterAsString(parameters, self.FIELD, context)
        constant = self.parameterAsString(parameters, self.CLASS, context).strip()
        if not field and not constant:
            return False, self.tr("Give the field that holds the classes (FIELD), or one class for "
                                  "every polygon (CLASS), e.g. 'glacier' for glacier outlines.")
        if field and constant:
            return False, self.tr("Give either a class field or one class for every polygon "
                                  "(CLASS), not both.")
        return True, ""

    def _schema(self, parameters, context):
        path = self.parameterAsFile(parameters, self.SCHEMA, context)
        preset = self.parameterAsEnum(parameters, self.PRESET, context)
        if path:
            return core_call(schemas.load_schema, path)
        if preset:
            return core_call(schemas.preset_schema, schemas.PRESETS[preset - 1])
        return None

    def processAlgorithm(self, parameters, context, feedback):
        schema = self._schema(parameters, context)
        reference = self.raster_file(parameters, self.REFERENCE, context, "reference image")
        field = self.parameterAsString(parameters, self.FIELD, context) or None
        vector, layer_name = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, self.INPUT, context, _OGR_FORMATS, "gpkg", feedback)
        if not vector:
            raise QgsProcessingException(self.tr("The training polygons could not be loaded."))
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if os.path.splitext(output)[1].lower() not in (".tif", ".tiff"):
            raise QgsProcessingException(self.tr("The class raster must be a GeoTIFF (.tif)."))

        result = core_call(
            rasterize_labels, vector, field, reference, output, layer=layer_name or None,
            schema=schema, class_value=self.parameterAsString(parameters, self.CLASS, context) or None,
            background=self.parameterAsString(parameters, self.BACKGROUND, context) or None,
            all_touched=self.parameterAsBoolean(parameters, self.ALL_TOUCHED, context),
            progress=progress_to(feedback), should_stop=feedback.isCanceled)
        for warning in result["warnings"]:
            feedback.reportError(warning, False)
        names = {c["value"]: c["name"] for c in result["schema"]["classes"]}
        total = sum(result["pixel_counts"].values())
        feedback.pushInfo(self.tr("Pixels per class:"))
        for value in sorted(result["pixel_counts"]):
            count = result["pixel_counts"][value]
            feedback.pushInfo(f"  {value:>5}  {names.get(value, 'unlabelled'):<28} "
                              f"{count:>12,}  {100.0 * count / total:6.2f} %")
        side = schemas.sidecar_paths(output)
        style_on_load(context, output, side["qml"])
        present = [v for v in result["pixel_counts"] if v != 0]
        return {self.OUTPUT: output, self.SCHEMA_FILE: side["schema"], self.CLASS_COUNT: len(present),
                self.LABELLED_PIXELS: result["labelled_pixels"]}
