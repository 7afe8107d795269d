"""Fjord networks as ONNX files that Deepness (the QGIS inference plugin) runs.

Deepness feeds a segmentation network tiles of ``(batch, bands, rows, columns)`` — 8-bit
values divided by 255, then standardised by the file's ``standardization_mean`` and
``standardization_std`` — and reads ``(batch, classes, rows, columns)`` probabilities
(Deepness documentation, "Model classes and requirements"). :func:`deepness_network` wraps a
Fjord network to that layout:

- a U-Net: the input moved from bands-first to bands-last and the output back;
- a phase-one tile classifier: a segmentation network whose tile of ``tile_size`` px gets its
  class probabilities at every pixel, as Fjord's phase one paints a tile.

:func:`deepness_metadata` gives the metadata Deepness reads from the file: ``model_type``
``Segmentor``, ``class_names`` (output index to name), ``tiles_size``, ``tiles_overlap``,
``resolution`` (cm per pixel, when known) and the standardisation that turns Deepness's
``value / 255`` into Fjord's input: ``(value / divisor - mean) / std`` equals
``(value / 255 - mean * divisor / 255) / (std * divisor / 255)``.
"""

import json

import numpy as np

from ..core.errors import FjordError

#: The ONNX operator set written (17: LayerNormalization and the 2022 operators).
OPSET = 17


def deepness_network(model, meta, keras):
    """The network of a Fjord model file (``model``, its description ``meta``) with bands-first
    input and output, of tile size ``meta['tile_size']``."""
    tile, bands = int(meta["tile_size"]), int(meta["bands"])
    inputs = keras.Input((bands, tile, tile), name="image")
    x = keras.layers.Permute((2, 3, 1))(inputs)
    x = model(x)
    if meta["task"] == "tiles":  # one class vector per tile, painted over the tile
        x = keras.layers.Reshape((1, 1, len(meta["outputs"])))(x)
        x = keras.layers.UpSampling2D(size=tile)(x)
    outputs = keras.layers.Permute((3, 1, 2), name="probabilities")(x)
    return keras.Model(inputs, outputs, name="fjord_deepness")


def standardisation(meta):
    """Deepness's ``standardization_mean`` and ``_std`` (applied after ``value / 255``) that give
    the network the input Fjord gives it."""
    divisor = float(meta["scaling"]["divisor"])
    stats = meta.get("statistics") or {}
    z_scores = meta["task"] == "segmentation" or meta.get("standardise")
    mean = stats.get("mean") if z_scores else None
    std = stats.get("std") if z_scores else None
    bands = int(meta["bands"])
    mean = [float(m) for m in (mean or [0.0] * bands)]
    std = [float(s) for s in (std or [1.0] * bands)]
    return ([m * divisor / 255.0 for m in mean],
            [(s if s > 0 else 1.0) * divisor / 255.0 for s in std])


def deepness_metadata(meta, resolution_cm=None):
    """The metadata entries (JSON texts) Deepness reads from an ONNX file."""
    names = {c["value"]: c["name"] for c in meta["schema"]["classes"]}
    mean, std = standardisation(meta)
    out = {"model_type": "Segmentor",
           "class_names": {i: names[v] for i, v in enumerate(meta["outputs"])},
           "tiles_size": int(meta["tile_size"]),
           "tiles_overlap": 0 if meta["task"] == "tiles" else 25,
           "standardization_mean": mean, "standardization_std": std,
           "fjord": {"task": meta["task"], "band_names": meta["band_names"],
                     "outputs": meta["outputs"], "schema": meta["schema"],
                     "scaling": meta["scaling"]}}
    if resolution_cm:
        out["resolution"] = float(resolution_cm)
    return {key: json.dumps(value, ensure_ascii=False) for key, value in out.items()}


def write_onnx(network, path, metadata, keras):
    """``network`` as an ONNX file (:data:`OPSET`) at ``path`` with ``metadata`` entries."""
    import numpy as np
    import onnx

    shape = (1,) + tuple(network.input_shape[1:])
    network.predict(np.zeros(shape, np.float32), verbose=0)  # the export needs a called model
    network.export(path, format="onnx", verbose=False, opset_version=OPSET)
    model = onnx.load(path)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)


class OnnxNetwork:
    """An ONNX network (bands-first, as Deepness's; ``layout`` "nhwc": bands-last, as a
    converted TensorFlow SavedModel) behind the calls Fjord's classification
    makes of a Keras network: ``input_shape`` / ``output_shape`` bands-last and
    ``predict_on_batch`` / ``predict`` on bands-last float32 batches. A single sigmoid output
    (one channel, or none) becomes two classes, background and the class, as Deepness reads
    it. Runs on ONNX Runtime's CPU provider."""

    any_shape = True  # batches need no padding to one shape (nothing is compiled per shape)

    def __init__(self, data, layout="nchw"):
        import onnxruntime

        self.data = data
        self.session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise FjordError(f"The ONNX network has {len(inputs)} input(s) and {len(outputs)} "
                             "output(s); Fjord takes networks of one image input and one class "
                             "output.")
        shape = inputs[0].shape
        if len(shape) != 4:
            raise FjordError(f"The ONNX network's input has the shape {shape}; Fjord needs "
                             "(batch, bands, rows, columns).")
        self.layout = layout
        if layout == "nhwc":  # bands last (a converted TensorFlow SavedModel): as Keras's
            shape = [shape[0], shape[3], shape[1], shape[2]]
        self.name = inputs[0].name
        out = outputs[0].shape
        if layout == "nhwc" and len(out) == 4:
            out = [out[0], out[3], out[1], out[2]]
        # a batch size fixed in the input or in the output (a reshape inside): run that many
        fixed = [d for d in (shape[0], out[0] if out else None) if isinstance(d, int) and d > 0]
        self.batch = min(fixed) if fixed else None
        self.input_shape = (None, _size(shape[2]), _size(shape[3]), _size(shape[1]))
        self.sigmoid = len(out) == 3 or (len(out) == 4 and out[1] == 1)
        if len(out) == 2:
            self.output_shape = (None, 2 if out[1] == 1 else _size(out[1]))
        elif len(out) in (3, 4):
            classes = 2 if self.sigmoid else _size(out[1])
            self.output_shape = (None, _size(out[-2]), _size(out[-1]), classes)
        else:
            raise FjordError(f"The ONNX network's output has the shape {out}; Fjord needs "
                             "(batch, classes) or (batch, classes, rows, columns).")

    def count_params(self):
        import onnx

        graph = onnx.load_from_string(self.data).graph
        return int(sum(int(np.prod(t.dims)) for t in graph.initializer))

    def predict_on_batch(self, x):
        x = np.asarray(x, np.float32)
        if self.batch is not None and len(x) != self.batch:  # a network of fixed batch size
            return np.concatenate([self.predict_on_batch(x[i:i + self.batch])
                                   for i in range(0, len(x), self.batch)])
        if self.layout == "nhwc":
            y = np.asarray(self.session.run(None, {self.name: x})[0], np.float32)
            return y if y.ndim == 2 or y.shape[-1] > 1 else np.concatenate([1 - y, y], axis=-1)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        y = np.asarray(self.session.run(None, {self.name: x})[0], np.float32)
        if y.ndim == 3:
            y = y[:, None]
        if y.ndim == 2:
            return np.concatenate([1 - y, y], axis=1) if self.sigmoid else y
        if y.shape[1] == 1:
            y = np.concatenate([1 - y, y], axis=1)
        return y.transpose(0, 2, 3, 1)

    def predict(self, x, verbose=0, batch_size=None):
        return self.predict_on_batch(x)


def _size(value):
    return value if isinstance(value, int) and value > 0 else None


def deepness_entries(network):
    """The Deepness metadata of an ONNX network (:class:`OnnxNetwork`), parsed: ``class_names``
    as the names in output order, and the numbers and lists as they are. Entries that do not
    parse are left out."""
    import ast

    out = {}
    for key, text in network.session.get_modelmeta().custom_metadata_map.items():
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)  # Deepness accepts {0: 'name'} too
            except (ValueError, SyntaxError):
                continue
        out[key] = value
    names = out.get("class_names", out.get("names"))
    if isinstance(names, list) and len(names) == 1:
        names = names[0]
    if isinstance(names, dict):
        out["class_names"] = [str(v) for _, v in sorted(names.items(), key=lambda kv: int(kv[0]))]
    else:
        out.pop("class_names", None)
    return out


def read_onnx(path):
    """An ONNX file as an :class:`OnnxNetwork`; FjordError when ONNX Runtime cannot open it."""
    import os

    with open(path, "rb") as f:
        data = f.read()
    try:
        return OnnxNetwork(data)
    except FjordError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise FjordError(f"{os.path.basename(path)} is not an ONNX network that ONNX Runtime "
                         f"runs: {type(exc).__name__}: {first}") from None


def onnx_downsampling(network):
    """2 to the number of halvings in an ONNX network: the product of the strides of its
    pooling and convolution nodes (the factor its windows must be a multiple of)."""
    import onnx

    factor = 1
    for node in onnx.load_from_string(network.data).graph.node:
        if node.op_type in ("MaxPool", "AveragePool", "Conv"):
            for attribute in node.attribute:
                if attribute.name == "strides" and attribute.ints:
                    factor *= int(attribute.ints[0])
    return max(factor, 1)
