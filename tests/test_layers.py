"""The layers in the tree hold: who may import whom (README, "Layout").

    kernel    rimba/*.py           names, metrics and the derived fields, contract, line protocol, fleet,
                                   settings, profiles, time base, the node's image, access files
    adapters  rimba/adapters/      Mosquitto, InfluxDB, Grafana, notifications
    services  ingest/ analytics/ dashboards/ hardware/: each imports the kernel and the adapters, never
                                   another service
    dev       rimba/dev/           the local stack, the simulator, the host node, the test harness
    app       rimba/app/           the `rimba` command and the demo: the only importer of the services

Every import counts: one inside a function, a relative one, `importlib.import_module("...")` or
`__import__("...")` of a constant name. The application imports the dev tools only inside the functions of the
commands that need them (the local stack, the simulator, a restore into the local stack), except the demo:
`rimba ingest`, `rimba analyze` and `rimba backup` never load them. The benchmarks use the dev harness, never
the tests. Every Python file of the repository outside firmware/ (MicroPython) is in one of these packages.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("ingest", "analytics", "dashboards", "hardware")
OURS = ("rimba", *SERVICES, "bench", "tests")
MAY_IMPORT = {
    "kernel": {"kernel"},
    "adapters": {"kernel", "adapters"},
    "dev": {"kernel", "adapters", "dev"},
    "app": {"kernel", "adapters", "dev", "app", *SERVICES},
    **{s: {"kernel", "adapters", s} for s in SERVICES},
}


def layer(module: str) -> str | None:
    """The layer of one of our modules (dotted name); None for the benchmarks and tests."""
    parts = module.split(".")
    if parts[0] in SERVICES:
        return parts[0]
    if parts[0] != "rimba":
        return None
    if len(parts) > 1 and parts[1] in ("adapters", "dev", "app"):
        return parts[1]
    return "app" if parts[1:] == ["__main__"] else "kernel"


def imports(source: str, module: str = "") -> list:
    """(line, dotted name, at module level) of every import of one of our packages in `source`, the source of
    `module` (against which relative imports are resolved)."""
    out = []
    tree = ast.parse(source)
    top = {id(n) for n in tree.body} | {id(c) for n in tree.body if isinstance(n, (ast.If, ast.Try))
                                         for c in ast.walk(n) if isinstance(c, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        level = id(node) in top
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: against the module's package
                package = module.split(".")[:len(module.split(".")) - node.level]
                base = ".".join(package + ([node.module] if node.module else []))
            # `from rimba import wib` imports the module rimba.wib, `from rimba.wib import DAY_S` rimba.wib
            out += [(node.lineno, ".".join(p for p in (base, a.name) if p), level) for a in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "id", None) == "__import__"
                   or getattr(node.func, "attr", None) == "import_module")):
            out.append((node.lineno, node.args[0].value, False))
    return [(line, name, level) for line, name, level in out if name.split(".")[0] in OURS]


def target_layer(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] == "rimba" and len(parts) > 1 and parts[1] in ("adapters", "dev", "app", "__main__"):
        return "app" if parts[1] == "__main__" else parts[1]
    return layer(name) if parts[0] != "rimba" else "kernel"


def violations(module: str, source: str) -> list:
    """What `module`, with this source, imports that its layer may not."""
    own = layer(module)
    out = []
    for line, name, at_top in imports(source, module):
        if own is None:
            if module.startswith("bench") and name.split(".")[0] == "tests":
                out.append(f"{module}:{line} imports {name}: the benchmarks use rimba.dev, not the tests")
            continue
        if name.split(".")[0] in ("bench", "tests"):
            out.append(f"{module}:{line} imports {name}")
            continue
        target = target_layer(name)
        if target not in MAY_IMPORT[own]:
            out.append(f"{module}:{line} ({own}) imports {name} ({target})")
        elif own == "app" and target == "dev" and at_top and module != "rimba.app.demo":
            out.append(f"{module}:{line} imports {name} at module level: only inside the commands that need it")
    return out


def our_modules():
    for path in python_files():
        if path.parts[0] in OURS:
            rel = path.with_suffix("")
            yield ".".join(p for p in rel.parts if p != "__init__"), ROOT / path


def python_files() -> list:
    """Every Python file git tracks (or would), relative to the root."""
    r = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    return [Path(p) for p in r.stdout.split()]


def test_every_import_keeps_to_its_layer():
    found = [v for module, path in our_modules() for v in violations(module, path.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)


def test_every_python_file_is_in_a_package_of_ours_or_the_firmware():
    stray = [str(p) for p in python_files() if p.parts[0] not in (*OURS, "firmware")]
    assert not stray, f"{stray}: give it a layer (tests/test_layers.py) or put it in one"


@pytest.mark.parametrize("module, source", [
    ("analytics.data", "from ingest import lineproto\n"),  # a service reaching into another
    ("dashboards.report", "def f():\n    from analytics.data import load_cube\n"),  # also inside a function
    ("hardware.provision", "from rimba.dev.stack import Stack\n"),  # production code and the dev tools
    ("rimba.contract", "from rimba.adapters import mqtt\n"),  # the kernel and an adapter
    ("rimba.adapters.influx", "import analytics.data\n"),
    ("rimba.dev.hostnode", "from hardware.bundle import factory\n"),
    ("bench.energy", "from tests.support import env_for\n"),
    ("ingest.service", "from tests import support\n"),
    ("rimba.adapters.mqtt", "from ..dev import stack\n"),  # relative
    ("analytics.quality", "from .. import ingest\n"),
    ("ingest.service", "import importlib\nimportlib.import_module('analytics.data')\n"),  # by name
    ("rimba.wib", "__import__('rimba.dev.stack')\n"),
    ("rimba.wib", "import rimba.__main__\n"),  # the kernel and the application's entry
    ("rimba.app.backup", "from rimba.dev.stack import Stack\n"),  # the app's dev tools only inside a command
    ("rimba.app.cli", "try:\n    from rimba.dev import simulate\nexcept ImportError:\n    pass\n"),
])
def test_the_check_finds_a_crossing(module, source):
    assert violations(module, source)


@pytest.mark.parametrize("module, source", [
    ("analytics.data", "from rimba import lineproto\nfrom rimba.adapters.influx import Influx\n"),
    ("rimba.app.cli", "from hardware import bundle\ndef f():\n    from rimba.dev.stack import Stack\n"),
    ("rimba.app.demo", "from rimba.dev.stack import Stack\n"),
    ("analytics.weekly", "from . import data\nfrom .data import load_cube\n"),
    ("bench.energy", "from rimba.dev.harness import env_for\nfrom hardware import power\n"),
])
def test_the_check_lets_the_layers_be(module, source):
    assert not violations(module, source)
