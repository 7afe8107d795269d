"""Device choice, mixed precision and data-parallel training, per Keras backend.

The only backend-specific code of training lives here: TensorFlow's ``MirroredStrategy`` on a
multi-GPU host and ``keras.distribution.DataParallel`` on JAX.
"""

import contextlib
import json
import os

DEVICES_HELP = "auto, cpu, or a GPU index (0, 1, ...)"


def select_device(device):
    """Restrict the engine to ``device`` ('auto', 'cpu' or a GPU index) through
    ``CUDA_VISIBLE_DEVICES``. Must run before the backend is imported; returns a warning
    sentence when it is too late, else None."""
    device = str(device).strip().lower() or "auto"
    if device == "auto":
        return None
    if device == "cpu":
        value = "-1"
    elif device.isdigit():
        value = device
    else:
        raise ValueError(f"Unknown device {device!r}: use {DEVICES_HELP}.")
    import sys
    late = any(m in sys.modules for m in ("tensorflow", "jax", "torch"))
    os.environ["CUDA_VISIBLE_DEVICES"] = value
    if late:
        return (f"The engine was already loaded in this process, so device {device!r} may not "
                "apply; run training in a fresh process (as the Processing algorithm does).")
    return None


def gpus():
    """The GPUs the Keras backend sees (list of dicts with name and compute capability)."""
    import keras

    from ..core.environment import backend_gpus

    return [g for g in backend_gpus(keras.backend.backend()) if "error" not in g]


def precision_policy(mode, gpu_list):
    """The Keras dtype policy for ``mode`` ('auto', 'on', 'off') on these GPUs, and why.

    Tensor cores (compute capability 7.0 and up) make float16 pay; from 8.0 (Ampere) bfloat16
    runs as fast and needs no loss scaling, so it is preferred there. On a CPU, 'auto' stays in
    float32 and 'on' uses bfloat16.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"Mixed precision must be auto, on or off, not {mode!r}.")
    if mode == "off":
        return "float32", "mixed precision off"
    caps = []
    for g in gpu_list:
        try:
            caps.append(float(g.get("compute_capability") or 0))
        except ValueError:
            caps.append(0.0)
    if not caps:
        if mode == "on":
            return "mixed_bfloat16", "mixed precision on (bfloat16 on the CPU, as asked)"
        return "float32", "mixed precision off (no GPU)"
    best = min(caps)
    if best >= 8.0:
        return "mixed_bfloat16", f"mixed precision on (bfloat16; compute capability {best:g})"
    if best >= 7.0 or mode == "on":
        return "mixed_float16", f"mixed precision on (float16; compute capability {best:g})"
    return "float32", f"mixed precision off (compute capability {best:g} has no tensor cores)"


def _tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError("TF_CONFIG is not valid JSON.") from None


def is_chief():
    """Whether this process writes outputs: always, except a non-chief worker of a multi-host
    run (``TF_CONFIG``), where the chief (or worker 0 when no chief is named) writes."""
    cfg = _tf_config()
    if not cfg:
        return True
    task = cfg.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if "chief" in cfg.get("cluster", {}):
        return kind == "chief"
    return kind == "worker" and index == 0


class MultiHostUnsupported(ValueError):
    pass


def strategy():
    """``(scope, description, replicas)``: the context to build and compile the model in.

    TensorFlow: ``MirroredStrategy`` over several GPUs; JAX: data-parallel over several GPUs;
    otherwise one device and no strategy. A multi-host run (``TF_CONFIG``) is refused.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        cfg = _tf_config()
        if cfg and cfg.get("cluster"):
            # Keras 3's fit() fails under MultiWorkerMirroredStrategy (PerReplica batches,
            # keras-team/keras#20585): refuse rather than train wrongly.
            raise MultiHostUnsupported(
                "TF_CONFIG asks for a multi-host run, which Fjord does not support yet: Keras 3 "
                "cannot train with MultiWorkerMirroredStrategy (keras-team/keras#20585). Unset "
                "TF_CONFIG; several GPUs of one machine are used without it.")
        if len(tf.config.list_logical_devices("GPU")) > 1:
            s = tf.distribute.MirroredStrategy()
            return s.scope(), f"MirroredStrategy over {s.num_replicas_in_sync} GPUs", s.num_replicas_in_sync
    elif backend == "jax":
        import jax

        devices = [f"gpu:{d.id}" for d in jax.devices() if d.platform == "gpu"]
        if len(devices) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
            return contextlib.nullcontext(), f"keras.distribution.DataParallel over {len(devices)} GPUs", len(devices)
    return contextlib.nullcontext(), "one device", 1
