"""Satellite products as they are delivered: Sentinel-2 L1C / L2A and Landsat Collection 2.

:func:`read_product` takes what a user downloads and finds in it the band files, the
acquisition date, the spacecraft and sensor, and the rule that turns each band's digital
numbers (DN) into reflectance:

- **Sentinel-2** (a ``.SAFE`` folder, its ``.zip``, or its ``MTD_MSIL1C.xml`` /
  ``MTD_MSIL2A.xml``): reflectance = (DN + offset) / quantification value. The quantification
  value is 10,000; since processing baseline 04.00 (25 January 2022) the product carries an
  offset of -1000 per band (``RADIO_ADD_OFFSET`` in L1C, ``BOA_ADD_OFFSET`` in L2A), so that
  the same DN means another reflectance before and after it (ESA, Sentinel-2 products
  specification document, and the baseline 04.00 notice). L2A bands come at 10, 20 and 60 m;
  each band is taken at its finest resolution. DN 0 is nodata.
- **Landsat Collection 2** (a folder or ``.tar`` holding ``*_MTL.txt`` or ``*_MTL.xml``, or
  the MTL file itself), Landsat 4-9: Level-2 surface reflectance = DN x
  ``REFLECTANCE_MULT_BAND_n`` + ``REFLECTANCE_ADD_BAND_n`` (2.75e-5 and -0.2); Level-1
  top-of-atmosphere reflectance = (DN x mult + add) / sin(sun elevation) (USGS, Landsat 8-9
  Collection 2 Level-2 Science Product Guide, and "Using the USGS Landsat Level-1 Data
  Product"). Thermal and quality bands (no reflectance rule) are left out. DN 0 is fill.
"""

import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from osgeo import gdal

from ..errors import FjordError
from .dates import parse_date

gdal.UseExceptions()

#: VALUES of ``stackbands`` (the Toolbox enum's order): reflectance x 10,000 as UInt16, the same
#: numbers before and after Sentinel-2 baseline 04.00; or reflectance as Float32.
VALUES = ("harmonised", "reflectance")
#: The harmonised integers' factor: reflectance x 10,000.
HARMONISED_FACTOR = 10_000.0

# Sentinel-2 bands in their band_id order (the metadata's bandId 0..12).
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
            "B12")
_S2_FILE = re.compile(r"_(B\d{2}|B8A)(?:_(\d+)m)?$")
_ARCHIVES = {".zip": "/vsizip/", ".tar": "/vsitar/", ".tgz": "/vsitar/", ".gz": "/vsitar/"}


@dataclass
class ProductBand:
    """One reflective band of a product."""

    code: str          # as the product names it: 'B04', 'B8A', 'SR_B4', 'B5'
    path: str          # a path GDAL opens (inside an archive: /vsizip/..., /vsitar/...)
    resolution: float  # metres
    gain: float        # reflectance = DN x gain + add
    add: float
    wavelength: float = None  # central wavelength, micrometres, when the metadata gives it


@dataclass
class Product:
    """What :func:`read_product` found."""

    path: str
    name: str              # the product id
    level: str             # 'L1C', 'L2A', 'L1', 'L2'
    sensor: str            # band naming, a key of fjord.core.prepare.stack.SENSOR_CODES
    spacecraft: str        # 'Sentinel-2A', 'LANDSAT_8'
    instrument: str        # 'MSI', 'OLI_TIRS'
    acquired: str          # ISO date and time as the metadata gives it
    bands: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)  # processing baseline, offsets...

    @property
    def date(self):
        return parse_date(self.acquired)

    @property
    def grid(self):
        """The band whose grid the stack takes: the finest of the multispectral bands
        (Landsat's 15 m panchromatic band 8 is not one of them)."""
        bands = [b for b in self.bands if not (self.sensor != "sentinel2" and b.code == "B8")]
        return min(bands, key=lambda b: b.resolution)

    def describe(self):
        return (f"{self.spacecraft} {self.instrument} {self.level}, acquired {self.acquired}, "
                f"{len(self.bands)} reflective bands ({', '.join(b.code for b in self.bands)})")


def read_product(path):
    """The :class:`Product` at ``path``: a Sentinel-2 ``.SAFE`` folder, its ``.zip`` or its
    ``MTD_MSIL*.xml``; a Landsat Collection 2 folder, its ``.tar`` or its ``*_MTL.txt`` /
    ``*_MTL.xml``. Raises :class:`FjordError` saying what was expected when it is none."""
    path = str(path)
    if not os.path.exists(path):
        raise FjordError(f"The product {path!r} does not exist.")
    metadata = _find_metadata(path)
    if os.path.basename(metadata).upper().startswith("MTD_MSIL"):
        return _sentinel2(path, metadata)
    return _landsat(path, metadata)


# --------------------------------------------------------------------------- finding the files

def _find_metadata(path):
    """The product's metadata file: a GDAL path (inside the archive for a .zip or .tar)."""
    if os.path.isfile(path):
        if _is_metadata(os.path.basename(path)):
            return path
        prefix = _ARCHIVES.get(os.path.splitext(path)[1].lower())
        if prefix is None:
            raise FjordError(_not_a_product(path))
        root = prefix + os.path.abspath(path)
        names = gdal.ReadDirRecursive(root) or []
    else:
        root = path
        names = [os.path.relpath(os.path.join(d, f), path)
                 for d, _, files in os.walk(path) for f in files]
    found = sorted((n for n in names if _is_metadata(os.path.basename(n))),
                   key=lambda n: n.count("/"))
    if not found:
        raise FjordError(_not_a_product(path))
    return f"{root}/{found[0]}"


def _is_metadata(name):
    upper = name.upper()
    return (re.fullmatch(r"MTD_MSIL(1C|2A)\.XML", upper) is not None
            or upper.endswith("_MTL.TXT") or upper.endswith("_MTL.XML"))


def _not_a_product(path):
    return (f"{path!r} is not a satellite product Fjord reads: give a Sentinel-2 L1C/L2A .SAFE "
            "folder, its .zip or its MTD_MSIL1C.xml / MTD_MSIL2A.xml, or a Landsat Collection 2 "
            "folder, its .tar or its *_MTL.txt. For other rasters use the input rasters instead.")


def _read_text(path):
    handle = gdal.VSIFOpenL(path, "rb")
    if handle is None:
        raise FjordError(f"Cannot read the product metadata {path!r}.")
    try:
        gdal.VSIFSeekL(handle, 0, 2)
        size = gdal.VSIFTellL(handle)
        gdal.VSIFSeekL(handle, 0, 0)
        return gdal.VSIFReadL(1, size, handle).decode("utf-8", "replace")
    finally:
        gdal.VSIFCloseL(handle)


def _band_file(folder, stem, extensions):
    """The file of a band named without extension in the metadata (``stem``)."""
    for ext in extensions:
        candidate = f"{folder}/{stem}{ext}"
        if gdal.VSIStatL(candidate) is not None:
            return candidate
    raise FjordError(f"The product's metadata names the band file {stem!r}, which is not in "
                     f"{folder!r}: the product is incomplete; download it again.")


# ----------------------------------------------------------------------------------- Sentinel-2

def _local(tag):
    return tag.rsplit("}", 1)[-1]


def _first(root, name, default=None):
    element = next((e for e in root.iter() if _local(e.tag) == name), None)
    return default if element is None or element.text is None else element.text.strip()


def _sentinel2(path, metadata):
    try:
        root = ET.fromstring(_read_text(metadata))
    except ET.ParseError as exc:
        raise FjordError(f"The Sentinel-2 metadata {metadata!r} is not valid XML: {exc}.") from None
    level = "L2A" if "MSIL2A" in os.path.basename(metadata).upper() else "L1C"
    quantification = float(_first(root, "BOA_QUANTIFICATION_VALUE" if level == "L2A"
                                  else "QUANTIFICATION_VALUE", "10000"))
    offsets = _s2_offsets(root, "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET")
    wavelengths, resolutions = _s2_spectral(root)
    folder = os.path.dirname(metadata)
    files = {}
    for element in root.iter():
        if _local(element.tag) != "IMAGE_FILE" or not element.text:
            continue
        match = _S2_FILE.search(element.text.strip())
        if match is None:
            continue  # TCI, AOT, WVP, SCL...
        code = match.group(1)
        resolution = float(match.group(2) or resolutions.get(code, 10))
        if code not in files or resolution < files[code][1]:
            files[code] = (element.text.strip(), resolution)
    if not files:
        raise FjordError(f"The Sentinel-2 metadata {metadata!r} lists no band file.")
    bands = [ProductBand(code, _band_file(folder, files[code][0], (".jp2", ".JP2", ".tif")),
                         files[code][1], 1.0 / quantification, offsets.get(code, 0.0) / quantification,
                         wavelengths.get(code))
             for code in S2_BANDS if code in files]
    name = _first(root, "PRODUCT_URI") or os.path.basename(os.path.dirname(metadata))
    baseline = _first(root, "PROCESSING_BASELINE", "")
    return Product(path, re.sub(r"\.SAFE$", "", name), level, "sentinel2",
                   _first(root, "SPACECRAFT_NAME", "Sentinel-2"), "MSI",
                   _first(root, "PRODUCT_START_TIME", "") or _first(root, "DATATAKE_SENSING_START", ""),
                   bands, {"PROCESSING_BASELINE": baseline, "QUANTIFICATION_VALUE": f"{quantification:g}",
                           "ADD_OFFSET": ",".join(f"{offsets.get(b.code, 0):g}" for b in bands)})


def _s2_offsets(root, tag):
    """``{band code: offset in DN}`` from the metadata's offset list (empty before 04.00)."""
    out = {}
    for element in root.iter():
        if _local(element.tag) == tag and element.text:
            index = int(element.get("band_id", -1))
            if 0 <= index < len(S2_BANDS):
                out[S2_BANDS[index]] = float(element.text)
    return out


def _s2_spectral(root):
    """Central wavelengths (µm) and resolutions (m) of the bands, by code."""
    wavelengths, resolutions = {}, {}
    for element in root.iter():
        if _local(element.tag) != "Spectral_Information":
            continue
        index = int(element.get("bandId", -1))
        if not 0 <= index < len(S2_BANDS):
            continue
        code = S2_BANDS[index]
        central = _first(element, "CENTRAL")
        if central:
            wavelengths[code] = float(central) / 1000.0  # nm
        resolution = _first(element, "RESOLUTION")
        if resolution:
            resolutions[code] = float(resolution)
    return wavelengths, resolutions


# -------------------------------------------------------------------------------------- Landsat

def parse_mtl(text):
    """A Landsat MTL (``GROUP = ...`` / ``KEY = VALUE`` text, or its XML form) as
    ``{group: {key: value}}``, values without their quotes."""
    if text.lstrip().startswith("<"):
        root = ET.fromstring(text)
        return {_local(g.tag): {_local(e.tag): (e.text or "").strip() for e in g}
                for g in root.iter() if len(g) and not len(g[0])}
    groups, stack = {}, []
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition("="))
        if key == "GROUP":
            stack.append(value)
            groups.setdefault(value, {})
        elif key == "END_GROUP":
            stack = stack[:-1]
        elif key and stack and _:
            groups[stack[-1]][key] = value.strip('"')
    return groups


def _landsat(path, metadata):
    try:
        mtl = parse_mtl(_read_text(metadata))
    except ET.ParseError as exc:
        raise FjordError(f"The Landsat metadata {metadata!r} is not valid XML: {exc}.") from None
    contents = mtl.get("PRODUCT_CONTENTS", {})
    attributes = mtl.get("IMAGE_ATTRIBUTES", {})
    spacecraft = attributes.get("SPACECRAFT_ID", "")
    number = re.search(r"(\d)$", spacecraft)
    if number is None or contents.get("COLLECTION_NUMBER", "02") not in ("02", "2"):
        raise FjordError(f"{metadata!r} is not the metadata of a Landsat 4-9 Collection 2 "
                         "product (SPACECRAFT_ID, COLLECTION_NUMBER).")
    level2 = contents.get("PROCESSING_LEVEL", "L1").upper().startswith("L2")
    rescaling = mtl.get("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS" if level2
                        else "LEVEL1_RADIOMETRIC_RESCALING", {})
    sun = 1.0 if level2 else math.sin(math.radians(float(attributes.get("SUN_ELEVATION", 90))))
    folder = os.path.dirname(metadata)
    bands = []
    for key, name in contents.items():
        match = re.fullmatch(r"FILE_NAME_BAND_(?:SR_)?(\d+)", key)
        if match is None or f"REFLECTANCE_MULT_BAND_{match.group(1)}" not in rescaling:
            continue  # thermal and quality bands
        n = match.group(1)
        gain = float(rescaling[f"REFLECTANCE_MULT_BAND_{n}"]) / sun
        add = float(rescaling[f"REFLECTANCE_ADD_BAND_{n}"]) / sun
        resolution = 15.0 if (not level2 and n == "8" and int(number.group(1)) >= 7) else 30.0
        bands.append(ProductBand(f"SR_B{n}" if level2 else f"B{n}",
                                 _band_file(folder, name, ("",)), resolution, gain, add))
    if not bands:
        raise FjordError(f"The Landsat metadata {metadata!r} lists no reflective band.")
    sensor = "landsat89" if int(number.group(1)) >= 8 else "landsat47"
    acquired = attributes.get("DATE_ACQUIRED", "")
    if attributes.get("SCENE_CENTER_TIME"):
        acquired += "T" + attributes["SCENE_CENTER_TIME"]
    return Product(path, contents.get("LANDSAT_PRODUCT_ID", os.path.basename(folder)),
                   "L2" if level2 else "L1", sensor, spacecraft, attributes.get("SENSOR_ID", ""),
                   acquired, sorted(bands, key=lambda b: int(re.sub(r"\D", "", b.code))),
                   {"SUN_ELEVATION": attributes.get("SUN_ELEVATION", "")})
