"""The py-libp2p host of a validator: its key pair from the validator's Ed25519 seed, its
PeerID from the public key in genesis, and a host offering only Noise and Yamux. Importing this
module installs network.libp2p_patches (every host built here runs with them).
Imports: multiaddr, libp2p, network.libp2p_patches. Nothing of ours beyond `network`.
"""

from __future__ import annotations

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from network import libp2p_patches  # noqa: F401  (installs the patches on import)

PROTOCOL_ID = TProtocol("/bftnode/consensus/1.0.0")


def key_pair_from_seed(seed: bytes) -> KeyPair:
    """The libp2p key pair of a validator, from its 32-byte Ed25519 seed."""
    if len(seed) != 32:
        raise ValueError("Ed25519 seed must be 32 bytes")
    sk = Ed25519PrivateKey.new(seed)
    return KeyPair(sk, sk.get_public_key())


def peer_id_from_public_key(public_key: bytes) -> ID:
    """The libp2p PeerID that genesis fixes for an Ed25519 public key."""
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key))


def secure_host(key_pair: KeyPair, listen: multiaddr.Multiaddr) -> IHost:
    """A py-libp2p host offering ONLY Noise for security and ONLY Yamux for muxing."""
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    # Static membership: no watermark-driven auto-dialling (min/low watermark 0).
    config = ConnectionConfig(min_connections=0, low_watermark=0, high_watermark=1024,
                              max_connections=1024, auto_connect_interval=3600.0)
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
        listen_addrs=[listen],
        connection_config=config,
    )
    # The swarm's AutoConnector dials every PeerID in the peerstore (target = mid-watermark),
    # including non-validators we refused. We dial validators ourselves, so switch it off.
    auto = getattr(host.get_network(), "auto_connector", None)
    if auto is not None:
        async def _no_auto_connect() -> None:
            return None

        auto.maybe_connect = _no_auto_connect
    return host


def _split_p2p(addr: str) -> tuple[multiaddr.Multiaddr, str | None]:
    """Strip a trailing /p2p/<id> from `addr`; return (transport address, id or None)."""
    parts = addr.rstrip("/").split("/p2p/")
    if len(parts) > 2:
        raise ValueError(f"bad multiaddr {addr!r}")
    return multiaddr.Multiaddr(parts[0]), (parts[1] if len(parts) == 2 else None)


_DNS = {"dns": 0, "dns4": 4, "dns6": 6}


async def resolve(addr: multiaddr.Multiaddr) -> list[multiaddr.Multiaddr]:
    """`/dns|dns4|dns6/<name>/tcp/<port>` -> its `/ip4|ip6/<address>/tcp/<port>` addresses
    through the system resolver (hosts file included), asked at each dial: a name's address
    may change (a restarted Kubernetes pod). An IP address is returned as it is. OSError when
    the name does not resolve."""
    first = addr.protocols()[0]
    family = _DNS.get(first.name)
    if family is None:
        return [addr]
    name = addr.value_for_protocol(first.name)
    fam = {0: trio.socket.AF_UNSPEC, 4: trio.socket.AF_INET, 6: trio.socket.AF_INET6}[family]
    infos = await trio.socket.getaddrinfo(name, None, family=fam, type=trio.socket.SOCK_STREAM)
    tail = str(addr)[len(f"/{first.name}/{name}"):]
    out = list(dict.fromkeys(
        f"/ip{6 if ':' in info[4][0] else 4}/{info[4][0]}{tail}" for info in infos))
    if not out:
        raise OSError(f"{name!r} does not resolve")
    return [multiaddr.Multiaddr(a) for a in out]
