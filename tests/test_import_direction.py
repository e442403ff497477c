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
