"""A headless Chromium for tests that need a real browser (the explorer's).

Debian's `chromium` package, driven by playwright (the `test` extra; playwright's own browser
download is not used). When the browser is missing, `chromium_path` installs the package with
apt-get if it can (root, apt-get on PATH); otherwise the test is skipped with the reason,
except under CI (`CI` set), where a missing browser fails the test instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

CHROMIUM = "/usr/bin/chromium"
# the flags a closed network needs (no background fetches, no component updates)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_TIMEOUT_S = 600


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"a real browser is needed in CI: {reason}")
    pytest.skip(reason)


def _install() -> str | None:
    """Why Debian's chromium could not be installed, or None once it is."""
    if os.geteuid() != 0:
        return "not root: run `sudo apt-get install chromium` to run this test"
    if shutil.which("apt-get") is None:
        return "no apt-get here: install Chromium at /usr/bin/chromium to run this test"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True,
                               timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` took over {INSTALL_TIMEOUT_S} s"
        if r.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip()[-300:]}"
    return None


def chromium_path() -> str:
    """The browser's path; installs it or skips (fails under CI) with the reason."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        why = _install()
        if why is not None or not os.path.exists(CHROMIUM):
            _unavailable(f"Chromium is missing and could not be installed: {why}")
    return CHROMIUM
