"""A rejection's metric label comes from a closed set, whatever text the reason carries."""

from hypothesis import given
from hypothesis import strategies as st

from bftnode.node.waiters import _REJECTION_CODES, rejection_label

LABELS = {label for _, label in _REJECTION_CODES} | {"tx:other"}


@given(st.text(max_size=80))
def test_any_reason_text_maps_into_the_closed_set(reason):
    assert rejection_label(reason) in LABELS


def test_request_size_in_the_reason_does_not_reach_the_label():
    labels = {rejection_label(f"op of {n} bytes exceeds max_request_bytes=1") for n in range(1000)}
    assert labels == {"tx:too-large"}


def test_known_reasons_keep_their_codes():
    assert rejection_label("rate limited") == "tx:rate-limited"
    assert rejection_label("bad client signature") == "tx:bad-signature"
    assert rejection_label("expired") == "tx:expired"
    assert rejection_label("evidence kind 'x' unknown") == "tx:other"
