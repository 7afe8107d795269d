"""fjord:calvingfront — calving front and valley margins of a glacial class raster."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessing,
)

from ..core import schema as schemas
from .base import FjordAlgorithm
from .styling import style_on_load
from .worker import run_job


def parse_classes(alg, text, name):
    """Class values from '4' or '1,2,3' (empty: None, the schema's default)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return [int(v) for v in text.replace(";", ",").replace(" ", ",").split(",") if v]
    except ValueError:
        raise QgsProcessingException(alg.tr(f"{name} must list class values such as 1,2,3, not "
                                            f"{text!r}.")) from None


class CalvingFront(FjordAlgorithm):
    def name(self):
        return "calvingfront"

    def displayName(self):  # noqa: N802 (QGIS API name)
        return self.tr("Extract calving front")

    def groupId(self):  # noqa: N802 (QGIS API name)
        return "glaciers"

    def shortHelpString(self):  # noqa: N802 (QGIS API name)
        return self.tr(
            "Extracts the calving front of the main glacier from a class raster (Marochov et al. "
            "2021, with the longest contour taken), as a line in the raster's CRS with its length "
            "in metres, and the valley margins (rock against glacier).\n\n"
            "The main glacier (largest patch of GLACIER_CLASSES, holes filled) is outlined with a "
            "morphological geodesic active contour (ITERATIONS, SMOOTHING, THRESHOLD, BALLOON) "
            "started from its dilated and closed mask; the front is the part of the outline within "
            "30 pixels of the ocean (OCEAN_CLASSES, patches of at least MIN_OCEAN_AREA), the "
            "longest such piece. Empty class lists take the glacial schema's classes: glacier ice; "
            "open water, iceberg water, mélange; snow on rock, rock.\n\n"
            "When there is no glacier, no ocean, or the front would be longer than the image "
            "diagonal, the log says so and the front layer is empty. OUTPUT_RASTER is a copy of "
            "the classes with the front pixels as class 8 (calving front).\n\n"
            "The front and margins get a date field: the acquisition date from the raster's "
            "metadata (ACQUISITIONDATE and the like; Fjord's class rasters carry their image's), "
            "else from its file name (a Sentinel-2/Landsat product name, YYYYMMDD), else from "
            "TIFFTAG_DATETIME; empty when none is found.")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", self.tr("Class raster")))
        for key, label in (("GLACIER_CLASSES", "Glacier classes (empty: glacier ice)"),
                           ("OCEAN_CLASSES", "Ocean classes (empty: open water, iceberg water, mélange)"),
                           ("ROCK_CLASSES", "Rock classes (empty: snow on rock, rock)")):
            self.addParameter(QgsProcessingParameterString(key, self.tr(label), defaultValue="",
                                                           optional=True))
        advanced = [
            num("ITERATIONS", self.tr("Active contour iterations"), num.Integer, defaultValue=30, minValue=1),
            num("BALLOON", self.tr("Active contour balloon force"), num.Double, defaultValue=-0.5),
            num("SMOOTHING", self.tr("Active contour smoothing"), num.Integer, defaultValue=1, minValue=0),
            num("THRESHOLD", self.tr("Active contour threshold"), num.Double, defaultValue=0.6, minValue=0),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(num("MIN_OCEAN_AREA", self.tr("Smallest ocean patch (map units², 1 km² "
                                                        "in metres)"),
                              num.Double, defaultValue=1e6, minValue=0))
        self.addParameter(QgsProcessingParameterVectorDestination(
            "OUTPUT", self.tr("Calving front"), type=QgsProcessing.TypeVectorLine))
        self.addParameter(QgsProcessingParameterVectorDestination(
            "OUTPUT_MARGINS", self.tr("Valley margins"), type=QgsProcessing.TypeVectorLine,
            optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OUTPUT_RASTER", self.tr("Classes with the front as class 8"), optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("LENGTH_M", self.tr("Front length (m)")))
        self.addOutput(QgsProcessingOutputNumber("MARGIN_COUNT", self.tr("Valley margins found")))
        self.addOutput(QgsProcessingOutputString("STATUS", self.tr("What was found")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        source = self.raster_file(parameters, "INPUT", context, "class raster")
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        margins = self.parameterAsOutputLayer(parameters, "OUTPUT_MARGINS", context) or None
        raster = self.parameterAsOutputLayer(parameters, "OUTPUT_RASTER", context) or None
        for path in (output, margins):
            if path and not path.lower().endswith(".gpkg"):
                raise QgsProcessingException(self.tr("Write the front and margins as GeoPackages (.gpkg)."))
        kwargs = dict(
            input=source, output=output, output_margins=margins, output_raster=raster,
            glacier_classes=parse_classes(self, self.parameterAsString(parameters, "GLACIER_CLASSES", context),
                                          "GLACIER_CLASSES"),
            ocean_classes=parse_classes(self, self.parameterAsString(parameters, "OCEAN_CLASSES", context),
                                        "OCEAN_CLASSES"),
            rock_classes=parse_classes(self, self.parameterAsString(parameters, "ROCK_CLASSES", context),
                                       "ROCK_CLASSES"),
            iterations=self.parameterAsInt(parameters, "ITERATIONS", context),
            balloon=self.parameterAsDouble(parameters, "BALLOON", context),
            smoothing=self.parameterAsInt(parameters, "SMOOTHING", context),
            threshold=self.parameterAsDouble(parameters, "THRESHOLD", context),
            min_ocean_area=self.parameterAsDouble(parameters, "MIN_OCEAN_AREA", context))
        result = run_job(".front:calving_front", kwargs, feedback,
                         outputs=[p for p in (output, margins, raster) if p])
        if not result["found"]:
            feedback.reportError(self.tr(f"No calving front: {result['status']}. The front layer "
                                         "is empty."), False)
        for path in (output, margins):
            if path:
                style_on_load(context, path, path[:-5] + ".qml")
        if raster:
            style_on_load(context, raster, schemas.sidecar_paths(raster)["qml"])
        return {"OUTPUT": output, "OUTPUT_MARGINS": margins, "OUTPUT_RASTER": raster,
                "LENGTH_M": result["length_m"], "MARGIN_COUNT": result["margins"],
                "STATUS": result["status"]}
