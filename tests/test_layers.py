"""The layers in the tree hold: who may import whom (README, "Layout").

    kernel    rimba/*.py           names, metrics and the derived fields, contract, line protocol, fleet,
                                   settings, profiles, time base, the node's image, access files
    adapters  rimba/adapters/      Mosquitto, InfluxDB, Grafana, notifications
    services  ingest/ analytics/ dashboards/ hardware/: each imports the kernel and the adapters, never
                                   another service
    dev       rimba/dev/           the local stack, the simulator, the host node, the test harness
    app       rimba/app/           the `rimba` command and the demo: the only importer of the services

Every import counts, also one inside a function. The benchmarks use the dev harness, never the tests.
"""

from __future__ import annotations

import ast
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


def imports(source: str) -> list:
    """(line, dotted name) of every import of one of our packages in `source`."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from rimba import wib` imports the module rimba.wib, `from rimba.wib import DAY_S` rimba.wib
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return [(line, name) for line, name in out if name.split(".")[0] in OURS]


def target_layer(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] == "rimba" and len(parts) > 1 and parts[1] in ("adapters", "dev", "app"):
        return parts[1]
    return layer(name) if parts[0] != "rimba" else "kernel"


def violations(module: str, source: str) -> list:
    """What `module`, with this source, imports that its layer may not."""
    own = layer(module)
    out = []
    for line, name in imports(source):
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
    return out


def our_modules():
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            yield ".".join(p for p in rel.parts if p != "__init__") or package, path


def test_every_import_keeps_to_its_layer():
    found = [v for module, path in our_modules() for v in violations(module, path.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)


def test_every_module_of_ours_has_a_layer():
    assert {layer(m) for m, _ in our_modules() if not m.startswith(("bench", "tests"))} == \
        {"kernel", "adapters", "dev", "app", *SERVICES}


@pytest.mark.parametrize("module, source", [
    ("analytics.data", "from ingest import lineproto\n"),  # a service reaching into another
    ("dashboards.report", "def f():\n    from analytics.data import load_cube\n"),  # also inside a function
    ("hardware.provision", "from rimba.dev.stack import Stack\n"),  # production code and the dev tools
    ("rimba.contract", "from rimba.adapters import mqtt\n"),  # the kernel and an adapter
    ("rimba.adapters.influx", "import analytics.data\n"),
    ("rimba.dev.hostnode", "from hardware.bundle import factory\n"),
    ("bench.energy", "from tests.support import env_for\n"),
    ("ingest.service", "from tests import support\n"),
])
def test_the_check_finds_a_crossing(module, source):
    assert violations(module, source)


@pytest.mark.parametrize("module, source", [
    ("analytics.data", "from rimba import lineproto\nfrom rimba.adapters.influx import Influx\n"),
    ("rimba.app.cli", "from hardware import bundle\nfrom rimba.dev.stack import Stack\n"),
    ("bench.energy", "from rimba.dev.harness import env_for\nfrom hardware import power\n"),
])
def test_the_check_lets_the_layers_be(module, source):
    assert not violations(module, source)
