"""Segmentation losses and the labelled-pixel accuracy, for one-hot masks with unlabelled pixels.

Masks are one-hot over the classes and all zero where a pixel is unlabelled; such pixels add
nothing to any loss or to the accuracy, and do not count in their denominators.

``crossentropy``
    Mean categorical cross-entropy over the labelled pixels; with class weights, each pixel is
    weighted by its class's weight and the mean is taken over the weights.
``dice``
    Soft Dice loss: 1 - the mean over classes of (2 |y p| + 1) / (|y| + |p| + 1), sums over the
    batch's labelled pixels; with class weights, a weighted mean over classes.
``crossentropy+dice``
    Their sum.

Registered with Keras (package ``fjord``), so a training checkpoint reloads with its loss; model
files are loaded without compiling and do not need them.
"""

from .engine import keras

ops = keras.ops

KINDS = ("crossentropy", "dice", "crossentropy+dice")
EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="fjord")
class SegmentationLoss(keras.losses.Loss):
    def __init__(self, kind="crossentropy", class_weights=None, name=None, **kwargs):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        super().__init__(name=name or kind.replace("+", "_"), **kwargs)
        self.kind = kind
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def _weights(self, n):
        if self.class_weights is None:
            return ops.ones((n,), "float32")
        return ops.convert_to_tensor(self.class_weights, "float32")

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        n = y_true.shape[-1]
        w = self._weights(n)
        labelled = ops.sum(y_true, axis=-1, keepdims=True)  # 1 labelled, 0 not
        loss = ops.convert_to_tensor(0.0, "float32")
        if self.kind in ("crossentropy", "crossentropy+dice"):
            p = ops.clip(y_pred, EPSILON, 1.0)
            per_pixel = -ops.sum(y_true * w * ops.log(p), axis=-1)
            pixel_weight = ops.sum(y_true * w, axis=-1)
            loss = loss + ops.sum(per_pixel) / ops.maximum(ops.sum(pixel_weight), EPSILON)
        if self.kind in ("dice", "crossentropy+dice"):
            p = y_pred * labelled
            axes = tuple(range(len(y_true.shape) - 1))
            intersection = ops.sum(y_true * p, axis=axes)
            sizes = ops.sum(y_true, axis=axes) + ops.sum(p, axis=axes)
            dice = (2.0 * intersection + 1.0) / (sizes + 1.0)
            loss = loss + 1.0 - ops.sum(w * dice) / ops.sum(w)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, class_weights=self.class_weights)
        return config


@keras.saving.register_keras_serializable(package="fjord")
class LabelledAccuracy(keras.metrics.Metric):
    """Share of labelled pixels whose most probable class is the true class."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")
        labelled = ops.sum(y_true, axis=-1)
        hit = ops.cast(ops.equal(ops.argmax(y_true, axis=-1), ops.argmax(y_pred, axis=-1)), "float32")
        self.correct.assign_add(ops.sum(hit * labelled))
        self.count.assign_add(ops.sum(labelled))

    def result(self):
        return self.correct / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package="fjord")
class BalancedAccuracy(keras.metrics.Metric):
    """Balanced accuracy: the mean, over the classes present in the truth, of the share of each
    class's labelled items (tiles or pixels) predicted as that class (its recall). A rare class
    that is missed pulls it down as much as a common one, unlike the plain accuracy."""

    def __init__(self, num_classes, name="balanced_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.hits = self.add_variable(shape=(self.num_classes,), initializer="zeros", name="hits")
        self.support = self.add_variable(shape=(self.num_classes,), initializer="zeros",
                                         name="support")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.reshape(ops.cast(y_true, "float32"), (-1, self.num_classes))
        y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1, self.num_classes))
        chosen = ops.one_hot(ops.argmax(y_pred, axis=-1), self.num_classes)
        self.hits.assign_add(ops.sum(y_true * chosen, axis=0))
        self.support.assign_add(ops.sum(y_true, axis=0))

    def result(self):
        present = ops.cast(self.support > 0, "float32")
        recall = self.hits / ops.maximum(self.support, 1.0)
        return ops.sum(recall * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self):
        self.hits.assign(ops.zeros((self.num_classes,)))
        self.support.assign(ops.zeros((self.num_classes,)))

    def get_config(self):
        return dict(super().get_config(), num_classes=self.num_classes)
