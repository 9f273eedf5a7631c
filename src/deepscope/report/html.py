"""``deepscope report RUNS...``: one self-contained HTML page over a set of run directories.

The page opens with the **verdict table**: one row per system, the paper's claim, our
measurement with its interval, and a verdict (reproduced / partly / not reproduced / not run)
computed from each run's ``result.json`` by its recipe's ``verdict(result)`` function (read from
the recipe registry, :mod:`deepscope.recipes`, like the systems and their order) as the code
stands when the page is written (so a run judged by an older rule is judged again; nothing is
written by hand). Then one section per system: each
top-level run with its summary, headline numbers, figures (embedded as base64 PNG, so the page
can be mailed or archived alone), the command that made it and its config; sub-runs (a run
directory inside another) are grouped under their parent. A run that crashed (``error.txt``)
shows the first line of its error; one stopped before its result is "incomplete".

When opened in a browser, a small script checks that every figure decoded and writes the
count into the page (``#figure-check``); the browser test reads it back.
"""

from __future__ import annotations

import base64
import html
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from deepscope.recipes import load_recipe, registry

__all__ = ["ReportArgs", "system_names", "collect_runs", "write_report", "verdict_markdown",
           "report_main"]


def system_names() -> tuple[str, ...]:
    """The systems' names in the order the page shows them, read from the recipes' ``SYSTEM``
    declarations (:func:`deepscope.recipes.registry`)."""
    return tuple(s.name for s in registry().systems.values())

VERDICTS = ("reproduced", "partly", "not reproduced", "no verdict", "not run", "failed")


@dataclass(frozen=True)
class ReportArgs:
    """Write one HTML page (verdicts, tables, figures) over every run found below RUNS."""

    runs: Annotated[tuple[Path, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUNS")]
    """Run directories, or folders to search for them (those with config.json)."""
    out: Path | None = None
    """Output HTML file (default: report.html in the first RUNS folder)."""
    markdown: Path | None = None
    """Also write the verdict table as Markdown to this file (for a README or a paper's notes)."""


def _read_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"_unreadable": f"{p.name}: {e}"}


def collect_runs(roots) -> list[dict]:
    """Find run directories below ``roots`` (a path or paths) and read their files.

    Each entry has ``dir``, ``root``, ``config``, ``result`` (or None), ``status``
    ('done', 'failed', 'incomplete'), ``figures``, ``error`` (first line) and ``parent``
    (the directory of the enclosing run, or None for a top-level run).
    """
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    runs, seen = [], set()
    for root in roots:
        for cfg in sorted(root.rglob("config.json")):
            d = cfg.parent.resolve()
            if d in seen:
                continue
            seen.add(d)
            entry = {"dir": cfg.parent, "root": root, "config": _read_json(cfg), "result": None,
                     "status": "incomplete", "error": None}
            if (cfg.parent / "result.json").exists():
                entry["result"] = _refresh_verdict(_read_json(cfg.parent / "result.json"))
                entry["status"] = "done"
            elif (cfg.parent / "error.txt").exists():
                entry["status"] = "failed"
                entry["error"] = _error_line((cfg.parent / "error.txt").read_text())
            figs = cfg.parent / "figures"
            entry["figures"] = sorted(figs.glob("*.png")) if figs.exists() else []
            runs.append(entry)
    dirs = {r["dir"].resolve() for r in runs}
    for r in runs:
        r["parent"] = next((p for p in r["dir"].resolve().parents if p in dirs), None)
    return runs


def _refresh_verdict(result):
    """The verdict the recipe's current ``verdict(result)`` computes from the stored numbers.

    A run keeps its numbers; the rule that judges them may improve after it ran (a new check, a
    verdict for a recipe that had none). The page shows today's rule applied to the stored
    result; when the recipe is unknown here or its rule fails on an old result, the stored verdict
    (if any) stays, marked as such.
    """
    if not isinstance(result, dict) or not isinstance(result.get("recipe"), str):
        return result
    try:
        rule = getattr(load_recipe(result["recipe"]), "verdict", None)
        if callable(rule):
            v = rule(result)
            result["verdict"] = {"system": result.get("system"), **v}
    except Exception as e:  # an old result without a key the rule reads
        if isinstance(result.get("verdict"), dict):
            result["verdict"]["note"] = f"stored verdict (today's rule failed: {type(e).__name__}: {e})"
    return result


def _error_line(text: str) -> str:
    """The exception line of a traceback (its last non-empty line)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(empty error.txt)"


def fmt(v) -> str:
    """A number as the page shows it: 4 significant digits; non-finite values by name."""
    if isinstance(v, bool) or v is None:
        return "nan" if v is None else str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4g}"
    return str(v)


def _scalars(d: dict) -> list[tuple[str, object]]:
    skip = {"summary", "verdict", "paper", "command", "run_dir", "recipe", "system"}
    return [(k, v) for k, v in d.items()
            if (isinstance(v, (int, float, str)) or v is None) and k not in skip]


def _table(rows: list[tuple[str, object]]) -> str:
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(fmt(v))}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{cells}</table>"


def _e(s) -> str:
    return html.escape(str(s))


def _system_of(run: dict) -> str | None:
    if (run["result"] or {}).get("system"):
        return str(run["result"]["system"])
    v = (run["result"] or {}).get("verdict")
    if isinstance(v, dict) and v.get("system"):
        return str(v["system"])
    cfg = run["config"] if isinstance(run["config"], dict) else {}
    return cfg.get("system")


def _verdict_rows(top: list[dict]) -> list[dict]:
    """One row per system: the best-informed top-level run (done beats failed beats incomplete)."""
    rows = []
    for system in system_names():
        mine = [r for r in top if _system_of(r) == system]
        done = [r for r in mine if r["status"] == "done"
                and isinstance((r["result"] or {}).get("verdict"), dict)]
        failed = [r for r in mine if r["status"] == "failed"]
        if done:
            for r in done:
                v = r["result"]["verdict"]
                rows.append({"system": system, "claim": v.get("claim", ""),
                             "measured": v.get("measured", ""), "verdict": v.get("verdict", "?"),
                             "run": r})
        elif any(r["status"] == "done" for r in mine):
            r = next(r for r in mine if r["status"] == "done")
            summary = (r["result"] or {}).get("summary")
            first = summary.strip().splitlines()[0] if isinstance(summary, str) and summary.strip() else ""
            rows.append({"system": system, "claim": (r["result"] or {}).get("paper", ""),
                         "measured": first, "verdict": "no verdict", "run": r})
        elif failed:
            r = failed[0]
            rows.append({"system": system, "claim": "", "measured": r["error"],
                         "verdict": "failed", "run": r})
        else:
            rows.append({"system": system, "claim": "", "measured": "", "verdict": "not run",
                         "run": None})
    return rows


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;font-size:13px;vertical-align:top}pre{background:#f6f6f6;padding:.6em;"
    "overflow-x:auto;font-size:12px}img{max-width:100%;border:1px solid #eee;margin:.3em 0}"
    ".failed,.v-failed,.v-not-reproduced{color:#b00}.incomplete,.v-partly{color:#a60}"
    ".v-reproduced{color:#070}.v-not-run{color:#777}details{margin:.3em 0}"
    "table.verdicts td:nth-child(4){font-weight:bold;white-space:nowrap}"
)

# Runs in the browser: counts the figures that decoded, for people and for the browser test.
_CHECK = (
    "<script>window.addEventListener('load',function(){var im=document.images,ok=0;"
    "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}"
    "document.getElementById('figure-check').textContent='figures decoded: '+ok+' of '+im.length;"
    "});</script>"
)


def _name(r: dict) -> str:
    """A run's directory relative to the folder it was found in (that folder's name if equal)."""
    rel = r["dir"].resolve().relative_to(Path(r["root"]).resolve())
    return str(rel) if str(rel) != "." else Path(r["root"]).resolve().name


def _run_section(r: dict, anchor: str, children: list[dict]) -> list[str]:
    name = _e(_name(r))
    out = [f"<h3 id='{anchor}'>{name} <small class='{r['status']}'>({r['status']})</small></h3>"]
    res = r["result"] or {}
    if r["error"]:
        out.append(f"<pre class='failed'>{_e(r['error'])}</pre>")
    if isinstance(res.get("summary"), str):
        out.append(f"<pre>{_e(res['summary'])}</pre>")
    if res.get("paper"):
        out.append(f"<p><b>Paper:</b> {_e(res['paper'])}</p>")
    if res:
        out.append(_table(_scalars(res)))
    for fig in r["figures"]:
        data = base64.b64encode(fig.read_bytes()).decode()
        out.append(f"<div><img alt='{_e(fig.name)}' src='data:image/png;base64,{data}'></div>")
    if res.get("command"):
        out.append(f"<p><b>Command:</b> <code>{_e(res['command'])}</code></p>")
    out.append(f"<details><summary>config</summary><pre>{_e(json.dumps(r['config'], indent=2))}</pre></details>")
    if res:
        out.append("<details><summary>result.json</summary><pre>"
                   f"{_e(json.dumps(res, indent=2)[:20000])}</pre></details>")
    if children:
        out.append(f"<details><summary>{len(children)} sub-run(s)</summary><table>"
                   "<tr><th>sub-run</th><th>status</th><th>headline numbers</th></tr>")
        for c in children:
            rel = c["dir"].resolve().relative_to(r["dir"].resolve())
            nums = ", ".join(f"{k}={fmt(v)}" for k, v in _scalars(c["result"] or {})[:8])
            out.append(f"<tr><td>{_e(rel)}</td><td class='{c['status']}'>{c['status']}</td>"
                       f"<td>{_e(nums or (c['error'] or ''))}</td></tr>")
        out.append("</table></details>")
    return out


def _sweep_sections(roots) -> list[str]:
    """A table per sweep (``summary.json`` written by ``deepscope sweep``): mean ± std (n) over seeds."""
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    out = []
    for root in roots:
        for summary in sorted(root.rglob("summary.json")):
            if not (summary.parent / "summary.csv").exists():
                continue
            rows = _read_json(summary)
            if not isinstance(rows, list) or not rows:
                continue
            stats = ("metric", "mean", "std", "ci95_low", "ci95_high", "count", "missing")
            keys = [k for k in rows[0] if k not in stats]
            out.append(f"<h2>Sweep {_e(summary.parent)}</h2><table><tr>"
                       + "".join(f"<th>{_e(k)}</th>" for k in keys)
                       + "<th>metric</th><th>mean ± std (n)</th></tr>")
            for r in rows:
                out.append("<tr>" + "".join(f"<td>{_e(r.get(k, ''))}</td>" for k in keys)
                           + f"<td>{_e(r['metric'])}</td><td>{_e(fmt(r['mean']))} ± "
                           f"{_e(fmt(r['std']))} ({r['count']})</td></tr>")
            out.append("</table>")
    return out


def write_report(roots, out: Path) -> Path:
    """Write the HTML report for the runs under ``roots`` to ``out``; return ``out``."""
    runs = collect_runs(roots)
    top = [r for r in runs if r["parent"] is None]
    kids: dict = {}
    for r in runs:
        if r["parent"] is not None:
            kids.setdefault(r["parent"], []).append(r)
    anchors = {id(r): f"run{i}" for i, r in enumerate(top)}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>deepscope report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>deepscope report</h1>",
        f"<p>{len(top)} run(s) ({len(runs) - len(top)} sub-runs) under "
        f"{', '.join('<code>' + _e(r) + '</code>' for r in ([roots] if isinstance(roots, (str, Path)) else roots))}; "
        f"written {time.strftime('%Y-%m-%d %H:%M')}. <span id='figure-check'></span></p>",
        "<h2>Verdicts</h2><table class='verdicts' id='verdicts'><tr><th>system</th><th>paper's claim</th>"
        "<th>our measurement</th><th>verdict</th><th>run</th></tr>",
    ]
    for row in _verdict_rows(top):
        link = (f"<a href='#{anchors[id(row['run'])]}'>{_e(_name(row['run']))}</a>"
                if row["run"] is not None else "")
        cls = "v-" + str(row["verdict"]).replace(" ", "-")
        parts.append(f"<tr><td>{_e(row['system'])}</td><td>{_e(row['claim'])}</td>"
                     f"<td>{_e(row['measured'])}</td><td class='{cls}'>{_e(row['verdict'])}</td>"
                     f"<td>{link}</td></tr>")
    parts.append("</table>")
    names = system_names()
    groups = [(s, [r for r in top if _system_of(r) == s]) for s in names]
    groups.append(("Other runs", [r for r in top if _system_of(r) not in names]))
    for system, members in groups:
        if not members:
            continue
        parts.append(f"<h2>{_e(system)}</h2>")
        for r in members:
            parts += _run_section(r, anchors[id(r)], kids.get(r["dir"].resolve(), []))
    parts += _sweep_sections(roots)
    parts.append(_CHECK + "</body></html>")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    return out


def verdict_markdown(roots) -> str:
    """The verdict table of the runs under ``roots`` as a Markdown table (one row per system)."""
    top = [r for r in collect_runs(roots) if r["parent"] is None]

    def cell(text) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    lines = ["| system | paper's claim | our measurement | verdict |", "|---|---|---|---|"]
    for row in _verdict_rows(top):
        lines.append(f"| {cell(row['system'])} | {cell(row['claim'])} | {cell(row['measured'])} "
                     f"| **{cell(row['verdict'])}** |")
    return "\n".join(lines) + "\n"


def report_main(argv: list[str]) -> int:
    args = tyro.cli(ReportArgs, args=argv, prog="deepscope report")
    missing = [str(p) for p in args.runs if not p.is_dir()]
    if missing:
        print(f"deepscope report: RUNS {missing[0]!r} is not a directory", file=sys.stderr)
        return 2
    out = write_report(list(args.runs), args.out or args.runs[0] / "report.html")
    print(f"wrote {out}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(verdict_markdown(list(args.runs)))
        print(f"wrote {args.markdown}")
    return 0
