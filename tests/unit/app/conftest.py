"""Fixtures for the application tests."""

from __future__ import annotations

import pytest
from app_chain import Chain


@pytest.fixture
def chain() -> Chain:
    return Chain()
