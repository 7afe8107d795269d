"""fjord:calvingfront — calving front and valley margins of a glacial class raster."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ..core.data import schema as schemas
from ..core.glaciers.front import calving_front, calving_fronts
from .base import FjordAlgorithm
from .launcher import run_in_worker
from .parameters import add_front_parameters, front_settings
from .styling import style_on_load


class CalvingFront(FjordAlgorithm):
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"
    OUTPUT_MARGINS = "OUTPUT_MARGINS"
    OUTPUT_RASTER = "OUTPUT_RASTER"
    LENGTH_M = "LENGTH_M"
    MARGIN_COUNT = "MARGIN_COUNT"
    STATUS = "STATUS"
    GLACIER_CLASSES = "GLACIER_CLASSES"
    OCEAN_CLASSES = "OCEAN_CLASSES"
    ROCK_CLASSES = "ROCK_CLASSES"
    ITERATIONS = "ITERATIONS"
    BALLOON = "BALLOON"
    SMOOTHING = "SMOOTHING"
    THRESHOLD = "THRESHOLD"
    MIN_OCEAN_AREA = "MIN_OCEAN_AREA"

    def name(self):
        return "calvingfront"

    def displayName(self):
        return self.tr("Extract calving front")

    def groupId(self):
        return "glaciers"

    def shortHelpString(self):
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
            "Lengths (length_m) and MIN_OCEAN_AREA are true metres in any CRS: a projected CRS "
            "true to scale at the raster (within 0.1 %, as UTM in its own zone) is measured in "
            "its own units; any other (degrees, Web Mercator EPSG:3857, a UTM zone far from the "
            "data, an equal-area projection far from its centre) in a local azimuthal "
            "equidistant projection centred on the raster. A raster whose pixels are not squares "
            "on the ground (degrees beyond 25 degrees of latitude) is traced warped (nearest "
            "neighbour) to square pixels of the same area in that projection; the lines come "
            "back in the raster's CRS and OUTPUT_RASTER stays on its grid. A 3 x 3 majority "
            "filter removes the one-pixel notches that resampling (a reprojection) leaves along "
            "class edges before the front is traced: they would make it longer.\n\n"
            "The front and margins get a date field: the acquisition date from the raster's "
            "metadata (ACQUISITIONDATE and the like; Fjord's class rasters carry their image's), "
            "else from its file name (a Sentinel-2/Landsat product name, YYYYMMDD), else from "
            "TIFFTAG_DATETIME; empty when none is found.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Class raster")))
        add_front_parameters(self)
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, self.tr("Calving front"), type=QgsProcessing.TypeVectorLine))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT_MARGINS, self.tr("Valley margins"), type=QgsProcessing.TypeVectorLine,
            optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_RASTER, self.tr("Classes with the front as class 8"), optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.LENGTH_M, self.tr("Front length (m)")))
        self.addOutput(QgsProcessingOutputNumber(self.MARGIN_COUNT, self.tr("Valley margins found")))
        self.addOutput(QgsProcessingOutputString(self.STATUS, self.tr("What was found")))

    def processAlgorithm(self, parameters, context, feedback):
        source = self.raster_file(parameters, self.INPUT, context, "class raster")
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        margins = self.parameterAsOutputLayer(parameters, self.OUTPUT_MARGINS, context) or None
        raster = self.parameterAsOutputLayer(parameters, self.OUTPUT_RASTER, context) or None
        for path in (output, margins):
            if path and not path.lower().endswith(".gpkg"):
                raise QgsProcessingException(self.tr("Write the front and margins as GeoPackages (.gpkg)."))
        kwargs = dict(input=source, output=output, output_margins=margins, output_raster=raster,
                      **front_settings(self, parameters, context))
        result = run_in_worker(calving_front, kwargs, feedback,
                         outputs=[p for p in (output, margins, raster) if p])
        if not result["found"]:
            feedback.reportError(self.tr(f"No calving front: {result['status']}. The front layer "
                                         "is empty."), False)
        for path in (output, margins):
            if path:
                style_on_load(context, path, path[:-5] + ".qml")
        if raster:
            style_on_load(context, raster, schemas.sidecar_paths(raster)["qml"])
        return {self.OUTPUT: output, self.OUTPUT_MARGINS: margins, self.OUTPUT_RASTER: raster,
                self.LENGTH_M: result["length_m"], self.MARGIN_COUNT: result["margins"],
                self.STATUS: result["status"]}


class CalvingFronts(FjordAlgorithm):
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"
    FRONT_COUNT = "FRONT_COUNT"
    GLACIER_CLASSES = "GLACIER_CLASSES"
    OCEAN_CLASSES = "OCEAN_CLASSES"
    ROCK_CLASSES = "ROCK_CLASSES"
    ITERATIONS = "ITERATIONS"
    BALLOON = "BALLOON"
    SMOOTHING = "SMOOTHING"
    THRESHOLD = "THRESHOLD"
    MIN_OCEAN_AREA = "MIN_OCEAN_AREA"

    def name(self):
        return "calvingfronts"

    def displayName(self):
        return self.tr("Extract calving fronts of a time series")

    def groupId(self):
        return "glaciers"

    def shortHelpString(self):
        return self.tr(
            "Extracts the calving front of every class raster of a time series (scenes of "
            "different dates, as 'Extract calving front' does for one) into one dated line layer: "
            "one front per scene, fields date, image and length_m, ordered by date, in the CRS of "
            "the first raster (the others are reprojected) — ready for 'Terminus change through "
            "time'. A scene without a front is named in the log and left out.\n\n"
            "The date of each scene is its acquisition date from the raster's metadata "
            "(ACQUISITIONDATE and the like; Fjord's class rasters carry their image's), else from "
            "its file name (a Sentinel-2/Landsat product name, YYYYMMDD), else from "
            "TIFFTAG_DATETIME; empty when none is found. The class roles and active-contour "
            "settings are those of 'Extract calving front'.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, self.tr("Class rasters (one per date)"), QgsProcessing.TypeRaster))
        add_front_parameters(self)
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, self.tr("Calving fronts (dated)"), type=QgsProcessing.TypeVectorLine))
        self.addOutput(QgsProcessingOutputNumber(self.FRONT_COUNT, self.tr("Fronts found")))

    def processAlgorithm(self, parameters, context, feedback):
        layers = self.parameterAsLayerList(parameters, self.INPUT, context)
        if not layers:
            raise QgsProcessingException(self.tr("Give at least one class raster."))
        sources = []
        for layer in layers:
            if layer.providerType() != "gdal":
                raise QgsProcessingException(self.tr(f"{layer.name()} is not a raster file."))
            sources.append(layer.source())
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not output.lower().endswith(".gpkg"):
            raise QgsProcessingException(self.tr("Write the fronts as a GeoPackage (.gpkg)."))
        result = run_in_worker(calving_fronts, dict(inputs=sources, output=output,
                                                       **front_settings(self, parameters, context)),
                         feedback, outputs=[output])
        missing = [s["image"] for s in result["scenes"] if not s["found"]]
        if missing:
            feedback.reportError(self.tr(f"No calving front in {', '.join(missing)}."), False)
        style_on_load(context, output, output[:-5] + ".qml")
        return {self.OUTPUT: output, self.FRONT_COUNT: result["fronts"]}
