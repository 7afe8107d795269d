"""Terminus change through time: dated calving fronts to a record of terminus positions.

:func:`terminus_change` is the core of ``fjord:terminuschange``. Three established measures,
each a position in metres from a fixed upstream reference, so that an advancing glacier gets
larger numbers (Moon & Joughin 2008):

- **centreline**: where the front crosses a glacier centreline, as the distance along the
  centreline from its upstream end. A front that crosses it several times: the most downstream
  crossing is used (the note says how many there were).
- **rectilinear box** (Moon & Joughin 2008): the area of the box between its upstream edge and
  the front, divided by the box width (the box's area over its length, which is the width of a
  rectangle and the mean width of any other quadrilateral).
- **curvilinear box** (Lea et al. 2014; MaQiT, Lea 2018): the same with a box of fixed width
  that follows the centreline (flat ends at the centreline's two ends).

A front that crosses a box more than once (it wiggles out of the box and back, or zig-zags
across it) is measured all the same, as MaQiT and the box scripts do: the front cuts the box into
pieces, and the area upstream of it is the union of the pieces at the box's upstream end (those
that touch its upstream edge); the note says the front crossed more than once. A box method gives
no value, with a note, only when the front does not reach the box or does not cut it from side
to side (a partial front that ends inside the box, or one that never separates the two ends).
A front that runs through an end of the box (a box, or a centreline, that ends among the fronts)
is measured from its part inside the box, and the note says so: extend the box beyond the fronts.

The change since the first front and the rate since the previous one are those of the first
method, in the order curvilinear box, rectilinear box, centreline, that gives a value for any
front.

Metres are true metres whatever the layers' CRSs: every geometry is projected into an azimuthal
equidistant projection centred on the study area (the centreline, else the box, else the
fronts), where distances and areas within tens of kilometres of the centre are true to better
than 1e-5.

Dates are read from a date field or from text: ``2019-02-17``, ``2019/02/17``, ``20190217``, or
such a date inside a product or file name (``S2A_MSIL1C_20190217T…``, ``LC08_L1TP_…_20190217_…``:
the first date in the name, the acquisition date of both naming schemes).
"""

import csv
import datetime
import math
import os

import numpy as np
from osgeo import gdal, ogr, osr

from ..data.dates import make_date, parse_date
from ..data.rasters import local_projection
from ..data.rasters import wgs84 as _wgs84
from ..data.vectors import open_vector_layer, spatial_reference
from ..errors import FjordError
from ..outputs import AtomicOutputs, check_figure, check_writable

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

COLUMNS = ("date", "centreline_m", "rectilinear_box_m", "curvilinear_box_m", "change_m",
           "rate_m_per_year", "front_width_m", "note")
METHODS = ("curvilinear_box_m", "rectilinear_box_m", "centreline_m")  # the change's order
DOWNSTREAM_FIRST, UPSTREAM_FIRST = 0, 1
DAYS_PER_YEAR = 365.25
# A box piece smaller than this share of the box is a sliver of round-off, not a piece.
SLIVER = 1e-9
# The points that tell a box's two ends apart lie this share of the way in from each end.
ENDS_IN = 1e-6

def find_date_field(records, field=None):
    """The name of the date field: ``field`` when given (checked), else the first field whose
    values all parse as dates. ``records`` is a list of ``{field: value}``."""
    names = list(records[0].keys()) if records else []
    if field:
        if field not in names:
            raise FjordError(f"The fronts have no field {field!r}; their fields are "
                             f"{', '.join(names) or 'none'}.")
        if not any(parse_date(r[field]) is not None for r in records):
            shown = ", ".join(repr(r[field]) for r in records[:3])
            raise FjordError(f"The field {field!r} holds no date ({shown}…): give a Date field, or "
                             "text such as 2019-02-17, 20190217 or a Sentinel-2/Landsat product "
                             "name.")
        return field
    for name in names:
        if all(parse_date(r[name]) is not None for r in records):
            return name
    raise FjordError("No field of the fronts holds a date in every feature (a Date field, or text "
                     "such as 2019-02-17, 20190217 or a Sentinel-2/Landsat product name); name "
                     "the DATE_FIELD, or add a date to every front.")


# --- geometry -----------------------------------------------------------------------------------

class Shape:
    """A geometry with its CRS: ``wkt`` (or an OGR geometry) and ``crs`` (WKT, ``EPSG:n`` or an
    OSR object)."""

    def __init__(self, geometry, crs, what="geometry"):
        if isinstance(geometry, ogr.Geometry):
            self.geometry = geometry.Clone()
        else:
            try:
                self.geometry = ogr.CreateGeometryFromWkt(geometry) if geometry else None
            except RuntimeError:
                self.geometry = None
        self.srs, self.what = spatial_reference(crs), what

    def empty(self):
        return self.geometry is None or self.geometry.IsEmpty()

    def to(self, target):
        if self.srs is None:
            raise FjordError(f"The {self.what} has no CRS; metres need one. Set the layer's CRS.")
        geom = self.geometry.Clone()
        geom.Transform(osr.CoordinateTransformation(self.srs, target))
        return geom


def _lines(geom):
    """The parts of a (multi)line geometry as arrays of (x, y)."""
    flat = ogr.GT_Flatten(geom.GetGeometryType())
    if flat == ogr.wkbLineString:
        return [np.array(geom.GetPoints())[:, :2]] if geom.GetPointCount() > 1 else []
    out = []
    for i in range(geom.GetGeometryCount()):
        out.extend(_lines(geom.GetGeometryRef(i)))
    return out


def _line_geometry(xy):
    line = ogr.Geometry(ogr.wkbLineString)
    for x, y in xy:
        line.AddPoint_2D(float(x), float(y))
    return line


def _polygon(xy):
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in list(xy) + [xy[0]]:
        ring.AddPoint_2D(float(x), float(y))
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    return poly


def _points(geom):
    """The points of an intersection result (points, and the vertices of any lines)."""
    flat = ogr.GT_Flatten(geom.GetGeometryType())
    if flat == ogr.wkbPoint:
        return [(geom.GetX(), geom.GetY())]
    if flat == ogr.wkbLineString:
        return [tuple(p[:2]) for p in geom.GetPoints()]
    out = []
    for i in range(geom.GetGeometryCount()):
        out.extend(_points(geom.GetGeometryRef(i)))
    return out


class Centreline:
    """A centreline in the local projection, ordered from its upstream end."""

    def __init__(self, geom, direction):
        parts = _lines(geom)
        if len(parts) != 1:
            raise FjordError(f"The centreline must be one line; it has {len(parts)} parts. Give "
                             "one feature of one part (merge the parts first).")
        xy = parts[0]
        if direction == DOWNSTREAM_FIRST:
            xy = xy[::-1]
        keep = np.r_[True, np.any(np.diff(xy, axis=0) != 0, axis=1)]
        self.xy = xy[keep]
        if len(self.xy) < 2:
            raise FjordError("The centreline has no length.")
        self.cumulative = np.r_[0.0, np.cumsum(np.hypot(*np.diff(self.xy, axis=0).T))]
        self.length = float(self.cumulative[-1])
        self.geometry = _line_geometry(self.xy)

    def along(self, point):
        """Distance along the line from its upstream end to (the nearest point to) ``point``."""
        p = np.asarray(point, dtype=float)
        a, b = self.xy[:-1], self.xy[1:]
        d = b - a
        t = np.clip(np.einsum("ij,ij->i", p - a, d) / np.einsum("ij,ij->i", d, d), 0, 1)
        nearest = a + t[:, None] * d
        i = int(np.argmin(np.hypot(*(nearest - p).T)))
        return float(self.cumulative[i] + t[i] * math.hypot(*d[i]))

    def end_frame(self, upstream):
        """``(point, unit tangent pointing out of the line, unit normal)`` at one end."""
        if upstream:
            p, q = self.xy[0], self.xy[1]
        else:
            p, q = self.xy[-1], self.xy[-2]
        t = (p - q) / math.hypot(*(p - q))
        return p, t, np.array([-t[1], t[0]])

    def crossings(self, front):
        """Along-distances of the front's crossings, upstream first."""
        hit = self.geometry.Intersection(front)
        if hit is None or hit.IsEmpty():
            return []
        return sorted({round(self.along(p), 6) for p in _points(hit)})


#: Points sampled across a box's upstream edge (just inside it) to find the pieces there.
EDGE_SAMPLES = 201


def _across(a, b, inward):
    """Points along the segment ``a``-``b`` (its ends left out), moved by ``inward``."""
    t = np.linspace(0.0, 1.0, EDGE_SAMPLES + 2)[1:-1, None]
    return [_point(xy) for xy in a + t * (b - a) + inward]


def curvilinear_box(centreline, width):
    """The box of ``width`` along the centreline with flat ends, the points just inside its
    upstream edge and just inside its downstream end, its width, and its two end edges
    (upstream, downstream)."""
    half = width / 2.0
    box = centreline.geometry.Buffer(half, 16)
    for upstream in (True, False):
        p, t, n = centreline.end_frame(upstream)
        cap = _polygon([p + n * width, p + n * width + t * width * 2,
                        p - n * width + t * width * 2, p - n * width])
        box = box.Difference(cap)
    p, t, n = centreline.end_frame(True)
    ends = (_across(p + n * half, p - n * half, -t * ENDS_IN * width),
            _point(centreline.xy[-1] + ENDS_IN * (centreline.xy[-2] - centreline.xy[-1])))
    q, _, m = centreline.end_frame(False)
    edges = (_line_geometry([p + n * half, p - n * half]), _line_geometry([q + m * half, q - m * half]))
    if ogr.GT_Flatten(box.GetGeometryType()) != ogr.wkbPolygon:
        raise FjordError(f"A curvilinear box {width:g} m wide folds on itself along this "
                         "centreline (a bend tighter than half the width); give a smaller "
                         "BOX_WIDTH or a smoother centreline.")
    return box, ends, float(width), edges


def _point(xy):
    p = ogr.Geometry(ogr.wkbPoint)
    p.AddPoint_2D(float(xy[0]), float(xy[1]))
    return p


def _corners(box):
    """The corners of a box polygon: its exterior ring without repeated or collinear points."""
    ring = np.array(box.GetGeometryRef(0).GetPoints())[:, :2]
    if len(ring) > 1 and np.allclose(ring[0], ring[-1]):
        ring = ring[:-1]
    keep = []
    n = len(ring)
    for i in range(n):
        a, b, c = ring[i - 1], ring[i], ring[(i + 1) % n]
        cross = (b - a)[0] * (c - b)[1] - (b - a)[1] * (c - b)[0]
        scale = math.hypot(*(b - a)) * math.hypot(*(c - b))
        if scale > 0 and abs(cross) > 1e-9 * scale:
            keep.append(b)
    return np.array(keep)


def rectilinear_box(box, centreline=None, direction=UPSTREAM_FIRST):
    """The box, the points just inside its upstream edge and just inside the middle of its
    downstream edge, its width (area over length), and its two end edges (upstream,
    downstream).

    The upstream edge is the one the centreline enters the box through (the box edge nearest
    the centreline's upstream end when it does not cross the box); without a centreline the box
    must have four corners, its ends are its two shorter opposite edges, and ``direction`` says
    whether its first vertex is at the upstream or at the downstream end.
    """
    if ogr.GT_Flatten(box.GetGeometryType()) == ogr.wkbMultiPolygon:
        if box.GetGeometryCount() != 1:
            raise FjordError("The box must be one polygon; it has "
                             f"{box.GetGeometryCount()} parts.")
        box = box.GetGeometryRef(0).Clone()
    corners = _corners(box)
    edges = [(corners[i], corners[(i + 1) % len(corners)]) for i in range(len(corners))]
    if centreline is not None:
        hits = sorted((centreline.along(p), p) for p in _points(
            centreline.geometry.Intersection(box.GetBoundary())))
        targets = [np.array(hits[0][1]), np.array(hits[-1][1])] if len(hits) >= 2 else \
            [centreline.xy[0], centreline.xy[-1]]
        ends = [int(np.argmin([_segment_distance(t, a, b) for a, b in edges])) for t in targets]
        if len(hits) == 1 and len(corners) == 4:  # it ends inside: the edge it crosses, and the
            crossed = int(np.argmin([_segment_distance(np.array(hits[0][1]), a, b)
                                     for a, b in edges]))  # opposite one
            ends = [crossed, (crossed + 2) % 4]
            if not box.Contains(_point(centreline.xy[-1])):  # its upstream end is inside
                ends.reverse()
        opposite = len(corners) != 4 or abs(ends[0] - ends[1]) == 2
        if ends[0] == ends[1] or not opposite:
            raise FjordError("The centreline does not run through the box from one end to the "
                             "other (it leaves through a side); draw the box along the glacier "
                             "around the fronts, with the centreline through both of its ends.")
        up, down = edges[ends[0]], edges[ends[1]]
    else:
        if len(corners) != 4:
            raise FjordError(f"Without a centreline the box must have four corners (it has "
                             f"{len(corners)}), so that its ends can be told from its sides; "
                             "draw a rectangle, or give a CENTRELINE.")
        lengths = [math.hypot(*(b - a)) for a, b in edges]
        pair = (0, 2) if lengths[0] + lengths[2] <= lengths[1] + lengths[3] else (1, 3)
        # the end edge that holds the first vertex (edges 0 and 3 meet there), and the other
        at_first, other = (0, 2) if pair == (0, 2) else (3, 1)
        up_i, down_i = (at_first, other) if direction == UPSTREAM_FIRST else (other, at_first)
        up, down = edges[up_i], edges[down_i]
    mid_up, mid_down = (up[0] + up[1]) / 2, (down[0] + down[1]) / 2
    length = math.hypot(*(mid_up - mid_down))
    if length <= 0:
        raise FjordError("The box has no length between its upstream and downstream ends.")
    ends = (_across(up[0], up[1], ENDS_IN * (mid_down - mid_up)),
            _point(mid_down + ENDS_IN * (mid_up - mid_down)))
    return box, ends, float(box.GetArea() / length), (_line_geometry(up), _line_geometry(down))


def _segment_distance(p, a, b):
    d = b - a
    t = np.clip(np.dot(p - a, d) / max(np.dot(d, d), 1e-300), 0, 1)
    return float(math.hypot(*(a + t * d - p)))


def box_position(box, ends, width, edges, front):
    """``(position_m, front_width_m, note)``: the box area upstream of the front over the
    width, and the front's length inside the box.

    The area upstream is the union of the pieces the front cuts the box into that hold a point
    of ``ends[0]`` (just inside the upstream edge), whatever the number of crossings; position
    None with a note when the front does not separate the downstream end from all of them.
    A front that runs through an end edge (``edges``: upstream, downstream) is measured from its
    part inside the box, with a note: the box (or the centreline it follows) ends among the
    fronts.
    """
    inside = front.Intersection(box)
    length = float(inside.Length()) if inside is not None and not inside.IsEmpty() else 0.0
    if length == 0:
        return None, None, "the front does not reach the box"
    # The whole front, not its clipped part: a clipped end lies on the box edge only up to
    # round-off, and the edge would not be split there.
    noded = box.GetBoundary().Union(front)
    pieces = noded.Polygonize()
    found = []
    for i in range(pieces.GetGeometryCount() if pieces is not None else 0):
        piece = pieces.GetGeometryRef(i)
        if piece.GetArea() > SLIVER * box.GetArea() and box.Contains(piece.PointOnSurface()):
            found.append(piece.Clone())
    upstream = {i for i, piece in enumerate(found) for point in ends[0] if piece.Contains(point)}
    downstream = {i for i, piece in enumerate(found) if piece.Contains(ends[1])}
    if len(found) < 2 or not upstream or len(downstream) != 1 or downstream & upstream:
        return None, length, "the front does not cross the box from side to side"
    area = sum(found[i].GetArea() for i in upstream)
    notes = [f"the front crosses the box more than once ({len(found)} pieces); measured from "
             f"the {len(upstream)} at the upstream end"] if len(found) > 2 else []
    cut = [end for end, edge in zip(("upstream", "downstream"), edges) if front.Intersects(edge)]
    if cut:
        notes.append(f"the front runs through the box's {' and '.join(cut)} end, so only its "
                     "part inside the box is measured: the box (or the centreline) ends among "
                     "the fronts; extend it beyond them")
    return float(area / width), length, "; ".join(notes)


# --- the record ---------------------------------------------------------------------------------

def _round(value, digits=3):
    return None if value is None else round(float(value), digits)


def terminus_change(fronts, *, centreline=None, direction=DOWNSTREAM_FIRST, box=None, box_width=0.0,
                    progress=None):
    """Positions of dated fronts by the three methods.

    Parameters
    ----------
    fronts : list of (date or text, :class:`Shape`)
        The fronts, one (multi)line each; dates as :func:`parse_date` reads them.
    centreline : :class:`Shape`, optional
    direction : int
        ``0``: the centreline's (or, without one, the box's) first vertex is downstream, in the
        fjord (MaQiT's flowlines); ``1``: it is on the glacier.
    box : :class:`Shape`, optional
        The rectilinear box (a polygon).
    box_width : float
        Metres; > 0 makes a curvilinear box of this width along the centreline.

    Returns
    -------
    dict
        ``rows`` (one dict per front, by date, keys :data:`COLUMNS`, None for empty cells),
        ``crossings`` (``(date, position_m, x, y)`` in ``crs``), ``crs`` (the local projection),
        ``geometry`` (the box, curvilinear box and centreline in it, for figures), ``method``
        (the column ``change_m`` follows).
    """
    say = progress or (lambda fraction, message=None: None)
    _check_references(fronts, centreline, box, box_width)
    anchor = centreline if centreline is not None else box
    centre = anchor.to(_wgs84()).Centroid()
    local = local_projection(centre.GetX(), centre.GetY())
    line = Centreline(centreline.to(local), direction) if centreline is not None else None
    rect = rectilinear_box(box.to(local), line, direction) if box is not None else None
    curvy = curvilinear_box(line, float(box_width)) if box_width and box_width > 0 else None

    rows, crossings = [], []
    for date_value, shape in fronts:
        rows.append(_measure_front(date_value, shape, local, line, rect, curvy, crossings))
        say(len(rows) / len(fronts), None)
    rows.sort(key=lambda r: (r["date"] is None, r["date"] or datetime.date.min))
    method = next((m for m in METHODS if any(r[m] is not None for r in rows)), None)
    _add_changes(rows, method)
    for row in rows:
        for key in COLUMNS[1:-1]:
            row[key] = _round(row[key])
    return {"rows": rows, "crossings": crossings, "crs": local, "method": method,
            "geometry": {"centreline": line.xy if line is not None else None,
                         "box": rect[0] if rect else None,
                         "curvilinear_box": curvy[0] if curvy else None}}


def _check_references(fronts, centreline, box, box_width):
    if centreline is None and box is None:
        raise FjordError("Give a CENTRELINE, a BOX, or both: the positions are measured along a "
                         "centreline or inside a box.")
    if box_width and box_width > 0 and centreline is None:
        raise FjordError("A curvilinear box (BOX_WIDTH > 0) follows the centreline; give a "
                         "CENTRELINE.")
    if not fronts:
        raise FjordError("There are no fronts to measure.")
    anchor = centreline if centreline is not None else box
    if anchor.empty():
        raise FjordError(f"The {anchor.what} is empty.")
    if box is not None and not box.empty() and not box.geometry.IsValid():
        raise FjordError("The box is not a valid polygon: its outline crosses itself (or a "
                         "ring touches itself). Redraw it as a simple polygon around the fronts, "
                         "or fix it with Vector > Geometry Tools > Fix Geometries.")


def _measure_front(date_value, shape, local, line, rect, curvy, crossings):
    """The row of one front: its positions by each method and its notes. The centreline
    crossing used is appended to ``crossings``."""
    day = parse_date(date_value)
    notes = []
    row = dict.fromkeys(COLUMNS)
    row["date"] = day
    if day is None:
        notes.append(f"no date ({date_value!r} is not one)")
    if shape.empty():
        notes.append("empty geometry")
        row["note"] = "; ".join(notes)
        return row
    geom = shape.to(local)
    if line is not None:
        _centreline_position(row, notes, line, geom, day, crossings)
    for key, spec in (("rectilinear_box_m", rect), ("curvilinear_box_m", curvy)):
        if spec is None:
            continue
        position, inside, note = box_position(*spec, geom)
        row[key] = position
        row["front_width_m"] = inside  # the curvilinear box's when there is one (last)
        if note:
            notes.append(f"{key.replace('_m', '').replace('_', ' ')}: {note}")
    row["note"] = "; ".join(notes)
    return row


def _centreline_position(row, notes, line, geom, day, crossings):
    """The most downstream crossing of the front with the centreline."""
    along = line.crossings(geom)
    if not along:
        notes.append("the front does not cross the centreline")
        return
    row["centreline_m"] = along[-1]
    if len(along) > 1:
        notes.append(f"the front crosses the centreline {len(along)} times; the most "
                     "downstream crossing is used")
    x, y = _point_at(line, along[-1])
    crossings.append((day, along[-1], x, y))


def _add_changes(rows, method):
    """``change_m`` from the first dated value and ``rate_m_per_year`` from the previous one,
    along the column of ``method``; rows sorted by date."""
    first = previous = None
    for row in rows:
        value = row[method] if method else None
        if value is None or row["date"] is None:
            continue
        if first is None:
            first = (row["date"], value)
        row["change_m"] = value - first[1]
        if previous is not None:
            years = (row["date"] - previous[0]).days / DAYS_PER_YEAR
            if years > 0:
                row["rate_m_per_year"] = (value - previous[1]) / years
        previous = (row["date"], value)


def _point_at(line, distance):
    i = int(np.clip(np.searchsorted(line.cumulative, distance) - 1, 0, len(line.xy) - 2))
    seg = line.cumulative[i + 1] - line.cumulative[i]
    t = (distance - line.cumulative[i]) / seg if seg > 0 else 0.0
    x, y = line.xy[i] + t * (line.xy[i + 1] - line.xy[i])
    return float(x), float(y)


# --- files --------------------------------------------------------------------------------------

def _field_value(feature, index):
    defn = feature.GetFieldDefnRef(index)
    if not feature.IsFieldSetAndNotNull(index):
        return None
    if defn.GetType() in (ogr.OFTDate, ogr.OFTDateTime):
        y, m, d = feature.GetFieldAsDateTime(index)[:3]
        return make_date(y, m, d)
    return feature.GetFieldAsString(index)


def read_fronts(path, layer=None, date_field=None):
    """``(fronts, field)``: the dated fronts of a line layer (see :func:`terminus_change`) and the
    date field used."""
    ds, lyr = open_vector_layer(path, layer, "fronts")
    flat = ogr.GT_Flatten(lyr.GetGeomType())
    if flat not in (ogr.wkbLineString, ogr.wkbMultiLineString, ogr.wkbUnknown):
        raise FjordError(f"The fronts {os.path.basename(path)} are a "
                         f"{ogr.GeometryTypeToName(flat)} layer; give a line layer, one front "
                         "per feature.")
    srs = lyr.GetSpatialRef()
    defn = lyr.GetLayerDefn()
    names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    records, shapes = [], []
    for feature in lyr:
        records.append({n: _field_value(feature, i) for i, n in enumerate(names)})
        g = feature.GetGeometryRef()
        if g is not None and not g.IsEmpty() and ogr.GT_Flatten(g.GetGeometryType()) not in (
                ogr.wkbLineString, ogr.wkbMultiLineString):
            raise FjordError(f"The fronts {os.path.basename(path)} hold "
                             f"{ogr.GeometryTypeToName(ogr.GT_Flatten(g.GetGeometryType()))} "
                             "geometries; give a line layer.")
        shapes.append(Shape(g, srs, "front"))
    del ds
    if not records:
        raise FjordError(f"The fronts {os.path.basename(path)} hold no feature.")
    field = find_date_field(records, date_field) if names or date_field else None
    if field is None:
        raise FjordError(f"The fronts {os.path.basename(path)} have no field to read a date from.")
    return [(r[field], s) for r, s in zip(records, shapes)], field


def read_one(path, layer, what, polygon):
    """The one feature of a centreline or box layer as a :class:`Shape`."""
    ds, lyr = open_vector_layer(path, layer, what)
    geoms = [f.GetGeometryRef().Clone() for f in lyr
             if f.GetGeometryRef() is not None and not f.GetGeometryRef().IsEmpty()]
    srs = lyr.GetSpatialRef()
    del ds
    kinds = (ogr.wkbPolygon, ogr.wkbMultiPolygon) if polygon else (ogr.wkbLineString,
                                                                   ogr.wkbMultiLineString)
    if len(geoms) != 1:
        raise FjordError(f"The {what} layer {os.path.basename(path)} must hold one feature; it "
                         f"holds {len(geoms)} with a geometry. Select or extract the one to use.")
    if ogr.GT_Flatten(geoms[0].GetGeometryType()) not in kinds:
        raise FjordError(f"The {what} must be a {'polygon' if polygon else 'line'}; "
                         f"{os.path.basename(path)} holds "
                         f"{ogr.GeometryTypeToName(ogr.GT_Flatten(geoms[0].GetGeometryType()))}.")
    return Shape(geoms[0], srs, what)


def _dated_count(rows, field):
    """'N fronts dated by the field ...', saying how many have no readable date."""
    undated = sum(1 for r in rows if r["date"] is None)
    text = f"{len(rows) - undated} of {len(rows)} fronts dated by the field '{field}'"
    return text + (f" ({undated} without a readable date, listed last with no date)"
                   if undated else "")


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def write_table(path, rows):
    """The record as CSV, or as a GeoPackage table (no geometry) by extension."""
    if path.lower().endswith(".gpkg"):
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
        layer = ds.CreateLayer("terminus_change", geom_type=ogr.wkbNone)
        types = {"date": ogr.OFTDate, "note": ogr.OFTString}
        for name in COLUMNS:
            layer.CreateField(ogr.FieldDefn(name, types.get(name, ogr.OFTReal)))
        layer.StartTransaction()
        for row in rows:
            feature = ogr.Feature(layer.GetLayerDefn())
            for name in COLUMNS:
                value = row[name]
                if value is None:
                    feature.SetFieldNull(name)
                elif name == "date":
                    feature.SetField(name, value.year, value.month, value.day, 0, 0, 0, 0)
                else:
                    feature.SetField(name, value)
            layer.CreateFeature(feature)
        layer.CommitTransaction()
        ds = None
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for row in rows:
            w.writerow([_cell(row[name]) for name in COLUMNS])


def decimal_year(day):
    start = datetime.date(day.year, 1, 1)
    length = (datetime.date(day.year + 1, 1, 1) - start).days
    return day.year + (day - start).days / length


def _date_breaks(years, n=5):
    """Graduated classes of decimal years, coloured along viridis (early purple, late yellow)."""
    from matplotlib import colormaps

    lo, hi = (min(years), max(years)) if years else (2000.0, 2001.0)
    if hi <= lo:
        hi = lo + 1e-3
    edges = np.linspace(lo, hi, n + 1)
    cmap = colormaps["viridis"]
    out = []
    for i in range(n):
        r, g, b, _ = (int(255 * c) for c in cmap(i / max(n - 1, 1)))
        label = f"{edges[i]:.2f} - {edges[i + 1]:.2f}"
        lower = edges[i] - (1e-6 if i == 0 else 0)
        upper = edges[i + 1] + (1e-6 if i == n - 1 else 0)
        out.append((round(lower, 6), round(upper, 6), label, f"{r},{g},{b},255"))
    return out


def write_points(path, crossings, local, target):
    """The centreline crossings (fields ``date``, ``position_m``, ``year``) in ``target``'s CRS,
    with a style sidecar graduated by date."""
    from ..data.styles import graduated_points_qml

    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer("terminus_positions", srs=target, geom_type=ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("date", ogr.OFTDate))
    layer.CreateField(ogr.FieldDefn("position_m", ogr.OFTReal))
    layer.CreateField(ogr.FieldDefn("year", ogr.OFTReal))
    back = osr.CoordinateTransformation(local, target) if target is not None else None
    layer.StartTransaction()
    for day, position, x, y in crossings:
        feature = ogr.Feature(layer.GetLayerDefn())
        p = ogr.Geometry(ogr.wkbPoint)
        p.AddPoint_2D(x, y)
        if back is not None:
            p.Transform(back)
        feature.SetGeometry(p)
        if day is not None:
            feature.SetField("date", day.year, day.month, day.day, 0, 0, 0, 0)
            feature.SetField("year", decimal_year(day))
        feature.SetField("position_m", float(position))
        layer.CreateFeature(feature)
    layer.CommitTransaction()
    ds = None
    years = [decimal_year(d) for d, *_ in crossings if d is not None]
    return graduated_points_qml("year", _date_breaks(years), size_mm="2.4")


def figure(path, result, fronts, title):
    """Positions through time (a series per method) beside a map of the box, the centreline and
    the fronts coloured by date."""
    import matplotlib
    import matplotlib.dates as mdates

    from ..data.plotting import pyplot

    plt = pyplot()

    rows = [r for r in result["rows"] if r["date"] is not None]
    fig, (ax, ax_map) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1.6, 1]})
    labels = {"centreline_m": "centreline", "rectilinear_box_m": "rectilinear box",
              "curvilinear_box_m": "curvilinear box"}
    for key, marker in (("curvilinear_box_m", "o"), ("rectilinear_box_m", "s"), ("centreline_m", "^")):
        pts = [(r["date"], r[key]) for r in rows if r[key] is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, ms=4, lw=1,
                    label=labels[key])
    ax.set_ylabel("terminus position (m from the upstream reference)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))

    geo = result["geometry"]
    for key, colour in (("curvilinear_box", "#888888"), ("box", "#444444")):
        if geo[key] is not None:
            for xy in _rings(geo[key]):
                ax_map.plot(xy[:, 0] / 1000, xy[:, 1] / 1000, color=colour, lw=1)
    if geo["centreline"] is not None:
        xy = geo["centreline"]
        ax_map.plot(xy[:, 0] / 1000, xy[:, 1] / 1000, color="black", lw=1, ls="--")
        ax_map.plot(xy[0, 0] / 1000, xy[0, 1] / 1000, "k^", ms=6)
    dated = [(parse_date(d), s) for d, s in fronts]
    days = [d for d, _ in dated if d is not None]
    cmap = matplotlib.colormaps["viridis"]
    lo, hi = (min(days).toordinal(), max(days).toordinal()) if days else (0, 1)
    for day, shape in dated:
        if shape.empty():
            continue
        t = 0.5 if day is None or hi == lo else (day.toordinal() - lo) / (hi - lo)
        for xy in _lines(shape.to(result["crs"])):
            ax_map.plot(xy[:, 0] / 1000, xy[:, 1] / 1000, color=cmap(t), lw=1)
    # Zoom on the fronts (and the box), with the centreline's upstream end when it is near.
    shown = [xy for _, shape in dated if not shape.empty() for xy in _lines(shape.to(result["crs"]))]
    if geo["box"] is not None:
        shown += _rings(geo["box"])
    if shown:
        xy = np.concatenate(shown) / 1000
        (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
        pad = 0.35 * max(x1 - x0, y1 - y0, 0.1)
        ax_map.set_xlim(x0 - pad, x1 + pad)
        ax_map.set_ylim(y0 - pad, y1 + pad)
    ax_map.set_aspect("equal")
    ax_map.set_xlabel("km (local azimuthal equidistant)")
    ax_map.set_title("box, centreline (upstream end ▲), fronts by date")
    if days and hi > lo:
        sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(lo, hi))
        bar = fig.colorbar(sm, ax=ax_map, fraction=0.046)
        ticks = np.linspace(lo, hi, 4)
        bar.set_ticks(ticks)
        bar.set_ticklabels([datetime.date.fromordinal(int(t)).isoformat() for t in ticks])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rings(polygon):
    out = []
    flat = ogr.GT_Flatten(polygon.GetGeometryType())
    parts = [polygon] if flat == ogr.wkbPolygon else [polygon.GetGeometryRef(i)
                                                      for i in range(polygon.GetGeometryCount())]
    for part in parts:
        for i in range(part.GetGeometryCount()):
            out.append(np.array(part.GetGeometryRef(i).GetPoints())[:, :2])
    return out


def terminus_change_files(input, output, *, input_layer=None, date_field=None, centreline=None,
                          centreline_layer=None, direction=DOWNSTREAM_FIRST, box=None,
                          box_layer=None, box_width=0.0, figure_path=None, output_points=None,
                          progress=None, should_stop=None):
    """The worker job of ``fjord:terminuschange``: layers in, the table (and the figure and the
    crossing points) out. Returns ``{"rows": n, "method": ..., "date_field": ..., "notes": n}``."""
    from ..errors import no_progress

    progress = progress or no_progress
    for path in (output, output_points):
        if path:
            check_writable(path)
    if figure_path:
        check_figure(figure_path)
    if output_points and centreline is None:
        raise FjordError("OUTPUT_POINTS are where the fronts cross the centreline; give a "
                         "CENTRELINE.")
    if output_points and not output_points.lower().endswith(".gpkg"):
        raise FjordError("Write OUTPUT_POINTS as a GeoPackage (.gpkg).")
    if not output.lower().endswith((".csv", ".gpkg")):
        raise FjordError("Write the terminus-change table as CSV (.csv) or GeoPackage (.gpkg).")
    fronts, field = read_fronts(input, input_layer, date_field)
    line = read_one(centreline, centreline_layer, "centreline", False) if centreline else None
    polygon = read_one(box, box_layer, "box", True) if box else None
    result = terminus_change(fronts, centreline=line, direction=direction, box=polygon,
                             box_width=box_width, progress=progress)
    rows = result["rows"]
    valued = sum(1 for r in rows if r[result["method"]] is not None) if result["method"] else 0
    progress(0.9, f"{_dated_count(rows, field)}; {valued} with a position by "
                  f"{(result['method'] or 'no method').replace('_m', '').replace('_', ' ')}")
    if result["method"] is None:
        raise FjordError("No front gives a position: "
                         + "; ".join(sorted({r["note"] for r in rows if r["note"]}))
                         + ". Check that the fronts cross the box or the centreline.")
    with AtomicOutputs() as out:
        write_table(out.add(output), rows)
        if output_points:
            qml = write_points(out.add(output_points), result["crossings"], result["crs"],
                               line.srs)
            with open(out.add(os.path.splitext(output_points)[0] + ".qml"), "w",
                      encoding="utf-8") as f:
                f.write(qml)
        if figure_path:
            figure(out.add(figure_path), result, fronts,
                   f"Terminus position, {os.path.basename(input)}")
    return {"rows": len(rows), "method": result["method"], "date_field": field,
            "notes": sum(1 for r in rows if r["note"])}
