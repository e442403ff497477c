"""network: moves opaque byte frames between validator indices (knows nothing of PBFT).

Public names: `Transport`, `PeerSpec`, `MemoryNetwork`, `MemoryTransport`, `Libp2pTransport`,
`FrameDecoder`, `FramingError`, `encode_frame`. Imports nothing of ours. `Libp2pTransport` is
imported lazily so that memory-only users do not pay for importing py-libp2p.
"""

from typing import TYPE_CHECKING, Any

from network.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    FrameDecoder,
    FramingError,
    encode_frame,
    encode_frames,
)
from network.memory import MemoryNetwork, MemoryTransport
from network.transport import PeerSpec, SendQueue, Transport

if TYPE_CHECKING:
    from network.libp2p import Libp2pTransport

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE", "FrameDecoder", "FramingError", "Libp2pTransport",
    "MemoryNetwork", "MemoryTransport", "PeerSpec", "SendQueue", "Transport",
    "encode_frame", "encode_frames",
]


def __getattr__(name: str) -> Any:
    if name == "Libp2pTransport":
        from network.libp2p import Libp2pTransport

        return Libp2pTransport
    raise AttributeError(name)
