"""What the deep-learning environment holds, and setting up a dedicated one.

:func:`report` runs inside the worker's interpreter and describes it: Python, the libraries
Fjord uses and their versions, the Keras backend and the GPUs that backend sees.
:func:`create_environment` makes a virtual environment (with the system site packages, so GDAL
comes from QGIS) and installs the pinned requirements with pip.
"""

import configparser
import html
import importlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys

from .errors import FjordError, no_progress
from .process import run_streaming

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(PLUGIN_DIR, "requirements.txt")

# (import name, distribution names to ask for the version)
_LIBRARIES = (
    ("numpy", ("numpy",)),
    ("osgeo", ("GDAL",)),
    ("keras", ("keras",)),
    ("tensorflow", ("tensorflow", "tensorflow-cpu", "tf-nightly")),
    ("jax", ("jax",)),
    ("torch", ("torch",)),
    ("scipy", ("scipy",)),
    ("skimage", ("scikit-image",)),
    ("sklearn", ("scikit-learn",)),
    ("matplotlib", ("matplotlib",)),
    ("distributed", ("distributed",)),  # batchcsc SCHEDULER local:N / tcp:// only
)
_REQUIRED = ("numpy", "osgeo", "keras", "scipy", "skimage", "sklearn", "matplotlib")


def plugin_version():
    """Fjord's version, from the plugin's metadata.txt."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(PLUGIN_DIR, "metadata.txt"), encoding="utf-8")
    return parser.get("general", "version", fallback="0")


def library_version(import_name, dists=None):
    """The installed version of a library (by import name; its distribution names are known
    for the libraries Fjord uses), or None."""
    dists = dists or dict(_LIBRARIES).get(import_name, (import_name,))
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    if import_name == "osgeo":
        try:
            from osgeo import gdal
            return gdal.__version__
        except ImportError:
            return None
    return None


def _nvidia_smi():
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.rpartition(",")
        try:
            gpus.append({"name": name.strip(), "memory_mb": int(float(mem))})
        except ValueError:
            continue
    return gpus


def backend_gpus(backend):
    """GPUs as the Keras backend sees them: name, device, compute capability ("8.0") and memory
    where the backend tells.

    The backend is imported by name: this is a probe of whichever engine Keras runs on.
    """
    try:
        if backend == "tensorflow":
            tf = importlib.import_module("tensorflow")
            gpus = []
            for dev in tf.config.list_physical_devices("GPU"):
                details = tf.config.experimental.get_device_details(dev)
                cc = details.get("compute_capability")
                gpus.append({"name": details.get("device_name", dev.name), "device": dev.name,
                             "compute_capability": ".".join(map(str, cc)) if cc else None})
            return gpus
        if backend == "jax":
            jax = importlib.import_module("jax")
            return [{"name": getattr(d, "device_kind", str(d)), "device": str(d),
                     "compute_capability": getattr(d, "compute_capability", None)}
                    for d in jax.devices() if d.platform == "gpu"]
        if backend == "torch":
            torch = importlib.import_module("torch")
            return [{"name": torch.cuda.get_device_name(i), "device": f"cuda:{i}",
                     "compute_capability": "%d.%d" % torch.cuda.get_device_capability(i),
                     "memory_mb": torch.cuda.get_device_properties(i).total_memory // 2**20}
                    for i in range(torch.cuda.device_count())]
    except Exception as exc:  # a broken GPU stack is reported, not fatal
        return [{"error": f"{type(exc).__name__}: {exc}"}]
    return []


def report(progress=no_progress, should_stop=None):
    """Describe this interpreter's deep-learning stack.

    Returns a dict: ``python``, ``executable``, ``platform``, ``libraries`` (name -> version or
    None), ``backend``, ``gpus`` (list of dicts), ``problems`` (list of sentences) and ``ok``.
    """
    progress(0.0, "Looking up library versions")
    libs = {name: library_version(name, dists) for name, dists in _LIBRARIES}
    problems = [f"{name} is not installed." for name in _REQUIRED if libs[name] is None]
    if libs["numpy"] and int(libs["numpy"].split(".")[0]) >= 2 and libs["osgeo"]:
        try:
            importlib.import_module("osgeo.gdal_array")
        except Exception:
            problems.append("numpy >= 2 breaks this GDAL's numpy bindings: install numpy<2.")
    backend = None
    if libs["keras"]:
        progress(0.3, "Importing Keras and its backend")
        try:
            keras = importlib.import_module("keras")
            backend = keras.backend.backend()
        except Exception as exc:
            problems.append(f"Keras does not import: {type(exc).__name__}: {exc}")
    progress(0.7, "Looking for GPUs")
    gpus = backend_gpus(backend) if backend else []
    smi = _nvidia_smi()
    for i, gpu in enumerate(gpus):
        if "memory_mb" not in gpu and i < len(smi):
            gpu["memory_mb"] = smi[i]["memory_mb"]
    if smi and not [g for g in gpus if "error" not in g]:
        problems.append(f"nvidia-smi lists {len(smi)} GPU(s) but the {backend or 'Keras'} backend "
                        "sees none: install the GPU build (see the README).")
    progress(1.0, None)
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "libraries": libs,
        "backend": backend,
        "gpus": gpus,
        "nvidia_smi": smi,
        "problems": problems,
        "ok": not problems,
    }


def report_lines(rep):
    """The report as short lines for a log."""
    lines = [f"Python {rep['python']} ({rep['executable']})", f"Platform: {rep['platform']}"]
    for name, version in rep["libraries"].items():
        lines.append(f"{name}: {version or 'not installed'}")
    lines.append(f"Keras backend: {rep['backend'] or 'none'}")
    if rep["gpus"]:
        for gpu in rep["gpus"]:
            mem = f", {gpu['memory_mb']} MiB" if gpu.get("memory_mb") else ""
            lines.append(f"GPU: {gpu.get('name', gpu.get('error'))}{mem}")
    else:
        lines.append("GPU: none seen; deep learning runs on the CPU")
    lines += [f"Problem: {p}" for p in rep["problems"]]
    return lines


def report_html(rep):
    """The report as a small stand-alone HTML page."""
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v or 'not installed'))}</td></tr>"
                   for k, v in rep["libraries"].items())
    gpus = "".join(f"<li>{html.escape(str(g.get('name', g.get('error'))))}"
                   f"{' &mdash; %s MiB' % g['memory_mb'] if g.get('memory_mb') else ''}</li>"
                   for g in rep["gpus"]) or "<li>none: deep learning runs on the CPU</li>"
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in rep["problems"]) or "<li>none</li>"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Fjord environment</title></head>"
        "<body><h1>Fjord environment</h1>"
        f"<p>Python {html.escape(rep['python'])} at <code>{html.escape(rep['executable'])}</code>"
        f"<br>{html.escape(rep['platform'])}<br>Keras backend: "
        f"<b>{html.escape(str(rep['backend'] or 'none'))}</b></p>"
        f"<table>{rows}</table><h2>GPUs</h2><ul>{gpus}</ul><h2>Problems</h2><ul>{problems}</ul>"
        "</body></html>")


def venv_python(venv_dir):
    """The interpreter inside a virtual environment folder."""
    if os.name == "nt":
        return os.path.join(venv_dir, "Scripts", "python.exe")
    return os.path.join(venv_dir, "bin", "python")


def manual_commands(base_python, venv_dir, requirements=REQUIREMENTS):
    """The commands a user can run by hand to make the environment."""
    return [f'"{base_python}" -m venv --system-site-packages "{venv_dir}"',
            f'"{venv_python(venv_dir)}" -m pip install -r "{requirements}"']


def create_environment(venv_dir, base_python, requirements=REQUIREMENTS, progress=no_progress,
                       should_stop=None):
    """Create ``venv_dir`` from ``base_python`` (system site packages on) and pip-install
    ``requirements`` into it, streaming pip's output through ``progress(None, line)``.

    Returns the path of the environment's interpreter.
    """
    how = ("Create it by hand instead:\n  " + "\n  ".join(manual_commands(base_python, venv_dir, requirements)))
    if not os.path.isfile(requirements):
        raise FjordError(f"The requirements file {requirements!r} does not exist.")
    if not base_python or not os.path.isfile(base_python):
        raise FjordError(f"No Python interpreter found to create the environment from. {how}")
    lines = []

    def log(line):
        lines.append(line)
        del lines[:-30]
        progress(None, line)

    python = venv_python(venv_dir)
    if not os.path.isfile(python):
        progress(0.02, f"Creating the virtual environment {venv_dir}")
        code = run_streaming([base_python, "-m", "venv", "--system-site-packages", venv_dir],
                             log, log, should_stop=should_stop)
        if code != 0 or not os.path.isfile(python):
            shutil.rmtree(venv_dir, ignore_errors=True)
            hint = ""
            if any("ensurepip" in line or "venv" in line for line in lines):
                hint = ("Python's venv module is not usable here (on Debian/Ubuntu: "
                        "sudo apt install python3-venv). ")
            raise FjordError(f"Creating the virtual environment failed. {hint}{how}\n"
                             + "\n".join(lines[-10:]))
    progress(0.1, f"Installing the requirements from {requirements}")
    steps = [0]

    def pip_line(line):
        log(line)
        if line.startswith(("Collecting", "Requirement already satisfied", "Installing", "Downloading")):
            steps[0] += 1
            progress(min(0.95, 0.1 + 0.02 * steps[0]), None)

    code = run_streaming([python, "-m", "pip", "install", "--disable-pip-version-check",
                          "-r", requirements], pip_line, log, should_stop=should_stop)
    if code != 0:
        raise FjordError(f"pip could not install the requirements (exit code {code}). "
                         f"Fix the cause shown above, or run by hand:\n  "
                         + "\n  ".join(manual_commands(base_python, venv_dir, requirements)[1:])
                         + "\n" + "\n".join(lines[-10:]))
    progress(1.0, "The environment is ready")
    return python
