"""Key layout of the ledger database: one prefix byte per keyspace, big-endian integers.

Owns every byte string used as a key, so iteration order is height / sequence order and one
keyspace never overlaps another. Used by both LevelDBStore and MemoryStore (same layout, same
recovery code). Imports: stdlib only.

Keyspaces (first byte):
  M  meta            M + name                              -> bytes
  H  block header    H + height(8)                         -> BlockHeader (msgpack)
  K  block body      K + height(8)                         -> BlockBody: txs + certificate
                                                                (LevelDB: in the bodies/ DB)
  T  tx index        T + tx_hash                           -> TxRecord (msgpack)
  C  client index    C + len(client)(1) + client + seq(8)  -> tx_hash
  W  client top      W + len(client)(1) + client           -> highest executed request_seq(8)
  F  client floor    F + len(client)(1) + client           -> seq(8): with the state tree on,
                     the client's C entries at or below it are deleted (it trails the top by
                     dedup_window), so the ledger keeps a window per client, not a key per tx
  G  client seqs     G + len(client)(1) + client           -> storage.client_seqs record: top,
                     window and the seqs of the window that did not execute (state tree on:
                     the tree's proof of a tx's status by client and seq)
  E  (legacy)        E + len(client)(1) + client + seq(8)  -> height(8): the per-seq dedup
                     window of ledgers before session 5; recover() folds it into W and deletes it
  S  app state       S + app key                           -> app value
  V  view state      V                                     -> ViewState
  O  own votes       O + kind(1) + view(8) + seq(8)        -> OwnVote
  P  stable ckpt     P                                     -> StableCheckpoint
  Q  prepared cert   Q + view(8) + seq(8)                  -> PreparedCert
  X  conviction      X + replica(8)                        -> Conviction (first one kept)
  A  state tree      A + n|r|s|p + ...                     -> the authenticated state tree's
                     nodes, roots per version, stale marks, pruned-to (storage.merkle_tree)
  Z  snapshot pages  Z + tree key                          -> value: a snapshot import's
                     verified pages, moved into place when the import finishes
  R  state cert      R + height(8)                         -> StateCert: 2f+1 StateVotes on the
                                                              block's roots (main DB)
  N  app events      N + height(8)                         -> the block's application events,
                     encoded by the node (opaque here); written with the block, pruned with it
                     (LevelDB: in the bodies/ DB, like K)
  B  block by hash   B + block_hash(32)                    -> height(8): written with the
                     block, pruned with it (RPC `block_by_hash`); ledgers older than it are
                     indexed at open (META_BLOCK_INDEX marks it done)
"""

from __future__ import annotations

import struct

META = b"M"
HEADER = b"H"
BODY = b"K"
TX = b"T"
CLIENT_INDEX = b"C"
CLIENT_WINDOW = b"E"
CLIENT_TOP = b"W"
CLIENT_FLOOR = b"F"
CLIENT_SEQS = b"G"
STATE = b"S"
VIEW = b"V"
VOTE = b"O"
CHECKPOINT = b"P"
PREPARED = b"Q"
CONVICTION = b"X"
MERKLE = b"A"
STAGING = b"Z"
STATE_CERT = b"R"
EVENTS = b"N"
BLOCK_HASH = b"B"
TX_ATTR = b"I"  # event-attribute index of txs (storage.tx_attrs): derived, rebuildable
TX_ATTR_BY_HEIGHT = b"J"  # the I keys each height wrote (pruning deletes them with the block)

KEYSPACES = (
    META, HEADER, BODY, TX, CLIENT_INDEX, CLIENT_WINDOW, CLIENT_TOP, CLIENT_FLOOR, CLIENT_SEQS,
    STATE, VIEW,
    VOTE, CHECKPOINT, PREPARED, CONVICTION, MERKLE, STAGING, STATE_CERT, EVENTS, BLOCK_HASH,
    TX_ATTR, TX_ATTR_BY_HEIGHT,
)

# what the authenticated state tree covers: its keys are these ledger keys themselves (the
# first byte is the namespace): app state and one executed-seqs record per client. Tx records
# are proven by their block's results root, and the client index (C, a key per tx: two tree
# writes per tx, its insert and its delete when the window passes) is outside the tree
AUTH_KEYSPACES = (STATE, CLIENT_SEQS)

# consensus records (LevelDBStore keeps them in their own DB: storage.leveldb._PlyvelKV)
RECORD_KEYSPACES = (VIEW, VOTE, CHECKPOINT, PREPARED, CONVICTION)

# meta names
META_CHAIN_ID = META + b"chain_id"
META_GENESIS = META + b"genesis_hash"
META_SCHEMA = META + b"schema"
META_HEIGHT = META + b"height"  # last applied height (written FIRST in a block batch)
META_VERIFIED = META + b"verified"  # hash chain verified up to this height
META_BASE = META + b"base"  # (height, hash) the chain starts from (0 or a state import)
META_IMPORTING = META + b"importing"  # set while a state import is in progress
META_BLOCK_INDEX = META + b"block_index"  # the B index covers every stored block
META_TX_ATTRS = META + b"tx_attrs"  # the I index covers the stored blocks up to this height

VIEW_KEY = VIEW
CHECKPOINT_KEY = CHECKPOINT

# own-vote kinds (key order: kind, view, seq)
KIND_PRE_PREPARE = 1
KIND_PREPARE = 2
KIND_COMMIT = 3
KIND_VIEW_CHANGE = 4
KIND_NEW_VIEW = 5

_U64 = struct.Struct(">Q")


def u64(n: int) -> bytes:
    try:
        return _U64.pack(n)
    except struct.error:
        raise ValueError(f"integer {n} out of range for a 64-bit key") from None


def from_u64(b: bytes) -> int:
    if len(b) != 8:
        raise ValueError(f"expected 8 bytes, got {len(b)}")
    return int.from_bytes(b, "big")


def header(height: int) -> bytes:
    return HEADER + u64(height)


def body(height: int) -> bytes:
    return BODY + u64(height)


def events(height: int) -> bytes:
    return EVENTS + u64(height)


def block_hash(block_hash: bytes) -> bytes:
    return BLOCK_HASH + block_hash


def tx(tx_hash: bytes) -> bytes:
    return TX + tx_hash


def client_tag(client_id: bytes) -> bytes:
    """Length-prefixed client id: one client's keys never prefix another's."""
    n = len(client_id)
    if n > 255:
        raise ValueError(f"client id of {n} bytes is longer than 255")
    return _LEN[n] + client_id


_LEN = [bytes([i]) for i in range(256)]


def client_index(client_id: bytes, seq: int) -> bytes:
    return CLIENT_INDEX + client_tag(client_id) + u64(seq)


def client_window_prefix(client_id: bytes) -> bytes:
    return CLIENT_WINDOW + client_tag(client_id)


def client_window(client_id: bytes, seq: int) -> bytes:
    return CLIENT_WINDOW + client_tag(client_id) + u64(seq)


def parse_client_window(key: bytes) -> tuple[bytes, int]:
    """(client_id, seq) of an E-key; raises ValueError if malformed."""
    if not key.startswith(CLIENT_WINDOW) or len(key) < 10:
        raise ValueError(f"not a client-window key: {key!r}")
    n = key[1]
    if len(key) != 2 + n + 8:
        raise ValueError(f"client-window key has bad length: {key!r}")
    return key[2 : 2 + n], from_u64(key[2 + n :])


def client_top(client_id: bytes) -> bytes:
    return CLIENT_TOP + client_tag(client_id)


def client_floor(client_id: bytes) -> bytes:
    return CLIENT_FLOOR + client_tag(client_id)


def client_seqs(client_id: bytes) -> bytes:
    return CLIENT_SEQS + client_tag(client_id)


def parse_client_seqs(key: bytes) -> bytes:
    """client_id of a G-key; raises ValueError if malformed."""
    if not key.startswith(CLIENT_SEQS) or len(key) < 2 or len(key) != 2 + key[1]:
        raise ValueError(f"not a client-seqs key: {key!r}")
    return key[2:]


def parse_client_top(key: bytes) -> bytes:
    """client_id of a W-key; raises ValueError if malformed."""
    if not key.startswith(CLIENT_TOP) or len(key) < 2 or len(key) != 2 + key[1]:
        raise ValueError(f"not a client-top key: {key!r}")
    return key[2:]


def state(app_key: bytes) -> bytes:
    return STATE + app_key


def vote(kind: int, view: int, seq: int) -> bytes:
    return VOTE + bytes([kind]) + u64(view) + u64(seq)


def parse_vote(key: bytes) -> tuple[int, int, int]:
    if len(key) != 18 or not key.startswith(VOTE):
        raise ValueError(f"not an own-vote key: {key!r}")
    return key[1], from_u64(key[2:10]), from_u64(key[10:18])


def prepared(view: int, seq: int) -> bytes:
    return PREPARED + u64(view) + u64(seq)


def parse_prepared(key: bytes) -> tuple[int, int]:
    """(view, seq) of a Q-key; raises ValueError if malformed."""
    if len(key) != 17 or not key.startswith(PREPARED):
        raise ValueError(f"not a prepared-certificate key: {key!r}")
    return from_u64(key[1:9]), from_u64(key[9:17])


def state_certificate(height: int) -> bytes:
    return STATE_CERT + u64(height)


def conviction(replica: int) -> bytes:
    return CONVICTION + u64(replica)


def prefix_end(prefix: bytes) -> bytes | None:
    """Smallest key greater than every key starting with `prefix` (None: no upper bound)."""
    p = bytearray(prefix)
    while p:
        if p[-1] != 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None
