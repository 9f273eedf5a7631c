"""The HTML report in a real browser (headless Chromium): `make test-browser`.

Chromium decodes every embedded figure and runs the page's check script; we read the page back
after load (``--dump-dom``) and take a screenshot for people to look at.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from deepscope.cli import main

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _figure(path, color):
    from deepscope.report.figures import plt, save

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [0, 1, 4], color=color)
    save(fig, path)


def _chromium(tmp_path, *args):
    profile = tmp_path / "profile"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test-browser installs it)")
def test_report_opens_in_chromium_with_every_figure(tmp_path):
    runs = tmp_path / "runs"
    for name, system, color in (("mine", "MINE", "C0"), ("spectral", "Spectral bias", "C1")):
        d = runs / name
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"recipe": name}))
        _figure(d / "figures" / "a.png", color)
        _figure(d / "figures" / "b.png", color)
        (d / "result.json").write_text(json.dumps({
            "system": system, "x": 1.0, "verdict": {"system": system, "claim": "c", "measured": "m",
                                                      "verdict": "reproduced"}}))
    assert main(["report", str(runs)]) == 0
    page = runs / "report.html"
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "figures decoded: 4 of 4" in dom.stdout
    assert re.search(r"<table class=\"verdicts\" id=\"verdicts\">", dom.stdout)
    assert dom.stdout.count('class="v-reproduced"') == 2 and dom.stdout.count('class="v-not-run"') == 4
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000
    if os.environ.get("DEEPSCOPE_SCREENSHOT"):  # a copy to look at: DEEPSCOPE_SCREENSHOT=path
        shutil.copy(shot, os.environ["DEEPSCOPE_SCREENSHOT"])
