from deepscope.cli import main
from deepscope.reproduce import ReproduceArgs, reproduce, reproduce_plan, systems

# What `deepscope reproduce` ran before its plan moved into the recipes: the registry must give
# exactly this (same systems, same order, same options, same --data-root rule).
EXPECTED_PLAN = {
    "mine": [("mine-gaussians", {
        "smoke": ["--quick"], "quick": ["--dims", "2", "20", "--rhos", "0.3", "0.5", "0.9"], "paper": []})],
    "spectral": [("spectral-sinusoids", {
        "smoke": ["--quick"], "quick": ["--steps", "10000", "--n-seeds", "1"], "paper": []})],
    "alignment": [("feature-alignment", {
        "smoke": ["--quick"],
        "quick": ["--settings", "digits-small-cnn", "--fractions", "0", "0.2", "0.5", "--seeds", "3"],
        "paper": ["--settings", "cifar10-vgg19", "cifar10-resnet18"]})],
    "lazy": [("lazy-vs-hasty", {
        "smoke": ["--quick"],
        "quick": ["--mode", "toy+mnist1d", "--toy-runs", "25", "--seeds", "2",
                  "--measures", "cscore", "noise", "spurious", "--epochs", "40",
                  "--cscore-folds", "2", "--cscore-seeds", "2", "--cscore-epochs", "10",
                  "--min-loss", "0.3", "--sign-probe", "64", "--kernel-probe", "16"],
        "paper": ["--mode", "cifar10"]})],
    "crosssplit": [("crosssplit", {
        "smoke": ["--quick"],
        "quick": ["--n", "10000", "--noise", "sym40", "sym60", "sym80", "--methods", "crosssplit", "ce",
                  "--seeds", "2", "--epochs", "40"],
        "paper": ["--dataset", "cifar10"]})],
    "a3t": [("a3t", {
        "smoke": ["--quick"],
        "quick": ["--datasets", "digits", "--seeds", "5", "--betas", "0.01", "0.1", "--layers", "2",
                  "--attacks", "fgsm", "pgd20", "pgd100", "--restarts", "2"],
        "paper": ["--datasets", "mnist", "--layers", "0"]})],
}


def test_the_registry_gives_the_six_systems_plans_in_order():
    assert systems() == {"mine": "MINE", "spectral": "Spectral bias", "alignment": "Neural feature alignment",
                         "lazy": "Lazy vs hasty", "crosssplit": "CrossSplit", "a3t": "A3T"}
    assert list(systems()) == list(EXPECTED_PLAN)
    assert reproduce_plan() == EXPECTED_PLAN


def test_paper_scale_passes_data_root_to_the_image_systems_only(tmp_path, monkeypatch):
    from deepscope import reproduce as mod

    seen = {}
    monkeypatch.setattr(mod, "_submit", lambda args, recipe, argv, out: seen.setdefault(recipe, argv))
    args = ReproduceArgs(systems=("all",), scale="paper", out=tmp_path, executor="local",
                         data_root=tmp_path / "data")
    assert all(o["status"] == "done" for o in reproduce(args).values())
    with_root = {r for r, argv in seen.items() if "--data-root" in argv}
    assert with_root == {"feature-alignment", "lazy-vs-hasty", "crosssplit", "a3t"}


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

    for steps in reproduce_plan().values():
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
