"""Exceptions of the consensus core.

Byzantine input is never an exception (it becomes `Evidence`); these are for local misuse and
broken local invariants. Imports only the standard library.
"""


class ConsensusError(Exception):
    """Base class."""


class LocalProtocolError(ConsensusError):
    """Our own API was misused (e.g. an event the replica cannot accept)."""


class InvariantViolation(ConsensusError):
    """A local invariant broke: the node must stop rather than continue wrong."""


class DecodeError(ConsensusError):
    """Bytes that are not a valid message (raised by `codec.decode`; the shell drops them)."""
