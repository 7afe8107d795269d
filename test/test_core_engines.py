"""The inference engine of each network (issue 26 item 3): ONNX Runtime for the networks
bench/engines.py found it faster on (the compact phase one), Keras for the others, with the
same results."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
from fjord.models.engines import engine_for, fastest  # noqa: E402
from fjord.models.onnx_files import OnnxNetwork  # noqa: E402


def test_the_rule_and_its_override(monkeypatch):
    monkeypatch.delenv("FJORD_ENGINE", raising=False)
    assert engine_for({"task": "tiles", "architecture": "compact"}) == "onnx"
    for meta in ({"task": "tiles", "architecture": "vgg16"},
                 {"task": "segmentation", "architecture": "unet"}):
        assert engine_for(meta) == "keras"
    monkeypatch.setenv("FJORD_ENGINE", "keras")
    assert engine_for({"task": "tiles", "architecture": "compact"}) == "keras"


def test_a_compact_phase_one_runs_on_its_onnx_twin_with_the_same_map(glacier, glacier_model,
                                                                    tmp_path, monkeypatch):
    from osgeo import gdal

    from fjord.core.learn.csc import classify_csc
    from fjord.models.modelfile import cached_model, load_model

    model, meta = load_model(glacier_model)
    twin = fastest(model, meta)
    assert isinstance(twin, OnnxNetwork)
    x = np.random.default_rng(0).normal(0, 1, (8,) + tuple(model.input_shape[1:]))
    np.testing.assert_allclose(twin.predict_on_batch(x.astype(np.float32)),
                               model.predict_on_batch(x.astype(np.float32)), atol=1e-4)
    maps = {}
    for engine in ("onnx", "keras"):
        monkeypatch.setenv("FJORD_ENGINE", engine)
        net = cached_model(glacier_model, task="tiles")[0]
        assert isinstance(net, OnnxNetwork) == (engine == "onnx")
        out = tmp_path / engine
        classify_csc(glacier["image"], glacier_model, str(out / "csc.tif"), patch_size=1,
                     max_epochs=1, samples_per_class=200, smoothing=0,
                     output_phase_one=str(out / "p1.tif"))
        ds = gdal.Open(str(out / "p1.tif"))
        maps[engine] = ds.ReadAsArray()
    np.testing.assert_array_equal(maps["onnx"], maps["keras"])
