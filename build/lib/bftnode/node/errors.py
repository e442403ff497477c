"""The node's two public exceptions. Imports: stdlib."""

from __future__ import annotations


class StartupError(Exception):
    """The node cannot start; the message says why (bad config, port in use, locked DB...)."""


class TxRejected(Exception):
    """A submitted transaction was refused before or instead of execution."""

    def __init__(self, reason: str, tx_hash: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.tx_hash = tx_hash
