"""The layout holds: imports run one way between the stages, and every algorithm's worker job
is a function that a fresh worker process can import by its name."""

import ast
import json
import os
import subprocess
import sys

import pytest
from conftest import PLUGIN_PATH, REPO

#: The layers, lowest first: a module may import its own layer and the ones before it.
#: (``core`` is the package's base: errors, outputs, process, environment.)
LAYERS = ("core", "models", "core.data", "core.prepare", "core.glaciers", "core.evaluate",
          "core.learn", "core.run", "algorithms", "ui")
#: Entry points may import any layer.
ENTRY_POINTS = {"core.__main__", "plugin", ""}


def _modules():
    for folder in ("core", "models", "algorithms", "ui"):
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    parts = os.path.relpath(path, REPO)[:-3].split(os.sep)
                    if parts[-1] == "__init__":
                        parts = parts[:-1]
                    yield ".".join(parts), path


def _layer(module):
    """The layer a module (dotted, relative to the plugin) belongs to."""
    best = ""
    for layer in LAYERS:
        if (module == layer or module.startswith(layer + ".")) and len(layer) > len(best):
            best = layer
    return best


def _imports(module, path):
    """The plugin modules that ``module`` imports (resolved relative imports), with line numbers."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            base = base[:len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            targets = [target] if node.module else [f"{target}.{a.name}".strip(".") for a in node.names]
            for t in targets:
                yield t, node.lineno


def test_imports_run_one_way_between_the_stages():
    wrong = []
    for module, path in _modules():
        if module in ENTRY_POINTS:
            continue
        mine = LAYERS.index(_layer(module))
        for target, line in _imports(module, path):
            layer = _layer(target)
            if layer and LAYERS.index(layer) > mine:
                wrong.append(f"{os.path.relpath(path, REPO)}:{line} ({_layer(module)}) imports "
                             f"{target} ({layer})")
    assert not wrong, "imports that run back up:\n" + "\n".join(wrong)


def test_the_core_never_imports_qgis():
    for module, path in _modules():
        if module.startswith(("core", "models")):
            source = open(path, encoding="utf-8").read()
            assert "from qgis" not in source and "import qgis" not in source, path


def _worker_jobs():
    """``(algorithm file, line, function name, module it is imported from)`` of every function
    an algorithm hands to the worker launcher (``run_in_worker`` or ``run_training``)."""
    folder = os.path.join(REPO, "algorithms")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(folder, name), encoding="utf-8").read())
        imported = {a.asname or a.name: n.module if n.level == 2 else f"algorithms.{n.module}"
                    for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level
                    for a in n.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("run_in_worker",
                                                                                "run_training"):
                arg = node.args[0 if node.func.id == "run_in_worker" else 1]
                yield name, node.lineno, arg, imported


def test_every_algorithms_job_is_a_function_a_worker_resolves():
    calls = list(_worker_jobs())
    assert len(calls) >= 12  # every algorithm that runs a worker job
    names = []
    for file, line, arg, imported in calls:
        assert isinstance(arg, ast.Name), f"algorithms/{file}:{line}: pass the core function itself"
        if arg.id in imported:  # imported from the core here
            module = imported[arg.id]
            assert module.startswith("core."), f"algorithms/{file}:{line}: {arg.id} from {module}"
            names.append(f"fjord.{module}:{arg.id}")
    # ``run_training``'s own argument is passed through; it is checked at its callers.
    assert len(names) >= 12
    # What the worker does with a job: import the module by name and take the function.
    code = ("import json, sys\nfrom fjord.core.run.worker import resolve\n"
            "print(json.dumps([callable(resolve(n)) for n in json.loads(sys.argv[1])]))")
    env = dict(os.environ, PYTHONPATH=PLUGIN_PATH)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(names)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True] * len(names)


def test_the_launcher_names_functions_by_their_module():
    pytest.importorskip("qgis.core")
    from fjord.algorithms.launcher import job_name
    from fjord.core.learn.csc import classify_csc

    assert job_name(classify_csc) == "fjord.core.learn.csc:classify_csc"
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="module-level function"):
        job_name(lambda: None)
