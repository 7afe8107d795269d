"""Raster helpers shared by the core jobs: grids, strip reading with a valid mask, and class
rasters written the Fjord way (paletted, with the class schema and the QML/schema sidecars)."""

import json
import math
import os

import numpy as np
from osgeo import gdal, osr

from ..errors import FjordError
from . import schema as schemas
from .dates import image_date

GTIFF_OPTIONS = ["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"]


def open_raster(path, what="raster"):
    try:
        ds = gdal.Open(path)
    except RuntimeError as exc:
        raise FjordError(f"Cannot open the {what} {path!r}: {exc}.") from None
    if ds is None:
        raise FjordError(f"Cannot open the {what} {path!r}.")
    return ds


def same_crs(wkt_a, wkt_b):
    if not wkt_a or not wkt_b:
        return not wkt_a and not wkt_b
    a, b = osr.SpatialReference(), osr.SpatialReference()
    a.ImportFromWkt(wkt_a)
    b.ImportFromWkt(wkt_b)
    return bool(a.IsSame(b))


def same_grid(ds, ref, lenient_crs=False):
    """Whether two GDAL datasets share size, geotransform (to a millionth of a pixel) and CRS.

    ``lenient_crs``: a raster without a CRS matches any CRS (a class raster saved by a tool
    that dropped it, say)."""
    if (ds.RasterXSize, ds.RasterYSize) != (ref.RasterXSize, ref.RasterYSize):
        return False
    a, b = ds.GetGeoTransform(), ref.GetGeoTransform()
    tol = 1e-6 * max(abs(b[1]), abs(b[5]), 1e-12)
    if any(abs(x - y) > tol * (1 if i in (1, 2, 4, 5) else max(ds.RasterXSize, 1))
           for i, (x, y) in enumerate(zip(a, b))):
        return False
    if lenient_crs and not (ds.GetProjection() and ref.GetProjection()):
        return True
    return same_crs(ds.GetProjection(), ref.GetProjection())


def bounds(ds):
    """(xmin, ymin, xmax, ymax) of a dataset's grid in its CRS."""
    gt = ds.GetGeoTransform()
    corners = ((0, 0), (ds.RasterXSize, 0), (0, ds.RasterYSize), (ds.RasterXSize, ds.RasterYSize))
    xs = [gt[0] + px * gt[1] + py * gt[2] for px, py in corners]
    ys = [gt[3] + px * gt[4] + py * gt[5] for px, py in corners]
    return min(xs), min(ys), max(xs), max(ys)


def numpy_dtype(ds):
    """The numpy type that holds every band of ``ds``."""
    types = [np.dtype(gdal.GetDataTypeName(ds.GetRasterBand(b + 1).DataType).lower()
                      .replace("byte", "uint8")) for b in range(ds.RasterCount)]
    return np.result_type(*types)


class ImageStrips:
    """Reads an image strip by strip as (rows, cols, bands), with the mask of valid pixels
    (no band at its nodata value, every band finite); invalid pixels are set to 0."""

    def __init__(self, path, what="image"):
        self.path = path
        self.ds = open_raster(path, what)
        self.width, self.height, self.bands = self.ds.RasterXSize, self.ds.RasterYSize, self.ds.RasterCount
        self.dtype = numpy_dtype(self.ds)
        self.nodata = [self.ds.GetRasterBand(b + 1).GetNoDataValue() for b in range(self.bands)]
        self.band_names = [self.ds.GetRasterBand(b + 1).GetDescription() or f"band {b + 1}"
                           for b in range(self.bands)]

    @property
    def has_nodata(self):
        """Whether any pixel can be invalid (a band has a nodata value, or floats)."""
        return any(v is not None for v in self.nodata) or np.issubdtype(self.dtype, np.floating)

    def read(self, row, rows):
        """Rows ``row .. row + rows`` as (rows, width, bands) and the valid mask."""
        data = self.ds.ReadAsArray(0, int(row), self.width, int(rows))
        self.ds.FlushCache()  # drop the strip's blocks from GDAL's cache: memory stays flat
        if data.ndim == 2:
            data = data[None]
        data = np.moveaxis(data, 0, -1)
        valid = np.ones(data.shape[:2], bool)
        for b, nodata in enumerate(self.nodata):
            if nodata is not None:
                valid &= data[..., b] != nodata
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data).all(axis=-1)
        if not valid.all():
            data = np.where(valid[..., None], data, 0).astype(data.dtype, copy=False)
        return np.ascontiguousarray(data), valid

    def sample(self, size=256, window=None):
        """The valid pixels of a decimated read of the whole image, or of its ``window``
        (col, row, width, height), at most ``size`` x ``size`` pixels, as (pixels, bands) in
        the image's type: a cheap look at its values."""
        col, row, width, height = window or (0, 0, self.width, self.height)
        data = self.ds.ReadAsArray(col, row, width, height, buf_xsize=min(width, size),
                                   buf_ysize=min(height, size))
        self.ds.FlushCache()
        if data.ndim == 2:
            data = data[None]
        data = data.reshape(data.shape[0], -1).T
        valid = np.ones(len(data), bool)
        for b, nodata in enumerate(self.nodata):
            if nodata is not None:
                valid &= data[:, b] != nodata
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data).all(axis=1)
        return data[valid]

    def check_valid(self, rows=256):
        """FjordError when no pixel of the image is valid (every one at a band's nodata value
        or not finite): a sample first, then, only when the sample finds none, every strip."""
        if not self.has_nodata:
            return
        if len(self.sample()):
            return
        for y in range(0, self.height, rows):
            if self.read(y, min(rows, self.height - y))[1].any():
                return
        declared = sorted({v for v in self.nodata if v is not None})
        source = (f"the file declares {', '.join(f'{v:g}' for v in declared)} as the nodata "
                  "value of its bands" if declared else "")
        if np.issubdtype(self.dtype, np.floating):
            source += ("; " if source else "") + "NaN and infinite values count as nodata"
        raise FjordError(
            f"The image {os.path.basename(self.path)} has no valid pixel: every pixel is nodata "
            f"({source}). Check that it is the right file, or remove a wrong nodata value "
            "(Raster > Conversion > Translate, or gdal_edit.py -unsetnodata).")

    def close(self):
        self.ds = None


def class_raster_type(schema):
    """GDAL type and nodata value of a class raster for ``schema``: Byte with 255 as nodata,
    UInt16 with 65535 when class values go beyond 254."""
    top = max(c["value"] for c in schema["classes"])
    return (gdal.GDT_Byte, 255) if top < 255 else (gdal.GDT_UInt16, 65535)


def create_gtiff(path, width, height, bands, dtype, options=GTIFF_OPTIONS):
    """A new GeoTIFF at ``path``, its size (uncompressed) recorded for the message of a full
    disk (:func:`fjord.core.outputs.expect_size`)."""
    from ..outputs import expect_size

    nbytes = int(width) * int(height) * int(bands) * gdal.GetDataTypeSize(dtype) // 8
    expect_size(path, nbytes, f"{width} x {height} px, {bands} band(s) of "
                              f"{gdal.GetDataTypeName(dtype)}")
    return gdal.GetDriverByName("GTiff").Create(path, width, height, bands, dtype,
                                                options=list(options))


def create_class_raster(path, like, schema, nodata=True, description="class"):
    """A one-band class raster on the grid of the dataset ``like``, paletted with the schema's
    colours, the schema in its metadata. Returns the open dataset.

    Everything set here lives in the GeoTIFF itself: nothing goes to a PAM ``.aux.xml`` that
    GDAL would write when the dataset closes, possibly after a failed job cleaned up."""
    dtype, nodata_value = class_raster_type(schema)
    ds = create_gtiff(path, like.RasterXSize, like.RasterYSize, 1, dtype)
    ds.SetGeoTransform(like.GetGeoTransform())
    if like.GetProjection():
        ds.SetProjection(like.GetProjection())
    band = ds.GetRasterBand(1)
    band.SetDescription(description)
    band.SetColorTable(schemas.gdal_color_table(schema))
    if nodata:
        band.SetNoDataValue(nodata_value)
    ds.SetMetadataItem(schemas.METADATA_KEY, json.dumps(schema, ensure_ascii=False))
    day = image_date(like)
    if day is not None:  # the image's acquisition date travels with its classes (and fronts)
        ds.SetMetadataItem("ACQUISITIONDATE", day.isoformat())
    return ds


def write_class_sidecars(out, path, schema):
    """The ``.schema.json`` and ``.qml`` sidecars of a class raster, through AtomicOutputs."""
    side = schemas.sidecar_paths(path)
    with open(out.add(side["schema"]), "w", encoding="utf-8") as f:
        f.write(schemas.dumps(schema))
    with open(out.add(side["qml"]), "w", encoding="utf-8") as f:
        f.write(schemas.paletted_qml(schema))
    return side


def check_class_bands(ds, what="class raster"):
    """A class raster has one band of class values, or is a classification with band 1 the
    class and more bands after it (``classifyunet``'s probabilities); FjordError otherwise."""
    if ds.RasterCount != 1 and ds.GetRasterBand(1).GetDescription() != "class":
        raise FjordError(f"The {what} must have one band of class values (or band 1 described "
                         "as 'class', as classifyunet writes).")


def read_classes(ds, row, rows, what="class raster"):
    """Rows of a one-band class raster as int64; nodata and non-finite values become 0."""
    band = ds.GetRasterBand(1)
    raw = band.ReadAsArray(0, int(row), ds.RasterXSize, int(rows))
    ds.FlushCache()
    bad = np.zeros(raw.shape, bool)
    nodata = band.GetNoDataValue()
    if nodata is not None:
        bad |= raw == nodata
    if np.issubdtype(raw.dtype, np.floating):
        bad |= ~np.isfinite(raw)
        raw = np.where(bad, 0, raw)
        fractional = raw != np.round(raw)
        if fractional.any():
            example = float(raw[fractional][0])
            raise FjordError(f"The {what} holds values that are not whole numbers (such as "
                             f"{example:.4g}): it is not a class raster but measurements, an index "
                             "such as NDVI or probabilities. Give a raster of class values "
                             "(integers, 0 = unlabelled), such as a classification's output or "
                             "rasterised labels.")
    if (raw < 0).any():
        raise FjordError(f"The {what} holds negative values; class values are 0 (unlabelled) "
                         "and positive integers.")
    out = raw.astype(np.int64)
    out[bad] = 0
    return out


def wgs84():
    """WGS 84 longitude/latitude, x = longitude."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def local_projection(lon, lat):
    """An azimuthal equidistant projection (WGS 84) centred on ``lon``, ``lat``: distances and
    areas within tens of kilometres of the centre are true to better than 1e-5."""
    srs = osr.SpatialReference()
    srs.ImportFromProj4(f"+proj=aeqd +lat_0={lat:.10f} +lon_0={lon:.10f} +x_0=0 +y_0=0 "
                        "+datum=WGS84 +units=m +no_defs")
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


#: A projected CRS whose scale at the data differs from 1 by more than this is not measured in
#: its own units (Web Mercator: 1/cos(latitude); a UTM zone far from the data; LAEA far from
#: its centre).
SCALE_TOLERANCE = 1e-3


def scale_error(srs, x, y):
    """The largest ``|k - 1|`` of a projected CRS at map point ``(x, y)``: ``k`` is the
    distance in its units (times the linear unit) of a 100 m step east and north over the true
    distance, measured in an azimuthal equidistant projection centred there (exact from its
    centre)."""
    unit = srs.GetLinearUnits() or 1.0
    lon, lat = osr.CoordinateTransformation(srs, wgs84()).TransformPoint(x, y)[:2]
    local = osr.CoordinateTransformation(srs, local_projection(lon, lat))
    x0, y0 = local.TransformPoint(x, y)[:2]
    step = 100.0 / unit
    worst = 0.0
    for dx, dy in ((step, 0.0), (0.0, step)):
        x1, y1 = local.TransformPoint(x + dx, y + dy)[:2]
        worst = max(worst, abs(100.0 / math.hypot(x1 - x0, y1 - y0) - 1.0))
    return worst


def true_to_scale(srs, x, y):
    """Whether a CRS's own units are true metres at map point ``(x, y)``, to
    :data:`SCALE_TOLERANCE` (a geographic CRS never is)."""
    if srs.IsGeographic() or not srs.IsProjected():
        return False
    try:
        return scale_error(srs, x, y) <= SCALE_TOLERANCE
    except RuntimeError:  # outside the projection's domain
        return False


class Metres:
    """Lengths and areas in metres on a raster's grid, whatever its CRS.

    A projected CRS true to scale at the raster's centre (within 0.1 %, :func:`true_to_scale`;
    UTM in its zone, a polar stereographic at its true-scale latitude): its coordinates times
    its linear unit. Any other CRS — geographic (degrees), Web Mercator, a UTM zone far from the
    data, an equal-area projection far from its centre: the coordinates are projected into an
    azimuthal equidistant projection centred on the raster, and a pixel's size is measured there
    at the centre (its area varies across a large scene: for a geographic raster by 1.5 % over
    1 degree of latitude at 60 degrees north). No CRS: the coordinates are taken as metres.

    ``srs`` is the raster's CRS (None without one); ``local_srs`` the azimuthal equidistant
    projection, None when the raster's own units are metres; ``pixel_axes`` a pixel's column
    and row steps in metres at the centre (2 x 2), ``pixel_size`` their lengths.
    """

    def __init__(self, ds):
        self.gt = gt = ds.GetGeoTransform()
        wkt = ds.GetProjection()
        self.geographic, self.unit, self._local = False, 1.0, None
        self.srs = self.local_srs = None
        width, height = ds.RasterXSize, ds.RasterYSize
        cx = gt[0] + gt[1] * width / 2 + gt[2] * height / 2
        cy = gt[3] + gt[4] * width / 2 + gt[5] * height / 2
        if wkt:
            srs = osr.SpatialReference()
            srs.ImportFromWkt(wkt)
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            self.srs, self.geographic = srs, bool(srs.IsGeographic())
            if srs.IsProjected() and true_to_scale(srs, cx, cy):
                self.unit = srs.GetLinearUnits() or 1.0
            elif srs.IsGeographic() or srs.IsProjected():
                lon, lat = osr.CoordinateTransformation(srs, wgs84()).TransformPoint(cx, cy)[:2]
                self.local_srs = local_projection(lon, lat)
                self._local = osr.CoordinateTransformation(srs, self.local_srs)
        corner = np.array([[cx, cy], [cx + gt[1], cy + gt[4]], [cx + gt[2], cy + gt[5]]])
        local = self.to_metres(corner)
        self.pixel_axes = local[1:] - local[0]
        self.pixel_size = tuple(float(np.hypot(*axis)) for axis in self.pixel_axes)
        self.pixel_area = self.pixel_size[0] * self.pixel_size[1]

    def to_metres(self, xy):
        """Map coordinates (n, 2) to a plane in metres (for lengths, not for output)."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        if self._local is not None:
            return np.array(self._local.TransformPoints(xy.tolist()), np.float64)[:, :2]
        return xy * self.unit

    def length(self, xy):
        """Length in metres of the polyline through map coordinates ``xy`` (n, 2)."""
        if len(xy) < 2:
            return 0.0
        return float(np.hypot(*np.diff(self.to_metres(xy), axis=0).T).sum())

