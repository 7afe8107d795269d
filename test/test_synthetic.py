"""Tests of the synthetic fjord scene generator (``fjord.core.prepare.synthetic``); no QGIS needed."""

import os

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from fjord.core.data.schema import read_raster_schema
from fjord.core.prepare import synthetic

gdal.UseExceptions()
ogr.UseExceptions()

SHAPE = (256, 384)
OCEAN = (1, 2, 3)


@pytest.fixture(scope="module")
def scene():
    return synthetic.synthetic_fjord(SHAPE, seed=7)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic") / "scene"      # not there yet: created
    paths = synthetic.write_synthetic_scene(folder, shape=SHAPE, seed=3, pixel_size=10.0,
                                            epsg=32624, origin=(530000.0, 7370000.0))
    return folder, paths


def _read(path):
    ds = gdal.Open(str(path))           # keep the dataset alive while its band is read
    return ds.GetRasterBand(1).ReadAsArray()


def _segment_distance(points, polyline):
    """Distance from each point to a polyline, both as (x, y) arrays."""
    a, b = polyline[:-1][None], polyline[1:][None]
    p = points[:, None]
    ab = b - a
    t = np.clip(np.sum((p - a) * ab, axis=-1) / np.maximum(np.sum(ab * ab, axis=-1), 1e-12),
                0.0, 1.0)
    closest = a + t[..., None] * ab
    return np.min(np.hypot(*(closest - p).transpose(2, 0, 1)), axis=1)


def _glacier_ocean_boundary(classes):
    """Midpoints (x, y) between 4-adjacent pixels of glacier ice and of the ocean classes."""
    glacier = classes == 4
    ocean = np.isin(classes, OCEAN)
    across = (glacier[:, 1:] & ocean[:, :-1]) | (glacier[:, :-1] & ocean[:, 1:])
    r, c = np.nonzero(across)
    pts = [np.column_stack([c + 1.0, r + 0.5])]
    down = (glacier[1:] & ocean[:-1]) | (glacier[:-1] & ocean[1:])
    r, c = np.nonzero(down)
    pts.append(np.column_stack([c + 0.5, r + 1.0]))
    return np.concatenate(pts)


def test_classes_schema():
    assert [v for v, _, _ in synthetic.GLACIAL_CLASSES] == list(range(1, 8))
    names = [n for _, n, _ in synthetic.GLACIAL_CLASSES]
    assert names == ["open water", "iceberg water", "mélange", "glacier ice", "snow on ice",
                     "snow on rock", "rock"]
    assert synthetic.GLACIAL_CLASSES[4][2] == "#f5fffa"


def test_shapes_and_types(scene):
    assert scene.image.shape == (4,) + SHAPE and scene.image.dtype == np.uint16
    assert scene.classes.shape == SHAPE and scene.classes.dtype == np.uint8
    assert scene.front.ndim == 2 and scene.front.shape[1] == 2
    assert scene.image.min() >= 1 and scene.image.max() <= 20000
    assert len(scene.geotransform) == 6 and scene.seed == 7
    srs = osr.SpatialReference(wkt=scene.crs_wkt)
    assert srs.GetAuthorityCode(None) == "32624"


def test_deterministic():
    a = synthetic.synthetic_fjord(SHAPE, seed=11)
    b = synthetic.synthetic_fjord(SHAPE, seed=11)
    c = synthetic.synthetic_fjord(SHAPE, seed=12)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.classes, b.classes)
    assert np.array_equal(a.front, b.front)
    assert not np.array_equal(a.classes, c.classes)
    assert not np.array_equal(a.image, c.image)
    assert a.front.shape != c.front.shape or not np.allclose(a.front, c.front)


def test_all_classes_with_sensible_shares(scene):
    share = np.bincount(scene.classes.ravel(), minlength=8) / scene.classes.size
    assert share[0] == 0                                     # no unlabelled pixel
    assert np.all(share[1:] > 0.003), share
    land, ocean, ice = share[6] + share[7], share[1:4].sum(), share[4] + share[5]
    assert 0.3 < land < 0.8
    assert 0.15 < ocean < 0.5
    assert 0.03 < ice < 0.3
    assert share[1] > share[3]                               # more open water than mélange
    # The sea is on the left, the glacier fills the fjord to the right edge.
    assert np.isin(scene.classes[:, 0], (1, 7, 6)).all() and (scene.classes[:, 0] == 1).mean() > 0.5
    assert np.isin(scene.classes[:, -1], (4, 5)).any()
    assert not np.isin(scene.classes[:, -1], OCEAN).any()


def test_front_geometry(scene):
    front, classes = scene.front, scene.classes
    height, width = classes.shape
    assert len(front) > 10
    step = np.hypot(*np.diff(front, axis=0).T)
    assert step.max() <= 1.0                                 # sampled at least once a pixel
    length = step.sum()
    assert length < np.hypot(height, width)
    # Both ends on the fjord walls: rock (or snow on rock) within a pixel and a half.
    for col, row in (front[0], front[-1]):
        r0, r1 = int(max(row - 1.5, 0)), int(min(row + 1.5, height - 1)) + 1
        c0, c1 = int(max(col - 1.5, 0)), int(min(col + 1.5, width - 1)) + 1
        assert np.isin(classes[r0:r1, c0:c1], (6, 7)).any(), (col, row)
    # Opposite walls: the ends lie far apart across the fjord.
    assert abs(front[0, 1] - front[-1, 1]) > 0.1 * height
    # Not a straight line.
    chord = front[-1] - front[0]
    deviation = np.abs(chord[0] * (front[:, 1] - front[0, 1])
                       - chord[1] * (front[:, 0] - front[0, 0])) / np.hypot(*chord)
    assert deviation.max() > 2.0
    # About 55-65 % along the image (a bulge or embayment moves it a little).
    assert 0.4 * width < np.median(front[:, 0]) < 0.75 * width


def test_front_matches_class_boundary(scene):
    boundary = _glacier_ocean_boundary(scene.classes)
    assert len(boundary) > 20
    distance = _segment_distance(boundary, scene.front)
    assert distance.max() <= 1.0
    # ... and the front runs along that boundary over its whole length.
    back = np.min(np.hypot(*(scene.front[::4, None] - boundary[None]).transpose(2, 0, 1)),
                  axis=1)
    assert np.median(back) < 1.0 and back.max() < 2.0
    # Snow on ice never touches the ocean.
    snow_ice, ocean = scene.classes == 5, np.isin(scene.classes, OCEAN)
    assert not (snow_ice[:, 1:] & ocean[:, :-1]).any() and not (snow_ice[1:] & ocean[:-1]).any()


def test_spectral_plausibility(scene):
    img = scene.image.astype(np.float64)
    means = {v: img[:, scene.classes == v].mean(axis=1) for v in range(1, 8)}   # B4 B3 B2 B8
    b4, b2, b8 = 0, 2, 3
    assert max(means, key=lambda v: means[v][b2]) in (5, 6)          # snow brightest in B2
    assert means[5][b2] > 8000
    assert min(means, key=lambda v: means[v][b8]) == 1               # open water darkest NIR
    assert means[1][b8] < 400 and means[1][b2] > means[1][b4] > means[1][b8]
    assert means[7][b8] > means[7][b4]                               # rock: NIR above red
    assert 800 < means[7][b4] < 2500
    assert means[5][b2] > means[4][b2] > means[3][b2] > means[2][b2] > means[1][b2]
    assert 5000 < means[4][b2] < 7500
    assert 2500 < means[3][b2] < 6000
    # Texture: mélange is rougher than open water; sensor noise everywhere.
    assert img[2][scene.classes == 3].std() > 3 * img[2][scene.classes == 1].std()
    assert img[2][scene.classes == 1].std() > 10


def test_scales_with_size():
    small = synthetic.synthetic_fjord((128, 128), seed=1)
    big = synthetic.synthetic_fjord((400, 640), seed=1)
    for s in (small, big):
        share = np.bincount(s.classes.ravel(), minlength=8)[1:] / s.classes.size
        assert np.all(share > 0)
    with pytest.raises(ValueError):
        synthetic.synthetic_fjord((32, 32))


def test_written_files(written):
    folder, paths = written
    assert set(paths) == {"image", "classes", "labels", "front"}
    for key, name in (("image", "image.tif"), ("classes", "classes.tif"),
                      ("labels", "labels.gpkg"), ("front", "front.gpkg")):
        assert paths[key] == os.path.join(str(folder), name) and os.path.isfile(paths[key])
    assert not [f for f in os.listdir(folder) if "partial" in f]  # no temporary files left
    scene = synthetic.synthetic_fjord(SHAPE, seed=3)
    gt = (530000.0, 10.0, 0.0, 7370000.0, 0.0, -10.0)

    ds = gdal.Open(paths["image"])
    assert (ds.RasterYSize, ds.RasterXSize, ds.RasterCount) == SHAPE + (4,)
    assert ds.GetGeoTransform() == pytest.approx(gt)
    assert osr.SpatialReference(wkt=ds.GetProjection()).GetAuthorityCode(None) == "32624"
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(4)] == ["B4", "B3", "B2", "B8"]
    assert ds.GetRasterBand(1).DataType == gdal.GDT_UInt16
    assert ds.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
    assert ds.GetRasterBand(1).GetBlockSize() != [SHAPE[1], 1]           # tiled
    assert np.array_equal(ds.ReadAsArray(), scene.image)
    ds = None

    ds = gdal.Open(paths["classes"])
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte
    assert ds.GetGeoTransform() == pytest.approx(gt)
    classes = band.ReadAsArray()
    assert np.array_equal(classes, scene.classes)
    table = band.GetRasterColorTable()
    assert table is not None and table.GetColorEntry(1)[:3] == (0x03, 0x71, 0x9c)
    assert table.GetColorEntry(7)[:3] == (0x77, 0x5b, 0x5a)
    assert read_raster_schema(paths["classes"]) == synthetic.GLACIAL_SCHEMA
    ds = None

    ds = ogr.Open(paths["front"])
    layer = ds.GetLayerByName("front")
    assert layer.GetFeatureCount() == 1 and layer.GetGeomType() == ogr.wkbLineString
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "32624"
    feature = layer.GetNextFeature()
    assert feature.GetField("name")
    line = np.array(feature.GetGeometryRef().GetPoints())[:, :2]
    expected = np.column_stack([gt[0] + scene.front[:, 0] * gt[1],
                                gt[3] + scene.front[:, 1] * gt[5]])
    assert np.allclose(line, expected)
    ds = None


def test_labels_agree_with_classes(written):
    _, paths = written
    truth = _read(paths["classes"])
    ds = ogr.Open(paths["labels"])
    layer = ds.GetLayerByName("labels")
    assert ogr.GeometryTypeToName(layer.GetGeomType()) == "Polygon"
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "32624"
    defn = layer.GetLayerDefn()
    fields = {defn.GetFieldDefn(i).GetName(): defn.GetFieldDefn(i).GetType()
              for i in range(defn.GetFieldCount())}
    assert fields["class"] == ogr.OFTInteger and fields["name"] == ogr.OFTString
    names = {v: n for v, n, _ in synthetic.GLACIAL_CLASSES}
    seen = set()
    for feature in layer:
        value = feature.GetField("class")
        assert feature.GetField("name") == names[value]
        assert feature.GetGeometryRef().GetArea() >= 20 * 100.0 * 0.9      # >= ~20 pixels
        seen.add(value)
    assert seen == set(range(1, 8))
    layer.ResetReading()

    src = gdal.Open(paths["classes"])
    mem = gdal.GetDriverByName("MEM").Create("", src.RasterXSize, src.RasterYSize, 1,
                                             gdal.GDT_Byte)
    mem.SetGeoTransform(src.GetGeoTransform())
    mem.SetProjection(src.GetProjection())
    gdal.RasterizeLayer(mem, [1], layer, options=["ATTRIBUTE=class"])
    labels = mem.GetRasterBand(1).ReadAsArray()
    labelled = labels > 0
    assert labelled.mean() >= 0.6
    assert (labels[labelled] == truth[labelled]).mean() >= 0.99
    # Digitised inside the classes: no label on a class boundary.
    edge = np.zeros_like(labelled)
    edge[:, 1:] |= truth[:, 1:] != truth[:, :-1]
    edge[1:] |= truth[1:] != truth[:-1]
    assert not (labelled & edge).any()


def test_rewrite_replaces_files(tmp_path):
    first = synthetic.write_synthetic_scene(tmp_path, shape=(128, 160), seed=1)
    second = synthetic.write_synthetic_scene(tmp_path, shape=(128, 160), seed=2)
    assert first == second
    a = _read(second["classes"])
    assert np.array_equal(a, synthetic.synthetic_fjord((128, 160), seed=2).classes)
    assert sorted(os.listdir(tmp_path)) == ["classes.qml", "classes.schema.json", "classes.tif",
                                            "front.gpkg", "image.tif", "labels.gpkg"]
