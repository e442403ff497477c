"""The benchmark's RSS flatness figure: deviation from the median of the samples under load."""

from __future__ import annotations

from testnet.bench import _flatness


def test_flatness_is_the_farthest_sample_from_the_median() -> None:
    got = _flatness([100.0, 104.0, 96.0, 100.0, 111.0])
    assert got == {"rss_flat_median_mb": 100.0, "rss_flat_dev_pct": 11.0}
    # a low first sample (a warm-up that ended in a trough) does not move the reference
    assert _flatness([90.0] + [100.0] * 9)["rss_flat_dev_pct"] == 10.0
    assert _flatness([]) == {"rss_flat_median_mb": None, "rss_flat_dev_pct": None}
