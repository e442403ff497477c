"""A request refused by the pool's per-client bound (max_pending) is JSON-RPC -32013
`client_quota`, and the client raises ClientQuotaExceeded (a TxRejected) for it; other
refusals stay -32001 TxRejected."""

from __future__ import annotations

from bftnode.client import TxRejected
from bftnode.client.errors import ClientQuotaExceeded, rpc_error
from bftnode.rpc.errors import CLIENT_QUOTA, CODE_NAMES, TX_REJECTED, rejection_code


def test_the_pools_client_quota_reason_maps_to_its_own_code():
    reason = "client quota: this client already has 5000 requests pending (max_pending); wait"
    assert rejection_code(reason) == CLIENT_QUOTA == -32013
    assert CODE_NAMES[CLIENT_QUOTA] == "client_quota"
    for other in ("rate limited", "pool full", "expired", "request_seq too old"):
        assert rejection_code(other) == TX_REJECTED


def test_the_client_raises_a_tx_rejected_subclass_for_it():
    exc = rpc_error({"code": CLIENT_QUOTA, "message": "tx rejected: client quota: ..."})
    assert isinstance(exc, ClientQuotaExceeded) and isinstance(exc, TxRejected)
    assert not isinstance(rpc_error({"code": TX_REJECTED, "message": "x"}), ClientQuotaExceeded)
