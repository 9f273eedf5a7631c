"""The recipe registry: adding a recipe module is all it takes for run, reproduce and report.

The dummy recipe below follows docs/architecture.md's "How to add a system" (step 5) and nothing
else: it is dropped into the recipes package's search path, and `deepscope run --list`,
`deepscope reproduce` and `deepscope report` must know it.
"""

import importlib
import sys

import pytest

import deepscope.recipes as recipes
from deepscope.cli import main
from deepscope.recipes import Reproduce, System, registry

#: A whole new system in one module, as a contributor would write it.
DUMMY_RECIPE = '''\
"""Dummy system: a recipe that exists only in the registry's test (arXiv 0000.00000)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deepscope.recipes import Reproduce, System
from deepscope.train.config import RunConfig, require

SYSTEM = System("dummy", "Dummy system", order=7)
REPRODUCE = Reproduce(smoke=("--quick",), quick=("--value", "2"), paper=None)


@dataclass(frozen=True)
class Config(RunConfig):
    """The dummy experiment."""

    value: float = 1.0
    """The number the run reports."""

    QUICK: ClassVar[dict] = {"value": 0.5}

    def validate(self) -> None:
        super().validate()
        require(self.value > 0, "value", self.value, "> 0")


def run(cfg: Config, run) -> dict:
    run.log(1, value=cfg.value)
    return {"value": cfg.value, "summary": f"dummy value {cfg.value}",
            "paper": "the value is positive"}


def verdict(result: dict) -> dict:
    ok = result["value"] > 0
    return {"claim": "the value is positive", "measured": f"value {result['value']}",
            "verdict": "reproduced" if ok else "not reproduced"}
'''


@pytest.fixture
def extra_recipes(tmp_path, monkeypatch):
    """A folder on the recipes package's search path; write modules into it."""
    folder = tmp_path / "extra_recipes"
    folder.mkdir()
    monkeypatch.setattr(recipes, "__path__", [*recipes.__path__, str(folder)])
    added = []

    def add(name: str, source: str):
        (folder / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        added.append(f"deepscope.recipes.{name}")
        return folder / f"{name}.py"

    yield add
    for mod in added:
        sys.modules.pop(mod, None)


def test_a_new_recipe_module_is_known_to_run_reproduce_and_report(extra_recipes, tmp_path, capsys):
    extra_recipes("dummy_system", DUMMY_RECIPE)
    reg = registry()
    assert reg.recipes["dummy-system"] == "deepscope.recipes.dummy_system"
    assert list(reg.systems)[-1] == "dummy" and reg.system_of("dummy-system").name == "Dummy system"

    assert main(["run", "--list"]) == 0
    assert "dummy-system" in capsys.readouterr().out

    out = tmp_path / "repro"
    assert main(["reproduce", "dummy", "--scale", "smoke", "--out", str(out), "--threads", "1",
                 "--no-progress"]) == 0
    result = (out / "dummy" / "dummy-system" / "result.json").read_text()
    assert '"system": "Dummy system"' in result and '"value": 0.5' in result  # --quick applied
    md = (out / "verdicts.md").read_text()
    assert "| Dummy system | the value is positive | value 0.5 | **reproduced** |" in md
    capsys.readouterr()
    assert main(["reproduce", "dummy", "--scale", "paper", "--out", str(out)]) == 0
    assert "no recipe yet at --scale paper for: dummy" in capsys.readouterr().out

    page = tmp_path / "page.html"
    assert main(["report", str(out), "--out", str(page)]) == 0
    text = page.read_text()
    assert "<td>Dummy system</td>" in text and "<h2>Dummy system</h2>" in text
    # the new system comes after the six, by its order
    assert text.index("<td>A3T</td>") < text.index("<td>Dummy system</td>")


def test_registry_refuses_disagreeing_or_untyped_declarations(extra_recipes):
    path = extra_recipes("dummy_system", DUMMY_RECIPE)
    extra_recipes("dummy_other", DUMMY_RECIPE.replace('order=7', 'order=8'))
    with pytest.raises(ValueError, match="every recipe of a system must declare the same System"):
        registry()
    path.unlink()
    sys.modules.pop("deepscope.recipes.dummy_system", None)
    extra_recipes("dummy_system", DUMMY_RECIPE.replace('System("dummy", "Dummy system", order=7)',
                                                       '"Dummy system"'))
    with pytest.raises(TypeError, match="dummy_system.SYSTEM is a str"):
        registry()


def test_the_six_systems_in_the_reports_order():
    reg = registry()
    assert [s.name for s in reg.systems.values()] == [
        "MINE", "Spectral bias", "Neural feature alignment", "Lazy vs hasty", "CrossSplit", "A3T"]
    assert reg.members["mine"] == ("mi-staircase", "mine-gan", "mine-gaussians", "mine-ib")
    assert all(len(steps) == 1 for steps in reg.plans.values()) and set(reg.plans) == set(reg.systems)


def test_declarations_check_their_values():
    with pytest.raises(ValueError, match="key == 'Mine'"):
        System("Mine", "MINE", order=1)
    with pytest.raises(ValueError, match="quick == '--steps 3'"):
        Reproduce(quick="--steps 3")
    with pytest.raises(ValueError, match="scale == 'huge'"):
        Reproduce().options("huge")
