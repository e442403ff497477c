"""Keeping a long-running node's RSS flat: glibc malloc tuning, applied only where glibc is.

A node allocates and frees many short-lived buffers from several threads (the trio loop,
worker threads for persists and block execution, LevelDB's own). glibc gives threads their own
malloc arenas (up to 8 per core) and keeps freed memory in them; RSS then creeps up long after
the live data stopped growing. `limit_arenas` caps the arenas (set before threads start);
`hold_free_memory` (what `bftnode start` does) keeps freed memory in them for reuse, so RSS
settles at the working set's high-water mark instead of rising and falling with every memtable;
otherwise `Trimmer` hands free heap pages back to the OS now and then (`malloc_trim`).
Imports: stdlib."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(lib, "mallopt") or not hasattr(lib, "malloc_trim"):
        return None  # not glibc (musl, macOS)
    return lib


_LIBC = _libc()


def limit_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas (call before starting threads). False if not glibc."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, n))


_HOLDING = False  # set by hold_free_memory: Trimmer then leaves the heaps alone


def hold_free_memory(trim_threshold_mb: int = 64, mmap_threshold_mb: int = 4) -> bool:
    """Keep freed heap memory in glibc's arenas for reuse instead of returning it (process-wide;
    call before starting threads). False if not glibc.

    Why: a loaded node's biggest churn is LevelDB's memtables (4-5.5 MiB main, 2 MiB bodies
    and records: each filled by the writer thread, then freed at once after its flush) and
    request/response buffers. Returned at once (glibc's trim on free, `malloc_trim` every
    second), RSS rose and fell by ~10 MB every few seconds and each new memtable faulted its
    pages in again; held, RSS settles at the high-water mark of that working set and stays
    there (the farthest 0.5-s RSS sample from their median over 10 minutes at 2,200 tx/s:
    5.9-9.6 % in five runs, 7.4 and 9.8 % in two runs with trimming: a smoother curve, a gain
    smaller than the noise between runs; docs/perf/history.md). The price: memory
    freed after a burst is kept for the next one (RSS 10-15 MB above the old median). Blocks
    of `mmap_threshold_mb` and more are still mapped and unmapped on their own. `Trimmer`
    stops calling `malloc_trim` from now on."""
    global _HOLDING
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(M_TRIM_THRESHOLD, trim_threshold_mb << 20))
    ok = bool(_LIBC.mallopt(M_MMAP_THRESHOLD, mmap_threshold_mb << 20)) and ok
    _HOLDING = ok
    return ok


def trim() -> bool:
    """Return free heap memory to the OS. False if nothing was released or not glibc."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


MADV_PAGEOUT = 21  # Linux >= 5.4: reclaim these pages now (never destroys data)


def mapped_ranges(suffix: str = ".ldb") -> list[tuple[int, int]]:
    """(start, length) of our read-only file mappings whose path ends with `suffix`.

    Reading /proc/self/maps costs ~1.7 ms in a node (~700 mappings): callers keep the list
    for a while rather than read it before every page-out."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.readlines()
    except OSError:
        return []
    out = []
    for line in maps:
        parts = line.split()
        if len(parts) < 6 or not parts[5].endswith(suffix) or "w" in parts[1]:
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        out.append((lo, hi - lo))
    return out


def page_out_mapped(suffix: str = ".ldb",
                    ranges: list[tuple[int, int]] | None = None) -> int:
    """Ask the kernel to reclaim the resident pages of our read-only file mappings whose path
    ends with `suffix` (LevelDB maps its table files), or of `ranges` from `mapped_ranges`;
    returns the bytes advised.

    Why: pages LevelDB touched in its mapped tables (compaction inputs, index blocks, seeks)
    stay mapped, so RSS grows with the ledger although they are clean page cache the kernel
    may drop at any time. MADV_PAGEOUT only reclaims (a later read faults the page back in,
    usually from the page cache); on any other kind of memory it is harmless, so a race with
    LevelDB unmapping a table (or a stale `ranges` list) cannot corrupt anything. No-op where
    unsupported."""
    if _LIBC is None or not hasattr(_LIBC, "madvise"):
        return 0
    advised = 0
    for lo, size in mapped_ranges(suffix) if ranges is None else ranges:
        if _LIBC.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(size), MADV_PAGEOUT) == 0:
            advised += size
    return advised


class Trimmer:
    """Calls `trim()` at most once per `interval_s` (never once `hold_free_memory` was called)
    and `page_out_mapped()` at most once per `page_out_s` over the table mappings listed at
    most `maps_s` ago (thread-safe; callers need not care). LevelDB compactions read tens of
    MB through their table mappings within a second or two: with both every 10 s those pages
    swung a loaded node's RSS by up to 25 MB, every 1 s by up to ~12 MB (RSS samples up to 13 % above their median over 10 minutes at
    1,000 tx/s), and with the page-out every 0.25 s the samples stay within 5-6 % of it
    (docs/perf/history.md). Now every 0.1 s over a list of the mappings re-read every 1 s:
    reading /proc/self/maps was 1.7 of the 2.1 ms a page-out took, so this costs less CPU than
    every 0.25 s did and leaves a compaction's inputs resident for less time."""

    def __init__(self, interval_s: float = 1.0, clock=time.monotonic,
                 page_out_s: float = 0.1, maps_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.page_out_s = page_out_s
        self.maps_s = maps_s
        self._ranges: list[tuple[int, int]] = []
        self._next_maps = clock()  # listed at the first page-out
        self._clock = clock
        self._next = clock() + interval_s
        self._next_page_out = clock() + self.page_out_s
        self._lock = threading.Lock()
        self.trims = 0
        self.page_outs = 0
        self.listings = 0

    def maybe(self) -> None:
        now = self._clock()
        if (now < self._next and now < self._next_page_out) or _LIBC is None \
                or not self._lock.acquire(blocking=False):
            return
        try:
            if now >= self._next_page_out:
                self._next_page_out = now + self.page_out_s
                if now >= self._next_maps:  # LevelDB maps and unmaps tables as it compacts
                    self._next_maps = now + self.maps_s
                    self._ranges = mapped_ranges()
                    self.listings += 1
                page_out_mapped(ranges=self._ranges)
                self.page_outs += 1
            if now >= self._next:
                self._next = now + self.interval_s
                if not _HOLDING:
                    trim()
                    self.trims += 1
        finally:
            self._lock.release()


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return -1.0


def _sizes(node: object) -> dict[str, int]:
    """Lengths of the node's bounded containers (and the replica's), by attribute name."""
    out: dict[str, int] = {}
    for owner_name, owner in (("node", node), ("replica", getattr(node, "replica", None)),
                              ("store", getattr(node, "store", None))):
        if owner is None:
            continue
        for name, value in list(vars(owner).items()):
            if isinstance(value, str | bytes | bytearray) or not hasattr(value, "__len__"):
                continue
            try:
                out[f"{owner_name}.{name}"] = len(value)
            except TypeError:
                continue
    return out


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def malloc_stats() -> dict[str, float]:
    """glibc's view (MB): heap obtained from the OS (non-mmapped arenas), in use, free in
    the heap (fragmentation), and large blocks mmapped directly. {} when not glibc >= 2.33."""
    fn = getattr(_LIBC, "mallinfo2", None) if _LIBC is not None else None
    if fn is None:
        return {}
    fn.restype = _Mallinfo2
    m = fn()
    mb = 2**20
    return {"heap_mb": m.arena / mb, "in_use_mb": m.uordblks / mb, "free_mb": m.fordblks / mb,
            "mmapped_mb": m.hblkhd / mb}


def smaps_mb(pid: int | str = "self") -> dict[str, float]:
    """Resident memory of process `pid` by mapping kind (MB): [heap], other anonymous, LevelDB
    tables, files; and `anon_largest`, the largest anonymous mapping (a thread's malloc arena,
    usually). Raises OSError if the process is gone."""
    out = {"heap": 0.0, "anon": 0.0, "ldb_tables": 0.0, "files": 0.0, "anon_largest": 0.0}
    name = ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                parts = line.split()
                name = parts[5] if len(parts) > 5 else ""
            elif line.startswith("Rss:"):
                mb = int(line.split()[1]) / 1024
                kind = ("heap" if name == "[heap]" else "anon" if not name or
                        name.startswith("[") else "ldb_tables" if name.endswith(".ldb")
                        else "files")
                out[kind] += mb
                if kind == "anon":
                    out["anon_largest"] = max(out["anon_largest"], mb)
    return out


def _smaps_mb() -> dict[str, float]:
    """`smaps_mb` of this process, {} where /proc is not."""
    try:
        return smaps_mb()
    except OSError:
        return {}


def write_report(home: object, node: object) -> str:
    """Write memory-<unix time>.txt in `home`: RSS, object counts by type, container sizes,
    pymalloc's arena statistics and, when tracemalloc traces (`PYTHONTRACEMALLOC=1`), the
    40 source lines holding the most memory. Blocks the node for about a second or more."""
    import collections
    import gc
    import os
    import sys
    import tempfile

    path = os.path.join(str(home), f"memory-{int(time.time())}.txt")
    gc.unfreeze()  # frozen start-up objects are not listed otherwise
    try:
        counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
    finally:
        gc.freeze()
    lines = [f"rss_mb {_rss_mb():.1f}", f"gc_objects {sum(counts.values())}", ""]
    lines += [f"{n:>9} {t}" for t, n in counts.most_common(40)]
    lines[1:1] = [f"rss_{k}_mb {v:.1f}" for k, v in _smaps_mb().items()]
    lines[1:1] = [f"malloc_{k} {v:.1f}" for k, v in malloc_stats().items()]
    db = getattr(getattr(getattr(node, "store", None), "_kv", None), "db", None)
    if db is not None and hasattr(db, "get_property"):
        try:
            usage = db.get_property(b"leveldb.approximate-memory-usage")
            lines.insert(1, f"leveldb_memory_mb {int(usage or 0) / 2**20:.1f}")
        except Exception:  # a closed or foreign DB: the report goes on without it
            pass
    lines.append("")
    lines += [f"{v:>9} {k}" for k, v in sorted(_sizes(node).items(), key=lambda kv: -kv[1])[:60]]
    with tempfile.TemporaryFile("w+") as tmp:  # _debugmallocstats writes to C stderr
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        stats = tmp.read()
    keep = [ln for ln in stats.splitlines() if ln.startswith("#") or "arenas" in ln
            or ln.startswith("Total")]
    lines += ["", *keep]
    import tracemalloc

    if tracemalloc.is_tracing():  # PYTHONTRACEMALLOC=N at start: who holds the memory
        top = tracemalloc.take_snapshot().statistics("lineno")[:40]
        lines += ["", f"tracemalloc top {len(top)} (MB, blocks, where)"]
        lines += [f"{st.size / 2**20:9.2f} {st.count:>9} {st.traceback}" for st in top]
    tmp_path = path + ".tmp"
    with open(tmp_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp_path, path)  # readers never see a half-written report
    return path
