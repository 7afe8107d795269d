"""fjord:stackbands — stack bands of one or more rasters and add spectral indices."""

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ..core.prepare.stack import INDEX_NAMES, ROLES, SENSOR_LABELS, SENSORS, stack_bands
from .base import FjordAlgorithm, core_call, progress_to

SENSOR_OPTIONS = ("automatic", "Sentinel-2", "Landsat 8/9 OLI", "Landsat 4-7 TM/ETM+")
ROLE_TITLES = {"blue": "Blue band (number in the stack; 0 = automatic)",
               "green": "Green band (number in the stack; 0 = automatic)",
               "red": "Red band (number in the stack; 0 = automatic)",
               "nir": "Near-infrared (NIR) band (number in the stack; 0 = automatic)",
               "swir1": "SWIR1 band, about 1.6 µm (number in the stack; 0 = automatic)",
               "swir2": "SWIR2 band, about 2.2 µm (number in the stack; 0 = automatic)"}


class StackBands(FjordAlgorithm):
    BAND_COUNT = "BAND_COUNT"
    BAND_NAMES = "BAND_NAMES"

    INPUTS = "INPUTS"
    BANDS = "BANDS"
    INDICES = "INDICES"
    SENSOR = "SENSOR"
    OUTPUT = "OUTPUT"
    BLUE = "BLUE"
    GREEN = "GREEN"
    RED = "RED"
    NIR = "NIR"
    SWIR1 = "SWIR1"
    SWIR2 = "SWIR2"

    def name(self):
        return "stackbands"

    def displayName(self):
        return self.tr("Stack bands and spectral indices")

    def groupId(self):
        return "prepare"

    def shortHelpString(self):
        return self.tr(
            "Stacks bands of one or more rasters into one GeoTIFF, in the order you choose, and "
            "adds normalised-difference spectral indices after them, ready for 'Make training "
            "tiles' and classification.\n\n"
            "<b>Grid</b>: the output takes the grid (extent, size, pixel size, CRS) of the "
            "<b>first</b> input. Inputs on another grid are resampled onto it: bilinear, or "
            "nearest neighbour for bands with a colour table (class rasters). An input that does "
            "not overlap the first is refused.\n"
            "<b>Bands</b>: comma-separated band numbers, ranges or names, e.g. <i>1,2,3,4</i>, "
            "<i>1-4</i> or <i>B4,B3,B2,B8</i>. Numbers count the bands of all inputs one after "
            "the other in input order (two 4-band inputs: 1-4 and 5-8). Names match the band "
            "descriptions, ignoring case (B04 matches B4); a band without description is named "
            "'&lt;file name&gt; band &lt;n&gt;'. Empty: all bands of all inputs in order. Band "
            "descriptions are kept in the output.\n"
            "<b>Spectral indices</b>, each (a − b) / (a + b): NDVI (NIR − Red), NDWI after "
            "McFeeters (Green − NIR), NDSI (Green − SWIR1), NDBI (SWIR1 − NIR), NDMI (NIR − "
            "SWIR1), NDTI tillage index (SWIR1 − SWIR2). They are written after the bands, named "
            "NDVI, NDWI..., computed from the band values (with the band's scale and offset when "
            "the file declares them), and are nodata where a band is nodata or the denominator "
            "is zero.\n"
            "<b>Band roles</b>: which stacked band is blue, green, red, NIR, SWIR1 and SWIR2 is "
            "found from the band descriptions: Sentinel-2 names (B2 blue, B3 green, B4 red, B8 "
            "NIR, or B8A without B8, B11 SWIR1, B12 SWIR2), Landsat 8/9 names (B2 blue, B3 green, "
            "B4 red, B5 NIR, B6 SWIR1, B7 SWIR2; SR_B5 style too), Landsat 4-7 names (B1 blue, B2 "
            "green, B3 red, B4 NIR, B5 SWIR1, B7 SWIR2), or plain names (blue, green, red, nir, "
            "swir1, swir2). A single-band file without description is named by its file name, "
            "so per-band files such as ..._SR_B5.TIF or ..._B08.jp2 are recognised; the bands of "
            "a 3-band file named as an RGB composite (..._RGB.tif) are red, green, blue. "
            "<b>Sensor</b> decides which naming applies, since B4 is red for Sentinel-2 and "
            "Landsat 8/9 but NIR for Landsat 4-7. Automatic: Sentinel-2 when the names look like "
            "Sentinel-2 (B8A, B12, B04-style), Landsat when file names or metadata carry a "
            "Landsat scene id (LC08/LC09: 8/9; LE07, LT05, LT04: 4-7) or SR_B names, "
            "Sentinel-2 otherwise. Set a role by its band number in the stack (counting the "
            "output bands, 1 = the first stacked band) to override; 0 means automatic. An index "
            "whose bands cannot be found stops with a message that names the band to set.\n\n"
            "<b>Output</b>: a GeoTIFF (DEFLATE, tiled, BigTIFF when needed). Without indices it "
            "has the widest type of the inputs and the bands hold their input values unchanged; "
            "with indices it is Float32 (band values still unchanged) and its nodata is NaN. "
            "Nodata carries through: a pixel that is nodata in an input band is nodata in its "
            "output band, whatever value marked it. Without indices the nodata value is the one "
            "the inputs share; when they differ, the first declared one (valid pixels of other "
            "bands that equal it are counted in a warning); when none is declared but resampling "
            "leaves pixels uncovered, 0 for unsigned types, the minimum for signed ones and NaN "
            "for floats. The image is processed in strips of rows, so memory does not depend on "
            "its size; a cancelled run leaves no output.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUTS, self.tr("Input rasters (the first sets the grid)"),
            layerType=QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, self.tr("Bands, in order (numbers or names, e.g. 1,2,3,4 or B4,B3,B2,B8; "
                                "empty: all)"), defaultValue="", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.INDICES, self.tr("Spectral indices to add"), options=list(INDEX_NAMES),
            allowMultiple=True, optional=True, defaultValue=[]))
        self.addParameter(QgsProcessingParameterEnum(
            self.SENSOR, self.tr("Band naming of the sensor (for finding the band roles)"),
            options=[self.tr(s) for s in SENSOR_OPTIONS], defaultValue=0))
        for role in ROLES:
            param = QgsProcessingParameterNumber(
                getattr(self, role.upper()), self.tr(ROLE_TITLES[role]),
                type=QgsProcessingParameterNumber.Integer, defaultValue=0, optional=True,
                minValue=0)
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT, self.tr("Stacked raster")))
        self.addOutput(QgsProcessingOutputNumber(self.BAND_COUNT, self.tr("Bands written")))
        self.addOutput(QgsProcessingOutputString(self.BAND_NAMES, self.tr("Band names, in order")))

    def processAlgorithm(self, parameters, context, feedback):
        layers = self.parameterAsLayerList(parameters, self.INPUTS, context)
        if not layers:
            raise QgsProcessingException(self.tr("Give at least one input raster."))
        inputs = []
        for layer in layers:
            if layer.providerType() != "gdal":
                raise QgsProcessingException(self.tr(
                    "The input {} is not a raster file (GDAL); save it as a GeoTIFF first.").format(
                        layer.name()))
            inputs.append(layer.source())
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if os.path.splitext(output)[1].lower() not in (".tif", ".tiff"):
            raise QgsProcessingException(self.tr("The stacked raster must be a GeoTIFF (.tif)."))
        bands = self.parameterAsString(parameters, self.BANDS, context) or None
        indices = [INDEX_NAMES[i] for i in self.parameterAsEnums(parameters, self.INDICES, context)]
        sensor = SENSORS[self.parameterAsEnum(parameters, self.SENSOR, context)]
        roles = {}
        for role in ROLES:
            name = getattr(self, role.upper())
            if parameters.get(name) is not None:
                roles[role] = self.parameterAsInt(parameters, name, context)

        result = core_call(
            stack_bands, inputs, output, bands=bands, indices=indices, band_roles=roles,
            sensor=sensor, progress=progress_to(feedback), should_stop=feedback.isCanceled)
        for warning in result["warnings"]:
            feedback.reportError(warning, False)
        for path in result["resampled"]:
            feedback.pushInfo(self.tr("Resampled onto the grid of the first input: {}").format(path))
        feedback.pushInfo(self.tr("Band naming: {}{}").format(
            SENSOR_LABELS[result["sensor"]], self.tr(" (automatic)") if sensor == "auto" else ""))
        for role in ROLES:
            if role in result["roles"]:
                pos = result["roles"][role]
                feedback.pushInfo(f"  {role:<6} = band {pos} ({result['bands'][pos - 1]}, "
                                  f"{result['role_sources'][role]})")
        feedback.pushInfo(self.tr("Bands written ({}): {}").format(
            result["dtype"], ", ".join(result["bands"])))
        return {self.OUTPUT: output, self.BAND_COUNT: len(result["bands"]),
                self.BAND_NAMES: ",".join(result["bands"])}
