"""The documentation site in a real browser (headless Chromium): `make docs`, then `make test-browser`.

The built site (site/) is served over HTTP (the search runs in a web worker, which a file://
page may not start). A harness page on the same origin opens each page in a frame and reports
what a reader would see: every figure of each system page decoded, MINE's signature and
parameter table on the API page, and the search box's results for ``empirical_ntk``. Chromium
dumps the harness's DOM once the checks are done; screenshots of the API page and of a tutorial
are taken for people to look at (``DEEPSCOPE_SCREENSHOT_DIR=folder`` keeps a copy).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "site"
SYSTEMS = ("mine", "spectral", "feature_alignment", "lazy_vs_hasty", "crosssplit", "a3t")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if os.environ.get("DEEPSCOPE_REQUIRE_SITE"):  # CI: a missing site or browser is a failure
    assert (SITE / "index.html").exists(), "site/ is not built: run `make docs` first"
    assert CHROMIUM, "no chromium on PATH (Debian's chromium; .ci/run installs it)"
needs_site = pytest.mark.skipif(
    CHROMIUM is None or not (SITE / "index.html").exists(),
    reason="needs Debian's chromium and the built site (make docs; .ci/run does both)")

HARNESS = """<!doctype html><meta charset="utf-8"><title>docs checks</title>
<pre id="out">running</pre>
<script>
const sleep = ms => new Promise(r => setTimeout(r, ms));
// Under --virtual-time-budget timers run ahead of the wall clock; a request to /_wait takes
// 0.1 s of real time, which the search's web worker needs to load its index.
const wait = () => fetch("/_wait?" + Math.random());
function open(url) {
  return new Promise(resolve => {
    const f = document.createElement("iframe");
    f.style.width = "1200px"; f.style.height = "900px";
    f.onload = () => resolve(f.contentDocument);
    f.src = url; document.body.appendChild(f);
  });
}
async function figures(url) {
  const doc = await open(url);
  const imgs = [...doc.querySelectorAll("article img")];
  for (let i = 0; i < 200 && !imgs.every(im => im.complete); i++) await sleep(50);
  return {images: imgs.length, decoded: imgs.filter(im => im.complete && im.naturalWidth > 0).length};
}
async function api(url, id) {
  const doc = await open(url);
  const h = doc.getElementById(id);
  if (!h) return {found: false};
  const block = h.closest(".doc-object") || h.parentElement;
  const sig = block.querySelector(".doc-signature");
  const table = block.querySelector(".doc-section-item, table");
  const params = [...block.querySelectorAll("table tr td:first-child code, .doc-section-item code")]
      .map(c => c.textContent);
  return {found: true, signature: sig ? sig.textContent : "", params: params};
}
async function search(url, query) {
  const doc = await open(url);
  const input = doc.querySelector("input[data-md-component=search-query]");
  for (let i = 0; i < 200; i++) {
    input.focus(); input.value = query;
    for (const t of ["focus", "input", "keyup"]) input.dispatchEvent(new Event(t, {bubbles: true}));
    await wait();
    const items = [...doc.querySelectorAll(".md-search-result__item")];
    if (items.length) return {results: items.length, text: items.map(i => i.textContent).join(" | ")};
  }
  return {results: 0, text: ""};
}
(async () => {
  const out = {systems: {}};
  for (const s of SYSTEMS) out.systems[s] = await figures(`/${s}/`);
  out.api = await api("/api/mi/", "deepscope.mi.estimator.MINE");
  out.search = await search("/", "empirical_ntk");
  document.getElementById("out").textContent = "RESULT " + JSON.stringify(out) + " END";
})();
</script>
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/_wait"):  # real time for the search worker (see HARNESS)
            time.sleep(0.1)
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()


@contextlib.contextmanager
def _serve(root: Path):
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _chromium(tmp_path, *args, timeout=180):
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=timeout)


def _expected_figures(system: str) -> int:
    return len(re.findall(r"!\[[^\]]*\]\(figures/", (REPO / "docs" / f"{system}.md").read_text()))


@needs_site
def test_site_pages_figures_api_and_search_in_chromium(tmp_path):
    root = tmp_path / "www"
    shutil.copytree(SITE, root)
    (root / "_checks.html").write_text(HARNESS.replace("SYSTEMS", json.dumps(SYSTEMS)))
    with _serve(root) as url:
        dom = _chromium(tmp_path, "--virtual-time-budget=60000", "--dump-dom", f"{url}/_checks.html")
        assert dom.returncode == 0, dom.stderr[-2000:]
        m = re.search(r"RESULT (.*) END", dom.stdout)
        assert m, f"the checks did not finish: {dom.stdout[-2000:]}"
        out = json.loads(m.group(1))

        for system in SYSTEMS:  # each system page shows every figure its Markdown embeds
            want = _expected_figures(system)
            assert want > 0, f"docs/{system}.md embeds no figure"
            assert out["systems"][system] == {"images": want, "decoded": want}, (system, out)

        api = out["api"]  # MINE's signature and its parameters
        assert api["found"], "no MINE heading on the API page"
        for piece in ("MINE(", 'bound: Bound = "smile"', "critic", "random_state"):
            assert piece in api["signature"], (piece, api["signature"])
        for name in ("bound", "critic", "hidden", "batch_size", "random_state"):
            assert name in api["params"], (name, api["params"])

        assert out["search"]["results"] > 0, "the search box found nothing for empirical_ntk"
        assert "empirical_ntk" in out["search"]["text"], out["search"]

        # (a #fragment in the address gives a blank headless screenshot: MINE is near the top)
        shots = {"api_mine.png": f"{url}/api/mi/",
                 "tutorial_ntk.png": f"{url}/tutorials/ntk_of_your_network/"}
        for name, page in shots.items():
            shot = tmp_path / name
            _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2600",
                      "--virtual-time-budget=10000", page)
            assert shot.exists() and shot.stat().st_size > 20_000, name
            if os.environ.get("DEEPSCOPE_SCREENSHOT_DIR"):
                Path(os.environ["DEEPSCOPE_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(os.environ["DEEPSCOPE_SCREENSHOT_DIR"]) / name)


@pytest.mark.skipif(not (SITE / "index.html").exists(), reason="needs the built site (make docs)")
def test_every_link_inside_the_site_resolves():
    """mkdocs --strict checks the Markdown pages' links; this also covers the tutorials (notebooks
    converted to HTML: their Markdown links are not rewritten, so they are written as site
    addresses, ``../../api/mi/#...``) and the API reference: every relative href reaches a
    file, and its #fragment an id in that file."""
    ids: dict[Path, set[str]] = {}

    def anchors(page: Path) -> set[str]:
        if page not in ids:
            ids[page] = set(re.findall(r'\bid="([^"]+)"', page.read_text(errors="replace")))
        return ids[page]

    broken = []
    for page in SITE.rglob("*.html"):
        if page.name == "404.html":
            continue  # served at any depth, so its links are absolute: /...
        html = page.read_text(errors="replace")
        for href in re.findall(r'\bhref="([^"]+)"', html):
            if re.match(r"[a-z]+:|//", href):
                continue  # http(s), mailto, data: outside the site
            path, _, fragment = href.partition("#")
            target = (page.parent / path).resolve() if path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(SITE)}: {href}")
            elif fragment and target.suffix == ".html" and fragment not in anchors(target):
                broken.append(f"{page.relative_to(SITE)}: {href} (no such anchor)")
    assert not broken, "\n".join(sorted(set(broken))[:40])
