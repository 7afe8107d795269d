"""Vector files and coordinate reference systems: the one vector-layer opener and the one way
to turn a CRS (WKT, ``EPSG:n``, an OSR object) into a spatial reference in x/y order."""

from osgeo import ogr, osr

from ..errors import FjordError


def open_vector_layer(path, layer, what):
    """``(dataset, layer)`` of a vector file (its first layer unless ``layer`` is named); keep
    the dataset while the layer is used. ``what`` names the input in the error messages."""
    try:
        ds = ogr.Open(path)
    except RuntimeError as exc:
        raise FjordError(f"Cannot open the {what} {path!r}: {exc}.") from None
    if ds is None or ds.GetLayerCount() == 0:
        raise FjordError(f"Cannot open the {what} {path!r} as a vector layer.")
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayerByIndex(0)
    if lyr is None:
        raise FjordError(f"{path!r} has no layer {layer!r}.")
    return ds, lyr


def spatial_reference(crs):
    """An OSR spatial reference in traditional GIS (x, y) axis order, or None for no CRS.

    ``crs``: WKT, anything ``SetFromUserInput`` reads (``EPSG:32624``, PROJ strings), or an
    ``osr.SpatialReference`` (cloned, never changed).
    """
    if crs is None or crs == "":
        return None
    if isinstance(crs, osr.SpatialReference):
        srs = crs.Clone()
    else:
        srs = osr.SpatialReference()
        srs.SetFromUserInput(str(crs))
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs
