"""Prediction helpers shared by phase one, phase two and the U-Net."""

import numpy as np


def predict_batch(model, x, shape=None):
    """The model's output for the batch ``x``, run as a compiled prediction step.

    ``shape``: the batch is zero-padded to it (and the output cropped back), so that every call
    has the same input shape and the step is compiled once; a network on ONNX Runtime, which
    compiles nothing per shape (``any_shape``), gets the batch as it is.
    """
    if shape is not None and tuple(x.shape) != tuple(shape) and not getattr(model, "any_shape",
                                                                            False):
        n, rows, cols = x.shape[:3]
        x = np.pad(x, [(0, shape[i] - x.shape[i]) for i in range(x.ndim)])
        out = np.asarray(model.predict_on_batch(x), dtype=np.float32)
        return out[:n, :rows - (shape[1] - out.shape[1]), :cols - (shape[2] - out.shape[2])] \
            if out.ndim == 4 else out[:n]
    return np.asarray(model.predict_on_batch(x), dtype=np.float32)
