"""CrossSplit's one-factor study: named rows that each change one thing of a base form, and
the choice among the paper's forms by accuracy on held-out rows with their noisy labels.

A row is ``(what it changes, train_crosssplit keywords, epoch factor, method)``; rows join
with '+' (``'equal-steps+lambda_u=1'``: both changes). :func:`row_training` turns a row into
what :func:`~deepscope.robust.train_noisy` trains, :func:`summarise_study` turns a grid of
rows x noise settings x seeds into the table (paired differences to the base, noisy-validation
accuracy) and :func:`choose` picks a form per noise setting. The recipe
``deepscope run crosssplit --study one-factor`` runs it (docs/crosssplit.md).
"""

from __future__ import annotations

from deepscope.train.config import require

#: The one-factor study's rows: each changes one thing of the base -- the reduced MNIST-1D form
#: of CrossSplit: disjoint halves, label correction, λ_u = the recipe's ``--unlabeled-weight``
#: (30), no MixUp, one view, per-epoch eval-mode targets, no contrastive term, the baselines'
#: epochs. Row -> (what it changes, train_crosssplit keywords, epoch factor, method).
STUDY_ROWS: dict[str, tuple[str, dict, int, str]] = {
    "base": ("the base: the reduced disjoint form, λ_u = 30, the baselines' epochs", {}, 1,
             "crosssplit"),
    "lambda_u=0": ("λ_u = 0 (unlabeled term off; the unlabeled rows still pass the prior term)",
                   {"unlabeled_weight": 0.0}, 1, "crosssplit"),
    "lambda_u=1": ("λ_u = 1", {"unlabeled_weight": 1.0}, 1, "crosssplit"),
    "lambda_u=3": ("λ_u = 3", {"unlabeled_weight": 3.0}, 1, "crosssplit"),
    "lambda_u=10": ("λ_u = 10", {"unlabeled_weight": 10.0}, 1, "crosssplit"),
    "lambda_u=30": ("λ_u = 30", {"unlabeled_weight": 30.0}, 1, "crosssplit"),
    "mixup": ("MixUp over labelled and unlabeled rows together (Beta(4, 4))", {"mixup": True}, 1,
              "crosssplit"),
    "per-batch-targets": ("targets per batch: own targets from 2 weak views in train mode, the "
                          "peer's from 2 weak views in eval mode (as released)",
                          {"refresh": "batch", "peer_views": 2}, 1, "crosssplit"),
    "equal-steps": ("twice the epochs (warm-up, λ_u ramp, γ schedule, lr schedule stretched): "
                    "the optimiser steps of cross-entropy", {}, 2, "crosssplit"),
    "labels-all": ("each network labelled on all the data; unlabeled pool (the peer's half) and "
                   "peer unchanged", {"labelled": "all"}, 1, "crosssplit"),
    "contrastive": ("the contrastive term (weight 0.025, τ 0.05, as released)",
                    {"contrastive_weight": 0.025}, 1, "crosssplit"),
    "no-ssl": ("no semi-supervised part (reference row)", {"semi_supervised": False}, 1,
               "crosssplit"),
    "released-loss": ("the released loss copied unchanged (several factors: MixUp, 2 strong views, "
                      "per-batch targets, contrastive term, warm-up batch 2x)",
                      {"refresh": "batch", "peer_views": 2, "mixup": True, "train_views": 2,
                       "contrastive_weight": 0.025, "released_warmup_batch": True}, 1,
                      "crosssplit"),
    "both-on-all-data": ("split='all', the released loaders (four factors at once; reference row)",
                         {"split": "all"}, 1, "crosssplit"),
    "ce": ("cross-entropy (reference row)", {}, 1, "ce"),
    "ce-es": ("cross-entropy, early stopping on its own noisy 10% validation split (baseline)",
              {}, 1, "ce-es"),
    "coteaching": ("co-teaching, forget rate = the realised noise rate (baseline)", {}, 1,
                   "coteaching"),
    "dividemix": ("DivideMix (baseline)", {}, 1, "dividemix"),
    "cleanlab": ("confident learning (baseline)", {}, 1, "cleanlab"),
}

#: Study rows that are not the paper's method (the labelled set or the semi-supervised part
#: changed): reported, never chosen. The choice is among the other CrossSplit rows.
NOT_THE_PAPERS_FORM = frozenset({"labels-all", "both-on-all-data", "no-ssl"})


def study_row(name: str) -> tuple[str, dict, int, str]:
    """A study row by name: one of :data:`STUDY_ROWS`, or CrossSplit rows joined by '+'
    ('equal-steps+lambda_u=1': both changes at once; the larger epoch factor)."""
    parts = name.split("+")
    for part in parts:
        require(part in STUDY_ROWS, "rows", name, f"rows among {list(STUDY_ROWS)}, or CrossSplit "
                "rows joined by '+' (e.g. equal-steps+lambda_u=1)")
    if len(parts) == 1:
        return STUDY_ROWS[name]
    what, overrides, factor = [], {}, 1
    for part in parts:
        desc, kw, f, method = STUDY_ROWS[part]
        require(method == "crosssplit", "rows", name,
                f"'+' joins CrossSplit rows only ({part!r} is {method!r})")
        for k, v in kw.items():
            require(overrides.get(k, v) == v, "rows", name, f"rows that do not both set {k}")
        what.append(desc)
        overrides.update(kw)
        factor = max(factor, f)
    return " + ".join(what), overrides, factor, "crosssplit"


def is_candidate(name: str) -> bool:
    """Whether a study row is a form of the paper's method (disjoint halves, with the
    semi-supervised part), i.e. one the noisy-validation choice may pick."""
    parts = name.split("+")
    return all(STUDY_ROWS[p][3] == "crosssplit" and p not in NOT_THE_PAPERS_FORM for p in parts)


def row_training(row: str, s: dict, options) -> tuple[str, object, int, dict]:
    """What a study row trains: ``(method, options, warm-up epochs, train_crosssplit keywords)``
    from the resolved settings ``s`` and the base ``TrainOptions`` (a row with epoch factor f
    stretches epochs, warm-up, λ_u ramp, γ schedule and learning-rate schedule by f)."""
    from deepscope.robust.crosssplit import equal_step_schedule

    _, overrides, factor, method = study_row(row)
    overrides = dict(overrides)
    opts, warmup = options, s["warmup_epochs"]
    if overrides.pop("released_warmup_batch", False):
        overrides["warmup_batch_size"] = 2 * s["batch_size"]
    if factor != 1:
        sched = equal_step_schedule(factor, epochs=s["epochs"], warmup_epochs=warmup)
        opts = options.replace(epochs=sched.pop("epochs"))
        warmup = sched.pop("warmup_epochs")
        overrides.update(sched)
    return method, opts, warmup, overrides


def choose(table: dict, noise: str) -> dict:
    """The noisy-validation choice at one noise setting: among the study's CrossSplit forms
    (:func:`is_candidate`), the row with the highest mean noisy-validation accuracy; its test
    accuracy beside the best baseline's (rows of other methods, cross-entropy included)."""
    grid = {r: c[noise]["noisy_val"]["mean"] for r, c in table.items()
            if noise in c and "noisy_val" in c[noise] and is_candidate(r)}
    if not grid:
        return {}
    chosen = max(grid, key=grid.get)
    shown = lambda c: c.get("selected", c["last"])  # noqa: E731  (ce-es: its selected epoch)
    baselines = {r: shown(c[noise])["mean"] for r, c in table.items()
                 if noise in c and study_row(r)[3] != "crosssplit"}
    out = {"grid_noisy_val": grid, "chosen": chosen, "test": table[chosen][noise]["last"]}
    if baselines:
        best = max(baselines, key=baselines.get)
        out["best_baseline"] = {"row": best, "last": shown(table[best][noise])}
    return out


def summarise_study(grid, s: dict, rows: list, noises: list, *, n_val: int = 0) -> dict:
    """The one-factor table: last/best test accuracy per row and noise (mean, std, n), the
    paired difference to the base on the same seeds, the realised flip rate, the noisy-
    validation accuracy and the form it chooses per noise setting."""
    from deepscope.train.stats import summarise as over

    last, best, selected = (grid.summary(k, scale=100, digits=2)
                            for k in ("last_test_acc", "best_test_acc", "selected_test_acc"))
    table: dict = {}
    realised: dict = {}
    for nz in noises:
        base = {r["seed"]: r["last_test_acc"] for r in grid.results(("study", "base", nz))}
        for row in rows:
            rs = grid.results(("study", row, nz))
            if not rs:
                continue
            realised[nz] = round(over(r["realised_rate"] for r in rs)["mean"], 5)
            cell = {"last": last[("study", row, nz)], "best": best[("study", row, nz)],
                    "seeds": [r["seed"] for r in rs], "changes": study_row(row)[0],
                    "seconds_per_run": round(over(r["seconds"] for r in rs)["mean"], 1)}
            if all("selected_test_acc" in r for r in rs):  # ce-es: its selected epoch
                cell["selected"] = selected[("study", row, nz)]
            if all("noisy_val_acc" in r for r in rs):
                v = over(100 * r["noisy_val_acc"] for r in rs)
                cell["noisy_val"] = {k: round(v[k], 2) for k in ("mean", "std")} | {"n": v["n"]}
            paired = [100 * (r["last_test_acc"] - base[r["seed"]]) for r in rs
                      if r["seed"] in base]
            if row != "base" and paired:
                d = over(paired)
                cell["minus_base"] = {"mean": round(d["mean"], 2), "std": round(d["std"], 2),
                                      "n": d["n"]}
            table.setdefault(row, {})[nz] = cell
    selection = {nz: c for nz in noises if (c := choose(table, nz))}
    header = f"{'row':<26}" + "".join(
        f"{nz + f' ({100 * realised.get(nz, 0):.1f}% flipped)':>36}" for nz in noises)
    lines = [f"one-factor study, base = the default disjoint form ({s['dataset']}, "
             f"{s.get('n', '')} samples, {s['epochs']} epochs, {n_val} training rows held out "
             "with noisy labels); last-epoch test accuracy (%) mean ± std (n), [minus base, "
             "paired], {noisy validation}", header]
    for row in rows:
        cells = []
        for nz in noises:
            c = table.get(row, {}).get(nz)
            if c is None:
                cells.append("-")
                continue
            txt = f"{c['last']['mean']:.1f} ± {c['last']['std']:.1f} ({c['last']['n']})"
            if "minus_base" in c:
                txt += f" [{c['minus_base']['mean']:+.1f}]"
            if "noisy_val" in c:
                txt += f" {{{c['noisy_val']['mean']:.1f}}}"
            cells.append(txt)
        lines.append(f"{row:<26}" + "".join(f"{c:>36}" for c in cells))
    for nz, c in selection.items():
        line = (f"{nz}: chosen on noisy validation: {c['chosen']} (test {c['test']['mean']:.1f} "
                f"± {c['test']['std']:.1f}, n={c['test']['n']})")
        if "best_baseline" in c:
            b = c["best_baseline"]
            line += f"; best baseline {b['row']} {b['last']['mean']:.1f} ± {b['last']['std']:.1f}"
        lines.append(line)
    return {"settings": s, "study": table, "study_base": STUDY_ROWS["base"][0],
            "validation_rows": n_val, "selection": selection,
            "realised_noise_rate": realised, "summary": "\n".join(lines)}
