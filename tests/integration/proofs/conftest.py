"""Fixtures for the proof tests: free port ranges."""

from __future__ import annotations

import pytest

from testnet.ports import free_port_base


@pytest.fixture
def port_base():
    return free_port_base(16)
