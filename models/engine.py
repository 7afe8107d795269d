"""Keras, loaded the way Fjord runs it: importing this module tunes the process's memory
allocation first (``models.allocator``), since TensorFlow reads its allocator setting when it is
loaded. Every Fjord module takes Keras from here (``from .engine import keras``), whichever
comes first in a process."""

from .allocator import tune_allocation

tune_allocation()

import keras

__all__ = ["keras"]
