"""Importing networks trained elsewhere (issue 26 item 1): Keras 2 .h5 files written by tf-keras
as the CSC scripts and U-Net projects write them, and Keras 3 .keras files, classify like their
originals; a file that would run code is refused and nothing is written."""

import numpy as np
import pytest
from helpers import write_raster
from osgeo import gdal

pytest.importorskip("tf_keras")
import legacy_models  # noqa: E402 (after the skip: it needs tf_keras)

from fjord.core.errors import FjordError  # noqa: E402
from fjord.core.learn.imported import import_model  # noqa: E402
from fjord.models.modelfile import load_model, read_metadata  # noqa: E402

CLASSES5 = "1:open water:#1f78b4,2:glacier ice,3:rock,4:snow,5:cloud"


def _image(path, bands, shape, seed=0, dtype=np.uint8):
    """An image with structure (smooth gradients, a bright block), integers."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    arrays = []
    for b in range(bands):
        a = 60 + 40 * np.sin(rows / (7 + b)) + 40 * np.cos(cols / (5 + 2 * b))
        a[shape[0] // 3:, : shape[1] // 2] += 90
        arrays.append(np.clip(a + rng.normal(0, 8, shape), 0, 255).astype(dtype))
    return write_raster(path, arrays)


def _read(path, band=1):
    ds = gdal.Open(str(path))  # held while its band is read
    return ds.GetRasterBand(band).ReadAsArray()


@pytest.fixture(scope="module")
def vgg_h5(tmp_path_factory):
    path = tmp_path_factory.mktemp("legacy") / "phase1_vgg16.h5"
    model = legacy_models.vgg16_tile_classifier(path, tile=50, bands=4, classes=5)
    return path, model


def test_a_keras2_vgg16_tile_classifier_classifies_like_the_original(vgg_h5, tmp_path):
    from fjord.core.learn.csc import classify_csc

    h5, original = vgg_h5
    out = tmp_path / "phase1.keras"
    result = import_model(str(h5), str(out), kind=0, bands="B4,B3,B2,B8", scaling=1,
                          classes=CLASSES5)
    assert result["tile_size"] == 50 and result["classes"] == 5
    meta = read_metadata(str(out))
    assert meta["task"] == "tiles" and meta["band_names"] == ["B4", "B3", "B2", "B8"]
    assert meta["outputs"] == [1, 2, 3, 4, 5] and meta["scaling"]["divisor"] == 255.0
    imported, _ = load_model(str(out), task="tiles")
    tiles = np.random.default_rng(1).integers(0, 256, (6, 50, 50, 4)).astype(np.float32) / 255
    np.testing.assert_allclose(imported.predict(tiles, verbose=0),
                               original.predict(tiles, verbose=0), atol=1e-5)
    # The phase-one map of classifycsc (tiles side by side) against the original's tiles.
    image = _image(tmp_path / "scene.tif", 4, (100, 150))
    data = gdal.Open(image).ReadAsArray().transpose(1, 2, 0).astype(np.float32) / 255
    expected = np.zeros((100, 150), np.uint8)
    for y in (0, 50):
        for x in (0, 50, 100):
            p = original.predict(data[None, y:y + 50, x:x + 50], verbose=0)[0]
            expected[y:y + 50, x:x + 50] = 1 + int(np.argmax(p))
    classify_csc(image, str(out), str(tmp_path / "csc.tif"), patch_size=1, max_epochs=1,
                 samples_per_class=200, output_phase_one=str(tmp_path / "p1.tif"), smoothing=0)
    np.testing.assert_array_equal(_read(tmp_path / "p1.tif"), expected)


@pytest.mark.parametrize("window", [32, None])
def test_a_keras2_unet_classifies_like_the_original(tmp_path, window):
    """A U-Net of fixed input (32 px) and one of any input size (TILE_SIZE given), with
    per-band standardisation: classifyunet's probabilities are the original's within 1e-5."""
    from fjord.core.learn.unet import classify_unet

    original = legacy_models.small_unet(tmp_path / "unet.h5", window=window, bands=3, classes=4)
    mean, std = [100.0, 90.0, 80.0], [40.0, 35.0, 30.0]
    out = tmp_path / "unet.keras"
    import_model(str(tmp_path / "unet.h5"), str(out), kind=1, bands="R,G,B",
                 tile_size=0 if window else 32, scaling=3, mean=",".join(map(str, mean)),
                 std=",".join(map(str, std)),
                 classes="1:water,2:ice,3:rock,4:snow")
    image = _image(tmp_path / "scene.tif", 3, (32, 32))
    data = gdal.Open(image).ReadAsArray().transpose(1, 2, 0).astype(np.float32)
    expected = original.predict(((data - mean) / std)[None], verbose=0)[0]
    classify_unet(image, str(out), str(tmp_path / "classes.tif"), overlap=0, blend="none")
    ds = gdal.Open(str(tmp_path / "classes.tif"))
    probabilities = ds.ReadAsArray()[1:].transpose(1, 2, 0)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_array_equal(ds.GetRasterBand(1).ReadAsArray(), 1 + expected.argmax(-1))
    if window:
        with pytest.raises(FjordError, match="takes windows of 32 px only"):
            classify_unet(image, str(out), str(tmp_path / "other.tif"), window=64)


def test_a_keras3_file_is_imported(tmp_path):
    from fjord.models.engine import keras

    inputs = keras.Input((16, 16, 2))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.save(str(tmp_path / "net.keras"))
    import_model(str(tmp_path / "net.keras"), str(tmp_path / "fjord.keras"), bands="a,b",
                 scaling=2, preset=None, classes="1:x,2:y,3:z")
    imported, meta = load_model(str(tmp_path / "fjord.keras"))
    x = np.random.default_rng(0).random((4, 16, 16, 2)).astype(np.float32)
    np.testing.assert_allclose(imported.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    assert meta["tile_size"] == 16 and meta["scaling"]["divisor"] == 10000.0


def test_files_that_would_run_code_or_do_not_fit_are_refused(vgg_h5, tmp_path):
    h5, _ = vgg_h5
    legacy_models.lambda_model(tmp_path / "lambda.h5")
    (tmp_path / "lambda.txt").write_text("not a model")
    out = tmp_path / "out.keras"
    cases = [
        (dict(input=str(tmp_path / "lambda.h5"), classes="1:a,2:b", bands="r,g,b"),
         "holds a Lambda layer .* Fjord does not run code"),
        (dict(input=str(h5), classes="1:a,2:b", bands="r,g,b,n"),
         "The network has 5 outputs but 2 classes are given"),
        (dict(input=str(h5), classes=CLASSES5, bands="r,g,b"),
         "BANDS names 3 bands but the network takes 4"),
        (dict(input=str(h5), classes=CLASSES5, bands="r,g,b,n", tile_size=64),
         "TILE_SIZE 64 does not match the network's input"),
        (dict(input=str(h5), classes=CLASSES5, bands="r,g,b,n", kind=1),
         "not a segmentation network"),
        (dict(input=str(h5), classes=CLASSES5, bands="r,g,b,n", scaling=3, mean="1,2"),
         "one MEAN and one STD per band"),
        (dict(input=str(h5), classes="1:a,b", bands="r,g,b,n"), "must read value:name"),
        (dict(input=str(h5), bands="r,g,b,n"), "Give the classes"),
        (dict(input=str(tmp_path / "model.onnx"), classes=CLASSES5, bands="r,g,b,n"),
         "model.onnx' does not exist"),
        (dict(input=str(tmp_path / "lambda.txt"), classes=CLASSES5, bands="r,g,b,n"),
         "give a .h5, .keras or .onnx model file"),
    ]
    for kwargs, words in cases:
        with pytest.raises(FjordError, match=words):
            import_model(output=str(out), **kwargs)
        assert not out.exists() and not list(tmp_path.glob(".out.partial*"))
    legacy_models.keras2().Sequential(
        [legacy_models.keras2().Input((4,)), legacy_models.keras2().layers.Dense(2)]
    ).save_weights(str(tmp_path / "weights.h5"))
    with pytest.raises(FjordError, match="holds weights only"):
        import_model(str(tmp_path / "weights.h5"), str(out), bands="a", classes="1:a,2:b")


def test_a_preset_gives_the_classes(vgg_h5, tmp_path):
    h5, _ = vgg_h5
    with pytest.raises(FjordError, match="The network has 5 outputs but 7 classes"):
        import_model(str(h5), str(tmp_path / "a.keras"), bands="r,g,b,n", preset="glacial")


def test_an_imported_network_is_not_fine_tuned(tmp_path):
    from fjord.core.learn.session import check_initial

    legacy_models.small_unet(tmp_path / "unet.h5", window=None, bands=3, classes=2)
    import_model(str(tmp_path / "unet.h5"), str(tmp_path / "u.keras"), kind=1, bands="r,g,b",
                 tile_size=32, classes="1:a,2:b")
    with pytest.raises(FjordError, match="is an imported network \\(unet.h5\\); Fjord fine-tunes"):
        check_initial(str(tmp_path / "u.keras"), {"bands": 3, "tile_size": 32}, [1, 2],
                      task="segmentation")


def test_tensorflow_savedmodels_are_imported(tmp_path):
    """A SavedModel folder (Keras 3's export of a U-Net, and tf-keras's of a tile classifier)
    is converted to ONNX and classifies like the original."""
    from fjord.core.learn.unet import classify_unet
    from fjord.models.engine import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Conv2D(3, 1, activation="softmax")(x)
    unet = keras.Model(inputs, outputs)
    image = _image(tmp_path / "scene.tif", 3, (32, 32))
    data = gdal.Open(image).ReadAsArray().transpose(1, 2, 0).astype(np.float32) / 255
    expected = np.asarray(unet.predict(data[None], verbose=0))[0]
    unet.export(str(tmp_path / "unet_savedmodel"))
    import_model(str(tmp_path / "unet_savedmodel"), str(tmp_path / "unet.keras"), kind=1,
                 bands="R,G,B", tile_size=32, scaling=1, classes="1:a,2:b,3:c")
    assert read_metadata(str(tmp_path / "unet.keras"))["engine"] == "onnx"
    classify_unet(image, str(tmp_path / "unet.keras"), str(tmp_path / "classes.tif"),
                  overlap=0, blend="none")
    ds = gdal.Open(str(tmp_path / "classes.tif"))
    np.testing.assert_allclose(ds.ReadAsArray()[1:].transpose(1, 2, 0), expected, atol=1e-5)

    k2 = legacy_models.keras2()
    tiles = k2.Sequential([k2.Input((16, 16, 3)), k2.layers.Conv2D(4, 3, activation="relu"),
                           k2.layers.GlobalAveragePooling2D(),
                           k2.layers.Dense(2, activation="softmax")])
    tiles.save(str(tmp_path / "tiles_savedmodel"), save_format="tf")
    import_model(str(tmp_path / "tiles_savedmodel"), str(tmp_path / "tiles.keras"),
                 bands="R,G,B", classes="1:x,2:y")
    network, meta = load_model(str(tmp_path / "tiles.keras"), task="tiles")
    batch = np.random.default_rng(2).random((5, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(network.predict(batch), tiles.predict(batch, verbose=0),
                               atol=1e-5)
    assert meta["tile_size"] == 16
    with pytest.raises(FjordError, match="is not a TensorFlow SavedModel"):
        import_model(str(tmp_path), str(tmp_path / "x.keras"), bands="a", classes="1:a,2:b")
