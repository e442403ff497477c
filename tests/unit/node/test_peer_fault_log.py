"""Warnings about a peer's faults are rate limited per (peer, reason), with counts."""

from bftnode.logging import PeerFaultLog


class _Lines:
    def __init__(self):
        self.lines = []

    def warning(self, event, **fields):
        self.lines.append((event, fields))


def test_a_flood_of_one_fault_writes_a_few_lines_and_counts_the_rest(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("bftnode.logging.time.monotonic", lambda: now[0])
    out = _Lines()
    log = PeerFaultLog(out, burst=5, window_s=10.0)
    for _ in range(10_000):
        log.warning("evidence", 2, "bad signature", kind="bad-signature")
    log.warning("evidence", 3, "bad signature")  # another peer is heard
    assert len(out.lines) == 6 and log.suppressed == 9_995
    now[0] = 11.0
    log.warning("evidence", 2, "bad signature")
    assert out.lines[-1][1]["suppressed_before"] == 9_995


def test_keys_are_bounded():
    log = PeerFaultLog(_Lines(), max_keys=100)
    for i in range(10_000):
        log.warning("dropped", i, "junk")
    assert len(log._keys) <= 100
