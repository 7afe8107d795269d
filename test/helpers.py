"""Small builders shared by the tests: rasters and polygon layers made on the fly."""

import numpy as np
from osgeo import gdal, ogr, osr

gdal.UseExceptions()
ogr.UseExceptions()

UTM = 32633


def make_raster(path, width=60, height=40, origin=(500000.0, 5800000.0), pixel=10.0, epsg=UTM,
                bands=1):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, bands, gdal.GDT_UInt16)
    ds.SetGeoTransform((origin[0], pixel, 0, origin[1], 0, -pixel))
    if epsg:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetProjection(srs.ExportToWkt())
    for b in range(bands):
        ds.GetRasterBand(b + 1).WriteArray(np.full((height, width), 100 * (b + 1), np.uint16))
    ds = None
    return str(path)


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
