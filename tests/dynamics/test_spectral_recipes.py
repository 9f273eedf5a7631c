"""The spectral-bias recipes at their quick budget: the paper's claims (loosely), resume, errors."""

import json
from dataclasses import fields

import pytest
import torch

from deepscope.runner import execute_recipe
from tests.killing import KillAt, Killed


def _cfg(module, out, **kw):
    return module.Config(quick=True, progress=False, threads=1, device="cpu", out=out, **kw)


@pytest.fixture(scope="module")
def sinusoids_full(tmp_path_factory):
    from deepscope.recipes import spectral_sinusoids as rec

    out = tmp_path_factory.mktemp("sin") / "full"
    result = execute_recipe("spectral-sinusoids", _cfg(rec, out), quiet=True)
    return out, result


def test_sinusoids_low_frequencies_first_in_both_cases(sinusoids_full):
    out, result = sinusoids_full
    stored = json.loads((out / "result.json").read_text())
    assert stored["freqs"] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert stored["settings"]["steps"] == 600 and "summary" in stored
    for case in ("equal", "increasing"):  # increasing: k = 50 is ten times louder than k = 5
        steps = stored["learning_step"][case]
        assert steps[0] is not None and steps[-1] is None  # k = 5 learned in 600 steps, k = 50 not
        mag = stored["final_normalised_magnitude"][case]
        assert mag[0] > 0.5 > 0.1 > max(mag[5:])
        assert stored["spearman"][case]["rho"] > 0
        assert stored["learning_step_per_seed"][case] == [steps]  # one seed
    for name in ("heatmaps", "heatmap_equal", "heatmap_increasing", "learning_steps"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(20, 601, 20))
    assert len(recs[0]["spectrum_equal_s0"]) == 10
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    assert set(blob["objects"]["models"]) == {"equal_s0", "increasing_s0"}


def test_sinusoids_killed_run_resumes_to_identical_numbers(sinusoids_full, tmp_path):
    from deepscope.recipes import spectral_sinusoids as rec

    full_dir, full = sinusoids_full
    cfg = _cfg(rec, tmp_path / "b").with_preset()
    config = {"recipe": "spectral-sinusoids", **{f.name: getattr(cfg, f.name) for f in fields(cfg)}}
    with pytest.raises(Killed):
        # dies right after logging step 260; the last checkpoint is step 200
        rec.run(cfg, KillAt(cfg.out, config=config, seed=0, device="cpu", progress=False, kill_at=260))
    assert max(json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").open()) == 260
    resumed = execute_recipe("spectral-sinusoids", cfg, quiet=True)
    a = [json.loads(x) for x in (full_dir / "metrics.jsonl").open()]
    b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").open()]
    strip = lambda r: {k: v for k, v in r.items() if k != "time"}  # noqa: E731
    assert [strip(r) for r in a] == [strip(r) for r in b]
    for key in ("final_normalised_magnitude", "final_loss", "learning_step"):
        assert resumed[key] == full[key]


def test_sinusoids_rejects_bad_settings_before_writing(tmp_path, monkeypatch, capsys):
    from deepscope.cli import main
    from deepscope.recipes import spectral_sinusoids as rec

    with pytest.raises(ValueError, match=r"freqs == \(5, 150\), must be integers in 1..99"):
        rec.Config(freqs=(5, 150))
    with pytest.raises(ValueError, match="steps == 250, must be a multiple of record_every == 100"):
        rec.Config(freqs=(5,), steps=250)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "spectral-sinusoids", "--steps", "-5"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "deepscope run spectral-sinusoids: steps == -5, must be >= 1"
    assert list(tmp_path.iterdir()) == []


def test_robustness_high_frequencies_collapse_first(tmp_path):
    from deepscope.recipes import spectral_robustness as rec

    # the quick budget with frequencies it can learn: at k = 5..50 only k = 5 is learned
    result = execute_recipe("spectral-robustness", _cfg(rec, tmp_path, freqs=(2, 4, 6, 8, 10)),
                            quiet=True)
    assert result["eps"][0] == 0.0 and len(result["eps"]) == 11
    assert result["normalised_magnitude"][0] == pytest.approx([1.0] * 5)
    collapse = result["collapse_eps"]
    assert collapse[0] is None and collapse[-1] is not None  # k = 2 survives eps = 5, k = 10 not
    assert result["spearman"]["rho"] < -0.5
    for name in ("heatmap_eps", "collapse_eps"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000


def test_robustness_from_run_reads_the_sinusoid_network_by_name(sinusoids_full, tmp_path):
    from deepscope.recipes import spectral_robustness as rec

    src_dir, src = sinusoids_full  # a quick run: its config.json holds width 64, depth 4
    res = execute_recipe("spectral-robustness", _cfg(rec, tmp_path / "r", from_run=src_dir),
                         quiet=True)
    assert res["trained_normalised_magnitude"] == src["final_normalised_magnitude"]["equal"]
    assert res["settings"]["steps"] == 600 and res["settings"]["from_run"] == str(src_dir)
    with pytest.raises(ValueError, match="from_run == '.*nothing', must be a spectral-sinusoids run"):
        rec.Config(from_run=tmp_path / "nothing")
    with pytest.raises(ValueError, match=r"differs in \{'width': 64, 'depth': 4\}"):
        rec.Config(from_run=src_dir)  # the defaults: width 256, depth 6
    old = tmp_path / "old"  # a run from before the networks were named
    old.mkdir()
    for name in ("checkpoint.pt", "config.json", "result.json"):
        (old / name).write_bytes((src_dir / name).read_bytes())
    (old / "metrics.jsonl").write_text('{"step": 20, "spectrum_equal": [[0.1]]}\n')
    with pytest.raises(ValueError, match="this one predates the names"):
        rec.Config(from_run=old, quick=True)


def test_manifold_the_petals_help_the_high_frequencies(tmp_path):
    from deepscope.recipes import spectral_manifold as rec

    execute_recipe("spectral-manifold", _cfg(rec, tmp_path), quiet=True)
    stored = json.loads((tmp_path / "result.json").read_text())
    final = stored["final_normalised_magnitude"]
    assert set(final) == {"L0", "L8"} and len(final["L8"]) == 4
    assert stored["upper_half_mean"]["L8"] > stored["upper_half_mean"]["L0"]
    assert final["L8"][1] > final["L0"][1] + 0.2  # k = 10: learned on the flower, not the circle
    for name in ("heatmaps", "magnitude_per_L"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    with pytest.raises(ValueError, match=r"Ls == \(4.0, 4.0\), must be a non-empty tuple of distinct"):
        rec.Config(Ls=(4.0, 4.0))


def test_noise_smooth_noise_is_fitted_first_and_hurts(tmp_path):
    from deepscope.recipes import spectral_noise as rec

    result = execute_recipe("spectral-noise", _cfg(rec, tmp_path), quiet=True)
    low, high = result["low_freq"], result["high_freq"]
    assert low["final_noise_fit"] > 0.5 > 0.1 > high["final_noise_fit"]
    assert low["step_noise_fit_above_half"] is not None and high["step_noise_fit_above_half"] is None
    assert high["final_val_acc"] > low["final_val_acc"] + 0.05
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").open()]
    assert [r["step"] for r in recs] == [20, 40, 60, 80, 100]
    assert len(recs[-1]["spectrum_high_freq"]) == 5 and "loss_clean" in recs[-1]
    for name in ("validation", "eigenbasis_spectra", "eigenbasis_spectra_early"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="band == 150, must be <= n_train / 2 == 100"):
        rec.Config(band=150, n_train=200)
    with pytest.raises(ValueError, match="n_train == 1500, must be <= 1437 with dataset 'digits'"):
        rec.Config(n_train=1500)
