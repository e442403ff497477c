"""The web explorer (`GET /ui`, bftnode/rpc/ui) in a real headless Chromium against a real
4-process testnet with authenticated state: the overview shows the chain's height and the
validators, a block page shows its commit certificate's signers verified in the page, a tx page
verifies the tx's result proof in the page, and the lock / lease / election / key tables list
what clients hold. A screenshot of the block page is saved as a test artifact and checked.
The list methods behind the tables (`lock_list`, `lease_list`) are checked over plain RPC too.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import httpx
import pytest

from bftnode.client import Client
from testnet.ports import free_port_base
from tests.browser import ARGS, chromium_path

pytestmark = pytest.mark.integration
ARTIFACTS = Path(os.environ.get("BFTNODE_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from testnet import launcher

    d = tmp_path_factory.mktemp("explorer-testnet")
    m = launcher.up(d, 4, open_chain=True, base_port=free_port_base(8),
                    authenticated_state=True)
    urls = [n["rpc"] for n in m["nodes"]]
    try:
        with Client(urls, d / "c.key", verify="none") as c:
            c.put("explorer/a", "1")
            put = c.put("explorer/b", "<img src=x onerror=alert(1)>")  # shown as text
            lease = c.lease_grant(60)
            token = c.lock_acquire("jobs", lease)
            c.campaign("leader", lease, "node-a")
            # reads below wait for this height (min_height): every write above is in by then
            last = c.put("explorer/last", "1")["height"]
        yield {"dir": d, "urls": urls, "put": put, "lease": lease, "token": token, "last": last}
    finally:
        launcher.down(d)


def _rpc(url: str, method: str, params: dict) -> dict:
    out = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                     timeout=10).json()
    assert "result" in out, out
    return out["result"]


def test_lock_and_lease_lists_page_through_what_clients_hold(chain):
    url = chain["urls"][1]
    fresh = {"min_height": chain["last"]}  # read-your-writes on a node that may lag
    locks = _rpc(url, "lock_list", fresh)
    assert [x["name"] for x in locks["items"]] == ["jobs"] and locks["next"] is None
    assert locks["items"][0]["holder"]["token"] == chain["token"]
    elections = _rpc(url, "lock_list", {"kind": "election", **fresh})
    assert [x["name"] for x in elections["items"]] == ["leader"]
    leases = _rpc(url, "lease_list", {"limit": 1, **fresh})
    assert [x["id"] for x in leases["items"]] == [chain["lease"]]
    assert leases["next"] == chain["lease"]  # a full page: the next one starts after it
    assert _rpc(url, "lease_list", {"after": chain["lease"]})["items"] == []
    bad = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "lock_list",
                                "params": {"limit": 101}}, timeout=10).json()
    assert bad["error"]["code"] == -32602, bad


def test_ui_assets_are_served_with_a_strict_policy(chain):
    r = httpx.get(chain["urls"][0] + "/ui", timeout=10)
    assert r.status_code == 200 and "bftnode explorer" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert httpx.get(chain["urls"][0] + "/ui/verify.js", timeout=10).status_code == 200
    assert httpx.get(chain["urls"][0] + "/ui/..%2Fserver.py", timeout=10).status_code == 404


def _png_size_and_colours(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the first rows): a real page, not a blank."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, at = b"", 8
    while at < len(data):
        n, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"IDAT":
            idat += data[at + 8:at + 8 + n]
        at += 12 + n
    raw = zlib.decompress(idat)
    return width, height, len(set(raw[: 200 * width]))


def test_the_explorer_in_a_real_browser(chain):
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    url = chain["urls"][2]
    height = chain["put"]["height"]
    tx_hash = chain["put"]["hash"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: errors.append("dialog opened: " + d.message))

            page.goto(url + "/ui")
            page.wait_for_selector("#validators tr:nth-child(5)")  # header + 4 validators
            shown = int(page.text_content("#height"))
            assert shown >= height
            page.wait_for_function(  # live: the WebSocket brings newer blocks (and this
                # node holds every write of the fixture once it is at `last`)
                "h => Number(document.getElementById('height').textContent) > h",
                arg=max(shown, chain["last"]), timeout=15_000)
            assert "this node" in page.text_content("#validators")

            page.goto(f"{url}/ui#/block/{height}")
            page.wait_for_selector("#cert-verdict .ok")
            verdict = page.text_content("#cert-verdict")
            assert "verified in this page" in verdict and "quorum 3" in verdict, verdict
            assert page.locator("#signers > div").count() >= 3
            assert tx_hash in page.text_content("#txs")
            shot = page.screenshot(path=str(ARTIFACTS / "explorer-block.png"), full_page=True)
            width, _, colours = _png_size_and_colours(shot)
            assert width == 1200 and colours > 8, colours
            assert f"Block {height}" in page.text_content("h1")

            # (route, what to wait for, text it must show)
            for route, ready, text in [
                (f"tx/{tx_hash}", "#proof-verdict .ok", "results root certified by validators"),
                ("locks", "#locks tr:nth-child(2)", f"lease {chain['lease']}"),
                ("elections", "#elections tr:nth-child(2)", "node-a"),
                ("leases", "#leases tr:nth-child(2)", str(chain["lease"])),
                ("keys?prefix=explorer/", "#keys tr:nth-child(3)", "<img"),  # text, not markup
            ]:
                page.goto(f"{url}/ui#/{route}")
                page.wait_for_selector(ready)
                assert text in page.text_content(ready.split()[0]), (route, text)
            assert page.locator("#keys img").count() == 0
            assert errors == [], errors

            # a lying node: the page's own checks catch it (nothing is taken on its word)
            page.route(url + "/", _tamper)
            page.goto(f"{url}/ui#/block/{height}")
            page.wait_for_selector("#cert-verdict .bad")
            assert "NOT verified: 2 valid signatures" in page.text_content("#cert-verdict")
            page.goto(f"{url}/ui#/tx/{tx_hash}")
            page.wait_for_selector("#proof-verdict .warn")
            assert "does not match the results root" in page.text_content("#proof-verdict")
        finally:
            browser.close()


def _tamper(route) -> None:
    """Answers of `block` with one of 2f+1 Commits' signature flipped, of `tx` with another
    result."""
    import base64
    import json

    method = json.loads(route.request.post_data or "{}").get("method")
    if method not in ("block", "tx"):
        route.continue_()
        return
    response = route.fetch()
    body = response.json()
    r = body["result"]
    if method == "block":
        commits = r["commit"]["commits"]
        raw = bytearray(base64.b64decode(commits[0]))
        raw[-1] ^= 1  # the signature is the last field
        commits[0] = base64.b64encode(bytes(raw)).decode()
        del commits[3:]  # the rest of a quorum: one short of it now
    else:
        r["result_raw"] = base64.b64encode(b"\x81\xa8revision\x63").decode()  # {"revision": 99}
    route.fulfill(response=response, json=body)
