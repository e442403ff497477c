"""testnet.profile_layers: each py-spy raw sample counts in the layer of its innermost
matching frame."""

from __future__ import annotations

from testnet.profile_layers import layer_of, split

RAW = """\
run (trio/_core/_run.py:10);step (consensus/replica.py:300);update (storage/merkle_tree.py:210) 6
run (trio/_core/_run.py:10);step (consensus/replica.py:300) 3
run (trio/_core/_run.py:10);verify (nacl/signing.py:90) 1
garbage line
"""


def test_samples_go_to_their_innermost_layer():
    shares, total = split(RAW.splitlines())
    assert total == 10
    assert shares == {"Merkle tree": 60.0, "consensus stepping": 30.0,
                      "signature verification": 10.0}
    assert layer_of(["main (x.py:1)"]) == "other"
