"""A Fjord model file as an ONNX network that Deepness runs: :func:`export_model`, the core of
``fjord:exportmodel`` (the layout and metadata: :mod:`fjord.models.onnx_files`)."""

import os

import numpy as np

from ..errors import FjordError, never_stop, no_progress
from ..prepare.normalise import normalisation_of, per_image

FORMATS = ("onnx",)
#: Largest difference allowed between the ONNX network's probabilities and Keras's.
TOLERANCE = 1e-4


def export_model(input, output, *, format=0, progress=None, should_stop=None):
    """Write the network of the Fjord model file ``input`` as ``output`` (``format`` 0: ONNX,
    opset 17, bands-first tiles in and class probabilities out, Deepness's metadata), then run
    both on random tiles: the probabilities must agree within :data:`TOLERANCE`.

    Returns ``{"output", "tile_size", "classes", "max_difference"}``."""
    from ...models.modelfile import load_model
    from ...models.onnx_files import deepness_metadata, deepness_network, write_onnx
    from ..outputs import AtomicOutputs, check_writable

    progress = progress or no_progress
    should_stop = should_stop or never_stop
    if FORMATS[int(format)] == "onnx" and not str(output).lower().endswith(".onnx"):
        raise FjordError("The ONNX file must end in .onnx.")
    check_writable(output, "ONNX file", inputs=[(input, "INPUT")])
    model, meta = load_model(input)
    if meta["task"] not in ("tiles", "segmentation"):
        raise FjordError(f"{os.path.basename(input)} is a {meta['task']} model; export a "
                         "phase-one tile classifier or a U-Net.")
    if per_image(meta):
        raise FjordError(f"{os.path.basename(input)} standardises every image by its own "
                         f"statistics (NORMALISATION {normalisation_of(meta)}), which Deepness "
                         "cannot do; export a model trained with NORMALISATION dataset.")
    from ...models.engine import keras

    network = deepness_network(model, meta, keras)
    progress(0.2, f"Converting {os.path.basename(input)} to ONNX")
    with AtomicOutputs() as out:
        tmp = out.add(output)
        write_onnx(network, tmp, deepness_metadata(meta), keras)
        difference = _compare(network, tmp)
        if difference > TOLERANCE:
            raise FjordError(f"The ONNX network differs from the Keras one by {difference:.2g} "
                             f"(more than {TOLERANCE:g}); the file was not written.")
    progress(1.0, f"Wrote {output}: probabilities within {difference:.1g} of Keras's")
    return {"output": os.path.abspath(output), "tile_size": int(meta["tile_size"]),
            "classes": len(meta["outputs"]), "max_difference": float(difference)}


def _compare(network, path, n=4, seed=0):
    """The largest difference between the two networks' outputs on ``n`` random tiles."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).normal(0, 1, (n,) + tuple(network.input_shape[1:]))
    x = x.astype(np.float32)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.abs(got - network.predict(x, verbose=0)).max())
