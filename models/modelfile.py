"""The Fjord model file: a Keras ``.keras`` archive that describes itself.

Keras writes the network (``config.json``, ``model.weights.h5``, ``metadata.json``) into one zip
archive; Fjord adds ``fjord.json`` to the same archive with everything classification needs:
task, architecture, class schema (value, name, colour) and the output order of the classes,
band count and names, tile size, the scaling rule and the training statistics, the training
parameters and results, and the library versions. Nothing else is needed to use the file, and
it stays an ordinary Keras file that ``keras.saving.load_model`` opens.

Loading never runs code from the file: Keras ``safe_mode`` is on, a file whose network needs
custom Python (a ``Lambda`` layer, an unregistered class) is refused with a clear message.

A network imported from ONNX (``fjord:importmodel``) is kept as it came, ``network.onnx`` beside
``fjord.json`` in the same zip (``engine`` "onnx"), and runs on ONNX Runtime
(:class:`fjord.models.onnx_files.OnnxNetwork`); Keras does not open such a file, Fjord does.
"""

import collections
import datetime
import json
import os
import platform
import threading
import time
import zipfile

from ..core.errors import FjordError
from ..core.outputs import partial_path

FORMAT = "fjord-model"
VERSION = 1
ENTRY = "fjord.json"
#: The network of a model file imported from ONNX (``engine`` "onnx" in its description).
ONNX_ENTRY = "network.onnx"
TASKS = ("tiles", "segmentation", "patches")
REQUIRED = ("task", "architecture", "bands", "band_names", "tile_size", "scaling", "schema",
            "outputs")


def library_versions():
    """Versions of the libraries a model was trained with."""
    from ..core.environment import library_version, plugin_version
    from .engine import keras

    backend = keras.backend.backend()
    return {"fjord": plugin_version(), "python": platform.python_version(),
            "keras": library_version("keras"), "numpy": library_version("numpy"),
            "backend": backend, backend: library_version(backend)}


def save_model(model, path, metadata):
    """Write ``model`` with ``metadata`` (a dict holding at least :data:`REQUIRED`) to ``path``.

    Written under a partial name and renamed into place, so a crash never leaves a half file.
    """
    missing = [k for k in REQUIRED if k not in metadata]
    if missing:
        raise ValueError(f"Model metadata lacks {missing}")
    meta = dict(metadata, format=FORMAT, version=VERSION,
                created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    meta.setdefault("versions", library_versions())
    # Keras insists on the .keras extension of the file it writes.
    tmp = partial_path(path)
    if not tmp.endswith(".keras"):
        tmp += ".keras"
    try:
        if meta.get("engine") == "onnx":  # an imported ONNX network: the file and the description
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(ONNX_ENTRY, model.data)
        else:
            model.save(tmp)
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(ENTRY, json.dumps(meta, indent=2, ensure_ascii=False))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return meta


def read_metadata(path):
    """The ``fjord.json`` of a model file, checked; FjordError when it is not a Fjord model."""
    if not os.path.isfile(path):
        raise FjordError(f"The model file {path!r} does not exist.")
    if not zipfile.is_zipfile(path):
        raise FjordError(f"{path!r} is not a Fjord model file (a .keras archive made by a Fjord "
                         "training algorithm).")
    with zipfile.ZipFile(path) as archive:
        if ENTRY not in archive.namelist():
            raise FjordError(f"{path!r} is a Keras file without Fjord's description (fjord.json): "
                             "its bands, tile size, scaling and classes are unknown. Train it with "
                             "a Fjord training algorithm, or fine-tune from it with INITIAL_MODEL.")
        try:
            meta = json.loads(archive.read(ENTRY).decode("utf-8"))
        except ValueError as exc:
            raise FjordError(f"The description inside {path!r} is damaged: {exc}") from None
    if meta.get("format") != FORMAT:
        raise FjordError(f"{path!r} is not a Fjord model file.")
    if int(meta.get("version", 0)) > VERSION:
        raise FjordError(f"{path!r} was written by a newer Fjord (model format {meta['version']}); "
                         "update the plugin to use it.")
    missing = [k for k in REQUIRED if k not in meta]
    if missing or meta["task"] not in TASKS:
        raise FjordError(f"The description inside {path!r} is incomplete ({', '.join(missing) or 'task'}).")
    bands = _network_bands(path)
    if bands is not None and bands != int(meta["bands"]):
        raise FjordError(f"The model file {path!r} is inconsistent: its network takes {bands} bands "
                         f"but its description says {meta['bands']}. Train or import it again.")
    return meta


def _network_bands(path):
    """The bands the network in a .keras file takes, read from its config (nothing loaded), or
    None when the config does not say."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json").decode("utf-8"))
        layer = next(layer for layer in config["config"]["layers"]
                     if layer.get("class_name") == "InputLayer")
        shape = layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape")
        return int(shape[-1])
    except (KeyError, ValueError, TypeError, StopIteration, IndexError):
        return None


CACHE_SIZE = 4
_cache = collections.OrderedDict()
_cache_lock = threading.Lock()
load_stats = {"loads": 0, "hits": 0, "seconds": 0.0}


def cached_model(path, task=None):
    """:func:`load_model` for classification, its network on the faster engine
    (:func:`fjord.models.engines.fastest`), kept for the life of this process: a batch worker
    loads each model file once and reuses it for every job that names it. The key is the file's path, size and
    modification time, so a file rewritten in between is loaded again; the ``CACHE_SIZE``
    models used last are kept. ``load_stats`` counts loads, hits and the seconds spent
    loading."""
    try:
        st = os.stat(path)
    except OSError:
        return load_model(path, task)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, task,
           os.environ.get("FJORD_ENGINE", ""))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            load_stats["hits"] += 1
            return _cache[key]
    t0 = time.perf_counter()
    model, meta = load_model(path, task)
    if meta.get("engine") != "onnx":
        from .engines import fastest

        model = fastest(model, meta)
    value = model, meta
    with _cache_lock:
        load_stats["loads"] += 1
        load_stats["seconds"] += time.perf_counter() - t0
        _cache[key] = value
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def load_model(path, task=None):
    """``(model, metadata)`` from a Fjord model file, without running code from the file.

    ``task`` ('tiles' or 'segmentation'), when given, must be the file's task.
    """
    meta = read_metadata(path)
    if task is not None and meta["task"] != task:
        wanted = {"tiles": "a phase-one tile classifier (trainphaseone)",
                  "segmentation": "a U-Net (trainunet)",
                  "patches": "a phase-two network (classifycsc PHASE_TWO_MODEL)"}[task]
        raise FjordError(f"{os.path.basename(path)} is a {meta['task']} model; this needs {wanted}.")
    if meta.get("engine") == "onnx":
        from .onnx_files import OnnxNetwork

        with zipfile.ZipFile(path) as archive:
            return OnnxNetwork(archive.read(ONNX_ENTRY), meta.get("layout", "nchw")), meta
    from .engine import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        text = str(exc)
        if any(word in text for word in ("Lambda", "safe_mode", "custom", "Custom",
                                         "Could not locate", "builtins")):
            raise FjordError(
                f"{os.path.basename(path)} holds a network that needs custom Python code to load "
                "(a Lambda layer or an unregistered class). Fjord refuses such files because "
                "loading them would run code stored in the file; rebuild the model from standard "
                "Keras layers.") from None
        first = text.strip().splitlines()[0][:200] if text.strip() else ""
        raise FjordError(f"Cannot load the network in {path!r}: {type(exc).__name__}: {first}") from None
    shape = tuple(model.input_shape)
    expect = meta["bands"]
    if shape[-1] != expect:
        raise FjordError(f"The network in {path!r} takes {shape[-1]} bands but its description says "
                         f"{expect}; the file is inconsistent.")
    if int(model.output_shape[-1]) != len(meta["outputs"]):
        raise FjordError(f"The network in {path!r} has {model.output_shape[-1]} outputs but its "
                         f"description lists {len(meta['outputs'])} classes; the file is inconsistent.")
    return model, meta
