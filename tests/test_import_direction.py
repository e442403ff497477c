"""The import direction of docs/architecture.md, enforced by walking every module's imports with ast."""

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OURS = {"bftnode", "consensus", "storage", "network", "testnet"}
ALLOWED_OURS = {
    "consensus": set(),
    "network": set(),
    "storage": {"consensus"},
    "bftnode": {"consensus", "storage", "network"},
    "testnet": {"bftnode", "consensus", "storage", "network"},
}
CONSENSUS_THIRD_PARTY = {"nacl", "msgspec"}


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules(pkg: str):
    return sorted((ROOT / pkg).rglob("*.py"))


def test_packages_import_only_what_design_allows():
    bad = []
    for pkg, allowed in ALLOWED_OURS.items():
        for path in _modules(pkg):
            for name in _imports(path) & OURS - {pkg}:
                if name not in allowed:
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_consensus_imports_only_stdlib_pynacl_and_msgspec():
    stdlib = set(sys.stdlib_module_names)
    forbidden_stdlib = {"time", "random", "socket", "asyncio", "threading", "secrets", "os",
                        "subprocess", "selectors", "multiprocessing", "datetime"}
    bad = []
    for path in _modules("consensus"):
        for name in _imports(path) - {"consensus"}:
            if name in forbidden_stdlib or (name not in stdlib and name not in CONSENSUS_THIRD_PARTY):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []
    assert _modules("consensus"), "consensus package has no modules"


def test_checker_catches_a_forbidden_import(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("import time\nfrom trio import sleep\nfrom .codec import encode\n")
    assert _imports(p) == {"time", "trio"}


# ---------------------------------------------------------------- no import circles

PRODUCT = ("bftnode", "consensus", "storage", "network")


def _testnet_imports(root: pathlib.Path) -> list[str]:
    """Every place under the product packages that imports `testnet`: import statements
    (deferred and TYPE_CHECKING ones included) and `importlib.import_module("testnet…")` /
    `__import__("testnet…")` calls."""
    bad = []
    for pkg in PRODUCT:
        for path in sorted((root / pkg).rglob("*.py")):
            dynamic = any(
                isinstance(node, ast.Call) and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                and node.args[0].value.split(".")[0] == "testnet"
                and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__")
                for node in ast.walk(ast.parse(path.read_text(), filename=str(path))))
            if "testnet" in _imports(path) or dynamic:
                bad.append(f"{path.relative_to(root)} imports testnet")
    return bad


def test_nothing_in_the_product_imports_testnet():
    """The harness (Byzantine strategies, link faults, launcher) stays outside the product: a
    node gets strategies only through build_node's seams, from `python -m testnet node`."""
    assert _testnet_imports(ROOT) == []


def test_the_testnet_check_finds_every_kind_of_import(tmp_path):
    for pkg in PRODUCT:
        (tmp_path / pkg).mkdir()
    (tmp_path / "bftnode" / "a.py").write_text(
        "def f():\n    from testnet.adversary import parse_strategy  # deferred\n")
    (tmp_path / "network" / "b.py").write_text("import testnet.adversary.link_faults as lf\n")
    (tmp_path / "storage" / "c.py").write_text(
        "import importlib\nm = importlib.import_module('testnet.adversary')\n")
    (tmp_path / "consensus" / "d.py").write_text("from . import testnet_like\nimport trio\n")
    assert _testnet_imports(tmp_path) == ["bftnode/a.py imports testnet",
                                          "storage/c.py imports testnet",
                                          "network/b.py imports testnet"]


def _module_graph(root: pathlib.Path, pkgs: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the product modules it imports anywhere in its file (deferred and
    TYPE_CHECKING imports included); `from pkg import sub` counts the submodule, not pkg."""
    files = {}
    for pkg in pkgs:
        for f in (root / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(root).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = f
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in files)
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                if node.level:
                    base = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                subs = {f"{prefix}.{a.name}" for a in node.names} & files.keys()
                deps |= subs
                if len(subs) < len(node.names) and prefix in files:
                    deps.add(prefix)
        graph[name] = deps - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_circles_in_the_product():
    assert _cycles(_module_graph(ROOT, PRODUCT)) == []


def test_the_circle_check_finds_a_deferred_circle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import c  # deferred\n")
    (pkg / "c.py").write_text("from .a import x\n")
    (pkg / "d.py").write_text("from . import a\n")
    assert _cycles(_module_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b", "pkg.c"]]
