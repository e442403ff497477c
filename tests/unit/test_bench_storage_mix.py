"""`python -m testnet bench-storage --mix`: the write-mix replay runs on real LevelDB, reports
what it measured and cleans up after itself."""

from __future__ import annotations

import pytest

from testnet import bench_storage


@pytest.mark.parametrize("compression", ["snappy", "none"])
def test_mix_replay_reports_cpu_and_disk_per_tx(tmp_path, compression):
    r = bench_storage.run_mix(20, str(tmp_path), compression)
    assert r["mix_txs"] == 2000 and r["compression"] == compression
    assert r["cpu_us_per_tx"] > 0 and r["main_us_per_tx"] > 0
    assert r["disk_bytes_per_tx"] > 200  # each tx leaves a body, indexes and two state entries
    assert list(tmp_path.iterdir()) == []  # its temporary ledger is gone


def test_mix_blocks_chain_and_carry_one_put_per_tx():
    blocks = bench_storage._mix_blocks(3, ntx=10)
    assert [b.execute.seq for b, _ in blocks] == [1, 2, 3]
    assert blocks[1][0].execute.prev_hash == blocks[0][0].execute.block_hash
    assert len(blocks[0][0].state_writes) == 1 + 2 * 10
    assert blocks[2][1].pre_prepare.seq == 3 and len(blocks[2][1].prepares) == 3
