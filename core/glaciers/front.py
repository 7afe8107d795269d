"""Calving fronts and valley margins from a glacial class raster.

:func:`calving_front` is the worker job of ``fjord:calvingfront``. It follows the routine
of Marochov et al. (2021) with its published bug fixed (the longest contour is taken, not the
first):

1. glacier mask = the glacier classes; the main glacier is its largest 4-connected component,
   holes filled;
2. ocean mask = the ocean classes without strips under 7 px wide (an opening), components of at
   least ``min_ocean_area`` (m², whatever the CRS) kept (the largest one when none is that large), holes
   filled;
3. initial level set = the main glacier dilated (5 x 5), closed (30 x 30), holes filled; a
   morphological geodesic active contour (scikit-image) on the inverted glacier mask
   (``iterations``, ``smoothing``, ``threshold``, ``balloon``); of its result, only what is main
   glacier is kept;
4. front = the longest contour at level 0.5 of the result after a 3 x 3 majority filter (a
   10-pixel frame of the image blanked, so that contours close inside it), kept where it lies
   within 30 px of the ocean and no nearer to the rock classes than to the ocean (there it is a
   valley margin); of those pieces, the longest.

A front longer than the image diagonal is a failed detection.

One deliberate change: the published routine eroded the active contour's result twice, which
moves the front about two pixels into the ice (scikit-image applies the balloon force only where
the guide image exceeds threshold / |balloon|, 1.2 with the published values, so on a 0/1 mask
the contour never shrinks back from the dilated start). Fjord intersects the result with the main
glacier instead. On synthetic fjords (true classes, five seeds and shapes) the median distance
from the reference front is 0.15-0.23 px this way, against 1.0-1.3 px with the double erosion.

The valley margins are the outlines of the rock classes where they run within 10 px of the main
glacier (pieces of at least 100 contour points). Lines are in the raster's CRS, vertices at
sub-pixel positions of the contours. Everything runs on the whole class raster in memory (one
byte per pixel; the morphology works on the glacier's bounding box).

A second change: the majority filter of step 4. A class raster resampled to another grid (a
reprojection, nearest neighbour) has one-pixel notches all along its class edges, and the
contour of a binary mask follows each one. On synthetic fjords (three scenes of 768 x 1024 px,
warped to EPSG:3857, a UTM zone 12 zones away, LAEA Europe and EPSG:4326) the front came out
4-10 % longer than on the original UTM grid; with the filter, -1.4 to +2.1 %, while the
front's median distance to the reference front changed by less than 0.02 px.

The pixel constants above (7, 10, 30 px, the active contour) assume square pixels. A raster
whose pixels are not squares on the ground (degrees beyond 25 degrees of latitude) is traced on
a :class:`TracingGrid`: warped (nearest neighbour) into a local azimuthal equidistant
projection, in square pixels of the same true area. The lines go back to the raster's CRS; the
burned raster stays on the raster's grid. A conformal CRS (Web Mercator, a far UTM zone) has
square pixels and is traced on its own grid: warping it north up would resample the class
edges a second time.
"""

import datetime
import math
import os

import numpy as np
from osgeo import gdal, ogr, osr

from ..data import schema as schemas
from ..data.dates import image_date
from ..data.rasters import (
    Metres,
    check_class_bands,
    create_class_raster,
    open_raster,
    read_classes,
    write_class_sidecars,
)
from ..data.styles import line_qml
from ..errors import Cancelled, FjordError, never_stop, no_progress
from ..outputs import AtomicOutputs, check_writable

gdal.UseExceptions()
ogr.UseExceptions()

DEFAULT_NAMES = {"glacier": ("glacier ice",),
                 "ocean": ("open water", "iceberg water", "mélange"),
                 "rock": ("snow on rock", "rock")}
FRONT_VALUE, FRONT_NAME, FRONT_COLOR = 8, "calving front", "#ff0000"
FRAME = 10
OCEAN_REACH = 30
OCEAN_MIN_WIDTH = 7
MARGIN_REACH = 10
MIN_MARGIN_POINTS = 100
FRONT_QML_COLOR, MARGIN_QML_COLOR = "255,0,0,255", "92,51,23,255"


def resolve_classes(schema, given, role, name=None, holder="class raster"):
    """Class values for a role (glacier, ocean, rock): the given ones, checked against the
    schema, or the glacial schema's classes of that role found by name. For the messages:
    ``name``, what the user sets them with (default ``<ROLE>_CLASSES``), and ``holder``, what
    the schema belongs to."""
    name = name or f"{role.upper()}_CLASSES"
    values = {int(c["value"]): c["name"] for c in schema["classes"]} if schema else {}
    if given:
        given = [int(v) for v in given]
        unknown = [v for v in given if values and v not in values]
        if unknown:
            raise FjordError(f"{name[:1].upper()}{name[1:]} lists {unknown}, which the {holder}'s schema does not "
                             f"have (it has {sorted(values)}).")
        return given
    by_name = {label.lower(): v for v, label in values.items()}
    found = [by_name[n] for n in DEFAULT_NAMES[role] if n in by_name]
    if not found:
        raise FjordError(f"The {holder}'s schema has no {' / '.join(DEFAULT_NAMES[role])} class; "
                         f"give {name} (the class values of the {role}).")
    return found


def _largest(labels, n):
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return int(np.argmax(sizes)), sizes


def _runs(keep, closed):
    """(start, stop) index ranges of the True runs of ``keep``; on a closed contour a run may
    wrap around the end."""
    idx = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
    runs = list(zip(idx[::2], idx[1::2]))
    if closed and len(runs) > 1 and runs[0][0] == 0 and runs[-1][1] == len(keep):
        first = runs.pop(0)
        last = runs.pop()
        runs.append((last[0], len(keep) + first[1]))
    return runs


def _take(points, start, stop):
    n = len(points)
    if stop <= n:
        return points[start:stop]
    return np.concatenate([points[start:], points[:stop - n]])


def _length(points):
    return float(np.hypot(*np.diff(points, axis=0).T).sum()) if len(points) > 1 else 0.0


def _disk(radius):
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


def _square(op, mask, size, **kwargs):
    """A binary morphology ``op`` with a size x size square, as a row then a column pass."""
    out = op(mask, np.ones((size, 1), bool), **kwargs)
    return op(out, np.ones((1, size), bool), **kwargs)


def find_front(classes, glacier, ocean, *, rock=(), pixel_area=1.0, min_ocean_area=1e6,
               iterations=30, balloon=-0.5, smoothing=1, threshold=0.6, should_stop=never_stop):
    """The calving front of a class array.

    Returns ``(front, main, status)``: the front as an (n, 2) array of (row, col) positions in
    pixel index space (pixel centres at whole numbers), or None; the main glacier mask; and a
    sentence saying what was found or why there is no front.
    """
    glacier_mask = np.isin(classes, glacier)
    main = _main_glacier(glacier_mask)
    if main is None:
        return None, glacier_mask, "no glacier: the raster holds none of the glacier classes"
    ocean_mask = _ocean(classes, ocean, pixel_area, min_ocean_area)
    if ocean_mask is None:
        return None, main, "no ocean: the raster holds none of the ocean classes"
    if should_stop():
        raise Cancelled("The front extraction was cancelled.")
    outline = _glacier_outline(main, iterations, balloon, smoothing, threshold, should_stop)
    if outline is None:
        return None, main, "no front: the glacier outline vanished (glacier too small?)"
    near = _near_ocean(outline, ocean_mask, classes, rock)
    closed = np.allclose(outline[0], outline[-1])
    pieces = [_take(outline, a, b) for a, b in _runs(near, closed)]
    pieces = [p for p in pieces if len(p) > 1]
    if not pieces:
        return None, main, (f"no front: the glacier does not come within {OCEAN_REACH} px of the "
                            "ocean")
    front = max(pieces, key=_length)
    diagonal = math.hypot(*classes.shape)
    if _length(front) > diagonal:
        return None, main, (f"failed detection: the front would be {_length(front):.0f} px long, "
                            f"more than the image diagonal ({diagonal:.0f} px)")
    return front, main, f"front of {_length(front):.0f} px found"


def _main_glacier(glacier_mask):
    """The largest 4-connected glacier region, holes filled; None without glacier."""
    from scipy import ndimage

    labels, n = ndimage.label(glacier_mask)
    if n == 0:
        return None
    main_id, _ = _largest(labels, n)
    return ndimage.binary_fill_holes(labels == main_id)


def _ocean(classes, ocean, pixel_area, min_ocean_area):
    """The ocean: the ocean regions of at least ``min_ocean_area`` (else the largest), holes
    filled; None without ocean. Thin strips of ocean classes (misclassified pixels along a
    glacier's side, say) are not ocean: an opening removes what is under OCEAN_MIN_WIDTH px
    wide."""
    from scipy import ndimage

    ocean_mask = ndimage.binary_opening(np.isin(classes, ocean), _disk(OCEAN_MIN_WIDTH // 2))
    olabels, m = ndimage.label(ocean_mask, structure=np.ones((3, 3)))
    if m == 0:
        return None
    biggest, sizes = _largest(olabels, m)
    big = np.flatnonzero(sizes * pixel_area >= min_ocean_area)
    keep = big if len(big) else [biggest]
    return ndimage.binary_fill_holes(np.isin(olabels, keep))


def _glacier_outline(main, iterations, balloon, smoothing, threshold, should_stop):
    """The main glacier's outline, (n, 2) (row, col), smoothed by a geodesic active contour
    started from its closing; None when nothing is left of it."""
    from scipy import ndimage
    from skimage.measure import find_contours
    from skimage.segmentation import morphological_geodesic_active_contour

    height, width = main.shape
    # Work on the main glacier's bounding box with a margin (the closing reaches 15 px out).
    rows, cols = np.nonzero(main)
    pad = 40
    r0, r1 = max(0, rows.min() - pad), min(height, rows.max() + pad + 1)
    c0, c1 = max(0, cols.min() - pad), min(width, cols.max() + pad + 1)
    sub = main[r0:r1, c0:c1]
    init = _square(ndimage.binary_dilation, sub, 5)
    init = _square(ndimage.binary_erosion, _square(ndimage.binary_dilation, init, 30), 30,
                   border_value=1)  # a 30 x 30 closing
    init = ndimage.binary_fill_holes(init)
    level = morphological_geodesic_active_contour(
        1.0 - sub.astype(np.float64), int(iterations), init_level_set=init.astype(np.int8),
        smoothing=int(smoothing), threshold=float(threshold), balloon=float(balloon))
    # The published routine eroded the result twice; Fjord keeps what of it is main glacier
    # instead (see the module docstring).
    level = level.astype(bool) & sub
    frame = np.zeros((height, width), bool)
    frame[FRAME:height - FRAME, FRAME:width - FRAME] = True
    level &= frame[r0:r1, c0:c1]
    if should_stop():
        raise Cancelled("The front extraction was cancelled.")
    # A 3 x 3 majority: the one-pixel notches that resampling leaves along a class edge would
    # each add a pixel or so to the front's length (see the module docstring).
    level = ndimage.median_filter(level.astype(np.uint8), size=3)
    contours = find_contours(np.pad(level, 1).astype(np.float64), 0.5)
    if not contours:
        return None
    return max(contours, key=_length) - 1 + np.array([r0, c0])


def _near_ocean(outline, ocean_mask, classes, rock):
    """For each outline point: whether it lies within OCEAN_REACH px of the ocean, and (with
    rock classes) nearer the ocean than rock, where it would be a valley margin instead. The
    distances are computed over the outline's box."""
    from scipy import ndimage

    height, width = classes.shape
    lo = np.floor(outline.min(axis=0)).astype(int)
    hi = np.ceil(outline.max(axis=0)).astype(int) + 1
    q0, q1 = max(0, lo[0] - OCEAN_REACH - 1), min(height, hi[0] + OCEAN_REACH + 1)
    p0, p1 = max(0, lo[1] - OCEAN_REACH - 1), min(width, hi[1] + OCEAN_REACH + 1)
    to_ocean = ndimage.distance_transform_edt(~ocean_mask[q0:q1, p0:p1])
    near = to_ocean <= OCEAN_REACH
    if len(rock):
        rock_box = np.isin(classes[q0:q1, p0:p1], rock)
        if rock_box.any():
            near &= to_ocean <= ndimage.distance_transform_edt(~rock_box)
    rr = np.clip(np.round(outline[:, 0]).astype(int), q0, q1 - 1) - q0
    cc = np.clip(np.round(outline[:, 1]).astype(int), p0, p1 - 1) - p0
    return near[rr, cc]


def find_margins(classes, rock, main):
    """Valley margins: the outlines of the rock classes where they run within
    :data:`MARGIN_REACH` px of the main glacier, as (row, col) polylines of at least
    :data:`MIN_MARGIN_POINTS` points."""
    from scipy import ndimage
    from skimage.measure import find_contours

    rock_mask = np.isin(classes, rock)
    if not rock_mask.any() or not main.any():
        return []
    touching = ndimage.distance_transform_edt(~main) <= MARGIN_REACH
    out = []
    for contour in find_contours(np.pad(rock_mask, 1).astype(np.float64), 0.5):
        contour = contour - 1
        rr = np.clip(np.round(contour[:, 0]).astype(int), 0, classes.shape[0] - 1)
        cc = np.clip(np.round(contour[:, 1]).astype(int), 0, classes.shape[1] - 1)
        closed = np.allclose(contour[0], contour[-1])
        for a, b in _runs(touching[rr, cc], closed):
            if b - a >= MIN_MARGIN_POINTS:
                out.append(_take(contour, a, b))
    return out


def to_map(points, gt):
    """(row, col) pixel-index positions (centres at whole numbers) to map (x, y)."""
    col, row = points[:, 1] + 0.5, points[:, 0] + 0.5
    return np.column_stack([gt[0] + col * gt[1] + row * gt[2], gt[3] + col * gt[4] + row * gt[5]])


def from_map(xy, gt):
    """Map (x, y) to (row, col) pixel-index positions: the inverse of :func:`to_map`."""
    inv = gdal.InvGeoTransform(gt)
    x, y = xy[:, 0], xy[:, 1]
    col = inv[0] + x * inv[1] + y * inv[2]
    row = inv[3] + x * inv[4] + y * inv[5]
    return np.column_stack([row - 0.5, col - 0.5])


def square_pixels(metres, tolerance=0.1):
    """Whether a raster's pixels are squares in true metres (``metres``: its
    :class:`~fjord.core.data.rasters.Metres`): sides equal and at a right angle, to
    ``tolerance`` (10 %: the extraction's pixel constants then mean nearly the same distance in
    every direction). So are those of any conformal CRS (Web Mercator, UTM in any zone) and,
    nearly, of LAEA Europe at Greenland (1 % and 3 degrees off); not those of a geographic raster
    beyond 25 degrees of latitude."""
    (a, b), (w, h) = metres.pixel_axes, metres.pixel_size
    return abs(w / h - 1) <= tolerance and abs(np.dot(a, b)) / (w * h) <= tolerance


class TracingGrid:
    """The class raster on the grid where fronts are traced.

    The raster's own grid when its pixels are squares in true metres (:func:`square_pixels`:
    any CRS true to scale at the data, and any conformal one such as Web Mercator, whose scale
    :class:`~fjord.core.data.rasters.Metres` corrects); otherwise (degrees beyond 25 degrees of
    latitude) the raster warped (nearest neighbour) into the azimuthal
    equidistant projection of its Metres, north up, in square pixels of the raster's true
    pixel area, so that the pixel constants of the extraction mean the same distance in every
    direction.

    ``classes`` (int64 array), ``gt`` and ``pixel_area`` (m²) are those of the tracing grid;
    ``source_xy(points)`` and ``source_rc(points)`` take its (row, col) positions to map
    coordinates and pixel positions of the raster; ``length_m(points)`` measures a line.
    """

    def __init__(self, ds):
        metres = Metres(ds)
        self.source_gt = ds.GetGeoTransform()
        self.warped = metres.local_srs is not None and not square_pixels(metres)
        self._back = None
        grid = ds
        if self.warped:
            size = math.sqrt(metres.pixel_area)
            grid = gdal.Warp("", ds, format="MEM", dstSRS=metres.local_srs.ExportToWkt(),
                             xRes=size, yRes=size, resampleAlg="near", targetAlignedPixels=True)
            self._back = osr.CoordinateTransformation(metres.local_srs, metres.srs)
            metres = Metres(grid)
        self.gt, self.metres, self.pixel_area = grid.GetGeoTransform(), metres, metres.pixel_area
        self.shape = (grid.RasterYSize, grid.RasterXSize)
        self.classes = read_classes(grid, 0, grid.RasterYSize)
        grid = None

    def describe(self):
        """A sentence for the log: which grid the front is traced on."""
        if not self.warped:
            return None
        return (f"The raster's pixels are not squares on the ground: the front is traced on it "
                f"warped to a local azimuthal equidistant grid of {self.shape[1]} x "
                f"{self.shape[0]} square pixels of {math.sqrt(self.pixel_area):.4g} m.")

    def source_xy(self, points):
        """Map coordinates, in the raster's CRS, of (row, col) positions on this grid."""
        xy = to_map(points, self.gt)
        if self._back is None:
            return xy
        return np.array(self._back.TransformPoints(xy.tolist()), np.float64)[:, :2]

    def source_rc(self, points):
        """(row, col) positions on the raster's own grid of positions on this grid."""
        return points if self._back is None else from_map(self.source_xy(points), self.source_gt)

    def length_m(self, points):
        """Length in metres of a line of (row, col) positions on this grid."""
        return self.metres.length(to_map(points, self.gt))


def write_lines(out, path, layer_name, lines, wkt, fields, qml):
    """A GeoPackage line layer (one feature per line of map coordinates, ``fields`` = {name:
    list of values}) and its QML sidecar, through AtomicOutputs ``out``; an empty layer when
    there are no lines."""
    style = out.add(os.path.splitext(path)[0] + ".qml")
    path = out.add(path)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    srs = None
    if wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(wkt)
    layer = ds.CreateLayer(layer_name, srs=srs, geom_type=ogr.wkbLineString)
    kinds = {"length_m": ogr.OFTReal, "image": ogr.OFTString, "date": ogr.OFTDate}
    for name in fields:
        layer.CreateField(ogr.FieldDefn(name, kinds[name]))
    for i, points in enumerate(lines):
        feature = ogr.Feature(layer.GetLayerDefn())
        geom = ogr.Geometry(ogr.wkbLineString)
        for x, y in points:
            geom.AddPoint_2D(float(x), float(y))
        feature.SetGeometry(geom)
        for name, values in fields.items():
            value = values[i]
            if value is None:
                feature.SetFieldNull(name)
            elif kinds[name] == ogr.OFTDate:
                feature.SetField(name, value.year, value.month, value.day, 0, 0, 0, 0)
            else:
                feature.SetField(name, value)
        layer.CreateFeature(feature)
    ds = None
    with open(style, "w", encoding="utf-8") as f:
        f.write(qml)


def burn_front(classes, front, value):
    """Front pixels (the polyline's cells, gaps between vertices drawn) set to ``value``."""
    from skimage.draw import line

    out = classes.copy()
    pts = np.round(front).astype(int)
    for (r0, c0), (r1, c1) in zip(pts[:-1], pts[1:]):
        rr, cc = line(r0, c0, r1, c1)
        inside = (rr >= 0) & (rr < out.shape[0]) & (cc >= 0) & (cc < out.shape[1])
        out[rr[inside], cc[inside]] = value
    return out


def calving_front(input, output, *, output_margins=None, output_raster=None, glacier_classes=None,
                  ocean_classes=None, rock_classes=None, iterations=30, balloon=-0.5,
                  smoothing=1, threshold=0.6, min_ocean_area=1e6, progress=None, should_stop=None):
    """Extract the calving front (and the valley margins) of a class raster.

    Writes ``output`` (GeoPackage, layer ``front``: LineString, fields ``length_m``, ``image``
    and ``date``: the acquisition date of :func:`fjord.core.data.dates.image_date`, empty when
    unknown), optionally ``output_margins`` (layer ``margins``: one LineString per margin,
    ``length_m``) and ``output_raster`` (the classes with the front burned in as class 8).
    Returns the status sentence, front length in metres, margin count and the class values
    used.
    """
    progress = progress or no_progress
    should_stop = should_stop or never_stop
    ds = open_raster(input, "class raster")
    schema, glacier, ocean, rock = _roles(ds, input, glacier_classes, ocean_classes, rock_classes,
                                          iterations)
    for path in (output, output_margins, output_raster):
        if path:
            check_writable(path)
            if os.path.abspath(path) == os.path.abspath(input):
                raise FjordError("An output would overwrite the input; choose another path.")
    wkt = ds.GetProjection()
    progress(0.05, f"Reading {ds.RasterXSize} x {ds.RasterYSize} classes; glacier {glacier}, "
                   f"ocean {ocean}, rock {rock}")
    grid = TracingGrid(ds)
    if grid.describe():
        progress(None, grid.describe())
    front, main, status = find_front(
        grid.classes, glacier, ocean, rock=rock, pixel_area=grid.pixel_area,
        min_ocean_area=float(min_ocean_area), iterations=iterations, balloon=balloon,
        smoothing=smoothing, threshold=threshold, should_stop=should_stop)
    progress(0.7, status[0].upper() + status[1:] + ".")
    if front is None:
        progress(None, "Writing an empty front layer.")
    margins = find_margins(grid.classes, rock, main) if output_margins else []
    image_name = os.path.basename(input)
    day = image_date(ds, input)
    progress(None, f"Acquisition date: {day.isoformat()}" if day else
             "No acquisition date in the raster's metadata or name: the front's date is empty.")
    length = grid.length_m(front) if front is not None else 0.0
    with AtomicOutputs() as out:
        lines = [grid.source_xy(front)] if front is not None else []
        write_lines(out, output, "front", lines, wkt,
                    {"length_m": [length] if lines else [], "image": [image_name] if lines else [],
                     "date": [day] if lines else []},
                    line_qml(FRONT_QML_COLOR, "1.2"))
        if output_margins:
            write_lines(out, output_margins, "margins", [grid.source_xy(m) for m in margins], wkt,
                        {"length_m": [grid.length_m(m) for m in margins],
                         "image": [image_name] * len(margins), "date": [day] * len(margins)},
                        line_qml(MARGIN_QML_COLOR, "0.8"))
        if output_raster:
            classes = read_classes(ds, 0, ds.RasterYSize) if grid.warped else grid.classes
            burned = (classes if front is None else
                      burn_front(classes, grid.source_rc(front), FRONT_VALUE))
            out_schema = _with_front(schema, classes)
            target = create_class_raster(out.add(output_raster), ds, out_schema, nodata=False,
                                         description="class")
            target.GetRasterBand(1).WriteArray(burned)
            target = None
            write_class_sidecars(out, output_raster, out_schema)
    ds = None
    progress(1.0, f"Front {length:,.0f} m long; {len(margins)} valley margin(s).")
    return {"status": status, "found": front is not None, "length_m": length,
            "front_pixels": 0 if front is None else int(len(front)), "margins": len(margins),
            "glacier_classes": glacier, "ocean_classes": ocean, "rock_classes": rock}


def _roles(ds, input, glacier_classes, ocean_classes, rock_classes, iterations):
    """The raster's schema and its glacier, ocean and rock classes (checked)."""
    check_class_bands(ds)
    schema = schemas.read_raster_schema(input)
    glacier = resolve_classes(schema, glacier_classes, "glacier")
    ocean = resolve_classes(schema, ocean_classes, "ocean")
    rock = resolve_classes(schema, rock_classes, "rock")
    overlap = (set(glacier) & set(ocean)) | (set(glacier) & set(rock)) | (set(ocean) & set(rock))
    if overlap:
        raise FjordError(f"Classes {sorted(overlap)} are listed for more than one role; glacier, "
                         "ocean and rock classes must differ.")
    if not iterations or int(iterations) < 1:
        raise FjordError("ITERATIONS must be at least 1.")
    return schema, glacier, ocean, rock


def calving_fronts(inputs, output, *, glacier_classes=None, ocean_classes=None,
                   rock_classes=None, iterations=30, balloon=-0.5, smoothing=1, threshold=0.6,
                   min_ocean_area=1e6, progress=None, should_stop=None):
    """The calving fronts of several class rasters (scenes of different dates) in one dated line
    layer: ``output`` (GeoPackage, layer ``fronts``, one feature per scene with a front, fields
    ``date``, ``image``, ``length_m``; by date), in the CRS of the first raster (the others are
    reprojected), with a style sidecar.
    Each scene as :func:`calving_front`; a scene without a front is logged and left out.

    Returns ``{"fronts": n, "scenes": [{"image", "date", "found", "status", "length_m"}]}``.
    """
    progress = progress or no_progress
    should_stop = should_stop or never_stop
    if not inputs:
        raise FjordError("Give at least one class raster.")
    check_writable(output)
    for path in inputs:
        if os.path.abspath(path) == os.path.abspath(output):
            raise FjordError("The output would overwrite an input; choose another path.")
    target, scenes, features = None, [], []
    for i, path in enumerate(inputs):
        if should_stop():
            raise Cancelled()
        ds = open_raster(path, "class raster")
        _, glacier, ocean, rock = _roles(ds, path, glacier_classes, ocean_classes, rock_classes,
                                         iterations)
        wkt = ds.GetProjection()
        srs = osr.SpatialReference()
        if wkt:
            srs.ImportFromWkt(wkt)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        if i == 0:
            target = srs if wkt else None
        elif bool(wkt) != (target is not None):
            raise FjordError(f"{os.path.basename(path)} has {'a' if wkt else 'no'} CRS unlike the "
                             "first raster; give rasters that all have a CRS.")
        grid = TracingGrid(ds)
        front, _, status = find_front(
            grid.classes, glacier, ocean, rock=rock,
            pixel_area=grid.pixel_area, min_ocean_area=float(min_ocean_area),
            iterations=iterations, balloon=balloon, smoothing=smoothing, threshold=threshold,
            should_stop=should_stop)
        day = image_date(ds, path)
        name = os.path.basename(path)
        length = grid.length_m(front) if front is not None else 0.0
        scenes.append({"image": name, "date": day.isoformat() if day else None,
                       "found": front is not None, "status": status, "length_m": length})
        progress((i + 1) / len(inputs),
                 f"{name} ({day.isoformat() if day else 'no date'}): "
                 + (f"front {length:,.0f} m long" if front is not None else status))
        if front is not None:
            geom = ogr.Geometry(ogr.wkbLineString)
            for x, y in grid.source_xy(front):
                geom.AddPoint_2D(float(x), float(y))
            if wkt and target is not None and not srs.IsSame(target):
                geom.Transform(osr.CoordinateTransformation(srs, target))
            features.append((geom, {"date": day, "image": name, "length_m": length}))
        ds = None
    write_dated_fronts(output, features, target)
    missing = [s["image"] for s in scenes if s["found"] and s["date"] is None]
    if missing:
        progress(None, f"No acquisition date for {', '.join(missing)}: their fronts have an empty "
                       "date.")
    return {"fronts": len(features), "scenes": scenes}


def write_dated_fronts(output, features, srs, text_fields=()):
    """Write dated front lines as one layer (GeoPackage ``output``, layer ``fronts``, fields
    ``date``, ``image``, ``length_m`` and ``text_fields``; sorted by date, undated last) with
    its style sidecar, atomically. ``features``: ``(geometry, values)`` pairs, the geometries
    in ``srs``."""
    with AtomicOutputs() as out:
        path = out.add(output)
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
        layer = ds.CreateLayer("fronts", srs=srs, geom_type=ogr.wkbLineString)
        kinds = [("date", ogr.OFTDate), ("image", ogr.OFTString), ("length_m", ogr.OFTReal)]
        for field, kind in kinds + [(name, ogr.OFTString) for name in text_fields]:
            layer.CreateField(ogr.FieldDefn(field, kind))
        for geom, values in sorted(features, key=lambda f: (f[1]["date"] is None,
                                                            f[1]["date"] or datetime.date.min)):
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetGeometry(geom)
            if values["date"] is not None:
                d = values["date"]
                feature.SetField("date", d.year, d.month, d.day, 0, 0, 0, 0)
            feature.SetField("image", values["image"])
            feature.SetField("length_m", float(values["length_m"]))
            for name in text_fields:
                feature.SetField(name, str(values.get(name, "")))
            layer.CreateFeature(feature)
        ds = None
        with open(out.add(os.path.splitext(output)[0] + ".qml"), "w", encoding="utf-8") as f:
            f.write(line_qml(FRONT_QML_COLOR, "0.8"))


def read_dated_fronts(path):
    """``(srs, features)`` of a layer written by :func:`write_dated_fronts` (its first layer):
    the line geometries and their ``date`` (a date or None), ``image`` and ``length_m``."""
    ds = ogr.Open(path)
    if ds is None or ds.GetLayerCount() == 0:
        raise FjordError(f"Cannot read the front layer {path!r}.")
    layer = ds.GetLayer(0)
    srs = layer.GetSpatialRef()
    srs = srs.Clone() if srs is not None else None
    defn = layer.GetLayerDefn()
    names = {defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())}
    features = []
    for feature in layer:
        geom = feature.GetGeometryRef()
        if geom is None:
            continue
        day = None
        if "date" in names and feature.IsFieldSetAndNotNull("date"):
            y, m, d = feature.GetFieldAsDateTime("date")[:3]
            day = datetime.date(y, m, d)
        features.append((geom.Clone(), {
            "date": day, "image": feature.GetField("image") if "image" in names else "",
            "length_m": feature.GetField("length_m") if "length_m" in names else 0.0}))
    ds = None
    return srs, features


def _with_front(schema, classes):
    """The raster's schema with the calving-front class added."""
    base = schema or schemas.schema_from_values(sorted(int(v) for v in np.unique(classes) if v > 0))
    kept = [c for c in base["classes"] if int(c["value"]) != FRONT_VALUE]
    kept.append({"value": FRONT_VALUE, "name": FRONT_NAME, "color": FRONT_COLOR})
    return schemas.validate_schema(dict(base, classes=kept))
