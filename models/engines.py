"""The inference engine of each network: Keras (TensorFlow) or ONNX Runtime.

``bench/engines.py`` measures both on this CPU for the networks Fjord classifies with. ONNX
Runtime runs a network where it was at least 1.3 times faster and its probabilities agreed
within 1e-4 (:data:`RULE`, by task and architecture); Keras runs the others. Measured on 2 CPU
cores (TF / ONNX Runtime time): U-Net windows 0.76, VGG16 tiles 1.02, compact tiles 1.34-1.37,
phase-two MLP 0.47 and CNN 0.94; so only the compact phase one runs on ONNX Runtime.

The ONNX twin of a Keras network is made when a classification loads the model file
(:func:`fjord.models.modelfile.cached_model`; Keras's exporter, operator set 17), checked against
Keras on a batch, and Keras is kept when the twin differs or cannot be made.
``FJORD_ENGINE=keras`` (or ``onnx``) in the environment overrides the rule for every network.
"""

import os
import tempfile

import numpy as np

#: The networks ONNX Runtime runs (``task/architecture``), from bench/engines.py; Keras runs
#: every other one.
RULE = {"tiles/compact": "onnx"}
TOLERANCE = 1e-4
OPSET = 17


def onnx_twin(model, sample_shape, path=None):
    """The ONNX twin of the Keras ``model`` (an :class:`~fjord.models.onnx_files.OnnxNetwork`,
    bands-last like the Keras one) (called once on a zero batch of ``sample_shape``
    first, as the exporter needs); written to ``path`` (a temporary file by default)."""
    model.predict_on_batch(np.zeros((1,) + tuple(sample_shape), np.float32))
    with tempfile.TemporaryDirectory() as folder:
        target = path or os.path.join(folder, "net.onnx")
        model.export(target, format="onnx", verbose=False, opset_version=OPSET)
        with open(target, "rb") as f:
            data = f.read()
    from .onnx_files import OnnxNetwork

    return OnnxNetwork(data, layout="nhwc")


def engine_for(meta):
    """``"keras"`` or ``"onnx"`` for the network a model description ``meta`` describes: the
    environment's FJORD_ENGINE, else :data:`RULE`."""
    chosen = os.environ.get("FJORD_ENGINE", "").strip().lower()
    if chosen in ("keras", "onnx"):
        return chosen
    return RULE.get(f"{meta['task']}/{meta.get('architecture')}", "keras")


def fastest(model, meta):
    """``model`` (a Keras network, described by ``meta``) or its ONNX twin, by
    :func:`engine_for`; Keras when the twin cannot be made or differs by more than
    :data:`TOLERANCE` on a random batch."""
    if engine_for(meta) != "onnx":
        return model
    tile = int(meta["tile_size"])
    sample_shape = (tile, tile, int(meta["bands"]))
    try:
        twin = onnx_twin(model, sample_shape)
    except Exception:  # no exporter for this network: Keras runs it
        return model
    x = np.random.default_rng(0).normal(0, 1, (2,) + tuple(sample_shape)).astype(np.float32)
    if float(np.abs(np.asarray(model.predict_on_batch(x)) - twin.predict_on_batch(x)).max()) \
            > TOLERANCE:
        return model
    return twin
