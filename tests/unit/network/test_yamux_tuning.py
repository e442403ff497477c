"""network.libp2p_patches memoises py-libp2p Yamux's PY_YAMUX_* readers (read once, not per
frame)."""

from __future__ import annotations

import libp2p.stream_muxer.yamux.yamux as yamux

import network.libp2p_patches as transport


def test_yamux_env_readers_are_read_once_with_the_environment_value(monkeypatch) -> None:
    assert hasattr(yamux._yamux_data_read_timeout, "cache_info")
    assert transport._cache_yamux_tuning() == 0  # idempotent: nothing left to wrap
    value = yamux._yamux_data_read_timeout()
    assert value == yamux._DEFAULT_DATA_FRAME_READ_TIMEOUT or value > 0
    monkeypatch.setenv("PY_YAMUX_DATA_READ_TIMEOUT", "7")
    assert yamux._yamux_data_read_timeout() == value  # memoised: no os.getenv per frame
    hits = yamux._py_yamux_env.cache_info().hits
    yamux._py_yamux_env("DATA_READ_TIMEOUT", "60.0")
    yamux._py_yamux_env("DATA_READ_TIMEOUT", "60.0")
    assert yamux._py_yamux_env.cache_info().hits >= hits + 1
