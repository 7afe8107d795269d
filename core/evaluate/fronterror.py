"""Calving-front error: how far the predicted front lies from a reference front, in metres.

:func:`validate_front` is the core of ``fjord:validatefront``. Both fronts may be line layers
or class rasters with a calving-front class. The reference is turned into points: the vertices
of its lines densified to the pixel size (or its front pixels' centres); each point gets its
distance to the nearest part of the predicted front (its lines, or the centres of its front
pixels), as in Marochov et al. (2021). Everything is measured in the reference's projected CRS;
when that is geographic, in the UTM zone of the reference's centre.

The report holds the mean, median, mode (of 10 m bins), standard deviation, 90th percentile
and maximum distance, the share of points within 100 m, and a catastrophic-failure flag (a
maximum over 1000 m); and ``mde_m``, the mean distance error of the CaFFe benchmark (Gourmelon
et al. 2022): the mean over both directions together, the reference points to the predicted
front and the predicted front's points (densified the same way, or its front pixels) to the
reference.
"""

import csv
import json
import os

import numpy as np
from osgeo import gdal, ogr, osr

from ..data import schema as schemas
from ..data.rasters import Metres, bounds, local_projection, true_to_scale, wgs84
from ..data.styles import graduated_points_qml
from ..data.vectors import open_vector_layer, spatial_reference
from ..errors import FjordError, no_progress
from ..glaciers.front import FRONT_NAME
from ..outputs import AtomicOutputs, check_figure, check_writable

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

BIN_M = 10.0
CATASTROPHIC_M = 1000.0
CLOSE_M = 100.0
BREAKS = ((0, 50, "0-50 m", "26,150,65"), (50, 100, "50-100 m", "166,217,106"),
          (100, 250, "100-250 m", "253,174,97"), (250, 1000, "250-1000 m", "215,25,28"),
          (1000, 1e12, "over 1000 m", "110,0,20"))


def _is_raster(path):
    try:
        ds = gdal.OpenEx(path, gdal.OF_RASTER)
    except RuntimeError:
        return False
    ok = ds is not None and ds.RasterCount > 0
    ds = None
    return ok


class Front:
    """A front read from a line layer or from the front class of a class raster.

    ``geometry``: an OGR geometry (MultiLineString, or MultiPoint of pixel centres) in ``srs``;
    ``spacing``: the pixel size in metres (rasters, also in degrees) or None.
    """

    def __init__(self, path, layer=None, front_value=None, what="front"):
        self.path, self.what = path, what
        self.spacing = None
        self.extent = None
        if _is_raster(path):
            self._from_raster(path, front_value)
        else:
            self._from_vector(path, layer)
        if self.geometry is None or self.geometry.IsEmpty():
            why = " (did the front extraction fail?)." if what.startswith("predicted") else "."
            raise FjordError(f"The {what} {os.path.basename(path)} is empty: there is no front to "
                             "measure" + why)

    def _from_raster(self, path, front_value):
        ds = gdal.Open(path)
        schema = schemas.read_raster_schema(path)
        value = front_value
        if value is None:
            named = [c["value"] for c in (schema or {}).get("classes", []) if c["name"].lower() == FRONT_NAME]
            value = named[0] if named else None
        if value is None:
            raise FjordError(f"The {self.what} raster {os.path.basename(path)} has no '{FRONT_NAME}' "
                             f"class in its schema; give a line layer, a raster made by 'Extract "
                             "calving front' (OUTPUT_RASTER), or the front class value.")
        data = ds.GetRasterBand(1).ReadAsArray()
        rows, cols = np.nonzero(data == value)
        gt = ds.GetGeoTransform()
        self.srs = spatial_reference(ds.GetProjection())
        self.spacing = min(Metres(ds).pixel_size)  # metres, also for a raster in degrees
        self.extent = bounds(ds)
        geom = ogr.Geometry(ogr.wkbMultiPoint)
        if len(rows) == 0:
            raise FjordError(f"The {self.what} raster {os.path.basename(path)} holds no pixel of the "
                             f"front class ({value}).")
        x = gt[0] + (cols + 0.5) * gt[1] + (rows + 0.5) * gt[2]
        y = gt[3] + (cols + 0.5) * gt[4] + (rows + 0.5) * gt[5]
        for xi, yi in zip(x, y):
            p = ogr.Geometry(ogr.wkbPoint)
            p.AddPoint_2D(float(xi), float(yi))
            geom.AddGeometry(p)
        self.geometry = geom
        ds = None

    def _from_vector(self, path, layer):
        ds, lyr = open_vector_layer(path, layer, self.what)
        self.srs = lyr.GetSpatialRef()
        geom = ogr.Geometry(ogr.wkbMultiLineString)
        for feature in lyr:
            g = feature.GetGeometryRef()
            if g is None or g.IsEmpty():
                continue
            flat = ogr.GT_Flatten(g.GetGeometryType())
            if flat == ogr.wkbLineString:
                geom.AddGeometry(ogr.ForceTo(g.Clone(), ogr.wkbLineString))
            elif flat == ogr.wkbMultiLineString:
                for i in range(g.GetGeometryCount()):
                    geom.AddGeometry(g.GetGeometryRef(i).Clone())
            else:
                raise FjordError(f"The {self.what} {os.path.basename(path)} holds "
                                 f"{ogr.GeometryTypeToName(flat)} geometries; give a line layer.")
        self.geometry = geom
        del ds

    def transformed(self, target):
        geom = self.geometry.Clone()
        if self.srs is not None and target is not None and not self.srs.IsSame(target):
            geom.Transform(osr.CoordinateTransformation(self.srs, target))
        return geom


def measuring_crs(reference):
    """``(crs, unit)`` distances are measured in: the reference's projected CRS when it is true
    to scale at the reference (within 0.1 %, :func:`~fjord.core.data.rasters.true_to_scale`),
    else an azimuthal equidistant projection centred on the reference (a geographic CRS, Web
    Mercator, a far UTM zone...)."""
    srs = reference.srs
    if srs is None:
        raise FjordError("The reference front has no CRS; distances in metres need one.")
    centre = reference.geometry.Centroid()
    if srs.IsProjected() and true_to_scale(srs, centre.GetX(), centre.GetY()):
        return srs, srs.GetLinearUnits() or 1.0
    lon, lat = osr.CoordinateTransformation(srs, wgs84()).TransformPoint(
        centre.GetX(), centre.GetY())[:2]
    return local_projection(lon, lat), 1.0


def reference_points(geometry, spacing):
    """Points along the reference: line vertices densified to ``spacing``, or the points."""
    points = []
    if ogr.GT_Flatten(geometry.GetGeometryType()) == ogr.wkbMultiPoint:
        for i in range(geometry.GetGeometryCount()):
            p = geometry.GetGeometryRef(i)
            points.append((p.GetX(), p.GetY()))
        return np.array(points)
    dense = geometry.Clone()
    dense.Segmentize(spacing)
    for i in range(dense.GetGeometryCount()):
        points.extend(dense.GetGeometryRef(i).GetPoints())
    return np.array([(p[0], p[1]) for p in points])


def distances(points, predicted):
    """Distance from each point to the predicted front (its lines, or its pixel centres)."""
    if ogr.GT_Flatten(predicted.GetGeometryType()) == ogr.wkbMultiPoint:
        from scipy.spatial import cKDTree

        centres = np.array([(predicted.GetGeometryRef(i).GetX(), predicted.GetGeometryRef(i).GetY())
                            for i in range(predicted.GetGeometryCount())])
        return cKDTree(centres).query(points)[0]
    out = np.empty(len(points))
    p = ogr.Geometry(ogr.wkbPoint)
    for i, (x, y) in enumerate(points):
        p.SetPoint_2D(0, float(x), float(y))
        out[i] = p.Distance(predicted)
    return out


def summarise(d):
    """The front-error statistics of distances ``d`` in metres."""
    bins = np.floor(d / BIN_M).astype(np.int64)
    counts = np.bincount(bins)
    mode_bin = int(np.argmax(counts))
    return {"points": int(len(d)), "mean_m": float(d.mean()), "median_m": float(np.median(d)),
            "mode_m": (mode_bin + 0.5) * BIN_M, "std_m": float(d.std()),
            "p90_m": float(np.percentile(d, 90)), "max_m": float(d.max()),
            "share_under_100m": float((d < CLOSE_M).mean()),
            "catastrophic": bool(d.max() > CATASTROPHIC_M)}


def histogram_figure(d, stats, path, title):
    from ..data.plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    top = max(BIN_M, float(np.ceil(d.max() / BIN_M) * BIN_M))
    ax.hist(d, bins=np.arange(0, top + BIN_M, BIN_M), color="#4477aa", edgecolor="white")
    for key, style, label in (("median_m", "-", "median"), ("mean_m", "--", "mean")):
        ax.axvline(stats[key], color="#cc3311", linestyle=style, label=f"{label} {stats[key]:.1f} m")
    ax.set_xlabel("distance to the predicted front (m), 10 m bins")
    ax.set_ylabel("reference points")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def validate_front(input, reference, output, *, input_layer=None, reference_layer=None,
                   front_value=None, spacing=None, report=None, figure=None, progress=None,
                   should_stop=None):
    """Distances from the reference front to the predicted front; see the module docstring.

    ``front_value``: the front class of raster fronts (default: the class named 'calving
    front'). ``should_stop`` is accepted as every worker job's is; the job is short.

    Writes ``output`` (GeoPackage points, field ``distance_m``, graduated style sidecar), and
    optionally ``report`` (CSV, or JSON by extension) and ``figure`` (histogram PNG). Returns the
    statistics.
    """
    progress = progress or no_progress
    for path in (output, report):
        if path:
            check_writable(path)
    if figure:
        check_figure(figure)
    predicted = Front(input, input_layer, front_value, "predicted front")
    ref = Front(reference, reference_layer, front_value, "reference front")
    crs, unit = measuring_crs(ref)
    if predicted.srs is None and crs is not None:
        predicted.srs = ref.srs
    pred_geom, ref_geom = predicted.transformed(crs), ref.transformed(crs)
    if predicted.extent is not None:
        box = ogr.CreateGeometryFromWkt(
            "POLYGON(({0} {1},{2} {1},{2} {3},{0} {3},{0} {1}))".format(*predicted.extent))
        if predicted.srs is not None and not predicted.srs.IsSame(crs):
            box.Transform(osr.CoordinateTransformation(predicted.srs, crs))
        if not box.Intersects(ref_geom):
            raise FjordError("The reference front lies outside the predicted raster; check that "
                             "both are of the same place and have the right CRS.")
    # the spacing in metres (given, else the reference's or the prediction's pixel size), then
    # in the measuring CRS's units
    step = (spacing or ref.spacing or predicted.spacing or 10.0) / unit
    points = reference_points(ref_geom, step)
    progress(0.3, f"{len(points):,} reference points every {step * unit:g} m")
    d = distances(points, pred_geom) * unit
    stats = summarise(d)
    # The mean distance error of the CaFFe benchmark (Gourmelon et al. 2022): the mean over both
    # directions together, every reference point to the predicted front and every point of the
    # predicted front (its vertices densified the same way, or its front pixels) to the reference.
    back = distances(reference_points(pred_geom, step), ref_geom) * unit
    stats["mde_m"] = float(np.concatenate([d, back]).mean())
    stats["predicted_points"] = int(len(back))
    progress(0.8, f"Front error: mean {stats['mean_m']:.1f} m, median {stats['median_m']:.1f} m, "
                  f"mode {stats['mode_m']:.0f} m, p90 {stats['p90_m']:.1f} m, max "
                  f"{stats['max_m']:.1f} m, {100 * stats['share_under_100m']:.1f} % under 100 m; "
                  f"mean distance error both ways (MDE, CaFFe) {stats['mde_m']:.1f} m"
                  + (" - CATASTROPHIC FAILURE (max over 1000 m)" if stats["catastrophic"] else ""))
    with AtomicOutputs() as out:
        _write_points(out.add(output), points, d, crs, ref.srs)
        qml = os.path.splitext(output)[0] + ".qml"
        with open(out.add(qml), "w", encoding="utf-8") as f:
            f.write(graduated_points_qml("distance_m", BREAKS))
        if report:
            _write_report(out.add(report), report, stats)
        if figure:
            histogram_figure(d, stats, out.add(figure),
                             f"predicted {_name(input)} against reference {_name(reference)}")
    return dict(stats, output=os.path.abspath(output))


def _name(path):
    """A file's name with its folder, so that two 'front.gpkg' can be told apart."""
    full = os.path.abspath(path)
    return os.path.join(os.path.basename(os.path.dirname(full)), os.path.basename(full))


def _write_points(path, points, d, crs, target):
    """The reference points with their distances, in the reference's CRS (``target``)."""
    if target is not None and not target.IsSame(crs):
        points = np.array(osr.CoordinateTransformation(crs, target).TransformPoints(
            np.asarray(points, np.float64).tolist()))[:, :2]
    else:
        target = crs
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer("front_error", srs=target, geom_type=ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("distance_m", ogr.OFTReal))
    defn = layer.GetLayerDefn()
    layer.StartTransaction()
    for (x, y), dist in zip(points, d):
        feature = ogr.Feature(defn)
        p = ogr.Geometry(ogr.wkbPoint)
        p.AddPoint_2D(float(x), float(y))
        feature.SetGeometry(p)
        feature.SetField("distance_m", float(dist))
        layer.CreateFeature(feature)
    layer.CommitTransaction()
    ds = None


def _write_report(path, name, stats):
    if name.lower().endswith(".json"):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=2)
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["statistic", "value"])
        for key, value in stats.items():
            w.writerow([key, value if not isinstance(value, float) else f"{value:.4f}"])
