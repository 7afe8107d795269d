"""Networks made elsewhere, loaded without running anything from their files: the network
part of ``fjord:importmodel`` (:mod:`fjord.core.learn.imported` writes the Fjord model file).

Users hold networks trained outside Fjord: phase-one VGG16 tile classifiers saved as Keras 2
``.h5`` files by the CSC and SEE_ICE scripts (Carbonneau et al. 2020; Marochov et al. 2021),
U-Nets from other projects, Keras 3 ``.keras`` files.

Nothing in the input runs. A Keras 2 ``.h5`` file is read as a layout of known layers plus
their weights: Fjord rebuilds the network from the layout's standard Keras layers (the list
:data:`LAYERS`) and copies each weight array into the layer and variable its name gives. A
``Lambda`` layer (Python byte code in the file), a TensorFlow operation stored as a layer
(``TFOpLambda``) or any class not in the list is refused, naming it. A ``.keras`` file is
loaded by Keras in safe mode after the same check of its layout.
"""

import json
import os
import zipfile

from ..core.errors import FjordError

#: The Keras layers an imported network may hold (Keras 2 and Keras 3 names).
LAYERS = frozenset("""
    InputLayer Conv1D Conv2D Conv2DTranspose SeparableConv2D DepthwiseConv2D Dense Flatten
    Dropout SpatialDropout2D GaussianNoise GaussianDropout AlphaDropout MaxPooling2D
    AveragePooling2D GlobalAveragePooling2D GlobalMaxPooling2D BatchNormalization
    LayerNormalization GroupNormalization Activation ReLU LeakyReLU ELU PReLU Softmax
    Concatenate Add Subtract Multiply Average Maximum Minimum UpSampling2D ZeroPadding2D
    Cropping2D Reshape Permute RepeatVector Rescaling Identity
""".split())
#: Keras 2 options that Keras 3 lacks, at the value that means "off" (besides None, False, 0).
OFF = {"groups": 1}
#: Containers of layers.
MODELS = frozenset({"Sequential", "Functional", "Model"})
#: Layers that hold Python or TensorFlow code instead of a layout.
CODE = {"Lambda": "a Lambda layer (Python code stored in the file)",
        "TFOpLambda": "a TensorFlow operation stored as a layer (TFOpLambda)",
        "SlicingOpLambda": "a TensorFlow slicing operation stored as a layer (SlicingOpLambda)"}


# --------------------------------------------------------------------------- the layout check

def _walk(config, found):
    """Every layer class name in a (nested) model config."""
    name = config.get("class_name")
    found.append(name)
    inner = config.get("config") or {}
    if name in MODELS or "layers" in inner:
        for layer in inner.get("layers", []):
            _walk(layer, found)
    for key in ("layer", "backward_layer"):  # wrappers
        if isinstance(inner.get(key), dict):
            _walk(inner[key], found)
    return found


def check_layout(config, source):
    """FjordError naming what in the network's layout would run code or is not a standard
    layer."""
    names = _walk(config, [])
    code = sorted({n for n in names if n in CODE})
    if code:
        raise FjordError(f"{source} holds {CODE[code[0]]}. Fjord does not run code from model "
                         "files; rebuild the network from standard Keras layers and save it "
                         "again.")
    unknown = sorted({n for n in names if n not in LAYERS | MODELS})
    if unknown:
        raise FjordError(f"{source} holds layers Fjord does not know: {', '.join(unknown)} (custom "
                         "or uncommon classes, whose code is not in the file). Fjord imports "
                         f"networks of these layers: {', '.join(sorted(LAYERS))}.")


# ------------------------------------------------------------------------- Keras 2 .h5 files

def _h5_config(path):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise FjordError(f"{os.path.basename(path)} holds weights only, without the "
                                 "network's layout: save the whole model (model.save) and "
                                 "import that.")
            raw = f.attrs["model_config"]
    except OSError as exc:
        raise FjordError(f"{path!r} is not a readable HDF5 (.h5) file: {exc}.") from None
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def _clean(cls, config):
    """A Keras 2 layer config as the Keras 3 layer class ``cls`` takes it: options Keras 3
    lacks are dropped when they are off (``renorm: false``), else refused."""
    import inspect

    config = dict(config)
    for key in ("batch_input_shape", "batch_shape", "input_shape"):
        config.pop(key, None)
    if isinstance(config.get("dtype"), dict):  # a dtype policy
        config["dtype"] = config["dtype"].get("config", {}).get("name", "float32")
    if cls.__name__ == "BatchNormalization" and isinstance(config.get("axis"), list):
        if len(config["axis"]) != 1:
            raise FjordError("A BatchNormalization layer normalises over several axes; Fjord "
                             "imports the usual one axis (the bands).")
        config["axis"] = config["axis"][0]
    accepted = set(inspect.signature(cls.__init__).parameters) | {"name", "dtype", "trainable"}
    for key in [k for k in config if k not in accepted]:
        if config[key] not in (None, False, [], {}, 0) and config[key] != OFF.get(key):
            raise FjordError(f"A {cls.__name__} layer uses the Keras 2 option {key} = "
                             f"{config[key]!r}, which Keras 3 does not have; Fjord cannot "
                             "import it unchanged.")
        del config[key]
    return config


def _input(config, keras):
    cfg = config["config"]
    shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
    return keras.Input(shape=tuple(shape[1:]), name=cfg.get("name"))


def _layer(config, keras):
    """One layer, or a nested model, built from its config."""
    if config["class_name"] in MODELS:
        return _model(config, keras)
    cls = getattr(keras.layers, config["class_name"])
    return cls.from_config(_clean(cls, config["config"]))


def _sequential(config, keras):
    layers = list(config["config"]["layers"])
    if layers and layers[0]["class_name"] == "InputLayer":
        inputs = _input(layers.pop(0), keras)
    else:
        first = layers[0]["config"]
        shape = first.get("batch_input_shape") or first.get("batch_shape")
        if not shape:
            raise FjordError("The network does not say the shape of its input.")
        inputs = keras.Input(shape=tuple(shape[1:]))
    x = inputs
    for layer in layers:
        x = _layer(layer, keras)(x)
    return keras.Model(inputs, x, name=config["config"].get("name"))


def _inbound(node):
    """The (layer, node, tensor) references of one inbound node, Keras 2 or 3 format."""
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        refs = []

        def collect(value):
            if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
                refs.append(tuple(value["config"]["keras_history"]))
            elif isinstance(value, (list, tuple)):
                for v in value:
                    collect(v)
        collect(node.get("args", []))
        return refs
    return [tuple(ref[:3]) for ref in node]


def _functional(config, keras):
    cfg = config["config"]
    tensors = {}
    pending = list(cfg["layers"])
    while pending:
        progress = False
        for layer in list(pending):
            name = layer.get("name") or layer["config"]["name"]
            if layer["class_name"] == "InputLayer":
                tensors[(name, 0, 0)] = _input(layer, keras)
                pending.remove(layer)
                progress = True
                continue
            nodes = [_inbound(n) for n in layer.get("inbound_nodes", [])]
            if not all(tuple(r) in tensors for refs in nodes for r in refs):
                continue
            built = _layer(layer, keras)
            for i, refs in enumerate(nodes):
                args = [tensors[tuple(r)] for r in refs]
                out = built(args[0] if len(args) == 1 else args)
                for j, t in enumerate(out if isinstance(out, (list, tuple)) else [out]):
                    tensors[(name, i, j)] = t
            pending.remove(layer)
            progress = True
        if not progress:
            raise FjordError("The network's layout does not connect (a layer's inputs are never "
                             "made); the file may be damaged.")

    def ends(key):
        refs = cfg[key]
        refs = [refs] if refs and not isinstance(refs[0], (list, tuple)) else refs
        return [tensors[tuple(r[:3])] for r in refs]

    inputs, outputs = ends("input_layers"), ends("output_layers")
    return keras.Model(inputs if len(inputs) > 1 else inputs[0],
                       outputs if len(outputs) > 1 else outputs[0], name=cfg.get("name"))


def _model(config, keras):
    if config["class_name"] == "Sequential":
        return _sequential(config, keras)
    return _functional(config, keras)


def sublayers(model):
    """Every layer of a (nested) model by name."""
    out = {}
    for layer in model.layers:
        out[layer.name] = layer
        if hasattr(layer, "layers"):
            out.update(sublayers(layer))
    return out


def _copy_weights(path, model):
    """Each weight array of the .h5 file into the layer and variable its name gives
    (``block1_conv1/kernel:0``); every variable of the network must get one."""
    import h5py

    layers = sublayers(model)
    variables = {(name, v.name.split("/")[-1].split(":")[0]): v
                 for name, layer in layers.items() if not hasattr(layer, "layers")
                 for v in layer.weights}
    filled = set()
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        for top in group.attrs.get("layer_names", []):
            top = top.decode() if isinstance(top, bytes) else top
            g = group[top]
            for weight in g.attrs.get("weight_names", []):
                weight = weight.decode() if isinstance(weight, bytes) else weight
                parts = weight.split(":")[0].split("/")
                key = (parts[-2] if len(parts) > 1 else top, parts[-1])
                if key not in variables:
                    raise FjordError(f"The weight {weight} of {os.path.basename(path)} has no "
                                     "place in the network its layout describes; the file may "
                                     "be damaged.")
                array = g[weight][()]
                if tuple(array.shape) != tuple(variables[key].shape):
                    raise FjordError(f"The weight {weight} of {os.path.basename(path)} has the "
                                     f"shape {array.shape}, the network's {variables[key].shape}.")
                variables[key].assign(array)
                filled.add(key)
    missing = sorted(set(variables) - filled)
    if missing:
        raise FjordError(f"{os.path.basename(path)} has no weights for "
                         f"{', '.join('/'.join(k) for k in missing[:5])}; save the whole trained "
                         "model and import that.")


def load_h5(path):
    """A Keras 2 ``.h5`` model as a Keras 3 network, built from its layout of known layers and
    its weights; nothing in the file runs."""
    from .engine import keras

    config = _h5_config(path)
    check_layout(config, os.path.basename(path))
    try:
        model = _model(config, keras)
    except FjordError:
        raise
    except Exception as exc:
        raise FjordError(f"Cannot rebuild the network of {os.path.basename(path)} from its "
                         f"layout: {type(exc).__name__}: {str(exc).strip()[:200]}") from None
    _copy_weights(path, model)
    return model


def load_keras(path):
    """A Keras 3 ``.keras`` model, its layout checked, loaded in safe mode."""
    from .engine import keras

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json").decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError):
        raise FjordError(f"{os.path.basename(path)} is not a Keras (.keras) model file.") from None
    check_layout(config, os.path.basename(path))
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def load_saved_model(path):
    """A TensorFlow SavedModel folder as an ONNX network (bands-last): its ``serving_default``
    signature (a graph of TensorFlow operations, no Python) wrapped by Keras's ``TFSMLayer``
    and exported to ONNX by Keras (:func:`~fjord.models.engines.onnx_twin`). The format is
    TensorFlow's, so reading it needs the TensorFlow backend; the network that comes out runs
    on ONNX Runtime under any backend."""
    from .engine import keras
    from .engines import onnx_twin

    if keras.backend.backend() != "tensorflow":  # a SavedModel is TensorFlow's own format
        raise FjordError("A TensorFlow SavedModel is read with TensorFlow: import it with the "
                         "TensorFlow backend (KERAS_BACKEND=tensorflow, the default), or save "
                         "the network as .keras or .onnx.")
    try:
        layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    except ValueError:
        raise FjordError(f"The SavedModel {os.path.basename(path)} has no serving_default "
                         "signature to classify with.") from None
    except Exception as exc:
        raise FjordError(f"Cannot read the SavedModel {path!r}: {type(exc).__name__}: "
                         f"{str(exc).strip()[:200]}") from None
    _, inputs = layer.call_endpoint_fn.structured_input_signature
    outputs = layer.call_endpoint_fn.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise FjordError(f"The SavedModel takes {len(inputs)} input(s) and gives {len(outputs)} "
                         "output(s); Fjord imports networks of one image input and one class "
                         "output.")
    spec, key = next(iter(inputs.values())), next(iter(outputs))
    image = keras.Input(shape=tuple(spec.shape[1:]), name="image")
    model = keras.Model(image, layer(image)[key])
    sample = tuple(32 if size is None else size for size in spec.shape[1:])  # any size: 32 px
    try:
        return onnx_twin(model, sample)
    except Exception as exc:
        raise FjordError(f"Cannot convert the SavedModel {os.path.basename(path)} to ONNX: "
                         f"{type(exc).__name__}: {str(exc).strip()[:200]}") from None


def load_network(path):
    """The network in ``path`` (.h5 or .keras, checked not to run code; .onnx, a graph of ONNX
    operators that ONNX Runtime runs; or a TensorFlow SavedModel folder, converted to one)."""
    if os.path.basename(path) == "saved_model.pb":  # picked inside its folder
        path = os.path.dirname(os.path.abspath(path))
    extension = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise FjordError(f"The folder {path!r} is not a TensorFlow SavedModel (it has no "
                             "saved_model.pb); give a SavedModel folder or a .h5, .keras or "
                             ".onnx file.")
        return load_saved_model(path)
    if not os.path.isfile(path):
        raise FjordError(f"The model {path!r} does not exist.")
    if extension in (".h5", ".hdf5"):
        return load_h5(path)
    if extension == ".keras":
        return load_keras(path)
    if extension == ".onnx":
        from .onnx_files import read_onnx

        return read_onnx(path)
    raise FjordError(f"{os.path.basename(path)}: give a .h5, .keras or .onnx model file.")
