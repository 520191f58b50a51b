"""Finding the scenarios: every module under bench/scenarios/ that exposes `SCENARIO`."""

import importlib
import pkgutil
from dataclasses import dataclass

import bench.scenarios
from bench.scenario import Scenario


@dataclass
class Broken:
    """A scenario module that could not be loaded; reported as failed, never fatal."""

    name: str
    error: str


def discover() -> list[Scenario | Broken]:
    found: list[Scenario | Broken] = []
    for info in sorted(pkgutil.iter_modules(bench.scenarios.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"bench.scenarios.{info.name}")
        except Exception as e:  # noqa: BLE001 - a broken scenario must not stop the others
            found.append(Broken(info.name, f"import failed: {type(e).__name__}: {e}"))
            continue
        scenario = getattr(module, "SCENARIO", None)
        if not isinstance(scenario, Scenario):
            found.append(Broken(info.name, "module exposes no SCENARIO (a bench Scenario)"))
            continue
        if not scenario.name:
            scenario.name = info.name
        found.append(scenario)
    return found
