"""A network made elsewhere made a Fjord model file: :func:`import_model`, the core of
``fjord:importmodel``.

The import writes the network (loaded without running anything from its file:
:mod:`fjord.models.imports`) and a description into one Fjord model file, which every classify
algorithm then takes like its own: task (tile classifier or segmentation), band names, tile
size, input scaling and the classes in the network's output order.

Input scaling (``SCALING``), what the network was trained to take:

``none`` (0)
    the image values as they are;
``255`` (1)
    values / 255 (8-bit images, the published CSC scripts);
``10000`` (2)
    values / 10000 (Sentinel-2 and Landsat reflectance kept as integers);
``per band`` (3)
    (value - mean) / std with one mean and one standard deviation per band.
"""

import os
import re

from ..errors import FjordError, never_stop, no_progress

KINDS = ("tiles", "segmentation")
SCALINGS = ("none", "255", "10000", "per band")
DIVISORS = {"none": 1.0, "255": 255.0, "10000": 10000.0, "per band": 1.0}


def parse_list(text, what, cast=str):
    """A comma-separated list (``BANDS``, ``MEAN``, ``STD``), its items stripped and cast."""
    items = [t.strip() for t in str(text or "").split(",") if t.strip()]
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise FjordError(f"{what} must be a comma-separated list of numbers, not {text!r}.") from None


def parse_classes(text):
    """``value:name[:#colour]`` items, comma-separated, in the network's output order, as a
    list of class dicts."""
    out = []
    for item in [t.strip() for t in str(text or "").split(",") if t.strip()]:
        parts = [p.strip() for p in item.split(":")]
        if len(parts) not in (2, 3) or not re.fullmatch(r"\d+", parts[0]) or not parts[1]:
            raise FjordError(f"CLASSES item {item!r} must read value:name or value:name:#colour "
                             "(for example 1:glacier ice:#e6f5ff).")
        cls = {"value": int(parts[0]), "name": parts[1]}
        if len(parts) == 3:
            cls["color"] = parts[2]
        out.append(cls)
    return out


def describe(model, kind, bands, tile_size, scaling, schema, outputs, source):
    """The Fjord description of an imported network, checked against its shapes. ``scaling``:
    ``(divisor, mean, std)``, mean and std None when the network takes no per-band
    standardisation."""
    inputs, out = model.input_shape, model.output_shape
    if isinstance(inputs, list) or isinstance(out, list):
        raise FjordError("The network has several inputs or outputs; Fjord imports networks of "
                         "one image input and one class output.")
    if len(inputs) != 4:
        raise FjordError(f"The network takes input of shape {inputs}; Fjord needs images "
                         "(batch, rows, columns, bands).")
    if inputs[-1] != len(bands):
        raise FjordError(f"BANDS names {len(bands)} bands but the network takes {inputs[-1]}.")
    tile = _tile(inputs, tile_size)
    expected = 2 if kind == "tiles" else 4
    if len(out) != expected:
        raise FjordError(f"The network's output has the shape {out}: that is not a "
                         + ("tile classifier (batch, classes)." if kind == "tiles" else
                            "segmentation network (batch, rows, columns, classes)."))
    if kind == "segmentation" and out[1] is not None and out[1] != tile:
        raise FjordError(f"The network's output is {out[1]} x {out[2]} px for an input of {tile} "
                         "px; Fjord imports segmentation networks whose output covers their "
                         "input pixel for pixel.")
    if out[-1] != len(outputs):
        raise FjordError(f"The network has {out[-1]} outputs but {len(outputs)} classes are "
                         "given; give one class per output, in the network's output order.")
    divisor, mean, std = scaling
    per_band = mean is not None
    meta = {"task": kind, "architecture": f"imported ({source})", "bands": len(bands),
            "band_names": bands, "tile_size": tile,
            "scaling": {"rule": "imported", "divisor": float(divisor)},
            "statistics": {"mean": mean if per_band else [0.0] * len(bands),
                           "std": std if per_band else [1.0] * len(bands)},
            "standardise": per_band, "normalisation": "dataset",
            "schema": schema, "outputs": outputs, "imported": {"source": source}}
    if kind == "segmentation":
        meta["downsampling"] = tile if inputs[1] is not None else _downsampling(model)
        meta["fixed_window"] = inputs[1] is not None
    return meta


def _tile(inputs, tile_size):
    tile = int(tile_size) or inputs[1]
    if not tile:
        raise FjordError("The network takes any size of input: give TILE_SIZE.")
    if inputs[1] is not None and (inputs[1], inputs[2]) != (tile, tile):
        raise FjordError(f"TILE_SIZE {tile} does not match the network's input "
                         f"({inputs[1]} x {inputs[2]} px).")
    return tile


def _scaling(scaling, mean, std, bands):
    """``(divisor, mean, std)`` of the SCALING choice, MEAN and STD checked."""
    if scaling != "per band":
        return DIVISORS[scaling], None, None
    if not (len(mean) == len(std) == bands):
        raise FjordError(f"SCALING per band needs one MEAN and one STD per band ({bands}); "
                         f"{len(mean)} and {len(std)} were given.")
    if min(std) <= 0:
        raise FjordError("Every STD must be above 0.")
    return 1.0, mean, std


def _downsampling(model):
    """2 to the number of poolings and strided convolutions of a fully convolutional network:
    the factor its windows must be a multiple of."""
    from ...models.imports import sublayers

    if getattr(model, "data", None) is not None:  # ONNX
        from ...models.onnx_files import onnx_downsampling

        return onnx_downsampling(model)
    factor = 1
    for layer in sublayers(model).values():
        strides = getattr(layer, "strides", None) or getattr(layer, "pool_size", None)
        if type(layer).__name__.endswith(("Pooling2D", "Conv2D")) and strides:
            if not type(layer).__name__.startswith("Global"):
                factor *= int(strides[0])
    return max(factor, 1)


def _schema(classes, preset, kind):
    from ..data import schema as schemas

    if classes:
        schema = schemas.validate_schema({"name": "imported", "classes": classes}, "CLASSES")
        outputs = [int(c["value"]) for c in classes]
    elif preset:
        schema = schemas.preset_schema(preset)
        outputs = [int(c["value"]) for c in schema["classes"]]
    else:
        raise FjordError("Give the classes: CLASSES (value:name in the network's output order) "
                         "or a PRESET.")
    if kind == "segmentation" and outputs != sorted(outputs):
        raise FjordError("List a segmentation network's CLASSES in its output order with "
                         "increasing values (1:water, 2:ice, ...).")
    return schema, outputs


def import_model(input, output, *, kind=0, bands="", tile_size=0, scaling=0, mean="", std="",
                 classes="", preset=None, progress=None, should_stop=None):
    """Make a Fjord model file (``output``) of a network made elsewhere (``input``: Keras 2
    ``.h5``, Keras 3 ``.keras``, ``.onnx`` or a TensorFlow SavedModel folder, kept as ONNX).
    ``kind``: 0 tile classifier (phase one), 1 segmentation; ``bands``: comma-separated names
    in the network's order; ``tile_size``: 0 reads it from the input shape; ``scaling``: index
    into :data:`SCALINGS` (``mean``, ``std`` comma lists for per band); ``classes``:
    ``value:name[:#colour]`` items in the network's output order, or ``preset`` (a built-in
    schema name).

    An ONNX file is read as Deepness reads it (:func:`onnx_settings`): its metadata gives what
    the parameters leave empty. Returns a summary of the description written."""
    from ...models.imports import load_network
    from ...models.modelfile import save_model
    from ..outputs import check_writable

    progress = progress or no_progress
    should_stop = should_stop or never_stop
    if not str(output).lower().endswith(".keras"):
        raise FjordError("The Fjord model file must end in .keras.")
    check_writable(output, "model file", inputs=[(input, "INPUT")])
    progress(0.1, f"Reading {os.path.basename(input)}")
    model = load_network(input)
    settings = dict(kind=KINDS[int(kind)], bands=parse_list(bands, "BANDS"),
                    tile_size=int(tile_size), classes=parse_classes(classes), preset=preset,
                    scaling=SCALINGS[int(scaling)], mean=parse_list(mean, "MEAN", float),
                    std=parse_list(std, "STD", float), divisor=None)
    onnx = getattr(model, "data", None) is not None  # an ONNX file or a converted SavedModel
    if onnx and model.layout == "nchw":  # an ONNX file: read as Deepness reads it
        settings = onnx_settings(model, settings)
    if not settings["bands"]:
        raise FjordError("Give BANDS: the band names in the network's input order, "
                         "comma-separated (for example B4,B3,B2,B8).")
    schema, outputs = _schema(settings["classes"], settings["preset"], settings["kind"])
    scaling = _scaling(settings["scaling"], settings["mean"], settings["std"],
                       len(settings["bands"]))
    if settings["divisor"]:
        scaling = (settings["divisor"],) + scaling[1:]
    meta = describe(model, settings["kind"], settings["bands"], settings["tile_size"], scaling,
                    schema, outputs, os.path.basename(input))
    if onnx:
        meta.update(engine="onnx", layout=model.layout,
                    resolution_cm=settings.get("resolution_cm"))
    progress(0.8, f"{model.count_params():,} parameters, input {model.input_shape}, output "
                  f"{model.output_shape}")
    save_model(model, output, meta)
    progress(1.0, f"Wrote {output}")
    return {"output": os.path.abspath(output), "task": meta["task"],
            "tile_size": meta["tile_size"], "bands": meta["bands"], "classes": len(outputs),
            "parameters": int(model.count_params())}


def onnx_settings(network, settings):
    """The import settings of an ONNX network, as Deepness reads such a file: the task follows
    its output (per pixel: segmentation); values are divided by 255 and then standardised by
    its ``standardization_mean`` / ``_std`` (unless SCALING says otherwise); ``class_names``
    (output index to name; a single sigmoid output is background and the class),
    ``tiles_size`` and ``resolution`` fill what the parameters leave empty; bands without names
    are called band 1, band 2..."""
    from ...models.onnx_files import deepness_entries

    entries = deepness_entries(network)
    out = dict(settings)
    out["kind"] = "tiles" if len(network.output_shape) == 2 else "segmentation"
    bands = network.input_shape[-1]
    if not out["bands"]:
        out["bands"] = [f"band {b + 1}" for b in range(bands)]
    if not out["tile_size"] and entries.get("tiles_size") and network.input_shape[1] is None:
        out["tile_size"] = int(entries["tiles_size"])
    if not out["classes"] and not out["preset"] and entries.get("class_names"):
        names = list(entries["class_names"])
        if network.sigmoid and len(names) == 1:
            names = ["background"] + names
        out["classes"] = [{"value": i + 1, "name": n} for i, n in enumerate(names)]
    if out["scaling"] == "none":  # the default: Deepness's own input
        out["divisor"] = 255.0
        if entries.get("standardization_mean") and entries.get("standardization_std"):
            out.update(scaling="per band", mean=entries["standardization_mean"],
                       std=entries["standardization_std"])
    if entries.get("resolution"):
        out["resolution_cm"] = float(entries["resolution"])
    return out
