"""Node config, genesis and key files: a bad field gives a clear message naming it; keys are
private (0600) and round-trip."""

import json
import os
import stat

import pytest

from bftnode.config import (
    DEFAULT_AUTHENTICATED_STATE,
    ConfigError,
    NodeConfig,
    load_config,
    write_config,
)
from bftnode.genesis import Genesis, GenesisError, load_genesis, make_genesis
from bftnode.keys import KeyFileError, NodeKey, generate_key_file, load_key_file


def _genesis(n=4, **consensus):
    keys = [NodeKey.from_seed(bytes([i + 1]) * 32) for i in range(n)]
    return make_genesis(
        "test-chain",
        [(k.public_key, f"/ip4/127.0.0.1/tcp/{27000 + i}") for i, k in enumerate(keys)],
        genesis_time_ms=1_700_000_000_000,
        consensus=consensus,
    )


# ---------------------------------------------------------------- keys


def test_key_file_is_created_mode_0600_and_round_trips(tmp_path):
    old = os.umask(0o000)  # even a permissive umask must not leak the key
    try:
        key = generate_key_file(tmp_path / "k.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "k.json").st_mode) == 0o600
    assert load_key_file(tmp_path / "k.json") == key
    assert len(key.public_key) == 32


def test_key_file_is_never_overwritten_silently(tmp_path):
    generate_key_file(tmp_path / "k.json")
    with pytest.raises(KeyFileError, match="already exists"):
        generate_key_file(tmp_path / "k.json")


def test_raw_and_hex_seeds_load(tmp_path):
    seed = bytes(range(32))
    (tmp_path / "raw").write_bytes(seed)
    (tmp_path / "hex").write_text(seed.hex() + "\n")
    assert load_key_file(tmp_path / "raw").seed == seed
    assert load_key_file(tmp_path / "hex").seed == seed


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"type": "rsa", "seed": "00"}', "field 'type'"),
        ('{"seed": "zz"}', "field 'seed' is not valid hex"),
        ('{"seed": "0011"}', "must be 32 bytes"),
        ("{}", "field 'seed' is missing"),
    ],
)
def test_bad_key_files_are_rejected_with_the_reason(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(KeyFileError, match=message) as exc:
        load_key_file(p)
    assert str(p) in str(exc.value)


def test_public_key_must_match_seed(tmp_path):
    key = NodeKey.from_seed(bytes(32))
    obj = json.loads(key.to_json())
    obj["public_key"] = "00" * 32
    (tmp_path / "k.json").write_text(json.dumps(obj))
    with pytest.raises(KeyFileError, match="does not match"):
        load_key_file(tmp_path / "k.json")


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyFileError, match="not found"):
        load_key_file(tmp_path / "nope.json")


# ---------------------------------------------------------------- genesis


def test_genesis_round_trips_and_hash_is_stable(tmp_path):
    g = _genesis(checkpoint_interval=8, watermark_window=32)
    g.write(tmp_path / "genesis.json")
    g2 = load_genesis(tmp_path / "genesis.json")
    assert g2 == g
    assert g2.hash() == g.hash() and len(g.hash()) == 32
    assert g2.config().n == 4 and g2.config().checkpoint_interval == 8
    assert g.domain == b"test-chain"


def test_genesis_hash_changes_with_any_field():
    assert _genesis().hash() != _genesis(batch_max=7).hash()


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.update(chain_id="bad chain!"), "chain_id"),
        (lambda d: d["validators"][1].update(public_key="xyz"), "validators[1].public_key"),
        (lambda d: d["validators"][2].update(public_key="00" * 31), "validators[2].public_key"),
        (lambda d: d["validators"][0].update(index=3), "validators[0].index"),
        (lambda d: d["validators"][3].update(p2p_multiaddr="localhost:1"), "validators[3].p2p_multiaddr"),
        (lambda d: d["validators"][3].pop("p2p_multiaddr"), "validators[3].p2p_multiaddr"),
        (lambda d: d["consensus"].update(batch_max="7"), "consensus.batch_max"),
        (lambda d: d["consensus"].update(no_such=1), "consensus.no_such"),
        (lambda d: d["consensus"].update(n=7), "consensus.n"),
        (lambda d: d["consensus"].update(batch_max=0), "consensus"),
        (lambda d: d["validators"].pop(), "validators"),  # n=3 is not 3f+1 with f>=1
        (lambda d: d.update(genesis_time_ms=-1), "genesis_time_ms"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_bad_genesis_field_is_named(tmp_path, mutate, field):
    d = _genesis().to_dict()
    mutate(d)
    p = tmp_path / "genesis.json"
    p.write_text(json.dumps(d))
    with pytest.raises(GenesisError) as exc:
        load_genesis(p)
    assert field in str(exc.value)
    assert str(p) in str(exc.value)


def test_duplicate_validator_key_is_rejected():
    d = _genesis().to_dict()
    d["validators"][1]["public_key"] = d["validators"][0]["public_key"]
    with pytest.raises(GenesisError, match="duplicate"):
        Genesis.from_dict(d)


# ---------------------------------------------------------------- config


def test_config_round_trips_through_toml(tmp_path):
    c = NodeConfig(home=tmp_path, node_index=2, chain_id="c1", rpc_port=30000,
                   compression="none", fsync=False, max_open_files=300,
                   authenticated_state=False, state_versions=7)
    write_config(c)
    c2 = load_config(tmp_path)
    assert c2 == NodeConfig(home=tmp_path.resolve(), node_index=2, chain_id="c1",
                            rpc_port=30000, compression="none",
                            fsync=False, max_open_files=300,
                            authenticated_state=False, state_versions=7)
    assert NodeConfig(home=tmp_path, node_index=0, chain_id="c").authenticated_state is (
        DEFAULT_AUTHENTICATED_STATE)
    assert NodeConfig(home=tmp_path, node_index=0, chain_id="c").fsync  # fsync by default
    assert c2.rpc_host == "127.0.0.1"  # loopback unless the operator says otherwise
    assert c2.key_path == tmp_path.resolve() / "node_key.json"


@pytest.mark.parametrize(
    "line, field",
    [
        ('rpc_port = "abc"', "rpc_port"),
        ("rpc_port = 70000", "rpc_port"),
        ('p2p_listen = "127.0.0.1:26656"', "p2p_listen"),
        ('log_level = "loud"', "log_level"),
        ("node_index = -1", "node_index"),
        ("tick_ms = 0", "tick_ms"),
        ('byzantine = "silent"', "byzantine"),
        ('compression = "zstd"', "compression"),
        ('fsync = "no"', "fsync"),
        ("max_open_files = 10", "max_open_files"),
        ('max_open_files = "many"', "max_open_files"),
        ('authenticated_state = "yes"', "authenticated_state"),
        ('tx_index = "yes"', "tx_index"),
        ("state_versions = 0", "state_versions"),
        ("surprise = 1", "surprise"),
    ],
)
def test_bad_config_field_is_named(tmp_path, line, field):
    base = {"node_index": "node_index = 0", "chain_id": 'chain_id = "c"'}
    key = line.split("=")[0].strip()
    base[key] = line
    (tmp_path / "config.toml").write_text("\n".join(base.values()) + "\n")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert f"'{field}'" in str(exc.value) or field in str(exc.value)
    assert "config.toml" in str(exc.value)


@pytest.mark.parametrize("line", ['byzantine = ["silent"]', 'link_faults_file = "rules.json"'])
def test_a_testnet_field_in_a_node_config_says_where_it_moved(tmp_path, line):
    (tmp_path / "config.toml").write_text(f'node_index = 0\nchain_id = "c"\n{line}\n')
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    field = line.split("=")[0].strip()
    assert f"field '{field}' moved to `python -m testnet node`" in str(exc.value)
    assert "config.toml" in str(exc.value)


def test_missing_required_field_and_bad_toml(tmp_path):
    (tmp_path / "config.toml").write_text('chain_id = "c"\n')
    with pytest.raises(ConfigError, match="'node_index' is missing"):
        load_config(tmp_path)
    (tmp_path / "config.toml").write_text("node_index = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nowhere")
