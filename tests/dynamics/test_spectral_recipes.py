"""End-to-end runs of the spectral-bias recipes at their quick budget, and a killed-run resume."""

import json
from dataclasses import fields, replace

import pytest

from deepscope.runner import execute_recipe
from deepscope.train import Run


def _cfg(module, out, **kw):
    return module.Config(quick=True, progress=False, threads=1, device="cpu", out=out, **kw)


@pytest.fixture(scope="module")
def sinusoids_full(tmp_path_factory):
    from deepscope.recipes import spectral_sinusoids as rec

    out = tmp_path_factory.mktemp("sin") / "full"
    result = execute_recipe("spectral-sinusoids", _cfg(rec, out), quiet=True)
    return out, result


def test_sinusoids_writes_result_and_figures(sinusoids_full):
    out, result = sinusoids_full
    stored = json.loads((out / "result.json").read_text())
    assert stored["freqs"] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    for case in ("equal", "increasing"):
        assert len(stored["learning_step"][case]) == 10
        assert len(stored["learning_step_per_seed"][case]) == 1
        assert set(stored["spearman"][case]) == {"rho", "p"}
        assert len(stored["final_normalised_magnitude"][case]) == 10
    assert stored["settings"]["steps"] == 600 and "summary" in stored
    for name in ("heatmaps", "heatmap_equal", "heatmap_increasing", "learning_steps"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(20, 601, 20))
    assert len(recs[0]["spectrum_equal"]) == 1 and len(recs[0]["spectrum_equal"][0]) == 10


class _Killed(Exception):
    pass


class _KilledRun(Run):
    """A Run whose process 'dies' right after logging step 260 (last checkpoint: step 200)."""

    def log(self, step, **metrics):
        super().log(step, **metrics)
        if step == 260:
            raise _Killed


def test_sinusoids_killed_run_resumes_to_identical_numbers(sinusoids_full, tmp_path):
    from deepscope.recipes import spectral_sinusoids as rec

    full_dir, full = sinusoids_full
    cfg = _cfg(rec, tmp_path / "b")
    config = {"recipe": "spectral-sinusoids", **{f.name: getattr(cfg, f.name) for f in fields(cfg)}}
    with pytest.raises(_Killed):
        rec.run(cfg, _KilledRun(cfg.out, config=config, seed=0, device="cpu", progress=False))
    assert max(json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").open()) == 260
    resumed = execute_recipe("spectral-sinusoids", cfg, quiet=True)
    a = [json.loads(x) for x in (full_dir / "metrics.jsonl").open()]
    b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").open()]
    strip = lambda r: {k: v for k, v in r.items() if k != "time"}  # noqa: E731
    assert [strip(r) for r in a] == [strip(r) for r in b]
    assert resumed["final_normalised_magnitude"] == full["final_normalised_magnitude"]


def test_sinusoids_rejects_bad_settings(tmp_path):
    from deepscope.recipes import spectral_sinusoids as rec

    cfg = rec.Config(freqs=(5, 150), progress=False, out=tmp_path)
    with pytest.raises(ValueError, match=r"freqs == \(5, 150\): every frequency must be in 1..99"):
        rec.run(cfg, Run(tmp_path, config={}, progress=False))
    cfg = replace(cfg, freqs=(5,), steps=250)
    with pytest.raises(ValueError, match="steps == 250 is not a multiple of record_every == 100"):
        rec.run(cfg, Run(tmp_path, config={}, progress=False))


def test_robustness_end_to_end(tmp_path):
    from deepscope.recipes import spectral_robustness as rec

    result = execute_recipe("spectral-robustness", _cfg(rec, tmp_path), quiet=True)
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored["eps"][0] == 0.0 and len(stored["eps"]) == 11
    assert len(stored["collapse_eps"]) == 10 and set(stored["spearman"]) == {"rho", "p"}
    assert stored["normalised_magnitude"][0] == pytest.approx([1.0] * 10)
    assert result["settings"]["n_directions"] == 5
    for name in ("heatmap_eps", "collapse_eps"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000


def test_manifold_end_to_end(tmp_path):
    from deepscope.recipes import spectral_manifold as rec

    execute_recipe("spectral-manifold", _cfg(rec, tmp_path), quiet=True)
    stored = json.loads((tmp_path / "result.json").read_text())
    assert set(stored["final_normalised_magnitude"]) == {"L0", "L8"}
    assert len(stored["final_normalised_magnitude"]["L8"]) == 4
    assert set(stored["spearman_L_vs_upper_half_mean"]) == {"rho", "p"}
    for name in ("heatmaps", "magnitude_per_L"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000


def test_robustness_from_run_checks_the_run(tmp_path):
    from deepscope.recipes import spectral_robustness as rec

    cfg = _cfg(rec, tmp_path / "r", from_run=tmp_path / "nothing")
    with pytest.raises(ValueError, match="from_run == '.*nothing' holds no checkpoint.pt"):
        execute_recipe("spectral-robustness", cfg, quiet=True)


def test_noise_end_to_end(tmp_path):
    from deepscope.recipes import spectral_noise as rec

    result = execute_recipe("spectral-noise", _cfg(rec, tmp_path), quiet=True)
    stored = json.loads((tmp_path / "result.json").read_text())
    for case in ("clean", "low_freq", "high_freq"):
        assert 0.0 <= stored[case]["final_val_acc"] <= 1.0
    assert "final_noise_fit" in stored["low_freq"] and "final_noise_fit" not in stored["clean"]
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").open()]
    assert [r["step"] for r in recs] == [20, 40, 60, 80, 100]
    assert len(recs[-1]["spectrum_high_freq"]) == 5
    assert result["settings"]["n_train"] == 200
    for name in ("validation", "eigenbasis_spectra", "eigenbasis_spectra_early"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="band == 150 with n_train == 200: need 2 \\* band <= n_train"):
        rec.run(replace(rec.Config(band=150, n_train=200), out=tmp_path / "x"),
                Run(tmp_path / "x", config={}, progress=False))
