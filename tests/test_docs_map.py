"""docs/architecture.md stays a true map: every `*.py` it names exists, and every module of the
product and the harness has a line in its module map (a new module without one fails here)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKGS = ("bftnode", "consensus", "storage", "network", "testnet")


def _check(doc_lines: list[str]) -> list[str]:
    all_py = {p.relative_to(ROOT).as_posix() for pkg in (*PKGS, "tests")
              for p in (ROOT / pkg).rglob("*.py")}
    problems, mapped, heading = [], set(), None
    for n, line in enumerate(doc_lines, 1):
        if line.startswith("## "):
            heading = None
        m = re.match(r"### ([\w/]+/) ", line + " ")
        if m:
            heading = m.group(1)
        for tok in re.findall(r"[\w./-]*\w\.py\b", line):
            if "/" in tok:
                found = tok in all_py or any(p.endswith("/" + tok) for p in all_py)
            elif heading and line.startswith("- "):
                found = heading + tok in all_py
                if found:
                    mapped.add(heading + tok)
            else:
                found = any(p.rsplit("/", 1)[-1] == tok for p in all_py)
            if not found:
                problems.append(f"line {n}: {tok} does not exist")
    product = {p for p in all_py if p.split("/")[0] in PKGS and not p.endswith("__init__.py")}
    problems += [f"not in the module map: {p}" for p in sorted(product - mapped)]
    return problems


def test_architecture_md_maps_every_module_and_names_only_real_files():
    doc = (ROOT / "docs/architecture.md").read_text().splitlines()
    assert _check(doc) == []


def test_the_map_check_fails_on_a_missing_module_or_a_wrong_path():
    doc = (ROOT / "docs/architecture.md").read_text().splitlines()
    without = [line for line in doc if not line.startswith("- `driver.py`")]
    assert "not in the module map: bftnode/node/driver.py" in _check(without)
    assert any("no_such_module.py" in p for p in _check([*doc, "see consensus/no_such_module.py"]))
