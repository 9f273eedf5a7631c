from deepscope.cli import main
from deepscope.reproduce import PLAN, SYSTEMS, ReproduceArgs, reproduce


def test_plan_names_known_systems_and_recipes():
    from deepscope.runner import recipe_modules

    assert set(PLAN) <= set(SYSTEMS)
    for steps in PLAN.values():
        for recipe, scales in steps:
            assert recipe in recipe_modules() and set(scales) <= {"smoke", "quick", "paper"}


def test_reproduce_runs_resumes_and_isolates_failures(tmp_path, capsys):
    plan = {
        "mine": [("mine-gaussians", {"smoke": ["--quick", "--methods", "ksg"]})],
        "spectral": [("mine-gaussians", {"smoke": ["--quick", "--n", "-3"]})],  # rejected config
    }
    args = ReproduceArgs(systems=("mine", "spectral", "a3t"), out=tmp_path, threads=1, progress=False)
    out = reproduce(args, plan=plan)
    assert out["mine"]["status"] == "done"
    assert out["spectral"]["status"] == "failed" and "n == -3" in out["spectral"]["error"]
    assert out["a3t"]["status"] == "not available"
    assert (tmp_path / "mine" / "mine-gaussians" / "result.json").exists()
    assert "n == -3" in (tmp_path / "spectral" / "mine-gaussians" / "error.txt").read_text()
    again = reproduce(args, plan=plan)  # finished runs are skipped
    assert again["mine"]["status"] == "done" and "already done" in capsys.readouterr().out


def test_reproduce_cli_rejects_unknown_system(capsys):
    assert main(["reproduce", "nope"]) == 2
    assert "system == 'nope' is unknown" in capsys.readouterr().err


def test_every_smoke_and_quick_plan_entry_is_a_valid_config():
    from deepscope.runner import load_recipe, parse_config

    for steps in PLAN.values():
        for recipe, scales in steps:
            for scale in ("smoke", "quick"):
                parse_config(load_recipe(recipe).Config, scales[scale], prog=recipe).with_preset().validate()


def test_reproduce_cli_writes_the_report_and_the_markdown_verdicts(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["reproduce", "mine", "--scale", "smoke", "--out", str(out), "--threads", "1",
                 "--no-progress"]) == 0
    assert "verdicts.md" in capsys.readouterr().out
    assert (out / "report.html").exists()
    md = (out / "verdicts.md").read_text().splitlines()
    mine = next(ln for ln in md if ln.startswith("| MINE |"))
    assert "**not run**" not in mine and "**failed**" not in mine, mine
    assert sum("**not run**" in ln for ln in md) == 5
