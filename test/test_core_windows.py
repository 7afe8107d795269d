"""Overlapping, blended windows: weights, coverage, and equality with whole-image prediction."""

import numpy as np
import pytest
from helpers import write_raster
from osgeo import gdal

from fjord.core.data.rasters import ImageStrips
from fjord.core.learn.windows import (
    BLENDS,
    blend_profile,
    predict_windows,
    reflect_index,
    window_positions,
    windows_per_row,
)


def _image(path, array):
    return ImageStrips(write_raster(path, np.moveaxis(array, 2, 0), dtype=gdal.GDT_Float32,
                                    epsg=None))


def _collect(height, width, n_out):
    out = np.full((height, width, n_out), np.nan, np.float32)
    rows = []

    def write(row, values, valid):
        assert np.isnan(out[row:row + len(values)]).all(), "each row is written once"
        out[row:row + len(values)] = values
        rows.append((row, len(values)))
    return out, write, rows


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("window, overlap", [(32, 8), (64, 16), (48, 20), (40, 0)])
def test_weights_of_overlapping_windows_sum_to_one(blend, window, overlap):
    step = window - overlap
    profile = blend_profile(window, overlap, blend)
    length = 5 * step + window
    total = np.zeros(length)
    for s in range(0, length - window + 1, step):
        total[s:s + window] += profile
    inner = total[overlap:length - overlap]  # away from the outer edges of the outer windows
    np.testing.assert_allclose(inner, 1.0, atol=1e-9) if blend != "none" or overlap % 2 == 0 \
        else np.testing.assert_array_less(0.5, inner)
    assert profile.max() == pytest.approx(1.0)
    if overlap and blend != "none":
        assert profile[0] < 0.1 and profile[-1] < 0.1  # falls towards the window edges


def test_window_positions_and_reflection():
    assert window_positions(100, 32, 24) == [0, 24, 48, 68]
    assert window_positions(20, 32, 24) == [0]
    assert reflect_index(np.arange(-3, 8), 5).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]
    assert reflect_index(np.array([-9, 13]), 4).tolist() == [3, 1]


@pytest.mark.parametrize("shape", [(70, 90), (19, 23), (64, 64)])
def test_constant_prediction_blends_to_itself_with_every_pixel_written(tmp_path, shape):
    img = _image(tmp_path / "img.tif", np.random.default_rng(0).random(shape + (2,), np.float32))
    out, write, rows = _collect(shape[0], shape[1], 3)
    predict_windows(img, lambda x: np.broadcast_to(np.float32([0.2, 0.3, 0.5]), x.shape[:3] + (3,)),
                    32, 8, 3, write)
    np.testing.assert_allclose(out, np.broadcast_to([0.2, 0.3, 0.5], out.shape), atol=1e-6)
    assert sum(n for _, n in rows) == shape[0]


def test_windowed_toy_network_equals_the_whole_image_away_from_the_border(tmp_path):
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(1)
    image = rng.random((150, 170, 3)).astype(np.float32)
    inputs = keras.Input((None, None, 3))
    x = inputs
    for _ in range(3):  # receptive-field radius 3
        x = keras.layers.Conv2D(8, 3, padding="same", activation="tanh")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, activation="softmax")(x))
    whole = np.asarray(model(image[None]))[0]
    img = _image(tmp_path / "img.tif", image)
    for blend in ("linear", "cosine"):
        out, write, _ = _collect(150, 170, 4)
        predict_windows(img, lambda b: np.asarray(model(b)), 48, 16, 4, write, blend=blend, margin=3)
        np.testing.assert_allclose(out[3:-3, 3:-3], whole[3:-3, 3:-3], atol=2e-5)
    # Windows side by side without overlap (the published way) leave seams.
    out, write, _ = _collect(150, 170, 4)
    predict_windows(img, lambda b: np.asarray(model(b)), 48, 0, 4, write, blend="none")
    assert np.abs(out[3:-3, 3:-3] - whole[3:-3, 3:-3]).max() > 1e-3


@pytest.mark.parametrize("shape, window, overlap", [((70, 90), 32, 8), ((19, 23), 32, 8),
                                                    ((40, 300), 64, 16), ((64, 64), 64, 0)])
def test_windows_per_row_is_the_largest_batch_predict_windows_asks_for(tmp_path, shape, window,
                                                                       overlap):
    """The batch cap of classification: a row of windows is predicted at a time, so a larger
    padded batch would only predict empty windows."""
    img = _image(tmp_path / "img.tif", np.zeros(shape + (2,), np.float32))
    sizes = []

    def predict(x):
        sizes.append(len(x))
        return np.zeros(x.shape[:3] + (1,), np.float32)

    predict_windows(img, predict, window, overlap, 1, lambda *a: None, batch=10 ** 6)
    assert max(sizes) == windows_per_row(shape[1], window, overlap)
