"""docs/embedding.md's runnable example runs as written and prints the agreed total."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_runnable_example_in_docs_embedding_md_works():
    text = (ROOT / "docs" / "embedding.md").read_text()
    section = text.split("## A runnable example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "node 3 sees {'total': 42" in r.stdout
