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


def describe(model, kind, bands, tile_size, scaling, mean, std, schema, outputs, source):
    """The Fjord description of an imported network, checked against its shapes."""
    inputs, out = model.input_shape, model.output_shape
    if isinstance(inputs, list) or isinstance(out, list):
        raise FjordError("The network has several inputs or outputs; Fjord imports networks of "
                         "one image input and one class output.")
    if len(inputs) != 4:
        raise FjordError(f"The network takes input of shape {inputs}; Fjord needs images "
                         "(batch, rows, columns, bands).")
    if inputs[-1] != len(bands):
        raise FjordError(f"BANDS names {len(bands)} bands but the network takes {inputs[-1]}.")
    tile = int(tile_size) or inputs[1]
    if not tile:
        raise FjordError("The network takes any size of input: give TILE_SIZE.")
    if inputs[1] is not None and (inputs[1], inputs[2]) != (tile, tile):
        raise FjordError(f"TILE_SIZE {tile} does not match the network's input "
                         f"({inputs[1]} x {inputs[2]} px).")
    expected = 2 if kind == "tiles" else 4
    if len(out) != expected:
        raise FjordError(f"The network's output has the shape {out}: that is not a "
                         + ("tile classifier (batch, classes)." if kind == "tiles" else
                            "segmentation network (batch, rows, columns, classes)."))
    if out[-1] != len(outputs):
        raise FjordError(f"The network has {out[-1]} outputs but {len(outputs)} classes are "
                         "given; give one class per output, in the network's output order.")
    if scaling == "per band" and not (len(mean) == len(std) == len(bands)):
        raise FjordError(f"SCALING per band needs one MEAN and one STD per band ({len(bands)}); "
                         f"{len(mean)} and {len(std)} were given.")
    if scaling == "per band" and min(std) <= 0:
        raise FjordError("Every STD must be above 0.")
    per_band = scaling == "per band"
    meta = {"task": kind, "architecture": f"imported ({source})", "bands": len(bands),
            "band_names": bands, "tile_size": tile,
            "scaling": {"rule": "imported", "divisor": DIVISORS[scaling]},
            "statistics": {"mean": mean if per_band else [0.0] * len(bands),
                           "std": std if per_band else [1.0] * len(bands)},
            "standardise": per_band, "normalisation": "dataset",
            "schema": schema, "outputs": outputs,
            "imported": {"source": source, "scaling": scaling}}
    if kind == "segmentation":
        meta["downsampling"] = tile if inputs[1] is not None else _downsampling(model)
        meta["fixed_window"] = inputs[1] is not None
    return meta


def _downsampling(model):
    """2 to the number of poolings and strided convolutions of a fully convolutional network:
    the factor its windows must be a multiple of."""
    from ...models.imports import sublayers

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
    ``.h5`` or Keras 3 ``.keras``). ``kind``: 0 tile classifier (phase one), 1 segmentation;
    ``bands``: comma-separated names in the network's order; ``tile_size``: 0 reads it from the
    input shape; ``scaling``: index into :data:`SCALINGS` (``mean``, ``std`` comma lists for per
    band); ``classes``: ``value:name[:#colour]`` items in the network's output order, or
    ``preset`` (a built-in schema name). Returns the description written."""
    from ...models.imports import load_network
    from ...models.modelfile import save_model
    from ..outputs import check_writable

    progress = progress or no_progress
    should_stop = should_stop or never_stop
    kind, scaling = KINDS[int(kind)], SCALINGS[int(scaling)]
    band_names = parse_list(bands, "BANDS")
    if not band_names:
        raise FjordError("Give BANDS: the band names in the network's input order, "
                         "comma-separated (for example B4,B3,B2,B8).")
    schema, outputs = _schema(parse_classes(classes), preset, kind)
    if not str(output).lower().endswith(".keras"):
        raise FjordError("The Fjord model file must end in .keras.")
    check_writable(output, "model file", inputs=[(input, "INPUT")])
    progress(0.1, f"Reading {os.path.basename(input)}")
    model = load_network(input)
    meta = describe(model, kind, band_names, tile_size, scaling,
                    parse_list(mean, "MEAN", float), parse_list(std, "STD", float), schema,
                    outputs, os.path.basename(input))
    progress(0.8, f"{model.count_params():,} parameters, input {model.input_shape}, output "
                  f"{model.output_shape}")
    save_model(model, output, meta)
    progress(1.0, f"Wrote {output}")
    return {"output": os.path.abspath(output), "task": kind, "tile_size": meta["tile_size"],
            "bands": len(band_names), "classes": len(outputs),
            "parameters": int(model.count_params())}
