"""Stack bands from one or more rasters and add normalised-difference spectral indices.

The output takes the grid (size, geotransform, CRS) of the **first** input. Bands of inputs on
another grid are resampled onto it on the fly: bilinear for continuous data, nearest neighbour
for bands with a colour table (class rasters). The image is read and written in strips of rows,
so memory does not grow with the image size.

Spectral indices
----------------
Every index is a normalised difference ``(a - b) / (a + b)`` of two bands, identified by their
role (blue, green, red, NIR, SWIR1, SWIR2):

====  ===============================  ==========================================================
NDVI  (NIR - Red) / (NIR + Red)        vegetation; Rouse et al. 1974 (NASA SP-351), Tucker 1979
                                       (Remote Sensing of Environment 8, 127-150)
NDWI  (Green - NIR) / (Green + NIR)    open water, McFeeters 1996 (International Journal of
                                       Remote Sensing 17, 1425-1432)
NDSI  (Green - SWIR1) / (Green + SWIR1)  snow and ice; Hall, Riggs & Salomonson 1995 (Remote
                                       Sensing of Environment 54, 127-140)
NDBI  (SWIR1 - NIR) / (SWIR1 + NIR)    built-up areas; Zha, Gao & Ni 2003 (International Journal
                                       of Remote Sensing 24, 583-594)
NDMI  (NIR - SWIR1) / (NIR + SWIR1)    vegetation moisture; Gao 1996 (Remote Sensing of
                                       Environment 58, 257-266), named NDMI by Wilson & Sader 2002
NDTI  (SWIR1 - SWIR2) / (SWIR1 + SWIR2)  tillage / crop residue; Van Deventer et al. 1997
                                       (Photogrammetric Engineering & Remote Sensing 63, 87-93)
====  ===============================  ==========================================================

An index is nodata (NaN) where either band is nodata and where the denominator is zero.
Indices use the bands' scale and offset when the file declares them (GDAL band scale/offset),
otherwise the values as stored.

Products
--------
Instead of rasters, the bands can come from a Sentinel-2 or Landsat Collection 2 product as
delivered (:mod:`fjord.core.data.products`): named, dated and turned into harmonised integers or
reflectance by the product's own metadata, on the grid of its finest multispectral band.

Band roles
----------
Roles are found from the band descriptions of the stacked bands, after the band naming of a
sensor: Sentinel-2 (B2 blue, B3 green, B4 red, B8 NIR — B8A when there is no B8 —, B11 SWIR1,
B12 SWIR2; ``B02``-style names too), Landsat 8/9 OLI (B2 blue, B3 green, B4 red, B5 NIR, B6
SWIR1, B7 SWIR2; ``SR_B5``-style names too) or Landsat 4-7 TM/ETM+ (B1 blue, B2 green, B3 red,
B4 NIR, B5 SWIR1, B7 SWIR2), and from plain names (``blue``, ``green``, ``red``, ``nir``,
``swir1``, ``swir2``, any case). A band without a description is named by the file name when it is a
file's only band (``..._B4.tif``), or, in a 3-band file named as an RGB composite
(``..._RGB.tif``), by its position (red, green, blue). ``sensor='auto'`` picks Sentinel-2 naming when the
descriptions look like Sentinel-2 (B8A, B12 or zero-padded names such as B04), Landsat naming
when file names or metadata carry a Landsat scene id (LC08/LC09 → 8/9; LE07, LT05, LT04 → 4-7)
or Collection 2 band names (``SR_B4``), and Sentinel-2 naming otherwise. Any role can be given
explicitly as a 1-based band number in the stack.
"""

import json
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal, gdal_array, osr

from ..data.products import HARMONISED_FACTOR, VALUES, read_product
from ..data.rasters import bounds, create_gtiff, same_crs, same_grid
from ..errors import Cancelled, FjordError, never_stop, no_progress
from ..outputs import AtomicOutputs, check_writable

gdal.UseExceptions()
osr.UseExceptions()

INDEX_NAMES = ("NDVI", "NDWI", "NDSI", "NDBI", "NDMI", "NDTI")
#: The two roles of each index: ``(a - b) / (a + b)``.
INDEX_ROLES = {
    "NDVI": ("nir", "red"),
    "NDWI": ("green", "nir"),
    "NDSI": ("green", "swir1"),
    "NDBI": ("swir1", "nir"),
    "NDMI": ("nir", "swir1"),
    "NDTI": ("swir1", "swir2"),
}
ROLES = ("blue", "green", "red", "nir", "swir1", "swir2")
ROLE_LABELS = {"blue": "blue", "green": "green", "red": "red", "nir": "near-infrared (NIR)",
               "swir1": "short-wave infrared 1 (SWIR1)", "swir2": "short-wave infrared 2 (SWIR2)"}
SENSORS = ("auto", "sentinel2", "landsat89", "landsat47")
SENSOR_LABELS = {"sentinel2": "Sentinel-2", "landsat89": "Landsat 8/9 OLI",
                 "landsat47": "Landsat 4-7 TM/ETM+"}
#: Band codes of each role per sensor, in order of preference.
SENSOR_CODES = {
    "sentinel2": {"blue": ["b2"], "green": ["b3"], "red": ["b4"], "nir": ["b8", "b8a"],
                  "swir1": ["b11"], "swir2": ["b12"]},
    "landsat89": {"blue": ["b2"], "green": ["b3"], "red": ["b4"], "nir": ["b5"],
                  "swir1": ["b6"], "swir2": ["b7"]},
    "landsat47": {"blue": ["b1"], "green": ["b2"], "red": ["b3"], "nir": ["b4"],
                  "swir1": ["b5"], "swir2": ["b7"]},
}
#: Plain names of each role (compared without case, spaces, '_' or '-'), in order of preference.
ROLE_WORDS = {
    "blue": ["blue"], "green": ["green"], "red": ["red"],
    "nir": ["nir", "nearinfrared", "nir08"],
    "swir1": ["swir1", "swir16", "shortwaveinfrared1"],
    "swir2": ["swir2", "swir22", "shortwaveinfrared2"],
}
# Words that disqualify a description from plain-name matching ("red edge", "ultra blue").
_NOT_A_ROLE = {"edge", "ultra", "deep", "coastal", "aerosol", "cirrus", "vapour", "vapor"}
STRIP_ROWS = 256
_OPTIONS = ["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER", "INTERLEAVE=BAND",
            "NUM_THREADS=ALL_CPUS"]


@dataclass
class Band:
    """One band of one input, as the stack sees it."""

    number: int                # 1-based over all inputs concatenated
    input: int                 # 0-based input index
    band: int                  # 1-based band number inside its input
    name: str                  # description, or "<input basename> band <n>"
    described: bool            # the name comes from the file's band description
    dtype: np.dtype
    nodata: float = None
    colour_table: bool = False
    scale: float = 1.0
    offset: float = 0.0
    codes: set = field(default_factory=set)  # band codes and plain role names found in its name
    signed_byte: bool = False  # signed 8-bit values stored as Byte (GDAL's PIXELTYPE=SIGNEDBYTE)
    radiometry: tuple = None  # a product band's (gain, add): reflectance = DN x gain + add


# --------------------------------------------------------------------------------- band names

def _tokens(text):
    return [t for t in re.split(r"[^a-z0-9]+", str(text).lower()) if t]


def band_codes(text):
    """Band codes (``'b4'``, ``'b8a'``) and role names (``'nir'``) that a band name carries.

    ``'B04'``, ``'SR_B4'`` and ``'B4, central wavelength 665 nm'`` all carry ``'b4'``;
    ``'SWIR 1'`` and ``'swir16'`` carry ``'swir1'`` and ``'swir16'``. Generic names such as
    ``'Band 4'`` (which some formats give every band) carry nothing.
    """
    tokens = _tokens(text)
    codes = set()
    for tok in tokens:
        m = re.fullmatch(r"b0*(\d{1,2})(a?)", tok)
        if m:
            codes.add(f"b{m.group(1)}{m.group(2)}")
    if not _NOT_A_ROLE & set(tokens):
        compact = "".join(tokens)
        words = {w for ws in ROLE_WORDS.values() for w in ws}
        if compact in words:
            codes.add(compact)
        for i, tok in enumerate(tokens):
            if tok in words:
                codes.add(tok)
            if tok == "swir" and i + 1 < len(tokens) and tokens[i + 1] in ("1", "2"):
                codes.add("swir" + tokens[i + 1])
    return codes


def _numpy_type(gdal_type, where):
    if gdal.DataTypeIsComplex(gdal_type):
        raise FjordError(f"{where} holds complex numbers ({gdal.GetDataTypeName(gdal_type)}); "
                         "stack real-valued bands only.")
    return np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(gdal_type))


def _open(path):
    try:
        ds = gdal.Open(str(path))
    except RuntimeError as exc:
        raise FjordError(f"Cannot open the raster {str(path)!r}: {exc}.") from None
    if ds is None or ds.RasterCount == 0:
        raise FjordError(f"{str(path)!r} holds no raster band.")
    return ds


def _stem(path):
    return os.path.splitext(os.path.basename(str(path).rstrip("/\\")))[0] or str(path)


def _describe(datasets, paths):
    bands = []
    for i, (ds, path) in enumerate(zip(datasets, paths)):
        stem = _stem(path)
        for b in range(1, ds.RasterCount + 1):
            rb = ds.GetRasterBand(b)
            desc = (rb.GetDescription() or "").strip()
            name = desc or f"{stem} band {b}"
            codes = band_codes(desc) | band_codes(rb.GetMetadataItem("BANDNAME") or "")
            if not desc and ds.RasterCount == 1:  # a band per file: the file name names it
                codes |= band_codes(stem)
            if not desc:
                codes |= _colour_role(ds, b, stem)
            nodata = rb.GetNoDataValue()
            signed = _signed_byte(rb)
            bands.append(Band(
                number=len(bands) + 1, input=i, band=b, name=name, described=bool(desc),
                dtype=np.dtype(np.int8) if signed else _numpy_type(rb.DataType, f"Band {b} of {stem!r}"),
                signed_byte=signed,
                nodata=None if nodata is None else float(nodata),
                colour_table=rb.GetColorTable() is not None,
                scale=rb.GetScale() if rb.GetScale() not in (None, 0) else 1.0,
                offset=rb.GetOffset() or 0.0, codes=codes))
    return bands


def _signed_byte(band):
    """Whether a band holds signed 8-bit values: GDAL before 3.7 reads Int8 data as Byte and
    marks it PIXELTYPE=SIGNEDBYTE; GDAL 3.7 and later have an Int8 type of their own."""
    if getattr(gdal, "GDT_Int8", None) is not None and band.DataType == gdal.GDT_Int8:
        return True
    return (band.DataType == gdal.GDT_Byte
            and band.GetMetadataItem("PIXELTYPE", "IMAGE_STRUCTURE") == "SIGNEDBYTE")


def _colour_role(ds, b, stem):
    """The colour role of an undescribed band by its position in a 3-band file named as an RGB
    composite (``..._RGB.tif``). GDAL's colour interpretation is not used: GDAL marks every
    3-band Byte GeoTIFF as RGB, whatever its bands are."""
    if ds.RasterCount == 3 and "rgb" in _tokens(stem):
        return {("red", "green", "blue")[b - 1]}
    return set()


def list_bands(inputs):
    """The bands of ``inputs`` as the stack numbers and names them.

    Returns
    -------
    list of dict with ``number`` (1-based over all inputs concatenated), ``name``, ``input``
    (the path), ``band`` (number inside the input), ``dtype`` and ``nodata``.
    """
    paths = [str(p) for p in inputs]
    datasets = [_open(p) for p in paths]
    return [{"number": b.number, "name": b.name, "input": paths[b.input], "band": b.band,
             "dtype": b.dtype.name, "nodata": b.nodata} for b in _describe(datasets, paths)]


def _band_list(bands, limit=40):
    text = ", ".join(f"{b.number} {b.name!r}" for b in bands[:limit])
    return text + (f", ... ({len(bands)} in all)" if len(bands) > limit else "")


def select_bands(spec, bands):
    """Band numbers (1-based) chosen by a band selection string.

    Parameters
    ----------
    spec : str, list or None
        Comma-separated band numbers, ranges and names: ``"1,2,3,4"``, ``"1-4"``,
        ``"B4,B3,B2,B8"``. Numbers count the bands of all inputs concatenated in input order;
        names match the band names (descriptions, else ``"<input basename> band <n>"``) without
        regard to case, and Sentinel-2 style codes match with or without a leading zero
        (``B04`` = ``B4``). Empty or None: all bands in order. A list of ints or names works too.
    bands : list of Band

    Returns
    -------
    list of int
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return [b.number for b in bands]
    tokens = [t.strip() for t in re.split(r"[,;]", spec)] if isinstance(spec, str) else list(spec)
    count = len(bands)
    chosen = []
    for token in tokens:
        if isinstance(token, (int, np.integer)):
            token = str(int(token))
        token = str(token).strip()
        if not token:
            continue
        m = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", token)
        if m:
            first = int(m.group(1))
            last = int(m.group(2)) if m.group(2) else first
            step = 1 if last >= first else -1
            for n in range(first, last + step, step):
                if not 1 <= n <= count:
                    raise FjordError(
                        f"Band {n} does not exist: the inputs hold {count} band"
                        f"{'s' if count != 1 else ''} ({_band_list(bands)}).")
                chosen.append(n)
            continue
        matches = [b for b in bands if b.name.lower() == token.lower()]
        if not matches:
            codes = band_codes(token)
            key = {c for c in codes if re.fullmatch(r"b\d+a?", c)}
            if key and len(_tokens(token)) == 1:
                matches = [b for b in bands if key & b.codes]
        if not matches:
            raise FjordError(f"No band is named {token!r}. The bands are: {_band_list(bands)}. "
                             "Give band numbers or these names, separated by commas.")
        if len(matches) > 1:
            raise FjordError(
                f"The band name {token!r} fits bands {', '.join(str(b.number) for b in matches)}; "
                "give the band number instead.")
        chosen.append(matches[0].number)
    if not chosen:
        raise FjordError("The band selection names no band; leave it empty to stack all bands.")
    return chosen


# --------------------------------------------------------------------------- sensor and roles

def _normalise_sensor(sensor):
    key = re.sub(r"[^a-z0-9]", "", str(sensor or "auto").lower())
    aliases = {"auto": "auto", "": "auto", "sentinel2": "sentinel2", "s2": "sentinel2",
               "landsat89": "landsat89", "landsat8": "landsat89", "landsat9": "landsat89",
               "l89": "landsat89", "oli": "landsat89", "landsat47": "landsat47",
               "landsat45": "landsat47", "landsat7": "landsat47", "landsat5": "landsat47",
               "l47": "landsat47", "tm": "landsat47", "etm": "landsat47"}
    if key not in aliases:
        raise FjordError(f"Unknown sensor {sensor!r}; use one of {', '.join(SENSORS)}.")
    return aliases[key]


def detect_sensor(bands, paths=(), metadata=()):
    """The band naming (a key of :data:`SENSOR_CODES`) that the inputs most likely follow.

    Parameters
    ----------
    bands : list of Band
    paths : iterable of str
        Input files; their names (not their folders) are searched for Landsat and Sentinel-2
        scene ids (``LC08_...``, ``S2A_MSIL2A_...``).
    metadata : iterable of str
        Metadata values of the inputs (``LANDSAT_8``, ``Sentinel-2A``...).
    """
    codes = set().union(*(b.codes for b in bands)) if bands else set()
    names = " ".join(b.name for b in bands)
    if {"b8a", "b12"} & codes or re.search(r"(?i)\bB0\d\b", names.replace("_", " ")):
        return "sentinel2"
    names_and_values = [os.path.basename(str(p)) for p in paths] + [str(m) for m in metadata]
    text = " ".join(" ".join(_tokens(t)) for t in names_and_values)
    # Collection ids (LC08_..., LE07_...), pre-collection ids (LC80440342015001LGN00) and
    # metadata values (LANDSAT_8). MSS (LM..) has other bands and is left out.
    if re.search(r"\b(l[co]0?[89]\b|l[co][89]\d{13}|landsat ?[89]\b)", text):
        return "landsat89"
    if re.search(r"\b(l[et]0?[457]\b|l[et][457]\d{13}|landsat ?[457]\b)", text):
        return "landsat47"
    if re.search(r"\b(s2[abc]|msil1c|msil2a|sentinel ?2[abc]?)\b", text):
        return "sentinel2"
    if re.search(r"(?i)\b(SR|ST)_B\d", names):
        return "landsat89"
    return "sentinel2"


def find_roles(bands, sensor, explicit=None):
    """Which stacked band plays which role.

    Parameters
    ----------
    bands : list of Band
        The stacked bands, in output order.
    sensor : str
        A key of :data:`SENSOR_CODES` (not 'auto').
    explicit : dict, optional
        ``{role: 1-based band number in the stack}``; 0 or None means automatic.

    Returns
    -------
    roles : dict
        ``{role: 1-based position in the stack}`` for the roles found.
    how : dict
        ``{role: 'set' or 'automatic'}``.
    """
    explicit = dict(explicit or {})
    unknown = set(explicit) - set(ROLES)
    if unknown:
        raise FjordError(f"Unknown band role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}.")
    roles, how = {}, {}
    for role in ROLES:
        value = explicit.get(role)
        if value in (None, "", 0):
            continue
        value = int(value)
        if not 1 <= value <= len(bands):
            raise FjordError(f"{role.upper()} is set to band {value}, but the stack has "
                             f"{len(bands)} bands ({_band_list(bands)}). Give a number from 1 to "
                             f"{len(bands)}, or 0 to find the {ROLE_LABELS[role]} band by name.")
        roles[role], how[role] = value, "set"
    for role in ROLES:
        if role in roles:
            continue
        for key in SENSOR_CODES[sensor][role] + ROLE_WORDS[role]:
            hit = next((pos for pos, b in enumerate(bands, 1) if key in b.codes), None)
            if hit is not None:
                roles[role], how[role] = hit, "automatic"
                break
    return roles, how


# ----------------------------------------------------------------------------------- indices

def normalized_difference(a, b):
    """``(a - b) / (a + b)`` as float32, NaN where either is NaN or the denominator is zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    den = a + b
    out = np.full(np.broadcast(a, b).shape, np.nan, dtype=np.float64)
    ok = np.isfinite(den) & (den != 0) & np.isfinite(a) & np.isfinite(b)
    np.divide(a - b, den, out=out, where=ok)
    return out.astype(np.float32)


def _normalise_indices(indices):
    if indices is None:
        return []
    if isinstance(indices, str):
        indices = [s for s in re.split(r"[,;\s]+", indices) if s]
    wanted = set()
    for item in indices:
        if isinstance(item, (int, np.integer)):
            if not 0 <= int(item) < len(INDEX_NAMES):
                raise FjordError(f"Index number {item} is out of range 0..{len(INDEX_NAMES) - 1}.")
            wanted.add(INDEX_NAMES[int(item)])
            continue
        name = str(item).strip().upper()
        if name not in INDEX_ROLES:
            raise FjordError(f"Unknown spectral index {item!r}; choose from {', '.join(INDEX_NAMES)}.")
        wanted.add(name)
    return [n for n in INDEX_NAMES if n in wanted]


# ------------------------------------------------------------------------------------- grids

def _overlaps(ds, ref, name):
    """Whether ``ds`` covers any part of the grid of ``ref`` (in the CRS of ``ref``)."""
    xmin, ymin, xmax, ymax = bounds(ds)
    src_wkt, ref_wkt = ds.GetProjection(), ref.GetProjection()
    if src_wkt and ref_wkt and not same_crs(src_wkt, ref_wkt):
        src, dst = osr.SpatialReference(), osr.SpatialReference()
        src.ImportFromWkt(src_wkt)
        dst.ImportFromWkt(ref_wkt)
        for s in (src, dst):
            s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        try:
            xmin, ymin, xmax, ymax = osr.CoordinateTransformation(src, dst).TransformBounds(
                xmin, ymin, xmax, ymax, 21)
        except RuntimeError:
            raise FjordError(f"Cannot transform the extent of {name!r} into the CRS of the first "
                             "input; check the CRS of both.") from None
    rxmin, rymin, rxmax, rymax = bounds(ref)
    return xmin < rxmax and xmax > rxmin and ymin < rymax and ymax > rymin


def _warped(ds, band, ref, nearest, nodata):
    """One band of ``ds`` resampled onto the grid of ``ref``: a virtual Float64 dataset whose
    nodata (NaN) marks the input's nodata (``nodata``) and the area it does not cover."""
    single = gdal.Translate("", ds, options=gdal.TranslateOptions(format="VRT", bandList=[band]))
    gt = ref.GetGeoTransform()
    width, height = ref.RasterXSize, ref.RasterYSize
    bounds = (gt[0], gt[3] + height * gt[5], gt[0] + width * gt[1], gt[3])
    options = gdal.WarpOptions(
        format="VRT", outputBounds=bounds, width=width, height=height,
        dstSRS=ref.GetProjection() or None,
        resampleAlg="near" if nearest else "bilinear", outputType=gdal.GDT_Float64,
        srcNodata=None if nodata is None else nodata, dstNodata=float("nan"),
        warpOptions=["INIT_DEST=NO_DATA"])
    warped = gdal.Warp("", single, options=options)
    return warped, single


# ------------------------------------------------------------------------------------ output

def _output_type(stacked, indices):
    if indices:
        return np.dtype(np.float32)
    dtype = np.dtype(np.result_type(*[b.dtype for b in stacked]))
    # GDAL before 3.7 has no signed 8-bit type: signed bytes are kept as Int16.
    return np.dtype(np.int16) if dtype == np.int8 else dtype


def _fits(value, dtype):
    if value is None:
        return False
    if np.issubdtype(dtype, np.floating):
        return True
    if math.isnan(value) or value != int(value):
        return False
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


def _output_nodata(stacked, dtype, indices):
    """The nodata value of the output, and whether the inputs themselves declared it."""
    if indices:
        return float("nan"), True
    declared = [b.nodata for b in stacked if b.nodata is not None]
    # One value shared by every band is kept; otherwise the first declared value that fits.
    for value in declared:
        if _fits(value, dtype):
            return value, True
    if np.issubdtype(dtype, np.floating):
        return float("nan"), bool(declared)
    return float(0 if np.issubdtype(dtype, np.unsignedinteger) else np.iinfo(dtype).min), bool(declared)


def _invalid(values, nodata):
    """Mask of the nodata pixels of ``values`` (float NaN always counts)."""
    mask = np.zeros(values.shape, dtype=bool)
    if values.dtype.kind == "f":
        mask |= np.isnan(values)
    if nodata is not None and not math.isnan(nodata):
        mask |= values == nodata
    return mask


def _cast(values, dtype, lowest=None):
    """``values`` in ``dtype``; floats to integers rounded and clipped (at ``lowest`` from
    below when given)."""
    if np.issubdtype(dtype, np.integer) and values.dtype.kind == "f":
        info = np.iinfo(dtype)
        low = info.min if lowest is None else lowest
        values = np.clip(np.rint(np.nan_to_num(values, nan=0.0)), low, info.max)
    return values.astype(dtype, copy=False)


def stack_bands(inputs, output, *, bands=None, indices=(), band_roles=None, sensor="auto",
                product=None, values="harmonised", strip_rows=STRIP_ROWS, progress=None,
                should_stop=None):
    """Stack bands of one or more rasters into one GeoTIFF, with spectral indices after them.

    Parameters
    ----------
    inputs : list of str
        Rasters GDAL can open. The output takes the grid (size, geotransform, CRS) of the first;
        the others are resampled onto it (bilinear; nearest neighbour for bands with a colour
        table).
    output : str
        GeoTIFF to write (DEFLATE, tiled, BigTIFF when needed); written under a partial name and
        renamed into place when complete.
    bands : str or list, optional
        Which bands in which order (see :func:`select_bands`): ``"1,2,3,4"``, ``"1-4"`` or
        ``"B4,B3,B2,B8"``. Default: all bands of all inputs in order.
    indices : iterable of str, optional
        Any of :data:`INDEX_NAMES`; written after the stacked bands in that order.
    band_roles : dict, optional
        ``{role: 1-based band number in the stack}`` for roles in :data:`ROLES`; missing, 0 or
        None: found from the band names.
    sensor : {'auto', 'sentinel2', 'landsat89', 'landsat47'}
        Band naming used to find the roles ('auto' with a product: the product's).
    product : str, optional
        Instead of ``inputs``: a Sentinel-2 L1C/L2A or Landsat Collection 2 product as
        downloaded (:func:`fjord.core.data.products.read_product`). Its reflective bands are the
        bands to choose from, named as the product names them (``B04``, ``SR_B4``); the output
        takes the grid of its finest multispectral band (Sentinel-2: 10 m), the other bands
        are resampled onto it (bilinear), and the output records the acquisition date
        (``ACQUISITION_DATE``), spacecraft and sensor, and each band's central wavelength.
    values : one of :data:`~fjord.core.data.products.VALUES`
        With a product: 'harmonised' writes reflectance x 10,000 as UInt16 (the product's
        offset applied, so the numbers are the same before and after Sentinel-2 baseline
        04.00; nodata 0, valid values at least 1), 'reflectance' writes Float32 reflectance
        (nodata NaN). Indices are computed from reflectance either way.
    strip_rows : int
        Rows read and written at a time (the default matches the 256-row tiles of the output).
    progress : callable(fraction, message), optional
    should_stop : callable() -> bool, optional
        Polled once per strip; when it returns True the job stops with
        :class:`~.errors.Cancelled` and no output is left.

    Returns
    -------
    dict with ``output`` (absolute path), ``bands`` (names of the bands written, indices
    included), ``sources`` (for each stacked band: input path and band number), ``indices``,
    ``roles`` ({role: 1-based stack position}), ``role_sources`` ({role: 'set' or
    'automatic'}), ``sensor``, ``dtype`` (GDAL type name), ``nodata`` (None when the output
    has none), ``resampled`` (inputs resampled onto the first grid), ``warnings`` and
    ``product`` (what was found in the product, or None).

    Notes
    -----
    Without indices the output type is the widest input type and band values are copied
    unchanged (resampled values are rounded for integer types). With indices the output is
    Float32 and its nodata is NaN. Nodata: the common nodata value of the inputs when they
    share one; otherwise the first declared value that the output type holds; otherwise NaN
    (float), 0 (unsigned) or the type's minimum (signed). A pixel that is nodata in an input
    band is nodata in the output band, whatever value marked it in the input.
    """
    progress = progress or no_progress
    should_stop = should_stop or never_stop
    plan = (_plan_product(product, values, bands, indices, band_roles, sensor) if product
            else _plan_stack(inputs, bands, indices, band_roles, sensor))
    out_abs = os.path.abspath(output)
    if out_abs in {os.path.abspath(p) for p in plan.paths}:
        raise FjordError("The output would overwrite an input raster; choose another path.")
    check_writable(output, "stacked raster")
    _find_sources(plan)
    _choose_output_type(plan)
    progress(0.0, plan.summary())
    with AtomicOutputs() as out:
        tmp = out.add(output)
        ds = _create_output(plan, tmp)
        try:  # the dataset is closed before the partial file is removed or renamed
            _describe_output(plan, ds)
            step = max(1, int(strip_rows))
            for y in range(0, plan.height, step):
                if should_stop():
                    raise Cancelled()
                rows = min(step, plan.height - y)
                _write_strip(plan, ds, y, rows)
                progress((y + rows) / plan.height, None)
            _set_output_nodata(plan, ds)
        finally:
            ds = None
    result = plan.result(out_abs)
    plan.release()
    progress(1.0, None)
    return result


@dataclass
class _StackPlan:
    """What :func:`stack_bands` reads, from where, and how it writes it."""

    paths: list
    datasets: list
    stacked: list  # the Band of each stacked band, in stack order
    index_names: list
    roles: dict
    role_how: dict
    sensor: str
    product: object = None  # the Product the bands come from, if any
    values: str = None  # with a product: one of VALUES
    grid_index: int = 0  # the input whose grid the output takes
    sources: dict = field(default_factory=dict)  # band number -> (GDAL band, resampled?)
    keep: list = field(default_factory=list)  # virtual datasets the sources belong to
    resampled: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    dtype: np.dtype = None
    nodata: float = None
    declared: bool = False
    wrote_nodata: bool = False
    collisions: dict = field(default_factory=dict)  # band name -> valid pixels equal to nodata

    @property
    def ref(self):
        return self.datasets[self.grid_index]

    @property
    def width(self):
        return self.ref.RasterXSize

    @property
    def height(self):
        return self.ref.RasterYSize

    @property
    def names(self):
        return [b.name for b in self.stacked] + self.index_names

    @property
    def gdal_type(self):
        return gdal_array.NumericTypeCodeToGDALTypeCode(self.dtype.type)

    @property
    def index_inputs(self):
        """Stack positions of the bands the indices read."""
        return sorted({self.roles[r] for n in self.index_names for r in INDEX_ROLES[n]})

    @property
    def has_nodata(self):
        return self.declared or self.wrote_nodata or bool(self.index_names)

    def summary(self):
        indices = (f" and {len(self.index_names)} indices ({', '.join(self.index_names)})"
                   if self.index_names else "")
        plural = "s" if len(self.paths) != 1 else ""
        return (f"Stacking {len(self.stacked)} bands{indices} from {len(self.paths)} "
                f"input{plural} on a {self.width} x {self.height} grid")

    def result(self, out_abs):
        for name, count in self.collisions.items():
            self.warnings.append(
                f"{count} valid pixels of band {name!r} equal the output nodata value "
                f"{_fmt(self.nodata)} and now read as nodata.")
        return {"output": out_abs, "bands": self.names,
                "sources": [{"input": self.paths[b.input], "band": b.band, "name": b.name}
                            for b in self.stacked],
                "indices": self.index_names, "roles": self.roles, "role_sources": self.role_how,
                "sensor": self.sensor, "dtype": gdal.GetDataTypeName(self.gdal_type),
                "nodata": self.nodata if self.has_nodata else None,
                "resampled": self.resampled, "warnings": self.warnings,
                "product": self.product.describe() if self.product else None}

    def release(self):
        """Close the inputs and the virtual datasets."""
        self.sources.clear()
        self.keep.clear()
        self.datasets.clear()


def _plan_stack(inputs, bands, indices, band_roles, sensor):
    """Open the inputs, choose the bands and find the roles the indices need."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [str(p) for p in (inputs or []) if str(p).strip()]
    if not paths:
        raise FjordError("Give at least one input raster.")
    datasets = [_open(p) for p in paths]
    all_bands = _describe(datasets, paths)
    stacked = [all_bands[n - 1] for n in select_bands(bands, all_bands)]
    index_names = _normalise_indices(indices)
    resolved = _normalise_sensor(sensor)
    if resolved == "auto":
        resolved = detect_sensor(all_bands, paths, _metadata_values(datasets))
    roles, role_how = find_roles(stacked, resolved, band_roles)
    _check_index_roles(index_names, roles, stacked, resolved)
    return _StackPlan(paths, datasets, stacked, index_names, roles, role_how, resolved)


def _plan_product(path, values, bands, indices, band_roles, sensor):
    """The plan of a stack from a product's bands: named, dated and converted by its
    metadata."""
    if values not in VALUES:
        raise FjordError(f"values must be one of {', '.join(VALUES)}, not {values!r}.")
    product = read_product(path)
    paths = [b.path for b in product.bands]
    datasets = [_open(p) for p in paths]
    all_bands = _describe(datasets, paths)
    for band, source in zip(all_bands, product.bands):
        band.name, band.codes, band.described = source.code, band_codes(source.code), True
        band.nodata, band.radiometry = 0.0, (source.gain, source.add)
    stacked = [all_bands[n - 1] for n in select_bands(bands, all_bands)]
    index_names = _normalise_indices(indices)
    resolved = _normalise_sensor(sensor)
    resolved = product.sensor if resolved == "auto" else resolved
    roles, role_how = find_roles(stacked, resolved, band_roles)
    _check_index_roles(index_names, roles, stacked, resolved)
    return _StackPlan(paths, datasets, stacked, index_names, roles, role_how, resolved,
                      product=product, values=values,
                      grid_index=product.bands.index(product.grid))


def _metadata_values(datasets):
    return [value for ds in datasets for domain in ("", "IMAGERY")
            for value in (ds.GetMetadata(domain) or {}).values()]


def _check_index_roles(index_names, roles, stacked, sensor):
    for name in index_names:
        for role in INDEX_ROLES[name]:
            if role not in roles:
                raise FjordError(
                    f"{name} needs the {ROLE_LABELS[role]} band, which was not found among the "
                    f"stacked bands ({_band_list(stacked)}) with {SENSOR_LABELS[sensor]} band "
                    f"naming. Set {role.upper()} to its number in the stack (1-{len(stacked)}), "
                    "or choose the sensor, or add the band to the band selection.")


def _find_sources(plan):
    """Each stacked band's source: the input band itself on the first grid, else a band
    resampled onto it (virtual)."""
    for b in plan.stacked:
        ds = plan.datasets[b.input]
        if b.input == plan.grid_index or same_grid(ds, plan.ref):
            plan.sources[b.number] = (ds.GetRasterBand(b.band), False)
            continue
        _check_resamplable(b, ds, plan.ref, plan.paths)
        if plan.paths[b.input] not in plan.resampled:
            plan.resampled.append(plan.paths[b.input])
        warped, single = _warped(ds, b.band, plan.ref, b.colour_table, b.nodata)
        plan.keep.append((warped, single))
        plan.sources[b.number] = (warped.GetRasterBand(1), True)


def _check_resamplable(b, ds, ref, paths):
    if bool(ds.GetProjection()) != bool(ref.GetProjection()):
        raise FjordError(
            f"{_stem(paths[b.input])!r} and the first input must both have a CRS (or both "
            "lack one) to be matched; assign the missing CRS (Raster > Projections > Assign "
            "Projection).")
    gt = ref.GetGeoTransform()
    if gt[2] or gt[4] or gt[5] > 0:
        raise FjordError("The first input has a rotated or south-up grid; the other inputs "
                         "cannot be resampled onto it. Make the first input north-up first.")
    if not _overlaps(ds, ref, paths[b.input]):
        raise FjordError(f"{paths[b.input]!r} does not overlap the first input "
                         f"({paths[0]!r}), whose grid the output takes.")
    if b.signed_byte:
        raise FjordError(f"{b.name} holds signed 8-bit values and is not on the first "
                         "input's grid; resampling would read them as 0..255. Convert it to "
                         "Int16 first (Raster > Conversion > Translate, output type Int16) or "
                         "put it on the same grid.")


def _choose_output_type(plan):
    if plan.values:  # a product's bands, converted
        harmonised = plan.values == "harmonised" and not plan.index_names
        plan.dtype = np.dtype(np.uint16 if harmonised else np.float32)
        plan.nodata, plan.declared = (0.0 if harmonised else float("nan")), True
        return
    plan.dtype = _output_type(plan.stacked, plan.index_names)
    plan.nodata, plan.declared = _output_nodata(plan.stacked, plan.dtype, plan.index_names)
    if plan.index_names:
        wide = [b.name for b in plan.stacked if b.dtype.itemsize > 2 and b.dtype != np.float32]
        if wide:
            plan.warnings.append("The output is Float32 because of the indices; values of "
                                 f"{', '.join(map(repr, wide[:5]))} may lose precision.")


def _create_output(plan, path):
    predictor = "PREDICTOR=3" if plan.dtype.kind == "f" else "PREDICTOR=2"
    return create_gtiff(path, plan.width, plan.height, len(plan.names), plan.gdal_type,
                        _OPTIONS + [predictor])


def _describe_output(plan, ds):
    """Grid, band names, scale and offset, index formulas and the FJORD_STACK record."""
    ds.SetGeoTransform(plan.ref.GetGeoTransform())
    if plan.ref.GetProjection():
        ds.SetProjection(plan.ref.GetProjection())
    for pos, name in enumerate(plan.names, 1):
        ds.GetRasterBand(pos).SetDescription(name)
    for pos, b in enumerate(plan.stacked, 1):
        if b.scale != 1.0 or b.offset != 0.0:
            ds.GetRasterBand(pos).SetScale(b.scale)
            ds.GetRasterBand(pos).SetOffset(b.offset)
    for k, name in enumerate(plan.index_names):
        ds.GetRasterBand(len(plan.stacked) + k + 1).SetMetadataItem(
            "FORMULA", _formula(name, plan.roles, plan.stacked))
    record = {
        "inputs": [os.path.abspath(p) if os.path.exists(p) else p for p in plan.paths],
        "bands": [[b.input + 1, b.band] for b in plan.stacked], "indices": plan.index_names,
        "roles": plan.roles, "sensor": plan.sensor}
    if plan.product:
        record.update(product=os.path.abspath(plan.product.path), values=plan.values)
        _describe_product(plan, ds)
    ds.SetMetadataItem("FJORD_STACK", json.dumps(record))


def _describe_product(plan, ds):
    """The product's date, spacecraft, sensor and radiometry, and the bands' wavelengths."""
    product = plan.product
    items = {"ACQUISITION_DATE": product.acquired, "SPACECRAFT": product.spacecraft,
             "SENSOR": product.instrument, "PRODUCT": product.name,
             "PROCESSING_LEVEL": product.level,
             "VALUES": ("reflectance x 10000 (the product's offset applied)"
                        if plan.values == "harmonised" else "reflectance")}
    items.update({k: v for k, v in product.notes.items() if v})
    for key, value in items.items():
        ds.SetMetadataItem(key, str(value))
    sources = {b.code: b for b in product.bands}
    for pos, b in enumerate(plan.stacked, 1):
        wavelength = sources[b.name].wavelength
        if wavelength:
            ds.GetRasterBand(pos).SetMetadataItem("CENTRAL_WAVELENGTH_UM", f"{wavelength:g}",
                                                  "IMAGERY")


def _formula(name, roles, stacked):
    ra, rb = INDEX_ROLES[name]
    a, b = stacked[roles[ra] - 1].name, stacked[roles[rb] - 1].name
    return (f"({ra.upper()} - {rb.upper()}) / ({ra.upper()} + {rb.upper()}) = "
            f"({a} - {b}) / ({a} + {b})")


def _write_strip(plan, ds, y, rows):
    """Copy ``rows`` rows from ``y`` of every stacked band, then compute the indices."""
    physical = {}  # stack position -> float64 values (NaN = nodata) for indices
    need = plan.index_inputs
    for pos, b in enumerate(plan.stacked, 1):
        values, invalid = _read_band_rows(plan, b, y, rows)
        if pos in need or b.radiometry:
            phys = _physical(b, values)
            phys[invalid] = np.nan
            physical[pos] = phys
            if b.radiometry:
                values = phys * HARMONISED_FACTOR if plan.values == "harmonised" else phys
        ds.GetRasterBand(pos).WriteArray(_output_values(plan, b, values, invalid), 0, y)
    for k, name in enumerate(plan.index_names):
        ra, rb = INDEX_ROLES[name]
        values = normalized_difference(physical[plan.roles[ra]], physical[plan.roles[rb]])
        ds.GetRasterBand(len(plan.stacked) + k + 1).WriteArray(values, 0, y)
    # Complete tiles go to disk now, and blocks read are let go: the block cache stays the
    # size of a strip instead of filling up to GDAL_CACHEMAX.
    ds.FlushCache()
    for held in plan.datasets + [w for pair in plan.keep for w in pair]:
        held.FlushCache()


def _physical(b, values):
    """Float64 physical values of band ``b``: a product band's reflectance, else the values
    with the band's declared scale and offset."""
    gain, add = b.radiometry or (b.scale, b.offset)
    return values.astype(np.float64) * gain + add


def _read_band_rows(plan, b, y, rows):
    """The values of band ``b`` in the strip and their nodata mask."""
    band, warped = plan.sources[b.number]
    values = band.ReadAsArray(0, y, plan.width, rows)
    if b.signed_byte and values.dtype == np.uint8:
        values = values.view(np.int8)
    return values, _invalid(values, None if warped else b.nodata)


def _output_values(plan, b, values, invalid):
    """``values`` in the output type with its nodata; counts valid pixels that equal it."""
    # Harmonised product values stay at 1 or above: 0 is their nodata, as in the product.
    values = _cast(values, plan.dtype, 1 if b.radiometry else None)
    clash = _same_as_nodata(values, plan.nodata)
    if invalid.any():
        clash &= ~invalid
        values[invalid] = plan.nodata
        plan.wrote_nodata = True
    if clash.any():
        plan.collisions[b.name] = plan.collisions.get(b.name, 0) + int(clash.sum())
    return values


def _set_output_nodata(plan, ds):
    """Declare nodata when the inputs did, a pixel was nodata, or indices were written."""
    if plan.has_nodata:
        for pos in range(1, len(plan.names) + 1):
            ds.GetRasterBand(pos).SetNoDataValue(plan.nodata)
    else:
        plan.collisions = {}


def _same_as_nodata(values, nodata):
    if math.isnan(nodata):
        return np.zeros(values.shape, dtype=bool)
    return values == nodata


def _fmt(value):
    return "NaN" if math.isnan(value) else (f"{value:g}")
