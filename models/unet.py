"""The U-Net of Fjord: fully convolutional segmentation of an image into per-pixel classes.

Encoder: ``depth`` blocks of [3x3 convolution -> batch normalisation -> ReLU] x 2, each followed by
2x2 max-pooling, with ``filters``, 2 x ``filters``, ... filters. Decoder, one level per encoder
block from the deepest: 4x4 stride-2 transposed convolution -> BN -> ReLU, concatenation with
the encoder block's output (the skip connection), 3x3 convolution -> BN -> ReLU; the decoder
level of an encoder block of f filters has 2f filters. A 3x3 convolution to the classes and a
softmax (computed in float32, so mixed precision trains). With ``dropout`` > 0 every block
(encoder and decoder) ends with dropout at that rate. Convolutions followed by batch
normalisation carry no bias.

Presets (:data:`fjord.models.UNET_PRESETS`, :func:`fjord.models.preset_layout`):

``lulc``
    The land-cover network of the reference method (depth 4, 32 base filters, no dropout;
    Nadam): 10,743,309 parameters for 14 bands and 13 classes, the published count.
``glacier``
    The glacier-mapping network (depth 5, 16 base filters, dropout 0.2 in every block; Adam).
``none``
    Depth, base filters and dropout as given.

The input takes any height and width that are multiples of ``2 ** depth`` (the network's
down-sampling), so the same weights classify windows of any such size and whole images.
Only standard Keras layers: a model file loads with ``safe_mode``.
"""

from .engine import keras

layers = keras.layers



def build_unet(bands, n_classes, depth=4, filters=32, dropout=0.0, name="unet"):
    """A U-Net for ``bands`` input bands and ``n_classes`` classes (softmax over the last axis)."""
    if int(depth) < 1 or int(filters) < 1 or not 0 <= float(dropout) < 1:
        raise ValueError("depth and filters must be at least 1 and dropout in [0, 1).")
    inputs = keras.Input((None, None, bands), name="image")
    x = inputs
    skips = []

    def conv_bn_relu(x, f, kernel, where):
        x = layers.Conv2D(f, kernel, padding="same", use_bias=False, name=f"{where}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{where}_bn")(x)
        return layers.Activation("relu", name=f"{where}_relu")(x)

    for level in range(depth):
        f = filters * 2 ** level
        x = conv_bn_relu(x, f, 3, f"enc{level + 1}a")
        x = conv_bn_relu(x, f, 3, f"enc{level + 1}b")
        if dropout:
            x = layers.Dropout(dropout, name=f"enc{level + 1}_dropout")(x)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level + 1}_pool")(x)
    for level in reversed(range(depth)):
        f = 2 * filters * 2 ** level
        where = f"dec{level + 1}"
        x = layers.Conv2DTranspose(f, 4, strides=2, padding="same", use_bias=False,
                                   name=f"{where}_up")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{where}_up_bn")(x)
        x = layers.Activation("relu", name=f"{where}_up_relu")(x)
        x = layers.Concatenate(name=f"{where}_skip")([x, skips[level]])
        x = conv_bn_relu(x, f, 3, where)
        if dropout:
            x = layers.Dropout(dropout, name=f"{where}_dropout")(x)
    x = layers.Conv2D(n_classes, 3, padding="same", name="classes_conv")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="classes")(x)
    return keras.Model(inputs, outputs, name=name)


def multiply_adds_per_pixel(model):
    """Multiply-accumulates of one forward pass per input pixel (convolutions; what dominates)."""
    total = 0.0
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            kh, kw = layer.kernel.shape[:2]
            cin = layer.kernel.shape[3 if isinstance(layer, layers.Conv2DTranspose) else 2]
            level = _level(layer.name)
            # Work at level L is done on 1/4**(L-1) of the input pixels; a stride-2 transposed
            # convolution runs its kernel once per input pixel, a quarter of its output pixels.
            share = 0.25 ** (level - 1) / (4 if isinstance(layer, layers.Conv2DTranspose) else 1)
            total += kh * kw * cin * layer.filters * share
    return int(total)


def _level(name):
    """The resolution level (1 = full) a layer named ``enc3a_conv``/``dec2_up`` works at."""
    head = name.split("_")[0]
    digits = "".join(ch for ch in head if ch.isdigit())
    return int(digits) if head[:3] in ("enc", "dec") and digits else 1
