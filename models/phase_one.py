"""The phase-one tile classifiers of CNN-supervised classification.

``vgg16``: the VGG16 convolutional base (blocks of 64, 64 / 128, 128 / 256 x3 / 512 x3 / 512 x3
filters, 3x3 convolutions, 2x2 max-pooling) trained from scratch on any band count and tile
size of at least 32 px, then Flatten, Dense 512 (ReLU, L2 1e-3), Dropout 0.5, Dense 256 (ReLU,
L2 1e-3) and a softmax over the classes (Marochov et al. 2021; Carbonneau et al. 2020).
4 bands, 50 px, 8 classes: 15,111,304 parameters.

``compact``: a small VGG-style network of ours for CPUs and quick trials: one 3x3 convolution of
32 filters, two of 64, two of 128, each block batch-normalised and max-pooled, global average
pooling, Dense 128 (ReLU, L2 1e-3), Dropout 0.5, softmax. It has more than ten times fewer
multiply-adds per tile than ``vgg16`` and takes any tile size of at least 8 px.

Only standard Keras layers: a model file loads with ``safe_mode`` and no custom code. The
softmax always computes in float32, so the networks train under mixed precision.
"""

from . import ARCHITECTURES, MIN_TILE
from .engine import keras

layers, regularizers = keras.layers, keras.regularizers


VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
COMPACT_BLOCKS = ((32,), (64, 64), (128, 128))


def _head(x, n_classes, units, l2):
    for i, n in enumerate(units):
        x = layers.Dense(n, activation="relu", kernel_regularizer=regularizers.L2(l2),
                         name=f"fc{i + 1}")(x)
        if i == 0:
            x = layers.Dropout(0.5, name="dropout")(x)
    return layers.Dense(n_classes, activation="softmax", dtype="float32", name="classes")(x)


def build_vgg16(bands, tile_size, n_classes, l2=1e-3):
    inputs = keras.Input((tile_size, tile_size, bands), name="tile")
    x = inputs
    for b, block in enumerate(VGG16_BLOCKS, start=1):
        for c, filters in enumerate(block, start=1):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                              name=f"block{b}_conv{c}")(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, _head(x, n_classes, (512, 256), l2), name="vgg16")


def build_compact(bands, tile_size, n_classes, l2=1e-3):
    inputs = keras.Input((tile_size, tile_size, bands), name="tile")
    x = inputs
    for b, block in enumerate(COMPACT_BLOCKS, start=1):
        for c, filters in enumerate(block, start=1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{b}_conv{c}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"block{b}_bn{c}")(x)
            x = layers.Activation("relu", name=f"block{b}_relu{c}")(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, _head(x, n_classes, (128,), l2), name="compact")


def build_phase_one(architecture, bands, tile_size, n_classes):
    """The network ``architecture`` for tiles of ``tile_size`` px with ``bands`` bands.

    Raises ``ValueError`` for an unknown architecture or a tile too small for it.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {ARCHITECTURES}.")
    if tile_size < MIN_TILE[architecture]:
        raise ValueError(f"The {architecture} network needs tiles of at least "
                         f"{MIN_TILE[architecture]} px (five halvings); these are {tile_size} px.")
    build = build_vgg16 if architecture == "vgg16" else build_compact
    return build(bands, tile_size, n_classes)


def multiply_adds(model):
    """Multiply-accumulate operations of one forward pass of one input (convolutions and dense
    layers; what dominates the cost)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += h * w * kh * kw * cin * cout
        elif isinstance(layer, layers.Dense):
            cin, cout = layer.kernel.shape
            total += cin * cout
    return int(total)
