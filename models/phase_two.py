"""The per-image phase-two networks of CNN-supervised classification, and their fully
convolutional form.

Phase two learns, for one image, to predict each pixel's phase-one class from the K x K patch
centred on it (Carbonneau et al. 2020; Marochov et al. 2021):

- K = 1, an MLP on the band values: Dense 64, BatchNorm, Dense 32, Dense 16, softmax;
- K = 3, 5, 7, 15, a compact CNN (cCNN): (K - 1) / 2 valid 3 x 3 convolutions of 32 filters
  (linear), then Dense 64 (K = 3) or 512, BatchNorm, Dense 64, Dense 32, softmax.

Every Dense layer has a ReLU and an L2 penalty of 1e-3. The BatchNorm statistics follow the
batches with momentum 0.9 (Keras' default 0.99 needs hundreds of steps to settle, and the MLP
with its batch of about SAMPLES_PER_CLASS pixels takes only a few steps per epoch). After the
valid convolutions the patch has shrunk to 1 x 1, so each Dense layer acts on one pixel's feature vector: it is a 1 x 1
convolution with the same weights. :func:`fully_convolutional` builds that form, which takes an
image of any size and returns the class probabilities of every pixel whose whole K x K patch
lies in it (the output is K - 1 rows and columns smaller than the input) -- the same numbers
as predicting each patch on its own, without ever building the patches.
"""

from . import PATCH_SIZES
from .engine import keras

layers, regularizers = keras.layers, keras.regularizers


CONV_FILTERS = 32


def head_units(patch_size):
    """The widths of the Dense layers (BatchNorm follows the first)."""
    if patch_size == 1:
        return (64, 32, 16)
    return (64 if patch_size == 3 else 512, 64, 32)


def _check(patch_size):
    if patch_size not in PATCH_SIZES:
        raise ValueError(f"PATCH_SIZE must be one of {', '.join(map(str, PATCH_SIZES))}, "
                         f"not {patch_size}.")


def _layers(patch_size, n_classes, l2, dense, seed=None):
    """The layer stack; ``dense`` picks Dense layers (patch form) or 1 x 1 convolutions.

    With ``seed``, every kernel's initial weights come from that seed (Glorot uniform, Keras'
    default), not from Python's process-wide random state, which other threads (a Dask worker's
    own) may draw from: the same seed then gives the same network in any process."""
    counter = iter(range(1000))

    def init():
        if seed is None:
            return "glorot_uniform"
        return keras.initializers.GlorotUniform(seed=int(seed) * 1000 + next(counter))

    stack = [layers.Conv2D(CONV_FILTERS, 3, padding="valid", name=f"conv{i + 1}",
                           kernel_initializer=init())
             for i in range((patch_size - 1) // 2)]
    if dense:
        stack.append(layers.Flatten(name="flatten"))

    def unit(n, name, activation="relu", **kw):
        if dense:
            return layers.Dense(n, activation=activation, name=name, kernel_initializer=init(), **kw)
        return layers.Conv2D(n, 1, activation=activation, name=name, **kw)

    for i, n in enumerate(head_units(patch_size)):
        stack.append(unit(n, f"fc{i + 1}", kernel_regularizer=regularizers.L2(l2)))
        if i == 0:
            stack.append(layers.BatchNormalization(momentum=0.9, name="bn"))
    stack.append(unit(n_classes, "classes", activation="softmax", dtype="float32"))
    return stack


def build_phase_two(patch_size, bands, n_classes, l2=1e-3, seed=None):
    """The phase-two network in its training form: input (K, K, bands), output class
    probabilities; ``seed`` fixes its initial weights."""
    _check(patch_size)
    inputs = keras.Input((patch_size, patch_size, bands), name="patch")
    x = inputs
    for layer in _layers(patch_size, n_classes, l2, dense=True, seed=seed):
        x = layer(x)
    name = "mlp" if patch_size == 1 else f"ccnn{patch_size}"
    return keras.Model(inputs, x, name=name)


def fully_convolutional(model):
    """The fully convolutional twin of a trained :func:`build_phase_two` network.

    Input (rows, cols, bands) of any size, output (rows - K + 1, cols - K + 1, classes): the
    class probabilities of each pixel from its K x K neighbourhood, with the trained weights.
    """
    patch_size, bands = int(model.input_shape[1]), int(model.input_shape[-1])
    n_classes = int(model.output_shape[-1])
    inputs = keras.Input((None, None, bands), name="image")
    x = inputs
    for layer in _layers(patch_size, n_classes, 0.0, dense=False):
        x = layer(x)
        source = model.get_layer(layer.name).get_weights()
        if isinstance(layer, layers.Conv2D) and layer.kernel_size == (1, 1):
            kernel, bias = source
            source = [kernel.reshape((1, 1) + kernel.shape), bias]
        layer.set_weights(source)
    return keras.Model(inputs, x, name=model.name + "_fcn")


def multiply_adds_per_pixel(patch_size, bands, n_classes):
    """Multiply-adds to classify one pixel with the fully convolutional form (no halo)."""
    total, channels = 0, bands
    for _ in range((patch_size - 1) // 2):
        total += 9 * channels * CONV_FILTERS
        channels = CONV_FILTERS
    for n in head_units(patch_size) + (n_classes,):
        total += channels * n
        channels = n
    return total
