"""Fixtures shared by the node-level tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxchain.store.chain import Chain
from tests.support.chain import open_chain


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    """A fresh chain at genesis in its own home, closed after the test."""
    chain = open_chain(tmp_path / "node")
    try:
        yield chain
    finally:
        chain.close()
