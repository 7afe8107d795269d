"""fjord:stackbands — stack bands of one or more rasters and add spectral indices."""

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ..core.data.products import VALUES
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
    PRODUCT = "PRODUCT"
    VALUES = "VALUES"

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
            "<b>Product</b> (instead of input rasters): a Sentinel-2 L1C or L2A product as "
            "downloaded (its .SAFE folder, its .zip, or its MTD_MSIL1C.xml / MTD_MSIL2A.xml), or "
            "a Landsat 4-9 Collection 2 Level-1 or Level-2 product (its folder, its .tar or its "
            "*_MTL.txt); a folder path can be typed in. Its reflective bands are the bands to "
            "choose from, named as the product names them (B04, B8A; SR_B4 for Landsat "
            "Level-2); B4,B3,B2,B8 picks them too. The output takes the grid of its finest "
            "multispectral band (Sentinel-2: 10 m; Landsat: 30 m) and the 20 m and 60 m bands "
            "are resampled onto it (bilinear). The product's metadata gives the acquisition "
            "date (recorded in the output, so fronts are dated), the spacecraft and sensor, "
            "the band naming, each band's central wavelength, and the rule from digital "
            "numbers to reflectance: for Sentinel-2 (DN + offset) / 10000, where the offset is "
            "-1000 since processing baseline 04.00 (January 2022) and 0 before; for Landsat "
            "Level-2 DN x 2.75e-5 - 0.2; for Landsat Level-1 top-of-atmosphere reflectance "
            "with the sun elevation. <b>Values</b> then chooses the output: harmonised "
            "integers (reflectance x 10,000, UInt16, the same numbers before and after "
            "baseline 04.00; 0 is nodata and valid values are at least 1) or reflectance "
            "(Float32, nodata NaN). Indices are computed from reflectance. Thermal and "
            "quality bands are left out.\n"
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
            layerType=QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.PRODUCT, self.tr("Or a Sentinel-2 / Landsat product (.SAFE or C2 folder, .zip, "
                                  ".tar, MTD_MSIL*.xml or *_MTL.txt)"),
            behavior=QgsProcessingParameterFile.File, optional=True,
            fileFilter="Sentinel-2 / Landsat products (MTD_MSIL*.xml *_MTL.txt *_MTL.xml *.zip "
                       "*.tar);;All files (*)"))
        self.addParameter(QgsProcessingParameterEnum(
            self.VALUES, self.tr("Values written from a product"),
            options=[self.tr("harmonised integers (reflectance x 10,000, UInt16)"),
                     self.tr("reflectance (Float32)")], defaultValue=0))
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
        product = self.parameterAsFile(parameters, self.PRODUCT, context) or None
        if bool(layers) == bool(product):
            raise QgsProcessingException(self.tr(
                "Give either input rasters or a product (PRODUCT), not both and not neither."))
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
            sensor=sensor, product=product,
            values=VALUES[self.parameterAsEnum(parameters, self.VALUES, context)],
            progress=progress_to(feedback), should_stop=feedback.isCanceled)
        for warning in result["warnings"]:
            feedback.reportError(warning, False)
        if product:
            feedback.pushInfo(self.tr("Product: {}").format(result["product"]))
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
