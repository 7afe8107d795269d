"""Exporting Fjord models to ONNX with Deepness's metadata (issue 26 item 2): the ONNX network
agrees with Keras within 1e-4 (onnxruntime), and Deepness's own model code (``ModelBase`` /
``Segmentor`` from ../shared/peers/deepness/src, run unchanged) loads the file and gives the
classes Fjord gives."""

import json
import os
import sys

import numpy as np
import pytest
from helpers import write_raster
from osgeo import gdal

pytest.importorskip("onnxruntime")
from fjord.core.errors import FjordError  # noqa: E402
from fjord.core.learn.exported import export_model  # noqa: E402

DEEPNESS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "shared", "peers", "deepness", "src")


@pytest.fixture(scope="module")
def segmentor():
    """Deepness's Segmentor class, from the peer's own code (skipped where it is absent)."""
    if not os.path.isdir(os.path.join(DEEPNESS, "deepness")):
        pytest.skip("../shared/peers/deepness is not here")
    sys.path.insert(0, DEEPNESS)
    try:
        from deepness.processing.models.segmentor import Segmentor
    finally:
        sys.path.remove(DEEPNESS)
    return Segmentor


def _metadata(path):
    import onnx

    model = onnx.load(str(path))
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return opset, {p.key: json.loads(p.value) for p in model.metadata_props}


def _uint8_image(path, bands, shape, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    arrays = [np.clip(80 + 60 * np.sin(rows / (6 + b)) * np.cos(cols / 9) + rng.normal(0, 10, shape),
                      0, 255).astype(np.uint8) for b in range(bands)]
    return write_raster(path, arrays)


def test_a_unet_runs_in_deepness_with_fjords_probabilities(glacier_unet, segmentor, tmp_path):
    from fjord.core.learn.unet import classify_unet
    from fjord.models.modelfile import read_metadata

    meta = read_metadata(glacier_unet["path"])
    out = tmp_path / "unet.onnx"
    result = export_model(glacier_unet["path"], str(out))
    assert result["max_difference"] <= 1e-4
    opset, props = _metadata(out)
    assert opset >= 17 and props["model_type"] == "Segmentor"
    names = {c["value"]: c["name"] for c in meta["schema"]["classes"]}
    assert props["class_names"] == {str(i): names[v] for i, v in enumerate(meta["outputs"])}
    assert props["tiles_size"] == meta["tile_size"]
    tile = meta["tile_size"]
    image = _uint8_image(tmp_path / "tile.tif", meta["bands"], (tile, tile))
    classify_unet(image, glacier_unet["path"], str(tmp_path / "fjord.tif"), overlap=0,
                  blend="none", ignore_scale_mismatch=True)
    ds = gdal.Open(str(tmp_path / "fjord.tif"))
    fjord = ds.ReadAsArray()
    pixels = gdal.Open(image).ReadAsArray().transpose(1, 2, 0)[None]
    model = segmentor(str(out))
    assert model.get_number_of_output_channels() == [len(meta["outputs"])]
    deepness = model.process(pixels)[0][0]  # (classes, rows, cols)
    np.testing.assert_allclose(deepness, fjord[1:], atol=1e-4)
    values = np.asarray(meta["outputs"])
    np.testing.assert_array_equal(values[deepness.argmax(0)], fjord[0])


def test_an_imported_tile_classifier_runs_in_deepness_with_fjords_classes(segmentor, tmp_path):
    """A VGG16 phase one (÷255) made a Deepness segmentor: each tile's classes are those of
    Fjord's phase one for that tile."""
    legacy_models = pytest.importorskip("legacy_models")
    pytest.importorskip("tf_keras")
    from fjord.core.learn.imported import import_model
    from fjord.models.modelfile import load_model

    legacy_models.vgg16_tile_classifier(tmp_path / "vgg.h5", tile=50, bands=3, classes=4,
                                        epochs=6)
    model_file = str(tmp_path / "vgg.keras")
    import_model(str(tmp_path / "vgg.h5"), model_file, bands="R,G,B", scaling=1,
                 classes="1:water,2:ice,3:rock,4:snow")
    export_model(model_file, str(tmp_path / "vgg.onnx"))
    network, meta = load_model(model_file)
    image = _uint8_image(tmp_path / "scene.tif", 3, (100, 100))
    pixels = gdal.Open(image).ReadAsArray().transpose(1, 2, 0)
    tiles = np.stack([pixels[y:y + 50, x:x + 50] for y in (0, 50) for x in (0, 50)])
    fjord = np.asarray(meta["outputs"])[network.predict(tiles / np.float32(255), verbose=0)
                                        .argmax(-1)]
    deepness = segmentor(str(tmp_path / "vgg.onnx")).process(tiles)[0]
    for i, value in enumerate(fjord):
        assert (np.asarray(meta["outputs"])[deepness[i].argmax(0)] == value).all()


def test_export_refusals(glacier_unet, tmp_path):
    with pytest.raises(FjordError, match="must end in .onnx"):
        export_model(glacier_unet["path"], str(tmp_path / "x.keras"))
    assert not list(tmp_path.iterdir())
    from fjord.models.modelfile import load_model, save_model

    model, meta = load_model(glacier_unet["path"])
    own = str(tmp_path / "own.keras")
    save_model(model, own, dict(meta, normalisation="range"))
    with pytest.raises(FjordError, match="Deepness cannot do"):
        export_model(own, str(tmp_path / "own.onnx"))
    assert not os.path.exists(tmp_path / "own.onnx")


DEEPNESS_DATA = os.path.join(os.path.dirname(DEEPNESS), "test", "data")


@pytest.mark.parametrize("name, classes", [
    ("dummy_model.onnx", "1:red,2:green,3:blue"),        # x^8 per band; no metadata, batch 1
    ("one_output_sigmoid_bsx1x512x512.onnx", ""),        # metadata: {0: Coffee}, sigmoid
    ("one_output_sigmoid_bsx512x512.onnx", ""),          # the same, output without a channel
    ("one_output_softmax_bsx2x512x512.onnx", "1:a,2:b"),  # softmax over 2, no metadata
])
def test_deepness_dummy_models_classify_as_in_deepness(segmentor, tmp_path, name, classes):
    """Deepness's own test models through importmodel + classifyunet on Deepness's test
    orthophoto (its RGB bands): Fjord's probabilities and classes are those Deepness's
    Segmentor gives on the orthophoto's 512 px tiles."""
    from fjord.core.learn.imported import import_model
    from fjord.core.learn.unet import classify_unet
    from fjord.models.modelfile import read_metadata

    source = os.path.join(DEEPNESS_DATA, "dummy_model", "dummy_segmentation_models", name)
    model_file = str(tmp_path / "model.keras")
    result = import_model(source, model_file, classes=classes)
    meta = read_metadata(model_file)
    assert result["task"] == "segmentation" and meta["tile_size"] == 512
    assert meta["engine"] == "onnx" and meta["scaling"]["divisor"] == 255.0
    if not classes:
        assert [c["name"] for c in meta["schema"]["classes"]] == ["background", "Coffee"]
    image = str(tmp_path / "rgb.tif")
    gdal.Translate(image, os.path.join(DEEPNESS_DATA, "dummy_fotomap_small.tif"),
                   bandList=[1, 2, 3]).FlushCache()
    classify_unet(image, model_file, str(tmp_path / "fjord.tif"), overlap=0, blend="none")
    ds = gdal.Open(str(tmp_path / "fjord.tif"))
    fjord = ds.ReadAsArray()
    pixels = gdal.Open(image).ReadAsArray().transpose(1, 2, 0)
    model = segmentor(source)
    rows, cols = pixels.shape[:2]
    expected = np.zeros((len(meta["outputs"]), rows, cols), np.float32)
    for y in range(0, rows, 512):
        for x in range(0, cols, 512):
            tile = np.zeros((512, 512, 3), np.uint8)  # Deepness pads tiles with 0
            part = pixels[y:y + 512, x:x + 512]
            tile[:part.shape[0], :part.shape[1]] = part
            out = model.process(tile[None])[0][0]
            if out.ndim == 2 or out.shape[0] == 1:  # one sigmoid: background and the class
                out = np.stack([1 - out.reshape(512, 512), out.reshape(512, 512)])
            expected[:, y:y + 512, x:x + 512] = out[:, :part.shape[0], :part.shape[1]]
    np.testing.assert_allclose(fjord[1:], expected, atol=1e-6)
    np.testing.assert_array_equal(fjord[0], np.asarray(meta["outputs"])[expected.argmax(0)])
    if name == "dummy_model.onnx":  # Deepness's colour model finds red, green and blue areas
        assert set(np.unique(fjord[0])) == {1, 2, 3}
