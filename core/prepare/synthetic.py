"""Synthetic Sentinel-2 scenes of a marine-terminating glacier, with their ground truth.

:func:`synthetic_fjord` draws a fjord that runs from the open sea (left) to a glacier that fills
it to the opposite edge of the image, with rocky, partly snow-covered valley walls, a wiggly
calving front, a band of ice mélange, iceberg-laden water and open water, and renders it as
Sentinel-2 L1C digital numbers (reflectance x 10000) in the band order B4, B3, B2, B8. The
class raster follows the glacial schema of Marochov et al. (2021), values 1 to 7 (see
:data:`GLACIAL_CLASSES`), and the true calving front comes as a continuous curve in pixel
coordinates. :func:`write_synthetic_scene` writes a scene as GeoTIFFs and GeoPackages: the
image, the true class raster, training polygons digitised a little inside the class
boundaries, and the reference calving front.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed and shape give
bit-identical arrays. Geometry (fjord course and width, front position, mélange width, ...)
scales with the image size; texture (crevasses, rock grain, sensor noise) stays at pixel scale.
The pixel size only sets the georeferencing.
"""

import json
import os
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, ogr, osr
from scipy import ndimage, sparse
from scipy.special import ndtri

from ..data import schema as schemas
from ..data.vectors import spatial_reference
from ..outputs import AtomicOutputs

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

__all__ = ["GLACIAL_CLASSES", "BANDS", "SyntheticScene", "synthetic_fjord",
           "write_synthetic_scene", "training_polygons"]

#: The glacial class schema (resources/schemas/glacial.json) the scene is drawn in.
GLACIAL_SCHEMA = schemas.preset_schema("glacial")
#: (value, name, colour) for classes 1 to 7; 0 means unlabelled.
GLACIAL_CLASSES = [(c["value"], c["name"], c["color"]) for c in GLACIAL_SCHEMA["classes"]]

#: Band names of the synthetic image, in band order.
BANDS = ("B4", "B3", "B2", "B8")

_OPEN_WATER, _ICEBERG_WATER, _MELANGE, _GLACIER_ICE, _SNOW_ON_ICE, _SNOW_ON_ROCK, _ROCK = \
    range(1, 8)

# Top-of-atmosphere reflectance x 10000 of each surface, bands B4, B3, B2, B8.
_SPECTRA = {
    "fjord water": (500.0, 700.0, 900.0, 150.0),
    "sea water": (380.0, 560.0, 830.0, 110.0),
    "sediment plume": (420.0, 380.0, 220.0, 70.0),    # added to turbid water near the front
    "glacier ice": (5800.0, 6200.0, 6600.0, 4500.0),
    "snow on ice": (8600.0, 8800.0, 9000.0, 7500.0),
    "snow on rock": (7600.0, 7800.0, 8000.0, 6500.0),
    "rock": (1500.0, 1300.0, 1200.0, 2000.0),
    "iceberg": (6700.0, 7000.0, 7400.0, 5600.0),
    "melange ice": (6100.0, 6450.0, 6800.0, 4900.0),
    "moraine": (1900.0, 1750.0, 1650.0, 2300.0),
}
# Share of diffuse (sky) light, which reaches shadowed slopes: bluer than direct sunlight.
_AMBIENT = np.array([0.20, 0.24, 0.33, 0.16], np.float32)
_SENSOR_NOISE_DN = 15.0


@dataclass
class SyntheticScene:
    """A synthetic Sentinel-2 scene with its ground truth.

    Attributes
    ----------
    image : ndarray of uint16, shape (4, H, W)
        Digital numbers (reflectance x 10000) of bands B4, B3, B2, B8.
    classes : ndarray of uint8, shape (H, W)
        True classes, values 1 to 7 (:data:`GLACIAL_CLASSES`).
    front : ndarray of float, shape (N, 2)
        The true calving front as (col, row) pixel coordinates, continuous, with (0, 0) the
        top-left corner of the top-left pixel; from one fjord wall to the other, sampled at
        least every half pixel along its length.
    geotransform : tuple of 6 floats
        GDAL geotransform of the image.
    crs_wkt : str
        Coordinate reference system (WKT).
    seed : int
        The seed the scene was drawn with.
    """

    image: np.ndarray
    classes: np.ndarray
    front: np.ndarray
    geotransform: tuple
    crs_wkt: str
    seed: int


# --------------------------------------------------------------------------------------------
# Smooth random fields
# --------------------------------------------------------------------------------------------
# A field at scale s is white noise on a lattice of spacing s, interpolated with a gaussian
# kernel (sigma = 0.75 s, 6 taps per axis) whose weights are normalised to unit L2 norm, so the
# field has unit variance everywhere. Separable lattices are interpolated with two sparse
# matrix products, which is cheap even for images of many thousand pixels.

_SIGMA = 0.75
_TAPS = 6


def _lattice(rng, lo, hi, spacing):
    """Random phase and size of a lattice of the given spacing covering [lo, hi]."""
    offset = lo - (3.0 + rng.random()) * spacing
    n = int(np.floor((hi - offset) / spacing)) + _TAPS
    return offset, n


def _weights(pos, offset, spacing):
    """Lattice indices and weights, each of shape pos.shape + (6,)."""
    t = (np.asarray(pos, np.float64) - offset) / spacing
    k = np.floor(t).astype(np.int64)[..., None] - 2 + np.arange(_TAPS)
    w = np.exp(-0.5 * ((t[..., None] - k) / _SIGMA) ** 2)
    w /= np.sqrt(np.sum(w * w, axis=-1, keepdims=True))
    return k, w


def _interp_matrix(pos, offset, spacing, n):
    k, w = _weights(pos, offset, spacing)
    indptr = np.arange(0, _TAPS * len(pos) + 1, _TAPS)
    return sparse.csr_matrix((w.ravel().astype(np.float32), k.ravel(), indptr),
                             shape=(len(pos), n))


class _Noise1D:
    """Smooth gaussian noise along one axis, unit variance, evaluated anywhere in [lo, hi]."""

    def __init__(self, rng, lo, hi, scale):
        self.spacing = max(float(scale), 1e-6)
        self.offset, n = _lattice(rng, lo, hi, self.spacing)
        self.knots = rng.standard_normal(n)

    def __call__(self, pos):
        k, w = _weights(pos, self.offset, self.spacing)
        return np.sum(self.knots[k] * w, axis=-1)


def _noise(rng, rows, cols, scale, scale_cols=None):
    """Smooth gaussian noise of unit variance on the grid ``rows`` x ``cols``.

    ``scale`` is the correlation length along rows and columns in pixels (``scale_cols``, if
    given, the one along the columns). Scales under one pixel give white noise.
    """
    scale_cols = scale if scale_cols is None else scale_cols
    if scale < 1 and scale_cols < 1:
        return rng.standard_normal((len(rows), len(cols)), dtype=np.float32)
    r_off, r_n = _lattice(rng, rows[0], rows[-1], scale)
    c_off, c_n = _lattice(rng, cols[0], cols[-1], scale_cols)
    knots = rng.standard_normal((r_n, c_n), dtype=np.float32)
    a_rows = _interp_matrix(rows, r_off, scale, r_n)
    a_cols = _interp_matrix(cols, c_off, scale_cols, c_n)
    tmp = np.ascontiguousarray((a_cols @ knots.T).T)     # (r_n, W)
    return np.asarray(a_rows @ tmp, dtype=np.float32)     # (H, W)


def _sheared_noise(rng, rows, cols, scale_rows, scale_cols, shift):
    """Anisotropic noise whose columns are shifted by ``shift`` (one value per row).

    The field is evaluated at (row, col + shift[row]): with a long correlation along the rows and
    a short one along the columns it draws streaks that follow the curve col = -shift(row).
    """
    r_off, r_n = _lattice(rng, rows[0], rows[-1], scale_rows)
    pos = cols[None, :] + shift[:, None]
    c_off, c_n = _lattice(rng, pos.min(), pos.max(), scale_cols)
    knots = rng.standard_normal((r_n, c_n))
    tmp = np.asarray(_interp_matrix(rows, r_off, scale_rows, r_n) @ knots)   # (H, c_n)
    out = np.zeros(pos.shape, np.float64)
    for i in range(len(rows)):
        k, w = _weights(pos[i], c_off, scale_cols)
        out[i] = np.sum(tmp[i][k] * w, axis=-1)
    return out.astype(np.float32)


def _fractal(rng, rows, cols, scales, amplitudes):
    """Sum of smooth noise fields at several scales."""
    out = np.zeros((len(rows), len(cols)), np.float32)
    for scale, amp in zip(scales, amplitudes):
        out += np.float32(amp) * _noise(rng, rows, cols, scale)
    return out


def _components_touching(mask, seeds):
    """Pixels of ``mask`` 4-connected to any pixel of ``seeds``."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    keep = np.unique(lab[seeds & mask])
    keep = keep[keep > 0]
    return np.isin(lab, keep)


# --------------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------------

def synthetic_fjord(shape=(768, 1024), seed=0, pixel_size=10.0, epsg=32624,
                    origin=(530000.0, 7370000.0)):
    """Draw a synthetic Sentinel-2 scene of a fjord with a marine-terminating glacier.

    The fjord enters from the open sea at the left of the image and meanders to the right edge,
    which the glacier fills. Downstream of the calving front (55-65 % along the image) lie a
    band of mélange, iceberg water and open water; rock and snow-covered rock make up the valley
    walls.

    Parameters
    ----------
    shape : tuple of int, optional
        (rows, cols) of the scene; from about 128 x 128 to several thousand pixels.
    seed : int, optional
        Seed of ``numpy.random.default_rng``: the same seed and shape give identical scenes.
    pixel_size : float, optional
        Pixel size in metres (georeferencing only: features scale with the image size).
    epsg : int, optional
        EPSG code of the projected coordinate reference system (UTM zone 24N by default, where
        Helheim Glacier lies).
    origin : tuple of float, optional
        Map coordinates (x, y) of the top-left corner of the image.

    Returns
    -------
    scene : SyntheticScene
        Image (4, H, W) uint16 in band order B4, B3, B2, B8; classes (H, W) uint8, values 1-7;
        front (N, 2) float, (col, row) pixel coordinates of the calving front; geotransform;
        crs_wkt; seed.

    Examples
    --------
    >>> scene = synthetic_fjord((256, 384), seed=3)
    >>> scene.image.shape, scene.classes.shape
    ((4, 256, 384), (256, 384))
    """
    height, width = (int(v) for v in shape)
    if height < 64 or width < 64:
        raise ValueError(f"shape {shape} is too small: at least 64 x 64 pixels are needed.")
    rng = np.random.default_rng(seed)
    rows = np.arange(height, dtype=np.float64) + 0.5
    cols = np.arange(width, dtype=np.float64) + 0.5

    fjord = _Fjord(rng, height, width)
    wall = _draw_walls(rng, fjord, rows, cols)
    front, front_of_row = _draw_front(rng, fjord, wall, rows)
    classes, fields = _draw_classes(rng, fjord, wall, front_of_row, rows, cols)
    image = _render(rng, fjord, classes, fields, rows, cols)

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(int(epsg))
    geotransform = (float(origin[0]), float(pixel_size), 0.0,
                    float(origin[1]), 0.0, -float(pixel_size))
    return SyntheticScene(image=image, classes=classes, front=front, geotransform=geotransform,
                          crs_wkt=srs.ExportToWkt(), seed=seed)


class _Fjord:
    """Large-scale layout: centre line, half width, mouth and front positions (pixels)."""

    def __init__(self, rng, height, width):
        self.height, self.width = height, width
        self.size = min(height, width)
        self.scale = self.size / 768.0
        # Centre line: a few low-frequency sinusoids.
        self.y0 = height * (0.5 + rng.uniform(-0.04, 0.04))
        self.freqs = np.array([rng.uniform(0.4, 0.9), rng.uniform(1.0, 1.8),
                               rng.uniform(2.0, 3.5)])
        self.amps = self.size * np.array([rng.uniform(0.04, 0.09), rng.uniform(0.015, 0.035),
                                          rng.uniform(0.004, 0.01)])
        self.amps *= rng.choice([-1.0, 1.0], 3)
        # Keep the fjord from turning more than about 35 degrees off the image axis.
        max_slope = np.sum(np.abs(self.amps) * 2 * np.pi * self.freqs) / width
        self.amps *= min(1.0, 0.7 / max_slope)
        self.phases = rng.uniform(0.0, 2.0 * np.pi, 3)
        # Width, position of the coast (mouth) and of the calving front.
        self.half_width0 = self.size * rng.uniform(0.11, 0.145)
        self.mouth = width * rng.uniform(0.15, 0.22)
        self.front = width * rng.uniform(0.55, 0.65)
        self.width_noise = _Noise1D(rng, 0.0, width, 0.15 * width)
        self.coast_noise = (_Noise1D(rng, 0.0, height, 0.2 * height),
                            _Noise1D(rng, 0.0, height, 0.05 * height))
        self.smooth_front = None      # set by _draw_front: the front without its wiggles

    def centre(self, x):
        s = np.asarray(x, np.float64) / self.width
        return self.y0 + np.sum(self.amps * np.sin(2 * np.pi * self.freqs * s[..., None]
                                                   + self.phases), axis=-1)

    def centre_slope(self, x):
        s = np.asarray(x, np.float64) / self.width
        return np.sum(self.amps * 2 * np.pi * self.freqs / self.width
                      * np.cos(2 * np.pi * self.freqs * s[..., None] + self.phases), axis=-1)

    def half_width(self, x):
        x = np.asarray(x, np.float64)
        hw = self.half_width0 * (1.0 + 0.12 * self.width_noise(x))
        # Wider towards the mouth, a little narrower up-glacier.
        towards_mouth = np.clip((self.front - x) / (self.front - self.mouth), 0.0, 1.0)
        hw *= 1.0 + 0.6 * towards_mouth ** 1.5
        hw *= 1.0 - 0.12 * np.clip((x - self.front) / (self.width - self.front), 0.0, 1.0)
        return hw

    def coast(self, y):
        """Column of the outer coast at row ``y``: land lies to its right."""
        return (self.mouth + 0.035 * self.width * self.coast_noise[0](y)
                + 0.012 * self.width * self.coast_noise[1](y))


def _draw_walls(rng, fjord, rows, cols):
    """Signed distance-like wall field: positive on land, negative in the fjord and the sea."""
    size = fjord.size
    hw0 = fjord.half_width0
    coast = _fractal(rng, rows, cols,
                     [0.10 * size, 0.04 * size, max(0.012 * size, 3.0), 1.5],
                     [0.16 * hw0, 0.07 * hw0, 0.03 * hw0, min(0.4, 0.008 * hw0)])
    wall = (np.abs(rows[:, None] - fjord.centre(cols)[None, :]).astype(np.float32)
            - fjord.half_width(cols).astype(np.float32)[None, :])
    outer = (cols[None, :] - fjord.coast(rows)[:, None]).astype(np.float32)
    np.minimum(wall, outer, out=wall)
    wall += coast
    # A few rocky islands offshore.
    n_islands = int(rng.integers(0, 4))
    for _ in range(n_islands):
        cx = rng.uniform(0.03, 0.85) * fjord.mouth
        cy = rng.uniform(0.1, 0.9) * fjord.height
        radius = rng.uniform(0.015, 0.04) * size
        r0, r1 = (int(max(0, np.floor(cy - 2.5 * radius))),
                  int(min(len(rows), np.ceil(cy + 2.5 * radius))))
        c0, c1 = (int(max(0, np.floor(cx - 2.5 * radius))),
                  int(min(len(cols), np.ceil(cx + 2.5 * radius))))
        if r1 <= r0 or c1 <= c0:
            continue
        dist = np.hypot(rows[r0:r1, None] - cy, cols[None, c0:c1] - cx)
        island = radius - dist + 3.0 * radius / hw0 * coast[r0:r1, c0:c1]
        np.maximum(wall[r0:r1, c0:c1], island.astype(np.float32), out=wall[r0:r1, c0:c1])

    # Clean-up: water not connected to the sea becomes land; islets and land that is neither
    # an offshore island nor attached to the image border become water.
    land = wall > 0
    water = ~land
    sea_edge = np.zeros_like(land)
    sea_edge[:, 0] = True
    lakes = water & ~_components_touching(water, sea_edge)
    lab, n = ndimage.label(land)
    islets = np.zeros_like(land)
    if n:
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        centroid_x = ndimage.mean(np.broadcast_to(cols[None, :], land.shape), lab,
                                  np.arange(1, n + 1))
        drop = np.zeros(n + 1, bool)
        drop[1:] = (sizes[1:] < 25.0 * fjord.scale ** 2 + 4) | \
            (centroid_x > fjord.mouth + 0.02 * fjord.width)
        drop[border] = False
        drop[0] = False
        islets = drop[lab]
    wall[lakes] = np.float32(0.5)
    wall[islets] = np.float32(-0.5)
    return wall


def _draw_front(rng, fjord, wall, rows):
    """The calving front as col = F(row); returns the polyline and F at every row centre."""
    xf = fjord.front
    ycf = float(fjord.centre(xf))
    hwf = float(fjord.half_width(xf))
    tilt = float(np.clip(-fjord.centre_slope(xf), -0.5, 0.5))
    bulge = (rng.uniform(0.12, 0.35) if rng.random() < 0.8 else -rng.uniform(0.08, 0.2)) * hwf
    bulge = np.copysign(max(abs(bulge), 3.0), bulge)      # visibly curved even when small
    embayment = rng.random() < 0.7
    emb_v = rng.uniform(-0.6, 0.6)
    emb_w = rng.uniform(0.08, 0.25)
    emb_depth = rng.uniform(0.08, 0.3) * hwf
    lo, hi = -2.0, fjord.height + 2.0
    wiggles = [(_Noise1D(rng, lo, hi, s * hwf), a * 2 * hwf)
               for s, a in ((0.35, 0.035), (0.12, 0.018), (0.04, 0.007))]
    fine = _Noise1D(rng, lo, hi, 2.0)

    def smooth_front(y):
        v = np.clip((y - ycf) / hwf, -1.0, 1.0)
        return xf + tilt * (y - ycf) - bulge * (1.0 - v * v)

    def front_col(y):
        y = np.asarray(y, np.float64)
        x = smooth_front(y)
        if embayment:
            x = x + emb_depth * np.exp(-0.5 * (((y - ycf) / hwf - emb_v) / emb_w) ** 2)
        for noise, amp in wiggles:
            x = x + amp * noise(y)
        return x + 0.25 * fine(y)

    fjord.smooth_front = smooth_front
    # Walk along the curve from the fjord centre to the walls on either side.
    y = np.arange(0.0, fjord.height, 0.1) + 0.05
    x = front_col(y)
    w = ndimage.map_coordinates(wall, [y - 0.5, x - 0.5], order=1, mode="nearest")
    i_c = int(np.argmin(np.abs(y - ycf)))
    if w[i_c] >= 0:
        raise RuntimeError("internal error: the calving front does not cross the fjord")
    land_idx = np.flatnonzero(w >= 0)
    above, below = land_idx[land_idx < i_c], land_idx[land_idx > i_c]
    if len(above) == 0 or len(below) == 0:
        raise RuntimeError("internal error: the calving front does not reach both fjord walls")
    i0, i1 = above[-1], below[0]

    def crossing(i_land, i_water):
        t = w[i_land] / (w[i_land] - w[i_water])
        return (x[i_land] + t * (x[i_water] - x[i_land]), y[i_land] + t * (y[i_water] - y[i_land]))

    pts = np.concatenate([[crossing(i0, i0 + 1)],
                          np.column_stack([x[i0 + 1:i1], y[i0 + 1:i1]]),
                          [crossing(i1, i1 - 1)]])
    # Resample every half pixel along the curve.
    seg = np.hypot(*np.diff(pts, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    n = int(np.ceil(arc[-1] / 0.5)) + 1
    s = np.linspace(0.0, arc[-1], n)
    front = np.column_stack([np.interp(s, arc, pts[:, 0]), np.interp(s, arc, pts[:, 1])])
    return front, front_col(rows)


def _draw_classes(rng, fjord, wall, front_of_row, rows, cols):
    """True classes and the fields the rendering needs (distances, snow scores, shade)."""
    height, width = len(rows), len(cols)
    size = fjord.size
    land = wall > 0
    water = ~land
    # Ocean: water downstream of the front and connected to the sea; glacier: the water-free
    # fjord upstream of it, connected to the glacier at the right edge. Pockets belonging to
    # neither go to the ocean.
    downstream = water & (cols[None, :] < front_of_row[:, None])
    left_edge = np.zeros_like(land)
    left_edge[:, 0] = True
    ocean = _components_touching(downstream, left_edge)
    right_edge = np.zeros_like(land)
    right_edge[:, -1] = True
    glacier = _components_touching(water & ~ocean, right_edge)
    ocean = water & ~glacier

    # Ocean zones by distance from the glacier: mélange, iceberg water, open water.
    dist_glacier = ndimage.distance_transform_edt(~glacier).astype(np.float32)
    fjord_length = fjord.front - fjord.mouth
    melange_width = fjord.scale * rng.uniform(40.0, 80.0)
    berg_width = melange_width + fjord_length * rng.uniform(0.35, 0.6)
    m_noise = _fractal(rng, rows, cols, [0.05 * size, 0.015 * size], [0.33, 0.12])
    b_noise = _fractal(rng, rows, cols, [0.08 * size, 0.02 * size], [0.18, 0.06])
    melange = ocean & (dist_glacier < melange_width * (1.0 + m_noise))
    glacier_edge = ndimage.binary_dilation(glacier) & ~glacier
    melange = _components_touching(melange, glacier_edge)
    melange = ndimage.binary_fill_holes(melange | glacier | land) & ocean
    bergs = ocean & ~melange & (dist_glacier < berg_width * (1.0 + b_noise))
    bergs = _components_touching(bergs, ndimage.binary_dilation(melange))
    bergs = ndimage.binary_fill_holes(bergs | melange | glacier | land) & ocean & ~melange

    # Land: elevation rises from the water's edge, plus ridged fractal relief; snow lies on
    # high ground where slopes are gentle and out of the sun.
    dist_water = ndimage.distance_transform_edt(land).astype(np.float32)
    relief_length = 0.12 * size
    elevation = (relief_length * (1.0 - np.exp(-dist_water / relief_length))).astype(np.float32)
    relief = np.zeros(land.shape, np.float32)
    for s in (0.25 * size, 0.12 * size, 0.06 * size, 0.03 * size):
        n = _noise(rng, rows, cols, s)
        ridge = 1.0 - np.sqrt(n * n + np.float32(0.03))
        relief += np.float32(0.22 * s) * (ridge * ridge - 0.45)
    small = [s for s in (0.015 * size, 6.0, 3.0, 1.5) if s >= 1.5]
    relief += _fractal(rng, rows, cols, small, [(0.12 if s > 6.0 else 0.25) * s for s in small])
    ramp = 1.0 - np.exp(-dist_water / (0.015 * size + 2.0))
    elevation += relief * ramp.astype(np.float32)
    del relief, ramp
    shade = _hillshade(rng, elevation)
    d_row, d_col = np.gradient(elevation)
    slope = np.hypot(d_row, d_col)
    slope = ndimage.uniform_filter(slope, 3)
    snow_score = (elevation / relief_length
                  + _fractal(rng, rows, cols, [0.05 * size, max(0.012 * size, 3.0), 1.5],
                             [0.25, 0.08, 0.03])
                  - 0.45 * slope - 0.1 * (np.minimum(shade, 1.6) - 1.0)).astype(np.float32)
    del d_row, d_col, slope
    snow_share = rng.uniform(0.3, 0.5)
    snow_threshold = np.quantile(snow_score[land], 1.0 - snow_share) if land.any() else 0.0

    # Glacier: snow on the upper glacier beyond a noisy snowline.
    snowline = (fjord.front + (width - fjord.front) * rng.uniform(0.5, 0.68)
                + fjord.width * _fractal(rng, rows, cols, [0.06 * size, 0.015 * size],
                                         [0.03, 0.006]))
    snow_ice_score = cols[None, :] - snowline

    classes = np.full((height, width), _OPEN_WATER, np.uint8)
    classes[bergs] = _ICEBERG_WATER
    classes[melange] = _MELANGE
    classes[glacier] = _GLACIER_ICE
    classes[glacier & (snow_ice_score > 0)] = _SNOW_ON_ICE
    classes[land] = _ROCK
    classes[land & (snow_score > snow_threshold)] = _SNOW_ON_ROCK
    fields = {
        "dist_glacier": dist_glacier, "melange_width": melange_width * (1.0 + m_noise),
        "berg_width": berg_width * (1.0 + b_noise), "shade": shade,
        "snow_rock": (snow_score - snow_threshold) * np.float32(relief_length / 1.5),
        "snow_ice": snow_ice_score.astype(np.float32), "fjord_length": fjord_length,
    }
    return classes, fields


def _hillshade(rng, elevation):
    """Illumination relative to flat ground for a sun in the south at 25-40 degrees."""
    azimuth = np.deg2rad(rng.uniform(160.0, 205.0))
    zenith = np.deg2rad(90.0 - rng.uniform(25.0, 40.0))
    d_row, d_col = np.gradient(elevation)
    d_north = -d_row
    dot = (np.cos(zenith) - np.sin(zenith) * (d_col * np.sin(azimuth) + d_north * np.cos(azimuth)))
    shade = dot / np.sqrt(1.0 + d_col * d_col + d_row * d_row) / np.cos(zenith)
    return np.clip(shade, 0.0, None).astype(np.float32)


def _render(rng, fjord, classes, fields, rows, cols):
    """Digital numbers (4, H, W) uint16 of every surface, with texture and sensor noise."""
    image = np.zeros((4, len(rows), len(cols)), np.float32)
    _paint_land(image, rng, fjord, classes, fields, rows, cols)
    _paint_ocean(image, rng, fjord, classes, fields, rows, cols)
    _paint_glacier(image, rng, fjord, classes, fields, rows, cols)
    image += np.float32(_SENSOR_NOISE_DN) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 1, 20000).astype(np.uint16)


def _paint_land(image, rng, fjord, classes, fields, rows, cols):
    """Rock and snow on rock, lit by the hillshade."""
    size = fjord.size
    land = classes >= _SNOW_ON_ROCK
    shade = np.minimum(fields["shade"], np.float32(1.8))
    grain = 1.0 + _fractal(rng, rows, cols, [0.04 * size, 0.01 * size, 3.0, 1.5, 0.0],
                           [0.16, 0.10, 0.08, 0.08, 0.07])
    tint = 0.08 * _noise(rng, rows, cols, 0.08 * size)
    snow_tex = 1.0 + _fractal(rng, rows, cols, [0.02 * size, 2.0], [0.02, 0.015])
    snow_frac = np.clip(fields["snow_rock"] / np.float32(1.5) + np.float32(0.5), 0.0, 1.0)
    snow_shade = ndimage.gaussian_filter(shade, 1.2)       # snow smooths the small relief
    tints = (1.0 + tint, None, 1.0 - tint, None)
    for b in range(4):
        illum = _AMBIENT[b] + (1.0 - _AMBIENT[b]) * shade
        rock = np.float32(_SPECTRA["rock"][b]) * grain * illum
        if tints[b] is not None:
            rock *= tints[b]
        snow = np.float32(_SPECTRA["snow on rock"][b]) * snow_tex * (
            _AMBIENT[b] + (1.0 - _AMBIENT[b]) * snow_shade)
        image[b] = np.where(land, rock + (snow - rock) * snow_frac, np.float32(0.0))


def _paint_ocean(image, rng, fjord, classes, fields, rows, cols):
    """Water, mélange and icebergs, within the columns the ocean spans."""
    ocean = classes <= _MELANGE
    c1 = int(np.flatnonzero(ocean.any(axis=0))[-1]) + 1
    oc, ocols = ocean[:, :c1], cols[:c1]
    dist = fields["dist_glacier"][:, :c1]
    water = _water(rng, fjord, fields, rows, ocols, dist)
    ice_frac, ice_bright = _melange_ice(rng, fjord, classes[:, :c1], fields, rows, ocols, dist)
    berg_frac, berg_bright = _icebergs(rng, fjord, classes, fields)
    berg_frac, berg_bright = berg_frac[:, :c1], berg_bright[:, :c1]
    is_berg = berg_frac > ice_frac
    ice_frac = np.maximum(ice_frac, berg_frac)
    berg_bright *= ice_bright
    # The shadow of the ice cliff along the calving front.
    cliff = np.exp(-np.maximum(dist - 1.0, 0.0) / np.float32(0.9)) * (
        0.45 + 0.15 * np.clip(_noise(rng, rows, ocols, 4.0), -1.0, 1.0))
    cliff = np.where(oc, 1.0 - cliff, np.float32(1.0)).astype(np.float32)
    for b in range(4):
        ice = np.where(is_berg, np.float32(_SPECTRA["iceberg"][b]) * berg_bright,
                       np.float32(_SPECTRA["melange ice"][b]) * ice_bright)
        image[b, :, :c1] = np.where(oc, (water[b] + (ice - water[b]) * ice_frac) * cliff,
                                    image[b, :, :c1])


def _water(rng, fjord, fields, rows, ocols, dist):
    """Water of each band: turbid near the glacier, clearer out at sea, a sediment plume."""
    size, fjord_length = fjord.size, fields["fjord_length"]
    near = np.exp(-dist / np.float32(0.6 * fjord_length))
    plume = np.clip(0.55 + 0.45 * _fractal(rng, rows, ocols, [0.06 * size, 0.015 * size],
                                           [0.85, 0.3]), 0.0, 1.0)
    plume *= np.exp(-dist / np.float32(0.35 * fjord_length))
    ripple = 1.0 + _fractal(rng, rows, ocols, [0.03 * size, 3.0, 1.0], [0.03, 0.015, 0.01])
    water = []
    for b in range(4):
        sea, fjord_w = _SPECTRA["sea water"][b], _SPECTRA["fjord water"][b]
        water.append((np.float32(sea) + np.float32(fjord_w - sea) * near
                      + np.float32(_SPECTRA["sediment plume"][b]) * plume) * ripple)
    return water


def _melange_ice(rng, fjord, cls, fields, rows, ocols, dist):
    """Cover fraction and brightness of the mélange's ice fragments, denser near the front."""
    size = fjord.size
    t = np.clip(dist / np.maximum(fields["melange_width"][:, :len(ocols)], np.float32(1.0)),
                0.0, 1.5)
    frag = _fractal(rng, rows, ocols, [1.0, 2.5, 6.0, 0.02 * size], [0.55, 0.6, 0.45, 0.3])
    frag /= np.float32(np.sqrt(0.55 ** 2 + 0.6 ** 2 + 0.45 ** 2 + 0.3 ** 2))
    share = np.clip(0.95 - 0.55 * t, 0.05, 0.97)
    ice_frac = np.clip(0.5 + (frag - ndtri(1.0 - share)) / np.float32(0.3), 0.0, 1.0)
    ice_frac = np.where(cls == _MELANGE, ice_frac, np.float32(0.0))
    ice_bright = 1.0 + _fractal(rng, rows, ocols, [3.0, 0.0], [0.1, 0.05])
    return ice_frac, ice_bright


def _paint_glacier(image, rng, fjord, classes, fields, rows, cols):
    """Ice with flow bands, moraines, debris and crevasses; snow up-glacier."""
    glacier = (classes == _GLACIER_ICE) | (classes == _SNOW_ON_ICE)
    r0, r1 = np.flatnonzero(glacier.any(axis=1))[[0, -1]]
    c0 = int(np.flatnonzero(glacier.any(axis=0))[0])
    rr, cc = rows[r0:r1 + 1], cols[c0:]
    moraine = np.array(_SPECTRA["moraine"], np.float32)[:, None, None]
    ice = _flow_banded_ice(rng, fjord, rr, cc)
    ice = _with_moraines(ice, rng, fjord, rr, cc, moraine)
    ice = _with_margin_debris(ice, rng, fjord, classes[r0:r1 + 1, c0:] >= _SNOW_ON_ROCK, rr, cc,
                              moraine)
    ice = _with_crevasses(ice, rng, fjord, rr, cc)
    glacier_dn = _with_snow(ice, rng, fjord, fields["snow_ice"][r0:r1 + 1, c0:], rr, cc)
    view = image[:, r0:r1 + 1, c0:]
    view[:] = np.where(glacier[r0:r1 + 1, c0:][None], glacier_dn, view)


def _flow_banded_ice(rng, fjord, rr, cc):
    """Glacier ice with streaks along the fjord centre line."""
    size, centre = fjord.size, fjord.centre(cc)
    bands = _sheared_noise(rng, cc, rr, 0.12 * size, max(2.5 * fjord.scale, 1.5),
                           -(centre - fjord.y0)).T
    tex = 1.0 + 0.03 * bands + _fractal(rng, rr, cc, [0.03 * size, 4.0, 1.0],
                                        [0.03, 0.02, 0.012])
    return np.array(_SPECTRA["glacier ice"], np.float32)[:, None, None] * tex[None]


def _with_moraines(ice, rng, fjord, rr, cc, moraine):
    """One to three medial moraines: dark lines along flow."""
    centre, hw = fjord.centre(cc), fjord.half_width(cc)
    for _ in range(int(rng.integers(1, 4))):
        offset = rng.uniform(-0.6, 0.6)
        wobble = _Noise1D(rng, cc[0], cc[-1], 0.1 * fjord.size)
        line = centre + hw * offset + 0.05 * hw * wobble(cc)
        line_width = rng.uniform(1.0, 2.5) * max(fjord.scale, 0.7)
        strength = rng.uniform(0.25, 0.55)
        m = strength * np.exp(-0.5 * ((rr[:, None] - line[None, :]) / line_width) ** 2)
        m = m.astype(np.float32)
        ice = ice * (1.0 - m[None]) + moraine * m[None]
    return ice


def _with_margin_debris(ice, rng, fjord, land, rr, cc, moraine):
    """Debris along the glacier margins, where the ice meets rock."""
    to_rock = ndimage.distance_transform_edt(~land).astype(np.float32)
    debris = (0.6 * np.exp(-(to_rock - 1.0) / np.float32(2.5 * max(fjord.scale, 0.6)))
              * np.clip(0.7 + 0.4 * _noise(rng, rr, cc, 5.0), 0.0, 1.0)).astype(np.float32)
    return ice * (1.0 - debris[None]) + moraine * debris[None]


def _with_crevasses(ice, rng, fjord, rr, cc):
    """Transverse crevasses near the front: dark lines parallel to the front a few pixels
    apart, the phase wandering and the lines broken into segments by smooth noise; the broken
    ice near the front is greyer."""
    size = fjord.size
    u = cc[None, :] - fjord.smooth_front(rr)[:, None]
    crev_length = (fjord.width - fjord.front) * rng.uniform(0.2, 0.35)
    spacing = rng.uniform(3.5, 6.0)
    phase = _fractal(rng, rr, cc, [0.05 * size, 12.0, 5.0], [2.5, 1.2, 0.5])
    waves = np.sin(2.0 * np.pi * u / spacing + phase)
    segments = np.clip(1.6 * _noise(rng, rr, cc, 6.0, 3.0) + 0.6, 0.0, 1.0)
    strength = np.exp(-np.clip(u, 0.0, None) / crev_length) * (
        0.8 + 0.3 * _noise(rng, rr, cc, 0.04 * size))
    line_width = 0.25 + 0.2 * np.clip(_noise(rng, rr, cc, 8.0), -1.0, 1.0)
    lines = np.exp(-((waves + 1.0) / line_width) ** 2) * segments
    dark = (lines * np.clip(strength, 0.0, 1.0)).astype(np.float32)
    crev_tint = np.array([0.62, 0.56, 0.46, 0.72], np.float32)[:, None, None]
    ice = ice * (1.0 - crev_tint * dark[None])
    return ice * (1.0 - 0.12 * np.clip(strength, 0.0, 1.0)[None]
                  * (0.5 + 0.5 * _noise(rng, rr, cc, 1.5))[None])


def _with_snow(ice, rng, fjord, snow_ice, rr, cc):
    """Snow on the upper glacier, with a bluish slush band below the snowline."""
    snow_frac = np.clip(snow_ice / 2.0 + 0.5, 0.0, 1.0)[None]
    slush = (np.exp(-np.clip(-snow_ice, 0.0, None) / (0.015 * fjord.width + 1.0))
             * (snow_ice <= 0) * np.clip(0.6 + 0.5 * _noise(rng, rr, cc, 0.01 * fjord.size), 0, 1))
    slush_tint = np.array([0.25, 0.17, 0.08, 0.45], np.float32)[:, None, None]
    ice = ice * (1.0 - slush_tint * slush[None])
    snow_tex = 1.0 + _fractal(rng, rr, cc, [0.05 * fjord.size, 2.0], [0.02, 0.01])
    snow = np.array(_SPECTRA["snow on ice"], np.float32)[:, None, None]
    return ice * (1.0 - snow_frac) + snow * snow_tex[None] * snow_frac


def _icebergs(rng, fjord, classes, fields):
    """Iceberg cover fraction and brightness, bergs drawn one by one with power-law sizes."""
    height, width = classes.shape
    dist = fields["dist_glacier"]
    inner, outer = fields["melange_width"], fields["berg_width"]
    t = np.clip((dist - inner) / np.maximum(outer - inner, 1.0), 0.0, None)
    cover = np.zeros(classes.shape, np.float32)
    cover[classes == _ICEBERG_WATER] = (0.22 * (1.0 - 0.75 * np.clip(t, 0, 1)))[
        classes == _ICEBERG_WATER]
    drift = (classes == _OPEN_WATER) & (t < 1.4)
    cover[drift] = 0.025 * np.clip(1.4 - t[drift], 0.0, 1.0)
    cover[classes == _MELANGE] = 0.03
    frac = np.zeros(classes.shape, np.float32)
    bright = np.ones(classes.shape, np.float32)
    total = float(cover.sum())
    if total <= 0:
        return frac, bright
    cdf = np.cumsum(cover.ravel(), dtype=np.float64)
    cdf /= cdf[-1]
    r_min, r_max, alpha = 0.55, max(3.0, 11.0 * fjord.scale), 2.1
    covered = 0.0
    while covered < total:
        n = 256
        radius = np.minimum(r_min * (1.0 - rng.random(n)) ** (-1.0 / alpha), r_max)
        aspect = rng.uniform(0.5, 1.0, n)
        angle = rng.uniform(0.0, np.pi, n)
        brightness = rng.uniform(0.8, 1.25, n)
        where = np.searchsorted(cdf, rng.random(n))
        where = np.minimum(where, cdf.size - 1)
        jitter = rng.random((n, 2))
        harmonics = rng.normal(0.0, 0.06, (n, 3, 2))
        for i in range(n):
            if covered >= total:
                break
            r, a = radius[i], aspect[i]
            area = np.pi * r * r * a
            covered += area
            row = where[i] // width + jitter[i, 0]
            col = where[i] % width + jitter[i, 1]
            if r < 1.0:                           # sub-pixel berg: raises one pixel's cover
                ri, ci = int(row), int(col)
                frac[ri, ci] = min(1.0, frac[ri, ci] + area)
                bright[ri, ci] = brightness[i]
                continue
            ext = int(np.ceil(1.4 * r)) + 1
            ra, rb = max(0, int(row) - ext), min(height, int(row) + ext + 1)
            ca, cb = max(0, int(col) - ext), min(width, int(col) + ext + 1)
            dy = (np.arange(ra, rb) + 0.5 - row)[:, None]
            dx = (np.arange(ca, cb) + 0.5 - col)[None, :]
            cos, sin = np.cos(angle[i]), np.sin(angle[i])
            u = dx * cos + dy * sin
            v = (-dx * sin + dy * cos) / a
            theta = np.arctan2(v, u)
            edge = r * (1.0 + sum(harmonics[i, k, 0] * np.cos((k + 2) * theta)
                                  + harmonics[i, k, 1] * np.sin((k + 2) * theta)
                                  for k in range(3)))
            f = np.clip(edge - np.hypot(u, v) + 0.5, 0.0, 1.0).astype(np.float32)
            win = frac[ra:rb, ca:cb]
            bright[ra:rb, ca:cb] = np.where(f > win, brightness[i], bright[ra:rb, ca:cb])
            np.maximum(win, f, out=win)
    return frac, bright


# --------------------------------------------------------------------------------------------
# Training polygons and writing
# --------------------------------------------------------------------------------------------

def training_polygons(classes, geotransform, *, margin=2, min_pixels=20, simplify=0.5):
    """Training polygons of every class, digitised a little inside the class boundaries.

    Each class mask is eroded by ``margin`` pixels (not at the image border), polygonised,
    polygons smaller than ``min_pixels`` are dropped and the rest simplified.

    Parameters
    ----------
    classes : ndarray of int, shape (H, W)
        Class raster; 0 is unlabelled.
    geotransform : tuple of 6 floats
        GDAL geotransform of the raster (north-up).
    margin : int, optional
        Pixels kept clear of every class boundary.
    min_pixels : float, optional
        Smallest polygon area kept, in pixels.
    simplify : float, optional
        Simplification tolerance in pixels (0 keeps the pixel outlines).

    Returns
    -------
    polygons : list of (int, ogr.Geometry)
        Class value and polygon in map coordinates, by class then position.
    """
    classes = np.asarray(classes)
    height, width = classes.shape
    labels = np.zeros((height, width), np.uint8)
    structure = np.ones((3, 3), bool)
    for value in np.unique(classes):
        if value == 0:
            continue
        mask = classes == value
        if margin > 0:
            mask = ndimage.binary_erosion(mask, structure=structure, iterations=int(margin),
                                          border_value=1)
        labels[mask] = value
    mem = gdal.GetDriverByName("MEM").Create("", width, height, 1, gdal.GDT_Byte)
    mem.SetGeoTransform(tuple(geotransform))
    band = mem.GetRasterBand(1)
    band.WriteArray(labels)
    vec = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = vec.CreateLayer("polygons", geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
    gdal.Polygonize(band, band, layer, 0, [])
    pixel_area = abs(geotransform[1] * geotransform[5])
    tolerance = simplify * abs(geotransform[1])
    out = []
    for feature in layer:
        geom = feature.GetGeometryRef()
        if geom.GetArea() < min_pixels * pixel_area:
            continue
        geom = geom.Clone()
        if tolerance > 0:
            simplified = geom.SimplifyPreserveTopology(tolerance)
            if simplified is not None and not simplified.IsEmpty():
                geom = simplified
        out.append((int(feature.GetField("class")), geom))
    out.sort(key=lambda item: item[0])
    return out


def _write_image(path, scene):
    _, height, width = scene.image.shape
    ds = gdal.GetDriverByName("GTiff").Create(
        path, width, height, len(BANDS), gdal.GDT_UInt16,
        options=["TILED=YES", "COMPRESS=DEFLATE", "PREDICTOR=2", "BIGTIFF=IF_SAFER"])
    ds.SetGeoTransform(scene.geotransform)
    ds.SetProjection(scene.crs_wkt)
    ds.SetMetadataItem("FJORD_SYNTHETIC_SEED", str(scene.seed))
    interp = (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand, gdal.GCI_Undefined)
    for i, name in enumerate(BANDS):
        band = ds.GetRasterBand(i + 1)
        band.SetDescription(name)
        band.SetColorInterpretation(interp[i])
        band.WriteArray(scene.image[i])
    ds.FlushCache()
    ds = None


def _write_classes(path, scene):
    height, width = scene.classes.shape
    ds = gdal.GetDriverByName("GTiff").Create(
        path, width, height, 1, gdal.GDT_Byte, options=["TILED=YES", "COMPRESS=DEFLATE"])
    ds.SetGeoTransform(scene.geotransform)
    ds.SetProjection(scene.crs_wkt)
    ds.SetMetadataItem(schemas.METADATA_KEY, json.dumps(GLACIAL_SCHEMA, ensure_ascii=False))
    band = ds.GetRasterBand(1)
    band.SetDescription("class")
    band.SetRasterColorTable(schemas.gdal_color_table(GLACIAL_SCHEMA))
    band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    band.WriteArray(scene.classes)
    ds.FlushCache()
    band = ds = None


def _write_labels(path, scene):
    names = {value: name for value, name, _ in GLACIAL_CLASSES}
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer("labels", srs=spatial_reference(scene.crs_wkt), geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
    name_field = ogr.FieldDefn("name", ogr.OFTString)
    name_field.SetWidth(32)
    layer.CreateField(name_field)
    layer.StartTransaction()
    for value, geom in training_polygons(scene.classes, scene.geotransform):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("class", value)
        feature.SetField("name", names.get(value, str(value)))
        feature.SetGeometry(geom)
        layer.CreateFeature(feature)
    layer.CommitTransaction()
    ds = None


def _write_front(path, scene):
    gt = scene.geotransform
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer("front", srs=spatial_reference(scene.crs_wkt), geom_type=ogr.wkbLineString)
    name_field = ogr.FieldDefn("name", ogr.OFTString)
    name_field.SetWidth(32)
    layer.CreateField(name_field)
    line = ogr.Geometry(ogr.wkbLineString)
    for col, row in scene.front:
        line.AddPoint_2D(gt[0] + col * gt[1] + row * gt[2], gt[3] + col * gt[4] + row * gt[5])
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetField("name", "calving front")
    feature.SetGeometry(line)
    layer.CreateFeature(feature)
    ds = None


def write_synthetic_scene(folder, shape=(768, 1024), seed=0, **kwargs):
    """Draw a synthetic scene and write it into ``folder``.

    Writes ``image.tif`` (4-band UInt16 GeoTIFF, DEFLATE, tiled, bands B4, B3, B2, B8),
    ``classes.tif`` (Byte GeoTIFF of the true classes 1-7 with a colour table, the class schema
    in its metadata and the ``classes.schema.json`` and ``classes.qml`` sidecars), ``labels.gpkg`` (layer ``labels``:
    training polygons with fields ``class`` and ``name``) and ``front.gpkg`` (layer ``front``:
    the reference calving front as a LineString with a field ``name``). Each file is written
    under a temporary name in ``folder`` and renamed when complete.

    Parameters
    ----------
    folder : str or path-like
        Output folder, created if missing; existing files of the same names are replaced.
    shape : tuple of int, optional
        (rows, cols) of the scene.
    seed : int, optional
        Random seed.
    **kwargs
        Further keyword arguments of :func:`synthetic_fjord` (``pixel_size``, ``epsg``,
        ``origin``).

    Returns
    -------
    paths : dict of str
        Paths of the files written, keys ``image``, ``classes``, ``labels`` and ``front``.
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    scene = synthetic_fjord(shape=shape, seed=seed, **kwargs)
    writers = (("image", "image.tif", _write_image), ("classes", "classes.tif", _write_classes),
               ("labels", "labels.gpkg", _write_labels), ("front", "front.gpkg", _write_front))
    paths = {key: os.path.join(folder, name) for key, name, _ in writers}
    with AtomicOutputs() as out:
        for key, _, writer in writers:
            writer(out.add(paths[key]), scene)
        side = schemas.sidecar_paths(paths["classes"])
        with open(out.add(side["schema"]), "w", encoding="utf-8") as f:
            f.write(schemas.dumps(GLACIAL_SCHEMA))
        with open(out.add(side["qml"]), "w", encoding="utf-8") as f:
            f.write(schemas.paletted_qml(GLACIAL_SCHEMA))
    return paths
