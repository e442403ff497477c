"""health()['why'] explains a stall in one line: who is waiting for what."""


def test_why_names_the_silent_primary_then_the_missing_view_change_quorum(cluster_cls):
    c = cluster_cls()
    r2 = c.replicas[2]
    assert r2.health()["why"] == ""
    c.down.update({0, 1})  # the primary and the next primary go silent: no quorum anywhere
    c.submit(c.request(0, 1), to=2)
    why = r2.health()["why"]
    assert "waiting for primary 0" in why and "view change in" in why
    assert c.run_until(lambda: r2.in_view_change, timeout_ms=30_000)
    why = r2.health()["why"]
    assert why.startswith("view change to view ") and "/3 VIEW-CHANGE votes" in why
    assert f"NEW-VIEW from replica {r2.primary}" in why
    c.down.clear()
    assert c.run_until(lambda: all(r.last_executed >= 1 for r in c.replicas), timeout_ms=120_000)
    assert r2.health()["why"] == ""
