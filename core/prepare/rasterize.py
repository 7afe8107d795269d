"""Rasterise training polygons into a class raster on the grid of an image.

Overlap rule
------------
Where polygons overlap, the **smallest polygon wins**: polygons are burned in order of
decreasing area (ties in order of feature id), so a lake digitised inside a forest polygon
stays a lake. The rule is deterministic and independent of the order of the features in the
file. Class value 0 means unlabelled; a polygon whose class is 0 therefore clears labels.

Outline labels
--------------
Glacier inventories (RGI, GLIMS, national ones) outline glacier ice and nothing else. For such
layers every polygon gets one class (``class_value``, no class field needed) and every pixel of
the grid outside all polygons gets a ``background`` class ("not glacier"); pixels where the
reference image is nodata stay unlabelled.
"""

import json
import os
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, ogr, osr

from ..data import schema as schemas
from ..data.rasters import ImageStrips, create_gtiff
from ..errors import Cancelled, FjordError, never_stop, no_progress
from ..outputs import AtomicOutputs, check_writable

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

_POLYGON_TYPES = {ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon, ogr.wkbMultiSurface}
_MIXED_TYPES = {ogr.wkbUnknown, ogr.wkbGeometryCollection}


def _polygonal_part(geom):
    """The polygonal part of a geometry (None when it has none)."""
    gtype = ogr.GT_Flatten(geom.GetGeometryType())
    if gtype in _POLYGON_TYPES:
        return geom
    if gtype == ogr.wkbGeometryCollection:
        parts = ogr.Geometry(ogr.wkbMultiPolygon)
        for i in range(geom.GetGeometryCount()):
            part = _polygonal_part(geom.GetGeometryRef(i))
            if part is None:
                continue
            part = ogr.ForceToMultiPolygon(part.Clone())
            for j in range(part.GetGeometryCount()):
                parts.AddGeometry(part.GetGeometryRef(j))
        return parts if parts.GetGeometryCount() else None
    return None


def _open_layer(vector, layer):
    try:
        ds = ogr.Open(vector)
    except RuntimeError as exc:
        raise FjordError(f"Cannot open the polygon layer {vector!r}: {exc}.") from None
    if ds is None:
        raise FjordError(f"Cannot open the polygon layer {vector!r}.")
    if ds.GetLayerCount() == 0:
        raise FjordError(f"{vector!r} holds no layer.")
    if layer in (None, ""):
        lyr = ds.GetLayerByIndex(0)
    else:
        lyr = ds.GetLayerByName(str(layer))
        if lyr is None:
            raise FjordError(f"{vector!r} has no layer named {layer!r}.")
    return ds, lyr


def _field_index(lyr, field):
    defn = lyr.GetLayerDefn()
    names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    for i, name in enumerate(names):
        if name == field:
            return i
    for i, name in enumerate(names):
        if name.lower() == str(field).lower():
            return i
    raise FjordError(f"The polygon layer has no field {field!r}; its fields are: "
                     f"{', '.join(names) or 'none'}. Choose the field that holds the classes.")


def read_polygons(vector, field, target_wkt, layer=None, progress=no_progress,
                  should_stop=never_stop):
    """Read polygons and their class labels, reprojected to ``target_wkt``.

    ``field`` None or empty: every polygon is read, with the label None.

    Returns
    -------
    features : list of (ogr.Geometry, label, area, fid)
    kind : 'integer', 'real' or 'string' (the type of the class field); None without a field
    counts : dict with 'read', 'null', 'empty', 'non_polygon', 'invalid_repaired',
        'invalid_skipped' feature counts
    """
    ds, lyr = _open_layer(vector, layer)
    idx, kind = _class_field(lyr, field)
    _check_polygon_layer(lyr)
    transform = _transform_to(lyr.GetSpatialRef(), target_wkt)
    counts = dict(read=0, null=0, empty=0, non_polygon=0, invalid_repaired=0, invalid_skipped=0)
    features = []
    total = max(lyr.GetFeatureCount(), 1)
    lyr.ResetReading()
    for n, feat in enumerate(lyr):
        if n % 200 == 0:
            if should_stop():
                raise Cancelled()
            progress(n / total, None)
        counts["read"] += 1
        label, geom = _label(feat, idx, kind, counts), None
        if label is not _SKIP:
            geom = _usable_polygon(feat.GetGeometryRef(), counts)
        if geom is None:
            continue
        if transform is not None:
            geom.Transform(transform)
        features.append((geom, label, geom.GetArea(), feat.GetFID()))
    del lyr, ds  # close the file
    if counts["read"] == 0:
        raise FjordError("The polygon layer has no features.")
    if not features:
        raise FjordError(
            f"None of the {counts['read']} features can be used: {_describe_skipped(counts)}.")
    return features, kind, counts


_SKIP = object()  # the label of a feature without one


def _class_field(lyr, field):
    """The index and kind ('integer', 'real', 'string') of the class field; (None, None)
    without one."""
    if field in (None, ""):
        return None, None
    idx = _field_index(lyr, field)
    fdefn = lyr.GetLayerDefn().GetFieldDefn(idx)
    ftype = fdefn.GetType()
    kinds = {ogr.OFTInteger: "integer", ogr.OFTInteger64: "integer", ogr.OFTReal: "real",
             ogr.OFTString: "string"}
    if ftype not in kinds:
        raise FjordError(f"The class field {fdefn.GetName()!r} is of type "
                         f"{fdefn.GetFieldTypeName(ftype)}; use an integer or a text field.")
    return idx, kinds[ftype]


def _check_polygon_layer(lyr):
    layer_type = ogr.GT_Flatten(lyr.GetGeomType())
    if layer_type not in _POLYGON_TYPES | _MIXED_TYPES:
        raise FjordError(
            f"The layer holds {ogr.GeometryTypeToName(layer_type).lower()} geometries; training "
            "labels must be polygons. Buffer points or lines into polygons first "
            "(Vector geometry > Buffer).")


def _transform_to(source_srs, target_wkt):
    """The transformation from the layer's CRS to ``target_wkt``; None when they are the same
    or the layer has none."""
    target_srs = osr.SpatialReference()
    if target_wkt:
        target_srs.ImportFromWkt(target_wkt)
    if source_srs is not None and not target_wkt:
        raise FjordError("The reference raster has no coordinate reference system but the polygon "
                         "layer has one, so they cannot be matched. Assign the raster its CRS "
                         "(Raster > Projections > Assign Projection) and run again.")
    if source_srs is None or not target_wkt or source_srs.IsSame(target_srs):
        return None
    source_srs = source_srs.Clone()
    source_srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    target_srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return osr.CoordinateTransformation(source_srs, target_srs)


def _label(feat, idx, kind, counts):
    """The feature's class label (None without a class field), or _SKIP when it has none."""
    if idx is None:
        return None
    if not feat.IsFieldSetAndNotNull(idx):
        counts["null"] += 1
        return _SKIP
    label = feat.GetField(idx)
    if kind == "string":
        label = str(label).strip()
        if not label:
            counts["null"] += 1
            return _SKIP
    return label


def _usable_polygon(geom, counts):
    """A valid polygonal copy of ``geom`` (invalid ones repaired), or None, counted."""
    if geom is None or geom.IsEmpty():
        counts["empty"] += 1
        return None
    geom = _polygonal_part(geom.Clone())
    if geom is None:
        counts["non_polygon"] += 1
        return None
    if geom.IsValid():
        return geom
    try:
        repaired = geom.MakeValid()
    except RuntimeError:
        repaired = None
    repaired = _polygonal_part(repaired) if repaired is not None else None
    if repaired is None or repaired.IsEmpty():
        counts["invalid_skipped"] += 1
        return None
    counts["invalid_repaired"] += 1
    return repaired


def _describe_skipped(counts):
    parts = []
    for key, text in (("null", "without a class value"), ("empty", "without geometry"),
                      ("non_polygon", "not polygons"), ("invalid_skipped", "invalid and unrepairable"),
                      ("invalid_repaired", "invalid and repaired")):
        if counts.get(key):
            parts.append(f"{counts[key]} {text}")
    return ", ".join(parts) or "none skipped"


def class_spec(spec):
    """A class given by the user (``CLASS``, ``BACKGROUND``): ``('integer', value)`` for a
    whole number, ``('string', name)`` otherwise, None when empty."""
    if spec is None:
        return None
    if isinstance(spec, (int, np.integer)):
        return "integer", int(spec)
    text = str(spec).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return "string", text
    if number != int(number):
        raise FjordError(f"Class {text!r} is not a whole number; give a class value (1, 2, ...) "
                         "or a class name.")
    return "integer", int(number)


def _describe_spec(spec):
    return f"{spec[1]!r}" if spec[0] == "string" else f"{spec[1]}"


def _is_number(text):
    try:
        return np.isfinite(float(text))
    except (TypeError, ValueError):
        return False


def class_mapping(labels, kind, schema=None, background=None):
    """Map raw labels to class values and settle the schema.

    Integer labels are class values, and so are text labels that all spell numbers ('2', '12',
    '4.0') unless they are the schema's names. Other text labels match the names of ``schema``
    (case does not matter); without a schema they become classes 1..N in sorted order (the
    ``background`` name among them).

    ``background``: a :func:`class_spec` (or None) for the pixels outside all polygons; it is
    resolved like the labels and must not be the class of any polygon.

    Returns ``(mapping, schema, background_value)`` where ``mapping`` maps each raw label to
    its value and ``background_value`` is None without a background.
    """
    distinct = sorted(set(labels), key=lambda v: (str(type(v)), v))
    if kind == "string" and distinct and all(_is_number(lab) for lab in distinct):
        names = {c["name"].lower() for c in schema["classes"]} if schema else set()
        if not all(lab.lower() in names for lab in distinct):
            kind = "real"  # text that spells numbers ('2', '12', '4.0') means those numbers
    if background is not None and background[0] != ("string" if kind == "string" else "integer") \
            and schema is None:
        have = "names" if kind == "string" else "numbers"
        raise FjordError(
            f"BACKGROUND {_describe_spec(background)} is a {'name' if background[0] == 'string' else 'value'} "
            f"but the polygon classes are {have}; give the background class as a "
            f"{'name' if kind == 'string' else 'value'} too, or choose a class schema that holds it.")
    if kind == "string":
        if schema is None:
            schema = schemas.schema_from_names(
                distinct + ([background[1]] if background is not None else []))
        by_name = {c["name"].lower(): c["value"] for c in schema["classes"]}
        missing = [lab for lab in distinct if lab.lower() not in by_name]
        if missing:
            raise FjordError(
                f"Class names {', '.join(map(repr, missing[:10]))} are not in the class schema "
                f"({', '.join(c['name'] for c in schema['classes'])}). Fix the field values, or "
                "use another schema, or none to number the names 1..N.")
        mapping = {lab: by_name[lab.lower()] for lab in distinct}
    else:
        mapping = {}
        for lab in distinct:
            value = float(lab)
            if value != int(value):
                raise FjordError(f"The class field holds {lab!r}, which is not a whole number. "
                                 "Class values must be integers (0 = unlabelled).")
            value = int(value)
            if not 0 <= value <= 65535:
                raise FjordError(f"Class value {value} is outside 0..65535.")
            mapping[lab] = value
        values = sorted(v for v in set(mapping.values()) if v != 0)
        if schema is None:
            extra = [background[1]] if background is not None else []
            if not values and not extra:
                raise FjordError("Every polygon has class 0 (unlabelled): there is nothing to "
                                 "rasterise.")
            schema = schemas.schema_from_values(values + extra)
        else:
            known = {c["value"] for c in schema["classes"]}
            unknown = [v for v in values if v not in known]
            if unknown:
                raise FjordError(
                    f"Class values {unknown[:10]} are not in the class schema "
                    f"{schema.get('name', '')!r} (values {sorted(known)}). Fix the field or the schema.")
    return mapping, schema, _background_value(background, schema, set(mapping.values()))


def _background_value(background, schema, polygon_values):
    if background is None:
        return None
    kind, given = background
    classes = ", ".join(f"{c['value']} {c['name']}" for c in schema["classes"])
    if kind == "string":
        found = [c["value"] for c in schema["classes"] if c["name"].lower() == given.lower()]
        if not found:
            raise FjordError(f"BACKGROUND {given!r} is not a class of the class schema ({classes}); "
                             "give one of its names or values.")
        value = found[0]
    else:
        value = given
        if value not in {c["value"] for c in schema["classes"]}:
            raise FjordError(f"BACKGROUND {value} is not a class of the class schema ({classes}); "
                             "give one of its values or names.")
    if value in polygon_values:
        raise FjordError(
            f"BACKGROUND {_describe_spec(background)} (class {value}) is also the class of "
            "polygons, so the polygons could not be told from the background. Choose a "
            "background class that no polygon has (for glacier outlines: 'not glacier').")
    return value


def rasterize_labels(vector, field, reference, output, *, layer=None, schema=None,
                     class_value=None, background=None, all_touched=False, progress=None,
                     should_stop=None):
    """Burn training polygons into a class raster on the grid of ``reference``.

    Parameters
    ----------
    vector : str
        Polygon file readable by OGR (GeoPackage, Shapefile, GeoJSON, ...).
    field : str or None
        Class field: integer values, or text labels (matched to ``schema`` names, or numbered
        1..N in sorted order when there is no schema). None or empty: ``class_value`` for
        every polygon.
    reference : str
        Raster whose grid (size, geotransform, CRS) the output takes.
    output : str
        GeoTIFF to write: Byte (UInt16 beyond 255), 0 = unlabelled, with the schema in its
        metadata, a GDAL colour table, and the sidecars ``<stem>.schema.json``
        and ``<stem>.qml``.
    layer : str, optional
        Layer name inside ``vector`` (default: the first).
    schema : dict, optional
        Class schema (see :mod:`.schema`).
    class_value : int or str, optional
        The class (value or schema name) of every polygon, for layers without a class field
        such as glacier inventories; give either ``field`` or this.
    background : int or str, optional
        The class (value or name) of every pixel outside all polygons (pixels where the
        reference is nodata excepted); default: none, they stay 0 = unlabelled. It must not be
        a class of any polygon.
    all_touched : bool
        Burn every pixel a polygon touches, not only those whose centre it covers.
    progress : callable(fraction, message), optional
    should_stop : callable() -> bool, optional

    Returns
    -------
    dict with ``output``, ``schema``, ``pixel_counts`` ({value: count}), ``labelled_pixels``,
    ``features`` (read/used/skipped counts) and ``warnings`` (list of str).
    """
    progress = progress or no_progress
    should_stop = should_stop or never_stop
    if schema is not None:
        schema = schemas.validate_schema(schema)
    constant, background = class_spec(class_value), class_spec(background)
    _check_class_source(field, constant, background)
    grid = _ReferenceGrid.read(reference)
    check_writable(output, "class raster")
    if os.path.abspath(output) == os.path.abspath(reference):
        raise FjordError("The output would overwrite the reference raster; choose another path.")

    progress(0.0, "Reading polygons")
    features, kind, counts = read_polygons(
        vector, field, grid.wkt, layer=layer,
        progress=lambda f, m=None: progress(0.4 * f, m), should_stop=should_stop)
    if constant is not None:
        kind = constant[0]
        features = [(geom, constant[1], area, fid) for geom, _, area, fid in features]
    mapping, schema, fill = class_mapping([f[1] for f in features], kind, schema, background)
    inside = grid.polygons_inside(features, mapping)
    warnings = _feature_warnings(counts, len(features), len(inside))
    mem, mem_layer = _burn_layer(inside, grid.wkt)
    pixel_counts = _write_class_raster(output, grid, schema, fill, mem_layer, all_touched,
                                       progress, should_stop)
    del mem_layer, mem  # the layer first: it belongs to the data source
    labelled = int(sum(v for k, v in pixel_counts.items() if k != 0))
    if not any(v for k, v in pixel_counts.items() if k not in (0, fill)):
        warnings.append("The polygons overlap the raster but cover no pixel centre; try ALL_TOUCHED.")
    progress(1.0, None)
    counts["used"] = len(inside)
    return {"output": os.path.abspath(output), "schema": schema,
            "pixel_counts": {int(k): int(v) for k, v in pixel_counts.items() if v},
            "labelled_pixels": labelled, "background": fill, "features": counts,
            "warnings": warnings}


def _check_class_source(field, constant, background):
    """Exactly one of a class field and a class for every polygon; no background 0."""
    if background == ("integer", 0):
        raise FjordError("BACKGROUND 0 is 'unlabelled', which pixels outside the polygons are "
                         "anyway; leave BACKGROUND empty.")
    if constant == ("integer", 0):
        raise FjordError("CLASS 0 is 'unlabelled': the polygons would burn as no class at all. "
                         "Give the class value (1 or more) or name the polygons stand for.")
    if field in (None, "") and constant is None:
        raise FjordError("Give the field that holds the classes (FIELD), or one class for every "
                         "polygon (CLASS), e.g. 'glacier' for glacier outlines.")
    if field not in (None, "") and constant is not None:
        raise FjordError(f"Give either a class field (FIELD {field!r}) or one class for every "
                         f"polygon (CLASS {_describe_spec(constant)}), not both.")


@dataclass
class _ReferenceGrid:
    """The grid of the reference raster, and whether it has nodata pixels."""

    path: str
    width: int
    height: int
    transform: tuple
    wkt: str
    masked: bool

    @classmethod
    def read(cls, reference):
        try:
            ref = gdal.Open(reference)
        except RuntimeError as exc:
            raise FjordError(f"Cannot open the reference raster {reference!r}: {exc}.") from None
        masked = any(ref.GetRasterBand(b + 1).GetMaskFlags() != gdal.GMF_ALL_VALID
                     for b in range(ref.RasterCount))
        return cls(reference, ref.RasterXSize, ref.RasterYSize, ref.GetGeoTransform(), ref.GetProjection(),
                   masked)

    def extent(self):
        t = self.transform
        x0, y0 = t[0], t[3]
        x1 = x0 + t[1] * self.width + t[2] * self.height
        y1 = y0 + t[4] * self.height + t[5] * self.width
        return min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)

    def polygons_inside(self, features, mapping):
        """The polygons that reach the raster, with their class values."""
        xmin, xmax, ymin, ymax = self.extent()
        inside = []
        for geom, label, area, fid in features:
            gx0, gx1, gy0, gy1 = geom.GetEnvelope()
            if gx1 >= xmin and gx0 <= xmax and gy1 >= ymin and gy0 <= ymax:
                inside.append((geom, mapping[label], area, fid))
        if not inside:
            raise FjordError(
                f"None of the {len(features)} polygons overlaps the reference raster. Check that "
                "the polygons and the raster cover the same area and that both have the right CRS.")
        return inside


def _feature_warnings(counts, n_features, n_inside):
    warnings = []
    skipped = counts["null"] + counts["empty"] + counts["non_polygon"] + counts["invalid_skipped"]
    if skipped or counts["invalid_repaired"]:
        warnings.append(f"Of {counts['read']} features: {_describe_skipped(counts)}.")
    if n_inside < n_features:
        warnings.append(f"{n_features - n_inside} polygons lie outside the raster and were ignored.")
    return warnings


def _burn_layer(inside, wkt):
    """An in-memory layer of the polygons with their class values in 'burn', largest first,
    so that smaller polygons are burned last and win where they overlap."""
    srs = osr.SpatialReference()
    if wkt:
        srs.ImportFromWkt(wkt)
    mem = ogr.GetDriverByName("Memory").CreateDataSource("labels")
    mem_layer = mem.CreateLayer("labels", srs=srs if wkt else None, geom_type=ogr.wkbMultiPolygon)
    mem_layer.CreateField(ogr.FieldDefn("burn", ogr.OFTInteger))
    defn = mem_layer.GetLayerDefn()
    for geom, value, _, _ in sorted(inside, key=lambda f: (-f[2], f[3])):
        feat = ogr.Feature(defn)
        feat.SetGeometry(geom)
        feat.SetField(0, int(value))
        mem_layer.CreateFeature(feat)
    return mem, mem_layer


def _write_class_raster(output, grid, schema, fill, mem_layer, all_touched, progress,
                        should_stop):
    """Burn ``mem_layer`` into the class raster and write it with its sidecars atomically;
    returns the pixel count per value. With a background class (``fill``), the reference's
    nodata pixels are left unlabelled."""
    top = max(c["value"] for c in schema["classes"])
    dtype = gdal.GDT_Byte if top <= 255 else gdal.GDT_UInt16
    with AtomicOutputs() as out:
        tmp = out.add(output)
        side = schemas.sidecar_paths(output)
        tmp_schema, tmp_qml = out.add(side["schema"]), out.add(side["qml"])
        ds = create_gtiff(tmp, grid.width, grid.height, 1, dtype)
        try:  # the dataset is closed before the partial files are removed or renamed
            band = _start_class_band(ds, grid, schema, fill)
            progress(0.4, f"Burning {mem_layer.GetFeatureCount()} polygons into a "
                          f"{grid.width} x {grid.height} grid")
            _rasterize(ds, mem_layer, all_touched, progress, should_stop)
            if fill and grid.masked:
                progress(0.85, "Leaving the reference's nodata pixels unlabelled")
                _clear_invalid(band, grid.path, should_stop)
            progress(0.9, "Counting pixels per class")
            pixel_counts = _count_values(band, top, should_stop)
        finally:
            band = ds = None
        with open(tmp_schema, "w", encoding="utf-8") as f:
            f.write(schemas.dumps(schema))
        with open(tmp_qml, "w", encoding="utf-8") as f:
            f.write(schemas.paletted_qml(schema))
    return pixel_counts


def _start_class_band(ds, grid, schema, fill):
    """Grid, fill value, colour table and schema of a new class raster; returns its band."""
    ds.SetGeoTransform(grid.transform)
    if grid.wkt:
        ds.SetProjection(grid.wkt)
    band = ds.GetRasterBand(1)
    band.Fill(fill or 0)
    band.SetDescription("class")
    band.SetColorTable(schemas.gdal_color_table(schema))
    ds.SetMetadataItem(schemas.METADATA_KEY, json.dumps(schema, ensure_ascii=False))
    return band


def _rasterize(ds, mem_layer, all_touched, progress, should_stop):
    def callback(complete, message, data):
        progress(0.4 + 0.5 * complete, None)
        return 0 if should_stop() else 1

    options = ["ATTRIBUTE=burn"] + (["ALL_TOUCHED=TRUE"] if all_touched else [])
    try:
        gdal.RasterizeLayer(ds, [1], mem_layer, options=options, callback=callback)
    except RuntimeError:
        if should_stop():
            raise Cancelled() from None
        raise


def _clear_invalid(band, reference, should_stop, rows=512):
    """Set to 0 the pixels of a class band where the reference image is not valid (nodata in
    any band), strip by strip."""
    img = ImageStrips(reference, "reference raster")
    try:
        for y in range(0, band.YSize, rows):
            if should_stop():
                raise Cancelled()
            n = min(rows, band.YSize - y)
            valid = img.read(y, n)[1]
            if not valid.all():
                block = band.ReadAsArray(0, y, band.XSize, n)
                band.WriteArray(np.where(valid, block, 0).astype(block.dtype), 0, y)
    finally:
        img.close()


def _count_values(band, top, should_stop, rows=512):
    """Pixel count per value of a class band, read in strips."""
    hist = np.zeros(top + 1, dtype=np.int64)
    for y in range(0, band.YSize, rows):
        if should_stop():
            raise Cancelled()
        block = band.ReadAsArray(0, y, band.XSize, min(rows, band.YSize - y))
        hist += np.bincount(block.ravel(), minlength=top + 1)[: top + 1]
    return {v: int(c) for v, c in enumerate(hist)}
