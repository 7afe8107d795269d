"""Small builders shared by the tests: rasters and polygon layers made on the fly."""

import json

import numpy as np
from osgeo import gdal, gdal_array, ogr, osr

from fjord.core.data.schema import METADATA_KEY

gdal.UseExceptions()
ogr.UseExceptions()

UTM = 32633


def write_raster(path, array, *, origin=(500000.0, 5800000.0), pixel=10.0, geotransform=None,
                 epsg=UTM, projection=None, dtype=None, nodata=None, names=None, schema=None,
                 metadata=None, colour_table=False, options=()):
    """Write a GeoTIFF of ``array`` and return its path: the one raster builder of the tests.

    ``array``: rows x cols, bands x rows x cols, or a list of rows x cols arrays (one per band).
    The grid: ``geotransform``, else ``origin`` and square ``pixel`` (north up); the CRS:
    ``projection`` (WKT), else ``epsg`` (None: no CRS). ``dtype``: a GDAL type code, else the
    array's own. ``names``: band descriptions; ``nodata``: every band's; ``schema``: a class
    schema stored as Fjord does; ``metadata``: more dataset metadata items; ``colour_table``:
    a palette on every band; ``options``: GTiff creation options.
    """
    listed = isinstance(array, (list, tuple))
    if dtype is None:  # the (first band's) array type
        dtype = gdal_array.NumericTypeCodeToGDALTypeCode(np.asarray(array[0] if listed else array).dtype.type)
    bands = np.stack(array) if listed else np.asarray(array)
    bands = bands[None] if bands.ndim == 2 else bands
    count, height, width = bands.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, count, dtype, list(options))
    ds.SetGeoTransform(geotransform or (origin[0], pixel, 0, origin[1], 0, -pixel))
    if projection is None and epsg:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        projection = srs.ExportToWkt()
    if projection:
        ds.SetProjection(projection)
    for b in range(count):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(bands[b])
        if names:
            band.SetDescription(names[b])
        if nodata is not None:
            band.SetNoDataValue(nodata)
        if colour_table:
            table = gdal.ColorTable()
            for v in range(8):
                table.SetColorEntry(v, (30 * v, 255 - 30 * v, 100, 255))
            band.SetColorTable(table)
    items = dict(metadata or {})
    if schema:
        items[METADATA_KEY] = json.dumps(schema)
    for key, value in items.items():
        ds.SetMetadataItem(key, value)
    ds = None
    return str(path)


def make_raster(path, width=60, height=40, origin=(500000.0, 5800000.0), pixel=10.0, epsg=UTM,
                bands=1):
    """A UInt16 raster whose band b holds 100 * b everywhere."""
    values = np.stack([np.full((height, width), 100 * (b + 1), np.uint16) for b in range(bands)])
    return write_raster(path, values, origin=origin, pixel=pixel, epsg=epsg)


def make_layer(path, features, field="cls", field_type=ogr.OFTInteger, epsg=UTM,
               geom_type=ogr.wkbPolygon, layer="labels"):
    """``features``: list of (wkt or None, value or None)."""
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = None
    if epsg:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
    lyr = ds.CreateLayer(layer, srs=srs, geom_type=geom_type)
    lyr.CreateField(ogr.FieldDefn(field, field_type))
    for wkt, value in features:
        feat = ogr.Feature(lyr.GetLayerDefn())
        if wkt:
            feat.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        if value is not None:
            feat.SetField(field, value)
        lyr.CreateFeature(feat)
    ds = None
    return str(path)


def box(x0, y0, x1, y1):
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"


def read(path, band=1):
    ds = gdal.Open(str(path))
    return ds.GetRasterBand(band).ReadAsArray()


def colour_pixels(image, colour, tolerance=40):
    """How many pixels of a QImage (every 2nd row and column) lie within ``tolerance`` (sum of
    the RGB differences) of the QColor ``colour``."""
    target = colour.getRgb()[:3]
    return sum(1 for y in range(0, image.height(), 2) for x in range(0, image.width(), 2)
               if sum(abs(a - b) for a, b in zip(image.pixelColor(x, y).getRgb()[:3], target))
               < tolerance)
