"""Keras 2 models as the CSC / SEE_ICE scripts and U-Net projects write them, made with the
``tf-keras`` package (Keras 2.x, a test-only requirement): real ``.h5`` files to import."""

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def keras2():
    import tf_keras

    return tf_keras


def vgg16_tile_classifier(path, tile=50, bands=4, classes=5, seed=0, epochs=12):
    """VGG16 without its top and a dense softmax head, as the phase-one scripts build it
    (Carbonneau et al. 2020), trained briefly to tell tiles by their brightness (random weights
    give one class everywhere: a deep ReLU stack fades them out); saved as a Keras 2 .h5
    file."""
    k = keras2()
    k.utils.set_random_seed(seed)
    base = k.applications.VGG16(weights=None, include_top=False, input_shape=(tile, tile, bands))
    model = k.Sequential([base, k.layers.Flatten(),
                          k.layers.Dense(64, activation="relu"), k.layers.Dropout(0.5),
                          k.layers.Dense(classes, activation="softmax")])
    rng = np.random.default_rng(seed)
    level = rng.integers(0, classes, 64)
    tiles = (level[:, None, None, None] + rng.random((64, tile, tile, bands))) / classes
    model.compile(k.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    model.fit(tiles.astype(np.float32), level, epochs=epochs, batch_size=16, verbose=0)
    model.save(str(path))
    return model


def small_unet(path, window=None, bands=3, classes=4, seed=0):
    """A two-level U-Net (convolutions, batch normalisation with non-trivial statistics,
    max-pooling, transposed convolution, skip concatenation, dropout), functional API; input of
    any size when ``window`` is None; saved as a Keras 2 .h5 file."""
    k = keras2()
    layers = k.layers
    k.utils.set_random_seed(seed)
    inputs = k.Input((window, window, bands))

    def block(x, n):
        x = layers.Conv2D(n, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        return layers.Activation("relu")(x)

    c1 = block(inputs, 8)
    c2 = block(layers.MaxPooling2D()(c1), 16)
    c2 = layers.Dropout(0.2)(c2)
    u1 = layers.Conv2DTranspose(8, 2, strides=2, padding="same")(c2)
    x = block(layers.Concatenate()([u1, c1]), 8)
    outputs = layers.Conv2D(classes, 1, activation="softmax")(x)
    model = k.Model(inputs, outputs)
    for layer in model.layers:  # moving statistics that are not the initial 0 / 1
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            rng = np.random.default_rng(seed)
            layer.set_weights([gamma * 1.5, beta + 0.1, mean + rng.normal(0, 0.1, mean.shape),
                               var + rng.random(var.shape)])
    model.save(str(path))
    return model


def lambda_model(path):
    """A model with a Lambda layer (Python code in the file)."""
    k = keras2()
    inputs = k.Input((8, 8, 3))
    x = k.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = k.layers.GlobalAveragePooling2D()(x)
    k.Model(inputs, k.layers.Dense(2, activation="softmax")(x)).save(str(path))
