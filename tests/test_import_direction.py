"""The import direction of DESIGN.md, enforced by walking every module's imports with ast."""

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
