"""docs/architecture.md stays true: its paths exist, its layout lists every module, its
"How to add a system" is what the registry reads, and the import rules it states hold."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "deepscope"
DOC = (ROOT / "docs" / "architecture.md").read_text()


def _section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:] if end < 0 else DOC[start:end]


def _layout_block() -> list[str]:
    block = _section("Layout")
    return block[block.index("```") + 3: block.rindex("```")].strip("\n").splitlines()


_NAME = re.compile(r"[A-Za-z_][\w-]*(?:/|\.py|\.md)?")


def _layout_paths() -> set[Path]:
    """Every file and folder the layout block names, as paths from the repository root.

    A line's first word is an entry (``name/`` a folder, ``name.py`` a module), placed by its
    indentation under the folder above it; ``name.py`` words later in a line name modules
    beside it (``io.py, commands.py``; ``; baselines.py: ...``), or inside it for a folder.
    """
    paths: set[Path] = set()
    stack: list[tuple[int, Path]] = [(-1, ROOT)]
    last_dir = ROOT
    for line in _layout_block():
        indent = len(line) - len(line.lstrip())
        words = line.split()
        if not words:
            continue
        first = words[0].rstrip(",:;")
        is_entry = first.endswith("/") or first.endswith(".py") or first.endswith(".md")
        if is_entry:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1]
            if first.endswith("/"):
                here = parent / first.rstrip("/")
                stack.append((indent, here))
                last_dir = here
            else:
                here = parent / first
                last_dir = parent
            paths.add(here)
        for word in re.findall(r"(?<![\w/.<])([A-Za-z_]\w*\.py)\b", line):
            if word != first:
                paths.add(last_dir / word)
    return paths


def test_every_path_in_the_layout_exists():
    paths = _layout_paths()
    assert ROOT / "src" / "deepscope" / "train" / "run.py" in paths  # the parser sees the tree
    missing = sorted(str(p.relative_to(ROOT)) for p in paths if not p.exists())
    assert not missing, f"docs/architecture.md's layout names paths that do not exist: {missing}"


def test_every_package_and_module_is_in_the_layout():
    listed = _layout_paths()
    absent = []
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(ROOT)
        if "__pycache__" in p.parts:
            continue
        if p.name == "__init__.py":
            if p.parent != SRC and p.parent not in listed:
                absent.append(str(rel.parent) + "/")
            continue
        if p.parent == SRC / "recipes":
            continue  # one module per experiment: `deepscope run --list` is their list
        if p not in listed:
            absent.append(str(rel))
    assert not absent, f"modules missing from docs/architecture.md's layout: {absent}"


def _backticked_paths() -> list[str]:
    out = []
    prose = re.sub(r"```.*?```", "", DOC, flags=re.S)  # inline code only; the layout is checked above
    for quoted in re.findall(r"`([^`]+)`", prose):
        tok = quoted.split()[0].split(":")[0]
        if "<" in tok or "*" in tok or tok.startswith(("runs/", "RUN/", "OUT/")):
            continue  # templates and run-directory files, not repository paths
        if "/" in tok or tok.endswith((".py", ".md")):
            out.append(tok.rstrip("/").rstrip(","))
    return out


def test_every_backticked_path_exists():
    paths = _backticked_paths()
    assert "train/run.py" in paths or "train/loop.py" in paths
    missing = []
    for tok in paths:
        candidates = [ROOT / tok, SRC / tok]
        if "/" not in tok:  # a bare module name: somewhere in the package
            candidates += list(SRC.rglob(tok))
        if not any(c.exists() for c in candidates):
            missing.append(tok)
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_backticked_module_name_resolves():
    import importlib

    names = {tok.split("(")[0] for tok in re.findall(r"`(deepscope(?:\.\w+)+)", DOC)}
    assert "deepscope.train.distributed" in names
    bad = []
    for name in sorted(names):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            bad.append(name)
    assert not bad, f"docs/architecture.md names what does not exist: {bad}"


def test_how_to_add_a_system_is_what_the_registry_reads():
    """Step 5 names every declaration a recipe makes; the registry test's dummy recipe makes
    exactly those, and the registry reads the ones it must."""
    from tests.test_registry import DUMMY_RECIPE

    steps = _section("How to add a system")
    recipe_step = steps[steps.index("5. **Recipe**"): steps.index("6. **")]
    # what a recipe declares -> how step 5 names it
    declared = {"SYSTEM": "SYSTEM = System(", "REPRODUCE": "REPRODUCE = Reproduce(",
                "Config": "Config(RunConfig)", "run": "run(cfg, run)", "verdict": "verdict(result)"}
    tree = ast.parse(DUMMY_RECIPE)
    top = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets}
    top |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    for name, text in declared.items():
        assert text in recipe_step, f"step 5 of 'How to add a system' does not name {text}"
        assert name in top, f"the dummy recipe of tests/test_registry.py does not define {name}"
    assert "QUICK" in DUMMY_RECIPE
    assert "tests/test_registry.py" in recipe_step
    import deepscope.recipes as registry_module

    for name in ("SYSTEM", "REPRODUCE", "verdict"):
        assert name in registry_module.__doc__, f"deepscope.recipes does not document {name}"


# --- imports ------------------------------------------------------------------------------------

_COMMANDS = {"deepscope.cli", "deepscope.runner", "deepscope.sweep", "deepscope.reproduce",
             "deepscope.report.html"}
_METHODS = ("mi", "dynamics", "robust")

#: Circles that other branches remove; empty this when they have (strict: a stale entry fails).
KNOWN_CIRCLES: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        name = ".".join(p.relative_to(SRC.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _imports() -> dict[str, set[str]]:
    """Module -> the deepscope modules it imports, at any depth (a lazy import counts too)."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deepscope"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            edges[name] |= {t for t in targets if t in mods and t != name}
    return edges


def _layer(module: str) -> int:
    parts = module.split(".")
    if module == "deepscope":
        return 5
    if module in _COMMANDS:
        return 4
    if parts[1] == "recipes":
        return 3
    if parts[1] in _METHODS:
        return 2
    return 1  # train, data, nets, report.figures: shared, below everything


def test_nothing_imports_upward():
    up = []
    for module, targets in _imports().items():
        for t in targets:
            if t == "deepscope" and module == "deepscope.cli":
                continue  # the version string
            if _layer(t) > _layer(module):
                up.append(f"{module} -> {t}")
            if _layer(module) == 3 == _layer(t) and "deepscope.recipes" not in (t, module):
                up.append(f"{module} -> {t} (a recipe imports another recipe)")
    assert not up, f"imports against the flow of docs/architecture.md: {up}"


def _circles(edges: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Strongly connected groups of modules (a package's edges to its own modules excluded:
    a front door that loads its modules lazily is not a circle)."""
    graph = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: set[tuple[str, ...]] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.add(tuple(sorted(group)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    found = _circles(_imports())
    assert found == KNOWN_CIRCLES, (
        f"import circles: {sorted(found - KNOWN_CIRCLES)}; "
        f"gone (remove from KNOWN_CIRCLES): {sorted(KNOWN_CIRCLES - found)}")


@pytest.mark.parametrize("pair", [("deepscope.train.run", "deepscope.train.distributed"),
                                  ("deepscope.report.html", "deepscope.runner")])
def test_the_circle_and_the_upward_arrow_named_in_the_doc_are_gone(pair):
    a, b = pair
    edges = _imports()
    assert b not in edges[a] or a not in edges[b]
    if a == "deepscope.report.html":
        assert b not in edges[a]
