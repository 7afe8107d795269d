"""CNN-supervised classification in the core: fully convolutional phase two, sampling,
smoothing, scores, the whole job on the synthetic fjord, the batch table, bad input."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
from osgeo import gdal

keras = pytest.importorskip("keras")

from helpers import make_raster, write_raster

from fjord.core.data.rasters import ImageStrips
from fjord.core.errors import Cancelled, FjordError
from fjord.core.evaluate.metrics import Confusion, class_scores
from fjord.core.learn import csc
from fjord.core.run.batch import batch_csc, read_jobs
from fjord.models.modelfile import load_model, save_model
from fjord.models.phase_two import build_phase_two, fully_convolutional

QUICK = dict(samples_per_class=2000, max_epochs=20, patience=5, seed=0)


def _write(path, array, nodata=None, dtype=gdal.GDT_UInt16):
    return write_raster(path, array, nodata=nodata, dtype=dtype, epsg=None)


def _read(path, band=1):
    ds = gdal.Open(str(path))
    out = ds.GetRasterBand(band).ReadAsArray()
    ds = None
    return out


def _randomise_batch_norm(model, rng):
    bn = model.get_layer("bn")
    bn.set_weights([rng.random(w.shape).astype("float32") + 0.5 for w in bn.get_weights()])


def _per_patch(model, image, k):
    """The reference method: every K x K patch built (edges reflected) and predicted."""
    h = (k - 1) // 2
    padded = np.pad(image, ((h, h), (h, h), (0, 0)), mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(0, 1))
    patches = np.moveaxis(windows, 2, -1).reshape(-1, k, k, image.shape[-1])
    return np.asarray(model.predict(patches, batch_size=4096, verbose=0)).reshape(
        image.shape[0], image.shape[1], -1)


@pytest.mark.parametrize("k", [1, 3, 5, 7, 15])
def test_fully_convolutional_strips_equal_per_patch_prediction(k, tmp_path):
    rng = np.random.default_rng(k)
    image = rng.integers(0, 8000, (4, 37, 53)).astype(np.uint16)
    path = _write(tmp_path / "image.tif", image)
    model = build_phase_two(k, 4, 5)
    _randomise_batch_norm(model, rng)
    values = [1, 2, 4, 6, 7]
    img = ImageStrips(path)
    img.divisor = 8192.0
    out = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "classes.tif"), 53, 37, 1, gdal.GDT_Byte)
    prob = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "prob.tif"), 53, 37, 7, gdal.GDT_Float32)
    # A tiny block budget: many strips of a few rows and blocks of 16 columns.
    csc.phase_two_predict(img, fully_convolutional(model), values, [0, 1, 3, 5, 6],
                          out.GetRasterBand(1), prob, 255, lambda *a: None, lambda: False,
                          block_budget=4 * 512 * 60, block_cols=16)
    out = prob = None
    expected = _per_patch(model, np.moveaxis(image, 0, -1).astype(np.float32) / 8192.0, k)
    got = _read(tmp_path / "classes.tif")
    assert (got == np.array(values)[expected.argmax(-1)]).all()
    for i, band in enumerate([1, 2, 4, 6, 7]):
        np.testing.assert_allclose(_read(tmp_path / "prob.tif", band), expected[..., i], atol=2e-5)
    assert not _read(tmp_path / "prob.tif", 3).any()  # a class the network does not predict


def test_tile_positions_cover_the_edges():
    assert csc.tile_positions(100, 32, 32) == [0, 32, 64, 68]
    assert csc.tile_positions(96, 32, 32) == [0, 32, 64]
    assert csc.tile_positions(40, 32, 16) == [0, 8]
    assert csc.tile_positions(32, 32, 32) == [0]


def test_sampling_draws_balanced_pixels_at_their_true_row_and_col(tmp_path):
    rows, cols = 30, 70  # not square: swapped rows and columns would fall outside or mislabel
    classes = np.zeros((rows, cols), np.uint8)
    classes[:, :10], classes[:, 10:60], classes[:, 60:] = 1, 2, 3
    classes[:4, 60:] = 0  # unlabelled pixels are never drawn
    r, c = np.mgrid[:rows, :cols]
    image = np.stack([r, c, r * 100 + c]).astype(np.uint16)
    img = ImageStrips(_write(tmp_path / "image.tif", image))
    one = gdal.Open(_write(tmp_path / "one.tif", classes, dtype=gdal.GDT_Byte))
    strips = [(y, min(8, rows - y), np.bincount(classes[y:y + 8].ravel(), minlength=4))
              for y in range(0, rows, 8)]
    counts = sum(s[2] for s in strips)
    present, left_out, per_class = csc.allot_samples(counts, 400, 5, 3, 2, lambda *a: None)
    assert present == {1: 300, 2: 1500, 3: 260} and not left_out and per_class == 400
    picks = csc.draw_samples(strips, present, per_class, np.random.default_rng(0))
    patches, labels, rr, cc = csc.gather_patches(img, one, strips, picks, 5, lambda *a: None,
                                                 lambda: False)
    assert np.bincount(labels, minlength=4).tolist() == [0, 400, 400, 400]
    assert (classes[rr, cc] == labels).all()
    # Class 2 has enough pixels: drawn without replacement.
    assert len(set(zip(rr[labels == 2], cc[labels == 2]))) == 400
    padded = np.pad(np.moveaxis(image, 0, -1), ((2, 2), (2, 2), (0, 0)), mode="reflect")
    for i in range(0, len(labels), 37):
        assert (patches[i] == padded[rr[i]:rr[i] + 5, cc[i]:cc[i] + 5]).all()
    assert (patches[:, 2, 2, 0] == rr).all() and (patches[:, 2, 2, 1] == cc).all()


def test_samples_per_class_shrink_to_the_patch_memory(monkeypatch):
    lines = []
    monkeypatch.setattr(csc, "PATCH_MEMORY", 15 * 15 * 4 * 2 * 3000)
    present, _, per_class = csc.allot_samples(np.array([0, 10 ** 6, 10 ** 6, 10]), 500_000, 15, 4, 2,
                                              lambda f, m=None: lines.append(m))
    assert per_class == 1500 and set(present) == {1, 2}
    assert "1,500 samples per class instead of 500,000" in lines[0]


def test_modal_filter_in_strips_equals_the_whole_image(tmp_path):
    from skimage.filters.rank import modal
    from skimage.morphology import disk

    rng = np.random.default_rng(3)
    classes = rng.integers(1, 5, (61, 47)).astype(np.uint8)
    classes[20:25, 10:30] = 255
    src = gdal.Open(_write(tmp_path / "raw.tif", classes, nodata=255, dtype=gdal.GDT_Byte))
    dst = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "smooth.tif"), 47, 61, 1, gdal.GDT_Byte)
    csc.modal_filter(src, dst.GetRasterBand(1), 3, 255, lambda *a: None, lambda: False, rows=7)
    dst = None
    whole = modal(classes, disk(3), mask=classes != 255)
    whole[classes == 255] = 255
    assert (_read(tmp_path / "smooth.tif") == whole).all()


def test_scores_equal_scikit_learn():
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    rng = np.random.default_rng(5)
    truth = rng.integers(0, 6, (50, 40))
    predicted = np.where(rng.random((50, 40)) < 0.7, truth, rng.integers(0, 7, (50, 40)))
    conf = Confusion(7)
    for y in range(0, 50, 9):
        conf.add(truth[y:y + 9], predicted[y:y + 9])
    scores = class_scores(conf.matrix)
    keep = truth > 0
    t, p = truth[keep], predicted[keep]
    labels = sorted(set(t) | (set(p) - {0}))
    assert [r["value"] for r in scores["classes"]] == labels
    prec, rec, f1, sup = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    for i, row in enumerate(scores["classes"]):
        assert row["precision"] == pytest.approx(prec[i]) and row["recall"] == pytest.approx(rec[i])
        assert row["f1"] == pytest.approx(f1[i]) and row["support"] == sup[i]
    for avg in ("macro", "weighted"):
        expected = precision_recall_fscore_support(t, p, labels=labels, average=avg, zero_division=0)
        assert scores[avg]["f1"] == pytest.approx(expected[2])
        assert scores[avg]["precision"] == pytest.approx(expected[0])
    assert scores["accuracy"] == pytest.approx(accuracy_score(t, p))


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 7])
def test_csc_beats_phase_one_on_the_synthetic_fjord(glacier, glacier_model, tmp_path, k):
    out = tmp_path / "out"
    lines = []
    result = csc.classify_csc(
        glacier["image"], glacier_model, str(out / "csc.tif"), patch_size=k,
        validation=glacier["classes"], output_phase_one=str(out / "p1.tif"),
        output_probabilities=str(out / "prob.tif"), phase_two_model=str(out / "p2.keras"),
        report=str(out / "report"), progress=lambda f, m=None: m and lines.append(m), **QUICK)
    one, final = result["scores"]["phase_one"], result["scores"]["csc"]
    assert final["weighted"]["f1"] > one["weighted"]["f1"] + 0.03, (one, final)
    assert final["weighted"]["f1"] > 0.8
    classes = _read(out / "csc.tif")
    assert classes.min() >= 1 and classes.max() <= 7  # every pixel predicted, borders included
    assert _read(out / "p1.tif").min() >= 1
    ds = gdal.Open(str(out / "prob.tif"))
    assert ds.RasterCount == 7
    assert [ds.GetRasterBand(b + 1).GetDescription() for b in range(7)][:2] == ["open water", "iceberg water"]
    total = sum(ds.GetRasterBand(b + 1).ReadAsArray() for b in range(7))
    np.testing.assert_allclose(total, 1, atol=1e-4)
    ds = None
    for side in ("csc.qml", "csc.schema.json", "p1.qml"):
        assert os.path.isfile(out / side)
    rows = _csv(out / "report" / "CSC_image.csv")
    assert rows[0] == ["Class", "Precision", "Recall", "F1_score", "Support"]
    assert [r[0] for r in rows[-3:]] == ["accuracy", "macro avg", "weighted avg"]
    assert float(rows[-1][3]) == pytest.approx(final["weighted"]["f1"], abs=1e-4)
    assert _csv(out / "report" / "CNN_image.csv")[0] == rows[0]
    assert os.path.getsize(out / "report" / "CSC_image.png") > 10000
    net, meta = load_model(str(out / "p2.keras"), task="patches")
    assert meta["patch_size"] == k and net.input_shape == (None, k, k, 4)
    assert not [n for n in os.listdir(out) if "partial" in n]
    assert any(line.startswith("Phase two predicted") and "px/s" in line for line in lines)


def test_nodata_stays_nodata_and_odd_sizes_are_covered(glacier, glacier_model, tmp_path):
    src = gdal.Open(glacier["image"])
    data = src.ReadAsArray(0, 0, 101, 75)
    data[:, 30:40, 50:70] = 0
    path = tmp_path / "crop.tif"
    write_raster(path, data, geotransform=src.GetGeoTransform(), projection=src.GetProjection(),
                 nodata=0)
    src = None
    csc.classify_csc(str(path), glacier_model, str(tmp_path / "csc.tif"), patch_size=3,
                     output_phase_one=str(tmp_path / "p1.tif"), smoothing=2,
                     **dict(QUICK, max_epochs=3))
    for name in ("csc.tif", "p1.tif"):
        classes = _read(tmp_path / name)
        assert (classes[30:40, 50:70] == 255).all()
        classes[30:40, 50:70] = 1
        assert classes.min() >= 1 and classes.max() <= 7
        assert gdal.Open(str(tmp_path / name)).GetRasterBand(1).GetNoDataValue() == 255


def _image_copy(glacier, folder, reference=True):
    os.makedirs(folder, exist_ok=True)
    shutil.copy(glacier["image"], os.path.join(folder, "fjord_a.tif"))
    if reference:
        shutil.copy(glacier["classes"], os.path.join(folder, "SCLS_fjord_a.tif"))
    return folder


@pytest.mark.slow
def test_batch_table_resumes_after_an_interruption(glacier, glacier_model, tmp_path):
    _image_copy(glacier, tmp_path / "images")
    shutil.copy(glacier_model, tmp_path / "model.keras")
    jobs = tmp_path / "jobs.csv"
    with open(jobs, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Model", "DataSource", "OutFolder", "ExpShortHand", "Dims", "PatchSize",
                    "TileSize", "Patience", "Done"])
        w.writerow(["model.keras", "images", "out/mlp", "A", 4, 1, 32, 3, 0])
        w.writerow(["model.keras", "images", "out/ccnn", "B", 4, 3, 32, 3, 0])
        w.writerow(["model.keras", "images", "out/bad", "C", 4, 3, 50, 3, 0])
    options = dict(samples_per_class=1000, max_epochs=4, smoothing=2)

    def stop_after_first_job():
        return read_jobs(str(jobs))[1][0]["Done"] == "1"

    with pytest.raises(Cancelled):
        batch_csc(str(jobs), str(tmp_path / "summary.csv"), should_stop=stop_after_first_job,
                  **options)
    assert [r["Done"] for r in read_jobs(str(jobs))[1]] == ["1", "0", "0"]
    assert os.path.isfile(tmp_path / "out" / "mlp_patch1" / "A_fjord_a.tif")
    assert os.path.isfile(tmp_path / "out" / "mlp_patch1" / "CSC_A_fjord_a.csv")
    assert not os.path.exists(tmp_path / "out" / "ccnn_patch3")

    lines = []
    result = batch_csc(str(jobs), str(tmp_path / "summary.csv"),
                       progress=lambda f, m=None: m and lines.append(m), **options)
    assert (result["ran"], result["failed"], result["done_earlier"]) == (1, 1, 1)
    assert [r["Done"] for r in read_jobs(str(jobs))[1]] == ["1", "1", "0"]
    assert any(line.startswith("Job C") and "FAILED: TileSize is 50" in line for line in lines)
    assert lines[-1].startswith("1 jobs run, 1 FAILED, 1 done earlier")
    assert os.path.isfile(tmp_path / "out" / "ccnn_patch3" / "B_fjord_a_phase_one.tif")
    with open(tmp_path / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert [(r["ExpShortHand"], r["Status"]) for r in summary] == [
        ("A", "done earlier"), ("B", "ok"), ("C", "failed")]
    for r in summary[:2]:
        assert 0 < float(r["CSC_weighted_F1"]) <= 1 and 0 < float(r["PhaseOne_weighted_F1"]) <= 1


def _patches_model(path):
    model = build_phase_two(1, 4, 3)
    save_model(model, str(path), {"task": "patches", "architecture": "mlp", "bands": 4,
                                  "band_names": ["B4", "B3", "B2", "B8"], "tile_size": 1,
                                  "scaling": {"rule": "divide", "divisor": 8192.0},
                                  "schema": {"classes": []}, "outputs": [1, 2, 3]})
    return str(path)


@pytest.mark.parametrize("case, words", [
    ("bands", "trained on 4 bands"),
    ("small", "smaller than one tile"),
    ("not_phase_one", "CSC.s phase one is a tile classifier"),
    ("one_class", "fewer than two classes"),
    ("grid", "not on the grid of the image"),
    ("patch", "PATCH_SIZE must be one of"),
])
def test_bad_input(glacier, glacier_model, tmp_path, case, words):
    image, model, extra = glacier["image"], glacier_model, {}
    if case == "bands":
        image = make_raster(tmp_path / "rgb.tif", 64, 64, bands=3)
    elif case == "small":
        image = make_raster(tmp_path / "small.tif", 20, 40, bands=4)
    elif case == "not_phase_one":
        model = _patches_model(tmp_path / "p2.keras")
    elif case == "one_class":
        image = make_raster(tmp_path / "flat.tif", 64, 64, bands=4)
    elif case == "grid":
        extra["validation"] = make_raster(tmp_path / "ref.tif", 100, 100)
    elif case == "patch":
        extra["patch_size"] = 9
    with pytest.raises(FjordError, match=words):
        csc.classify_csc(image, model, str(tmp_path / "out.tif"), **dict(QUICK, **extra))
    assert not [n for n in os.listdir(tmp_path) if n.startswith(("out", ".out"))]


@pytest.mark.parametrize("phase", ["Phase one", "Phase two, epoch 1"])
def test_cancel_leaves_no_output(glacier, glacier_model, tmp_path, phase):
    seen = []

    def progress(fraction, message=None):
        if message:
            seen.append(message)

    with pytest.raises(Cancelled):
        csc.classify_csc(glacier["image"], glacier_model, str(tmp_path / "csc.tif"),
                         output_phase_one=str(tmp_path / "p1.tif"), report=str(tmp_path / "rep"),
                         validation=glacier["classes"], progress=progress,
                         should_stop=lambda: any(m.startswith(phase) for m in seen), **QUICK)
    left = [n for n in os.listdir(tmp_path) if n != "rep"] + os.listdir(tmp_path / "rep")
    assert left == []


def test_result_is_json_serialisable(glacier, glacier_model, tmp_path):
    result = csc.classify_csc(glacier["image"], glacier_model, str(tmp_path / "c.tif"), patch_size=1,
                              **dict(QUICK, max_epochs=2))
    json.dumps(result)
    assert result["phase_two"]["network"] == "mlp" and result["scores"] == {}


def test_boundary_scores_measure_how_far_a_boundary_is_shifted():
    from fjord.core.evaluate.metrics import boundary_scores

    truth = np.ones((20, 30), np.uint8)
    truth[:, 15:] = 2
    truth[:, :3] = 0  # unlabelled: neither its boundary nor the prediction's there counts
    for shift, f1, distance in ((0, 1.0, 0.0), (1, 1.0, 1.0), (4, 0.0, 4.0)):
        predicted = np.ones_like(truth)
        predicted[:, 15 + shift:] = 2
        predicted[:, :2] = 3
        s = boundary_scores(truth, predicted, tolerance=2)
        assert s["f1"] == pytest.approx(f1) and s["mean_distance"] == pytest.approx(distance)
    assert boundary_scores(np.ones((5, 5), int), np.ones((5, 5), int))["f1"] is None
    flat = boundary_scores(truth, np.ones_like(truth))
    assert flat["f1"] == 0.0 and flat["mean_distance"] > 30
