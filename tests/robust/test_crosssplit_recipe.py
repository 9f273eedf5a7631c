"""The crosssplit recipe: a tiny end-to-end run, kill-and-resume, the CLI's one-line errors."""

import json
from dataclasses import replace

import pytest

from deepscope.recipes import crosssplit as rec
from deepscope.runner import execute_recipe
from deepscope.train import Run
from tests.killing import Killed


def _cfg(out, **kw):
    return rec.Config(**{"quick": True, "progress": False, "threads": 1, "device": "cpu",
                         "out": out, **kw})


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cs") / "run"
    return out, execute_recipe("crosssplit", _cfg(out), quiet=True)


def test_end_to_end_writes_the_table_figures_models_and_sub_runs(quick_run):
    out, result = quick_run
    stored = json.loads((out / "result.json").read_text())
    assert stored["system"] == "CrossSplit" and stored["settings"]["epochs"] == 3
    assert stored["settings"]["form"] == "equal-steps+lambda_u=1"
    assert stored["settings"]["form_options"] == {"unlabeled_weight": 1.0, "epoch_factor": 2}
    methods = ["crosssplit", "ce", "ce-es", "coteaching", "dividemix", "cleanlab"]
    assert set(stored["table"]) == set(methods)
    for m in methods:
        row = stored["table"][m]["sym60"]
        assert row["last"]["n"] == 1 and row["seeds"] == [0]
        assert row["best"]["mean"] >= row["last"]["mean"]  # best is the max over epochs
        sub = read(out / m / "sym60" / "seed0")
        # the default MNIST-1D form trains CrossSplit at the optimiser steps of cross-entropy
        assert len(sub["test_acc_curve"]) == (6 if m == "crosssplit" else 3) and sub["noise"] == "sym60"
        assert list((out / m / "sym60" / "seed0").glob("model*.pt"))
    assert "selected" in stored["table"]["ce-es"]["sym60"]
    # every method saw the same noisy labels: one realised rate, DivideMix's convention 0.6 * 9/10
    rates = stored["realised_noise_rate_per_seed"]["sym60"]
    assert len({v[0] for v in rates.values()}) == 1 and abs(rates["ce"][0] - 0.54) < 0.05
    la = stored["label_accuracy"]["sym60"]["crosssplit"]
    assert la["given_labels"] == pytest.approx(100 * (1 - rates["ce"][0]), abs=0.01)
    assert len(la["curve"]) == 6  # twice the epochs: the default form
    for name in ("test_accuracy", "label_accuracy"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert stored["verdict"]["verdict"] == "not run"  # sym40/80 were not part of --quick
    assert "CrossSplit" in result["summary"]
    import deepscope

    nets = deepscope.load(out / "crosssplit" / "sym60" / "seed0")
    assert set(nets) == {"model-net_a", "model-net_b"}


def read(path):
    return json.loads((path / "result.json").read_text())


def test_rerun_skips_finished_sub_runs_and_gathers_them(quick_run, tmp_path):
    out, result = quick_run
    # a second invocation with another seed adds seed 1 and keeps seed 0 (not retrained)
    before = (out / "ce" / "sym60" / "seed0" / "result.json").stat().st_mtime_ns
    part = execute_recipe("crosssplit", _cfg(out, seed=1, methods=("ce",)), quiet=True)
    assert part["table"]["ce"]["sym60"]["seeds"] == [1] and set(part["table"]) == {"ce"}
    # the whole grid again: every finished sub-run is read back, none retrained
    whole = {**rec.Config.QUICK, "quick": False, "seeds": 2, "methods": ("crosssplit", "ce")}
    both = execute_recipe("crosssplit", _cfg(out, **whole), quiet=True)
    assert (out / "ce" / "sym60" / "seed0" / "result.json").stat().st_mtime_ns == before
    assert both["table"]["ce"]["sym60"]["seeds"] == [0, 1]
    assert both["table"]["ce"]["sym60"]["last"]["n"] == 2
    assert both["table"]["ce"]["sym60"]["last"]["values"][0] == \
        result["table"]["ce"]["sym60"]["last"]["values"][0]
    assert both["table"]["crosssplit"]["sym60"]["last"]["n"] == 2


def test_killed_run_resumes_to_identical_numbers(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path / "a", methods=("crosssplit", "ce"), n=400)
    full = execute_recipe("crosssplit", cfg, quiet=True)
    log = Run.log

    def dying_log(self, step, **metrics):
        log(self, step, **metrics)
        if self.dir.parts[-3:] == ("crosssplit", "sym60", "seed0") and step == 2:
            raise Killed

    monkeypatch.setattr(Run, "log", dying_log)
    cfg_b = replace(cfg, out=tmp_path / "b")
    with pytest.raises(Killed):
        execute_recipe("crosssplit", cfg_b, quiet=True)
    assert not (tmp_path / "b" / "crosssplit" / "sym60" / "seed0" / "result.json").exists()
    monkeypatch.setattr(Run, "log", log)
    resumed = execute_recipe("crosssplit", cfg_b, quiet=True)
    def numbers(table):  # wall times differ, nothing else may
        return {m: {nz: {k: v for k, v in row.items() if k != "seconds_per_run"}
                    for nz, row in per.items()} for m, per in table.items()}

    assert numbers(resumed["table"]) == numbers(full["table"])
    assert resumed["label_accuracy"] == full["label_accuracy"]
    strip = lambda r: {k: v for k, v in r.items() if k != "time"}  # noqa: E731
    for d in ("crosssplit", "ce"):
        a, b = ((tmp_path / r / d / "sym60" / "seed0" / "metrics.jsonl").read_text().splitlines()
                for r in ("a", "b"))
        assert [strip(json.loads(x)) for x in a] == [strip(json.loads(x)) for x in b]


def test_cli_bad_option_is_one_line_and_writes_nothing(tmp_path, capsys):
    from deepscope.cli import main

    out = tmp_path / "never"
    assert main(["run", "crosssplit", "--epochs", "-1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epochs == -1, must be >= 0" in err[0]
    assert not out.exists()
    assert main(["run", "crosssplit", "--noise", "sym400", "--out", str(out)]) == 2
    assert "noise == 'sym400'" in capsys.readouterr().err
    assert main(["run", "crosssplit", "--dataset", "cifar10", "--out", str(out)]) == 2
    assert "data_root == None, must be an existing folder" in capsys.readouterr().err
    assert not out.exists()


def test_verdict_from_numbers():
    def row(v):
        return {"last": {"mean": v, "n": 3}}

    table = {"crosssplit": {"sym40": row(95.0), "sym60": row(93.5), "sym80": row(71.0)},
             "ce": {"sym40": row(85.0), "sym60": row(72.0), "sym80": row(45.0)},
             "dividemix": {"sym60": row(90.0), "sym80": row(75.0)}}
    v = rec.verdict({"table": table, "settings": {"dataset": "mnist1d"}})
    assert v["verdict"] == "partly" and "sym80 dividemix 75.0" in v["measured"]
    table["dividemix"]["sym80"] = row(70.0)
    assert rec.verdict({"table": table, "settings": {"dataset": "mnist1d"}})["verdict"] == "reproduced"
    # the released loaders' variant is reported beside the paper's method, never judged for it
    table["crosssplit-all"] = {"sym60": row(97.2), "sym80": row(79.2)}
    v = rec.verdict({"table": table, "settings": {"dataset": "mnist1d"}})
    assert v["verdict"] == "reproduced"
    assert v["measured"].endswith("(the released loaders): sym60 97.2 (n=3), sym80 79.2 (n=3)")


def test_one_factor_study_writes_its_table_with_the_base_and_flip_rate(tmp_path):
    out = tmp_path / "study"
    rows = ("base", "lambda_u=0", "equal-steps", "equal-steps+lambda_u=0", "labels-all", "ce-es")
    result = execute_recipe("crosssplit", _cfg(out, study="one-factor", rows=rows), quiet=True)
    stored = json.loads((out / "result.json").read_text())
    assert set(stored["study"]) == set(rows)
    cell = stored["study"]["lambda_u=0"]["sym60"]
    assert {"mean", "std", "n"} <= set(cell["last"]) and cell["last"]["n"] == 1
    assert cell["minus_base"]["n"] == 1 and "minus_base" not in stored["study"]["base"]["sym60"]
    # equal steps: twice the epochs
    sub = read(out / "study" / "equal-steps" / "sym60" / "seed0")
    assert len(sub["test_acc_curve"]) == 2 * stored["settings"]["epochs"]
    assert abs(stored["realised_noise_rate"]["sym60"] - 0.54) < 0.05
    assert "flipped" in result["summary"] and "base" in stored["study_base"]
    # a combined row: both changes (twice the epochs, and λ_u = 0 in its recorded config)
    sub = read(out / "study" / "equal-steps+lambda_u=0" / "sym60" / "seed0")
    assert len(sub["test_acc_curve"]) == 2 * stored["settings"]["epochs"]
    # 10% of the 800 training rows held out with their noisy labels; every row is scored on them
    assert stored["validation_rows"] == 80
    for row in rows:
        v = stored["study"][row]["sym60"]["noisy_val"]["mean"]
        assert 0 <= v <= 100 and abs(0.8 * v - round(0.8 * v)) < 0.01  # k of 80 rows, one seed
    assert "selected" in stored["study"]["ce-es"]["sym60"]
    # the choice is among the paper's forms only (never labels-all, never a baseline row)
    sel = stored["selection"]["sym60"]
    assert set(sel["grid_noisy_val"]) == {"base", "lambda_u=0", "equal-steps", "equal-steps+lambda_u=0"}
    assert sel["chosen"] == max(sel["grid_noisy_val"], key=sel["grid_noisy_val"].get)
    assert sel["best_baseline"]["row"] == "ce-es" and "chosen on noisy validation" in result["summary"]


def test_study_rows_combine_and_reject_bad_names():
    what, kw, factor, method = rec.study_row("equal-steps+lambda_u=1+per-batch-targets")
    assert factor == 2 and method == "crosssplit"
    assert kw == {"unlabeled_weight": 1.0, "refresh": "batch", "peer_views": 2}
    assert rec.is_candidate("equal-steps+lambda_u=1") and not rec.is_candidate("labels-all")
    assert not rec.is_candidate("lambda_u=1+labels-all") and not rec.is_candidate("dividemix")
    for bad, msg in [("lambda_u=2", "rows among"), ("ce+lambda_u=1", "CrossSplit rows only"),
                     ("lambda_u=0+lambda_u=1", "do not both set unlabeled_weight")]:
        with pytest.raises(ValueError, match=msg):
            rec.study_row(bad)
    with pytest.raises(ValueError, match="validation"):
        rec.Config(validation=0.5)


def test_study_verdict_judges_the_chosen_form_against_the_baseline_rows():
    def cell(last, minus=None):
        c = {"last": {"mean": last, "std": 1.0, "n": 3}}
        return c | ({"minus_base": {"mean": minus, "std": 0.5, "n": 3}} if minus is not None else {})
    study = {"base": {s: cell(v) for s, v in (("sym40", 95.0), ("sym60", 85.0), ("sym80", 50.0))},
             "equal-steps": {s: cell(v, d) for s, v, d in (("sym40", 96.0, 1.0), ("sym60", 94.0, 9.0),
                                                           ("sym80", 71.0, 21.0))},
             "lambda_u=0": {s: cell(v, d) for s, v, d in (("sym40", 95.0, 0.0), ("sym60", 88.0, 3.0),
                                                          ("sym80", 60.0, 10.0))},
             "ce": {s: cell(v) for s, v in (("sym40", 94.0), ("sym60", 90.0), ("sym80", 65.0))}}
    sel = {s: {"chosen": "equal-steps", "test": study["equal-steps"][s]["last"],
               "best_baseline": {"row": "ce", "last": study["ce"][s]["last"]}}
           for s in ("sym40", "sym60", "sym80")}
    result = {"settings": {"dataset": "mnist1d"}, "study": study, "selection": sel}
    v = rec.verdict(result)
    assert v["verdict"] == "reproduced" and "largest one-factor gain" in v["measured"]
    assert "equal-steps (+9.0 or more" in v["measured"]
    sel["sym80"]["best_baseline"]["last"] = {"mean": 72.0, "std": 1.0, "n": 3}
    assert rec.verdict(result)["verdict"] == "partly"  # above cross-entropy, not every baseline
    del sel["sym40"]
    assert rec.verdict(result)["verdict"] == "not run"


def test_method_table_states_the_realised_flip_rate(quick_run):
    _, result = quick_run
    assert "labels flipped (realised)" in result["summary"]
    stored = result["table"]["ce"]["sym60"]
    assert abs(stored["realised_rate"] - 0.54) < 0.05


def test_the_method_tables_crosssplit_form_is_a_study_row(tmp_path):
    out = tmp_path / "form"
    execute_recipe("crosssplit", _cfg(out, methods=("crosssplit", "ce"),
                                      form="equal-steps+lambda_u=0"), quiet=True)
    stored = json.loads((out / "result.json").read_text())
    assert stored["settings"]["form"] == "equal-steps+lambda_u=0"
    epochs = stored["settings"]["epochs"]
    assert len(read(out / "crosssplit" / "sym60" / "seed0")["test_acc_curve"]) == 2 * epochs
    assert len(read(out / "ce" / "sym60" / "seed0")["test_acc_curve"]) == epochs
    for bad, msg in [("labels-all", "a form of the paper's method"), ("lambda_u=2", "rows among")]:
        with pytest.raises(ValueError, match=msg):
            rec.Config(form=bad)
