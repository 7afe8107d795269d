"""Keras 3 networks and the Fjord model file (no QGIS, no engine-specific code).

This module itself imports nothing heavy: what the QGIS side and the training set-up need to
know before Keras is loaded lives here.
"""

# Phase-one tile classifiers and the smallest tile each takes (vgg16 halves it five times).
ARCHITECTURES = ("vgg16", "compact")
MIN_TILE = {"vgg16": 32, "compact": 8}

# Phase-two patch sizes: 1 = MLP on the band values, else a compact CNN (cCNN).
PATCH_SIZES = (1, 3, 5, 7, 15)

# U-Net presets: the published networks (see fjord.models.unet); None = layout as given.
UNET_PRESETS = {
    "none": None,
    "lulc": {"depth": 4, "filters": 32, "dropout": 0.0, "optimizer": "nadam"},
    "glacier": {"depth": 5, "filters": 16, "dropout": 0.2, "optimizer": "adam"},
}


def preset_layout(preset, depth=4, filters=32, dropout=0.0):
    """``(depth, filters, dropout, optimizer)`` of a preset (``none``: the values given)."""
    if preset not in UNET_PRESETS:
        raise ValueError(f"Unknown U-Net preset {preset!r}; choose one of {', '.join(UNET_PRESETS)}.")
    layout = UNET_PRESETS[preset]
    if layout is None:
        return int(depth), int(filters), float(dropout), "adam"
    return layout["depth"], layout["filters"], layout["dropout"], layout["optimizer"]
