"""``deepscope report RUNS_DIR``: one self-contained HTML page over a set of run directories.

Every folder below RUNS_DIR that holds a ``result.json`` is a run. The page has a
table of all runs (recipe, directory, status, seconds) and, per run, its printed
summary, its scalar results, its config and its figures (embedded as base64 PNG, so
the page can be mailed or archived alone). A run that crashed (``error.txt``) or was
stopped before its result (``config.json`` only) is listed with that status.
"""

from __future__ import annotations

import base64
import html
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

__all__ = ["ReportArgs", "collect_runs", "write_report", "report_main"]


@dataclass(frozen=True)
class ReportArgs:
    """Write one HTML page (tables and figures) over every run found below RUNS_DIR."""

    runs_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUNS_DIR")]
    """Folder to search for run directories (those with config.json)."""
    out: Path | None = None
    """Output HTML file (default RUNS_DIR/report.html)."""


def collect_runs(root: Path) -> list[dict]:
    """Find run directories below ``root`` and read their files."""
    runs = []
    for cfg in sorted(root.rglob("config.json")):
        d = cfg.parent
        entry = {"dir": d, "config": _read_json(cfg), "result": None, "status": "incomplete"}
        if (d / "result.json").exists():
            entry["result"] = _read_json(d / "result.json")
            entry["status"] = "done"
        elif (d / "error.txt").exists():
            entry["status"] = "failed"
            entry["error"] = (d / "error.txt").read_text()[-3000:]
        entry["figures"] = sorted((d / "figures").glob("*.png")) if (d / "figures").exists() else []
        runs.append(entry)
    return runs


def _read_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"_unreadable": f"{p.name}: {e}"}


def _scalars(d: dict) -> list[tuple[str, object]]:
    return [(k, v) for k, v in d.items() if isinstance(v, (int, float, str)) and k != "summary"]


def _table(rows: list[tuple[str, object]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows
    )
    return f"<table class='kv'>{cells}</table>"


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_report(root: Path, out: Path) -> Path:
    """Write the HTML report for the runs under ``root`` to ``out``; return ``out``."""
    runs = collect_runs(root)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>deepscope report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left;font-size:13px}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}"
        "img{max-width:100%;border:1px solid #eee;margin:.3em 0}.failed{color:#b00}.incomplete{color:#a60}"
        "details{margin:.3em 0}</style></head><body>",
        f"<h1>deepscope report</h1><p>{len(runs)} run(s) under <code>{html.escape(str(root))}</code></p>",
        "<table><tr><th>recipe</th><th>run</th><th>status</th><th>seconds</th></tr>",
    ]
    for i, r in enumerate(runs):
        recipe = r["config"].get("recipe", "?") if isinstance(r["config"], dict) else "?"
        secs = (r["result"] or {}).get("seconds", "")
        parts.append(
            f"<tr><td>{html.escape(str(recipe))}</td><td><a href='#run{i}'>{html.escape(str(r['dir'].relative_to(root)))}</a></td>"
            f"<td class='{r['status']}'>{r['status']}</td><td>{secs}</td></tr>"
        )
    parts.append("</table>")
    for i, r in enumerate(runs):
        parts.append(f"<h2 id='run{i}'>{html.escape(str(r['dir'].relative_to(root)))} "
                     f"<small class='{r['status']}'>({r['status']})</small></h2>")
        res = r["result"] or {}
        if isinstance(res.get("summary"), str):
            parts.append(f"<pre>{html.escape(res['summary'])}</pre>")
        if res:
            parts.append(_table(_scalars(res)))
        if "error" in r:
            parts.append(f"<pre class='failed'>{html.escape(r['error'])}</pre>")
        for fig in r["figures"]:
            data = base64.b64encode(fig.read_bytes()).decode()
            parts.append(f"<div><img alt='{html.escape(fig.name)}' src='data:image/png;base64,{data}'></div>")
        parts.append("<details><summary>config</summary><pre>"
                     f"{html.escape(json.dumps(r['config'], indent=2))}</pre></details>")
        if res:
            parts.append("<details><summary>result.json</summary><pre>"
                         f"{html.escape(json.dumps(res, indent=2)[:20000])}</pre></details>")
    parts.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    return out


def report_main(argv: list[str]) -> int:
    args = tyro.cli(ReportArgs, args=argv, prog="deepscope report")
    if not args.runs_dir.is_dir():
        print(f"deepscope report: RUNS_DIR {str(args.runs_dir)!r} is not a directory", file=sys.stderr)
        return 2
    out = write_report(args.runs_dir, args.out or args.runs_dir / "report.html")
    print(f"wrote {out}")
    return 0
