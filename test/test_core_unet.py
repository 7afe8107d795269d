"""The U-Net: its layout, losses, training on the synthetic fjord and windowed classification."""

import csv
import os

import numpy as np
import pytest
from helpers import make_raster, write_raster
from osgeo import gdal

from fjord.core.errors import Cancelled, FjordError


def test_lulc_preset_has_the_published_parameter_count():
    from fjord.models import preset_layout
    from fjord.models.unet import build_unet

    depth, filters, dropout, optimizer = preset_layout("lulc")
    model = build_unet(14, 13, depth, filters, dropout)
    assert model.count_params() == 10_743_309  # REFERENCE.md, 14 bands / 13 classes
    assert optimizer == "nadam"


def test_glacier_preset_has_dropout_in_every_block_and_any_multiple_of_32_fits():
    from fjord.models import preset_layout
    from fjord.models.unet import build_unet

    depth, filters, dropout, _ = preset_layout("glacier")
    model = build_unet(6, 3, depth, filters, dropout)
    drops = [layer for layer in model.layers if "dropout" in layer.name]
    assert (depth, filters) == (5, 16) and len(drops) == 2 * depth
    assert all(d.rate == pytest.approx(0.2) for d in drops)
    out = model.predict(np.zeros((1, 64, 96, 6), np.float32), verbose=0)
    assert out.shape == (1, 64, 96, 3) and np.allclose(out.sum(-1), 1, atol=1e-5)


def _masks():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (2, 8, 8))
    y = np.eye(3, dtype=np.float32)[truth]
    y[:, :2] = 0  # two unlabelled rows
    p = rng.dirichlet(np.ones(3), (2, 8, 8)).astype(np.float32)
    return y, p


def test_crossentropy_leaves_unlabelled_pixels_out_and_weights_classes():
    from fjord.models.losses import SegmentationLoss

    y, p = _masks()
    labelled = y.sum(-1) > 0
    expect = -np.log((y * p).sum(-1)[labelled]).mean()
    assert float(SegmentationLoss("crossentropy")(y, p)) == pytest.approx(expect, rel=1e-5)
    p2 = p.copy()
    p2[:, :2] = np.array([1, 0, 0])  # changing unlabelled pixels changes nothing
    assert float(SegmentationLoss("crossentropy")(y, p2)) == pytest.approx(expect, rel=1e-5)
    w = np.array([1.0, 2.0, 0.5])
    wy = (y * w).sum(-1)
    expect_w = (-np.log((y * p).sum(-1)[labelled]) * wy[labelled]).sum() / wy[labelled].sum()
    assert float(SegmentationLoss("crossentropy", w)(y, p)) == pytest.approx(expect_w, rel=1e-5)


def test_soft_dice_is_zero_for_a_perfect_prediction_and_sums_with_crossentropy():
    from fjord.models.losses import SegmentationLoss

    y, p = _masks()
    perfect = np.where(y.sum(-1, keepdims=True) > 0, y, p)  # unlabelled pixels predicted anyhow
    assert float(SegmentationLoss("dice")(y, perfect)) == pytest.approx(0.0, abs=1e-6)
    dice = float(SegmentationLoss("dice")(y, p))
    inter = (y * p * (y.sum(-1, keepdims=True))).sum((0, 1, 2))
    sizes = y.sum((0, 1, 2)) + (p * y.sum(-1, keepdims=True)).sum((0, 1, 2))
    assert dice == pytest.approx(1 - np.mean((2 * inter + 1) / (sizes + 1)), rel=1e-5)
    both = float(SegmentationLoss("crossentropy+dice")(y, p))
    assert both == pytest.approx(float(SegmentationLoss("crossentropy")(y, p)) + dice, rel=1e-5)


def test_accuracy_counts_labelled_pixels_only():
    from fjord.models.losses import LabelledAccuracy

    y, p = _masks()
    acc = LabelledAccuracy()
    acc.update_state(y, p)
    labelled = y.sum(-1) > 0
    expect = (y.argmax(-1) == p.argmax(-1))[labelled].mean()
    assert float(acc.result()) == pytest.approx(expect)


def test_tiny_unet_learns_the_synthetic_scene(glacier, glacier_unet, tmp_path):
    from fjord.core.learn.unet import classify_unet
    from fjord.models.modelfile import read_metadata

    meta = read_metadata(glacier_unet["path"])
    assert meta["task"] == "segmentation" and meta["downsampling"] == 8
    assert meta["layout"] == {"depth": 3, "filters": 8, "dropout": 0.0, "optimizer": "adam"}
    assert meta["normalisation"] == "dataset" and len(meta["statistics"]["mean"]) == 4
    with open(os.path.join(glacier_unet["report"], "validation_scores.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Class", "Precision", "Recall", "F1_score", "IoU", "Support"]
    assert os.path.isfile(os.path.join(glacier_unet["report"], "curves.png"))
    assert glacier_unet["accuracy"] > 0.8, glacier_unet
    out = str(tmp_path / "unet.tif")
    classify_unet(glacier["image"], glacier_unet["path"], out, probabilities="none")
    predicted = gdal.Open(out).ReadAsArray()
    truth = gdal.Open(glacier["classes"]).ReadAsArray()
    assert (predicted == truth).mean() > 0.85


@pytest.mark.slow
def test_output_bands_class_then_probabilities_nodata_kept(glacier, glacier_unet, tmp_path):
    from fjord.core.learn.unet import classify_unet

    src = gdal.Open(glacier["image"])
    data = src.ReadAsArray()
    data[:, 100:140, 200:260] = 0
    image = str(tmp_path / "holed.tif")
    write_raster(image, data, geotransform=src.GetGeoTransform(), projection=src.GetProjection(),
                 nodata=0)
    src = None
    values = [1, 2, 3, 4, 5, 6, 7]
    names = ["open water", "iceberg water", "mélange", "glacier ice", "snow on ice", "snow on rock",
             "rock"]
    out = str(tmp_path / "f.tif")
    classify_unet(image, glacier_unet["path"], out, probabilities="float32")
    ds = gdal.Open(out)
    assert ds.RasterCount == 8 and ds.GetRasterBand(1).GetDescription() == "class"
    descriptions = [ds.GetRasterBand(b + 2).GetDescription() for b in range(7)]
    assert descriptions == [f"probability {n}" for n in names]
    arr = ds.ReadAsArray()
    hole = np.zeros(arr.shape[1:], bool)
    hole[100:140, 200:260] = True
    assert np.isnan(arr[:, hole]).all() and not np.isnan(arr[:, ~hole]).any()
    probs = arr[1:, ~hole]
    assert np.allclose(probs.sum(0), 1, atol=1e-4)
    assert np.array_equal(arr[0, ~hole], np.array(values)[probs.argmax(0)])
    assert os.path.isfile(str(tmp_path / "f.qml")) and os.path.isfile(str(tmp_path / "f.schema.json"))
    ds = None

    byte = str(tmp_path / "b.tif")
    classify_unet(image, glacier_unet["path"], byte, probabilities="byte")
    b = gdal.Open(byte).ReadAsArray()
    assert b.dtype == np.uint8 and (b[:, hole] == 255).all() and b[1:, ~hole].max() <= 254
    assert np.abs(b[1:, ~hole] / 254.0 - probs).max() <= 0.5 / 254 + 1e-4
    only = str(tmp_path / "c.tif")
    classify_unet(image, glacier_unet["path"], only, probabilities="none")
    c = gdal.Open(only)
    assert c.RasterCount == 1 and c.GetRasterBand(1).GetColorTable() is not None
    assert np.array_equal(c.ReadAsArray()[~hole], arr[0, ~hole])


@pytest.mark.slow
def test_blending_removes_seams_and_tta_runs(glacier, glacier_unet, tmp_path):
    """Inside the image (away from the reflected border), the largest difference to the
    whole-image prediction sits on the seams of hard stitching; the cosine blend lowers it."""
    from fjord.core.learn.unet import classify_unet

    whole = str(tmp_path / "whole.tif")
    classify_unet(glacier["image"], glacier_unet["path"], whole, window=512, overlap=0)
    ref = gdal.Open(whole).ReadAsArray()[1:]
    diffs = {}
    for blend in ("none", "cosine"):
        out = str(tmp_path / f"{blend}.tif")
        classify_unet(glacier["image"], glacier_unet["path"], out, window=64, overlap=32, blend=blend)
        diff = np.abs(gdal.Open(out).ReadAsArray()[1:] - ref)[:, 32:-32, 32:-32]
        diffs[blend] = (diff.max(), diff.mean())
    assert diffs["cosine"][0] < 0.8 * diffs["none"][0], diffs
    assert diffs["cosine"][1] < 0.002, diffs
    tta = str(tmp_path / "tta.tif")
    classify_unet(glacier["image"], glacier_unet["path"], tta, tta=True, probabilities="none")
    assert (gdal.Open(tta).ReadAsArray() == ref.argmax(0) + 1).mean() > 0.9


def test_flip_average_of_an_equivariant_function_is_the_function():
    from fjord.core.learn.unet import flip_average

    x = np.random.default_rng(1).random((2, 8, 8, 3)).astype(np.float32)
    assert np.allclose(flip_average(lambda a: a * 2, x), x * 2)


def test_image_smaller_than_a_window_is_padded(glacier_unet, tmp_path):
    from fjord.core.learn.unet import classify_unet

    image = make_raster(tmp_path / "small.tif", width=30, height=20, bands=4)
    out = str(tmp_path / "small_out.tif")
    classify_unet(image, glacier_unet["path"], out)
    arr = gdal.Open(out).ReadAsArray()
    assert arr.shape == (8, 20, 30) and np.isfinite(arr).all()


@pytest.mark.parametrize("case, words", [
    ("bands", "trained on 4"),
    ("window", "not a multiple of 8"),
    ("overlap", "OVERLAP must be"),
    ("task", "needs a U-Net"),
])
def test_classify_bad_input(glacier, glacier_unet, glacier_model, tmp_path, case, words):
    from fjord.core.learn.unet import classify_unet

    image, model, kwargs = glacier["image"], glacier_unet["path"], {}
    if case == "bands":
        image = make_raster(tmp_path / "three.tif", bands=3)
    elif case == "window":
        kwargs["window"] = 60
    elif case == "overlap":
        kwargs.update(window=64, overlap=64)
    elif case == "task":
        model = glacier_model
    out = tmp_path / "out.tif"
    with pytest.raises(FjordError, match=words):
        classify_unet(image, model, str(out), **kwargs)
    assert not out.exists()


def test_cancel_leaves_no_output(glacier, glacier_unet, tmp_path):
    from fjord.core.learn.unet import classify_unet

    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    out = tmp_path / "cancelled.tif"
    with pytest.raises(Cancelled):
        classify_unet(glacier["image"], glacier_unet["path"], str(out), should_stop=stop)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("case, words", [
    ("tiles dataset", "tile classification dataset"),
    ("depth", "not a multiple of 128"),
    ("preset", "preset must be one of"),
])
def test_train_bad_input(glacier_segmentation, glacier_tiles, tmp_path, case, words):
    from fjord.core.learn.unet import train_unet

    dataset, kwargs = glacier_segmentation, {}
    if case == "tiles dataset":
        dataset = glacier_tiles
    elif case == "depth":
        kwargs["depth"] = 7
    elif case == "preset":
        kwargs["preset"] = "huge"
    with pytest.raises(FjordError, match=words):
        train_unet(dataset, str(tmp_path / "m.keras"), epochs=1, **kwargs)
    assert os.listdir(tmp_path) == []


def test_crops_are_multiples_of_the_downsampling_and_batches_follow_them(glacier_segmentation):
    from fjord.core.learn.sequence import TileDataset
    from fjord.core.learn.unet import crop_sizes

    assert crop_sizes(256, 16) == [128, 192, 256] and crop_sizes(64, 8) == [32, 48, 64]
    data = TileDataset(glacier_segmentation, "train", batch_size=4, augment="rotations+flips",
                       standardise=True, crops=crop_sizes(64, 8))
    shapes = {data[i][0].shape[1] for i in range(len(data))}
    assert shapes <= {32, 48, 64} and len(shapes) > 1
    for seed in range(6):  # Keras fixes its input signature from batches 0 and 1: they differ
        data = TileDataset(glacier_segmentation, "train", batch_size=4, seed=seed,
                           standardise=True, crops=crop_sizes(64, 8))
        for _ in range(2):
            assert data[0][0].shape[1] != data[1][0].shape[1]
            data.on_epoch_end()
    x, y = data[0]
    assert x.shape[:3] == y.shape[:3] and y.shape[-1] == 7
    assert abs(float(x.mean())) < 1.5  # z-scores


def test_radiometric_augmentation_changes_gain_and_offset_per_window_and_band(
        glacier_segmentation, tmp_path):
    from fjord.core.learn.sequence import TileDataset, radiometric_change
    from fjord.core.learn.unet import train_unet

    x = np.zeros((2000, 1, 2, 3), np.float32)
    x[:, :, 1] = 1  # in each window a pixel at 0 gives the offset, one at 1 offset + gain
    changed = radiometric_change(x, np.random.default_rng(0))
    offset, gain = changed[:, 0, 0], changed[:, 0, 1] - changed[:, 0, 0]
    assert abs(offset.std() - 0.3) < 0.02 and abs(np.log(gain).std() - 0.2) < 0.02
    # half the variance shared by a window's bands
    assert 0.4 < np.corrcoef(offset[:, 0], offset[:, 1])[0, 1] < 0.6
    plain, shifted = (TileDataset(glacier_segmentation, "train", batch_size=4, standardise=True,
                                  radiometric=r) for r in (False, True))
    (xa, ya), (xb, yb) = plain[0], shifted[0]
    np.testing.assert_array_equal(ya, yb)
    assert not np.allclose(xa, xb)
    from fjord.models.modelfile import read_metadata

    path = str(tmp_path / "r.keras")
    train_unet(glacier_segmentation, path, depth=2, filters=4, epochs=1,
               augment="rotations+flips+crops+radiometric")
    assert read_metadata(path)["training"]["augment"] == "rotations+flips+crops+radiometric"


def test_unet_output_chains_into_validation_and_the_calving_front(glacier, glacier_unet, tmp_path):
    """Band 1 of classifyunet's output is the class raster the later steps read."""
    from fjord.core.evaluate.validate import validate_classification
    from fjord.core.glaciers.front import calving_front
    from fjord.core.learn.unet import classify_unet

    out = str(tmp_path / "u.tif")
    classify_unet(glacier["image"], glacier_unet["path"], out)
    result = validate_classification(out, str(tmp_path / "scores.csv"), reference=glacier["classes"])
    assert result["accuracy"] > 0.85
    front = calving_front(out, str(tmp_path / "front.gpkg"))  # reads band 1 with the schema
    assert front["glacier_classes"] == [4] and front["ocean_classes"] == [1, 2, 3]
    assert os.path.isfile(tmp_path / "front.gpkg")
    other = make_raster(tmp_path / "two.tif", bands=2)
    with pytest.raises(FjordError, match="one band of class values"):
        validate_classification(other, str(tmp_path / "s2.csv"), reference=glacier["classes"])


def test_mixed_precision_trains_and_saves_float32(glacier_segmentation, tmp_path):
    import json
    import zipfile

    from fjord.core.learn.unet import train_unet

    path = str(tmp_path / "mp.keras")
    lines = []
    result = train_unet(glacier_segmentation, path, depth=2, filters=4, epochs=1,
                        mixed_precision="on", progress=lambda f, m=None: m and lines.append(m))
    assert result["precision"] == "mixed_bfloat16" and "bfloat16" in lines[0]
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    assert all("mixed" not in json.dumps(layer["config"].get("dtype"))
               for layer in config["config"]["layers"])


@pytest.mark.slow
def test_trains_and_classifies_under_the_jax_backend(glacier, glacier_segmentation, tmp_path):
    """The backend the GPU machines run: training with random crops (several input shapes)
    and windowed classification."""
    import subprocess
    import sys

    pytest.importorskip("jax")
    code = ("import sys; import keras; from fjord.core.learn.unet import train_unet, classify_unet; "
            "r = train_unet(sys.argv[1], sys.argv[2], depth=2, filters=4, epochs=2, seed=1); "
            "c = classify_unet(sys.argv[3], sys.argv[2], sys.argv[4], window=64); "
            "print(keras.backend.backend(), r['epochs_run'], c['window'])")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code, glacier_segmentation, str(tmp_path / "jax.keras"),
                          glacier["image"], str(tmp_path / "jax.tif")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-3:] == ["jax", "2", "64"]
    assert gdal.Open(str(tmp_path / "jax.tif")).RasterCount == 8


def test_segmentation_scores_equal_scikit_learn():
    from sklearn.metrics import confusion_matrix, f1_score, jaccard_score

    from fjord.core.learn.unet import segmentation_scores

    rng = np.random.default_rng(2)
    truth = rng.integers(0, 4, 5000)
    predicted = np.where(rng.random(5000) < 0.7, truth, rng.integers(0, 5, 5000)) % 4
    truth[truth == 3] = 2  # class 3 only predicted: F1 0, left out of the macro mean
    scores = segmentation_scores(confusion_matrix(truth, predicted, labels=[0, 1, 2, 3]))
    f1 = f1_score(truth, predicted, labels=[0, 1, 2, 3], average=None, zero_division=0)
    iou = jaccard_score(truth, predicted, labels=[0, 1, 2, 3], average=None, zero_division=0)
    assert np.allclose([c["f1"] for c in scores["classes"]], f1)
    assert np.allclose([c["iou"] for c in scores["classes"]], iou)
    assert scores["macro_f1"] == pytest.approx(f1_score(truth, predicted, labels=[0, 1, 2], average="macro"))
    assert scores["weighted_f1"] == pytest.approx(f1_score(truth, predicted, average="weighted"))


def test_fine_tuning_keeps_the_initial_layout_and_weights(glacier_segmentation, glacier_unet, tmp_path):
    from fjord.core.learn.unet import train_unet
    from fjord.models.modelfile import load_model, read_metadata

    path = str(tmp_path / "tuned.keras")
    lines = []
    result = train_unet(glacier_segmentation, path, initial_model=glacier_unet["path"], depth=5,
                        filters=64, epochs=1, learning_rate=1e-5,
                        progress=lambda f, m=None: m and lines.append(m))
    assert result["layout"]["depth"] == 3 and result["layout"]["filters"] == 8  # the initial's
    assert any(line.startswith("Fine-tuning unet.keras") for line in lines)
    assert read_metadata(path)["training"]["initial_model"] == os.path.abspath(glacier_unet["path"])
    tuned, _ = load_model(path)
    start, _ = load_model(glacier_unet["path"])
    # Trainable weights (batch-normalisation statistics follow the data whatever the rate).
    moved = max(float(np.abs(np.asarray(a.value) - np.asarray(b.value)).max())
                for a, b in zip(tuned.trainable_weights, start.trainable_weights))
    assert 0 < moved < 0.01  # one epoch at 1e-5 from the initial weights, not from scratch
