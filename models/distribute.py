"""Device choice, mixed precision and data-parallel training, through the Keras 3 API only.

Data parallelism (several GPUs, several processes or hosts) uses ``keras.distribution``, which
Keras implements on the JAX backend; nothing here imports an engine directly.
"""

import os
import sys

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
    late = any(m in sys.modules for m in ("tensorflow", "jax", "torch"))
    os.environ["CUDA_VISIBLE_DEVICES"] = value
    if late:
        return (f"The engine was already loaded in this process, so device {device!r} may not "
                "apply; run training in a fresh process (as the Processing algorithm does).")
    return None


def start(device, progress, log=True):
    """Select ``device``, import Keras and return it; with ``log``, report the device through
    ``progress(None, line)``. A bad device is a FjordError. What every worker job that runs a
    network does first."""
    from ..core.errors import FjordError

    try:
        late = select_device(device)
    except ValueError as exc:
        raise FjordError(str(exc)) from None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .engine import keras

    if late:
        progress(None, late)
    if log:
        names = ", ".join(g["name"] for g in gpus()) or "CPU"
        progress(None, f"Device: {names} ({keras.backend.backend()} backend).")
    return keras


def gpus():
    """The GPUs the Keras backend sees (list of dicts with name and compute capability)."""
    from ..core.environment import backend_gpus
    from .engine import keras

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


PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"
ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"


class DistributionUnsupported(ValueError):
    pass


def process_count():
    return int(os.environ.get(PROCESSES, "1") or 1)


def process_index():
    return int(os.environ.get(PROCESS_ID, "0") or 0)


def is_chief():
    """Whether this process writes outputs: process 0 of a multi-process run, or the only one."""
    return process_index() == 0


class Plan:
    """How training is spread: ``replicas`` devices in all, ``local`` of them in this process,
    ``processes`` processes of which this one is ``index``, and a sentence for the log."""

    def __init__(self, description, replicas=1, local=1, processes=1, index=0):
        self.description, self.replicas, self.local = description, replicas, local
        self.processes, self.index = processes, index


def plan():
    """Set up data-parallel training with ``keras.distribution`` and say how.

    Several processes (one per host, or several on one host) join through Keras's own
    environment variables ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator's
    ``host:port``), ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID``;
    every device of every process then holds a replica (``DataParallel``) and each process feeds
    its own share of every batch. The Keras distribution API runs on the JAX backend; on the
    others, training uses one device.
    """
    from .engine import keras

    backend = keras.backend.backend()
    processes = process_count()
    if processes > 1:
        if backend != "jax":
            raise DistributionUnsupported(
                f"{PROCESSES}={processes} asks for a multi-process run, which Keras's distribution "
                f"API runs on the JAX backend only; this is the {backend} backend. Set "
                "KERAS_BACKEND=jax (with jax installed) on every process, or unset "
                f"{PROCESSES}.")
        if not os.environ.get(ADDRESSES):
            raise DistributionUnsupported(
                f"A multi-process run needs {ADDRESSES}: the host:port of process 0.")
        keras.distribution.initialize()
    if backend != "jax":
        gpus = keras.distribution.list_devices("gpu") if backend == "tensorflow" else []
        if len(gpus) > 1:
            return Plan(f"one of {len(gpus)} GPUs: data-parallel training on several GPUs runs "
                        "on the JAX backend (KERAS_BACKEND=jax)")
        return Plan("one device")
    devices = keras.distribution.list_devices()
    if len(devices) == 1:
        return Plan("one device")
    # Each process reads its own share of the tiles (TileDataset's ``shard``).
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
    local = len(devices) // processes
    return Plan(f"keras.distribution.DataParallel over {len(devices)} devices in {processes} "
                f"process(es)", len(devices), local, processes, process_index())


def end_plan():
    """Leave data-parallel mode (for work done on this process's own device afterwards)."""
    from .engine import keras

    keras.distribution.set_distribution(None)
