"""bftnode.memory: glibc malloc tuning is applied where glibc is, and trimming is rate-limited."""

from __future__ import annotations

from bftnode import memory


def test_trimmer_runs_at_most_once_per_interval() -> None:
    now = [0.0]
    t = memory.Trimmer(interval_s=10.0, clock=lambda: now[0])
    t.maybe()
    assert t.trims == 0  # not before the first interval
    now[0] = 10.0
    t.maybe()
    t.maybe()
    expected = 1 if memory._LIBC is not None else 0
    assert t.trims == expected
    now[0] = 20.5
    t.maybe()
    assert t.trims == 2 * expected


def _two_seconds_of_trimmer() -> memory.Trimmer:
    """A Trimmer (trims every 1 s, page-outs every 0.25 s) driven through 2 s of clock."""
    now = [0.0]
    t = memory.Trimmer(interval_s=1.0, page_out_s=0.25, clock=lambda: now[0])
    for step in range(1, 9):  # 2 s in steps of 0.25 s
        now[0] = step * 0.25
        t.maybe()
    return t


def test_page_out_has_its_own_faster_interval() -> None:
    t = _two_seconds_of_trimmer()
    expected = 1 if memory._LIBC is not None else 0
    assert (t.page_outs, t.trims) == (8 * expected, 2 * expected)


def test_page_out_relists_the_mappings_only_every_maps_s() -> None:
    now = [0.0]
    t = memory.Trimmer(interval_s=1.0, page_out_s=0.125, maps_s=1.0, clock=lambda: now[0])
    for step in range(1, 25):  # 3 s in steps of 0.125 s (exact in binary)
        now[0] = step * 0.125
        t.maybe()
    expected = 1 if memory._LIBC is not None else 0
    assert (t.page_outs, t.listings) == (24 * expected, 3 * expected)


def test_trim_releases_freed_heap_on_glibc() -> None:
    if memory._LIBC is None:
        assert memory.trim() is False
        return
    blobs = [bytearray(200_000) for _ in range(200)]  # ~40 MB from malloc, then freed
    del blobs
    assert isinstance(memory.trim(), bool)
    assert memory.limit_arenas(2) is True


def test_page_out_drops_mapped_table_pages_and_keeps_the_data(tmp_path) -> None:
    import plyvel

    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    try:
        for b in range(8):  # a few tables (LevelDB maps table files for reading)
            with db.write_batch() as wb:
                for i in range(5000):
                    wb.put(b"%02d-%06d" % (b, i), bytes([i % 251]) * 200)
        db.compact_range()
        assert sum(1 for _ in db.iterator()) == 40_000  # every table read: pages resident
        before = memory._smaps_mb().get("ldb_tables", 0.0)
        ranges = memory.mapped_ranges()
        advised = memory.page_out_mapped(ranges=ranges)
        after = memory._smaps_mb().get("ldb_tables", 0.0)
        if memory._LIBC is None or before == 0.0:
            return  # no glibc, or LevelDB did not map the tables here
        assert ranges and advised == sum(size for _, size in ranges) and after < before
        assert db.get(b"03-000007") == bytes([7]) * 200  # data intact after the page-out
        assert sum(1 for _ in db.iterator()) == 40_000
    finally:
        db.close()


def test_holding_free_memory_stops_the_trims_but_not_the_page_outs(monkeypatch) -> None:
    # the mallopt settings stay for the rest of this test process (harmless: reuse, no trims)
    monkeypatch.setattr(memory, "_HOLDING", False)
    held = memory.hold_free_memory()
    assert held is (memory._LIBC is not None)
    assert memory._HOLDING is held
    t = _two_seconds_of_trimmer()
    expected = 1 if memory._LIBC is not None else 0
    assert (t.page_outs, t.trims) == (8 * expected, 0)
    if not held:
        return
    # ~24 MB of buffers below the mmap threshold, freed: held in the heap, not returned
    blobs = [bytearray(120_000) for _ in range(200)]
    peak = memory._smaps_mb()
    del blobs
    after = memory._smaps_mb()
    assert after["heap"] + after["anon"] > peak["heap"] + peak["anon"] - 4.0
