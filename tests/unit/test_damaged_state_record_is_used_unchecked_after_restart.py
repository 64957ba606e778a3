"""Attack (review of issue 18): one stored state record (`S`) is damaged or lost while the
node is down (a torn disk sector, an operator's stray write). Before issue 18 the tree was
rebuilt from every `S` record at start-up, so any such damage failed the root check
against the head. Now the open reads only the root, and the State reads `S` records on
demand through `StoredState.get` with no check against the tree: the damaged value is
used as if committed. Only a write to the key (the tree then loads the leaf's branch and
checks the leaf hash) notices. A record that is only read (the validator set, a node, a
node load that placement skips, an account whose balance a check reads) steers execution
and the node then refuses valid blocks as the proposer's fault (bad_state_root,
bad_validators_hash) or serves false data, instead of stopping with store_mismatch.

Expected: what the State reads from the store agrees with the tree whose root was checked
against the head, or the node refuses it as damaged (store_mismatch), as for a branch.
"""

from __future__ import annotations

import asyncio
from hashlib import sha256
from pathlib import Path

import plyvel
import pytest
from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.server import create_app
from fluxchain.core.crypto import encode_address
from fluxchain.core.encoding import pack
from fluxchain.core.errors import Reason, StoreError
from fluxchain.core.records import VALIDATORS, Account, account_key
from fluxchain.node.service import NodeService
from fluxchain.store.db import STATE
from tests.support.chain import Builder, funded_key, open_chain


def _home(path: Path) -> None:
    chain = open_chain(path)
    builder = Builder(chain)
    for height in range(3):
        builder.commit([builder.transfer(funded_key(), bytes([height, 1]) * 10)])
    chain.close()


def _read_checked(path: Path, key: bytes) -> None:
    chain = open_chain(path)
    try:
        try:
            record = chain.state.get(key)
        except StoreError as refused:
            assert refused.reason is Reason.STORE_MISMATCH
            return
        try:
            committed = chain.tree.get(key)  # the tree whose root matches the head block
        except StoreError as damaged:
            pytest.fail(f"the State read {record!r} where the checked tree finds {damaged}")
        got = None if record is None else pack(record.to_fields())
        assert got == committed, "a damaged state record was read as committed state"
    finally:
        chain.close()


def _account_below_the_root(path: Path) -> bytes:
    """An account whose leaf is not a child of the root branch (so the open does not read
    it): a recipient of `_home`'s transfers."""
    chain = open_chain(path)
    try:
        for height in range(3):
            key = account_key(bytes([height, 1]) * 10)
            slot = int(sha256(key).hexdigest()[0], 16)
            if isinstance(chain.tree._top, list) and isinstance(chain.tree._top[slot], list):
                continue  # loaded: a branch read at open
            if isinstance(chain.tree._top, list) and not isinstance(chain.tree._top[slot], bytes):
                return key
    finally:
        chain.close()
    raise AssertionError("no account below the root")


def test_an_altered_account_record_is_read_as_committed(tmp_path: Path) -> None:
    _home(tmp_path / "home")
    key = _account_below_the_root(tmp_path / "home")
    db = plyvel.DB(str(tmp_path / "home"))
    db.put(STATE + key, pack(Account(10**18, 0).to_fields()))
    db.close()
    _read_checked(tmp_path / "home", key)


def test_a_lost_validator_set_record_is_read_as_absent(tmp_path: Path) -> None:
    _home(tmp_path / "home")
    db = plyvel.DB(str(tmp_path / "home"))
    db.delete(STATE + VALIDATORS)
    db.close()
    _read_checked(tmp_path / "home", VALIDATORS)


def test_an_altered_record_read_by_the_api_stops_the_node(tmp_path: Path) -> None:
    """The same damage met by an API query: the client gets 503 store_mismatch, never the
    damaged balance, and the node is told to stop."""
    _home(tmp_path / "home")
    key = _account_below_the_root(tmp_path / "home")
    db = plyvel.DB(str(tmp_path / "home"))
    db.put(STATE + key, pack(Account(10**18, 0).to_fields()))
    db.close()
    chain = open_chain(tmp_path / "home")
    told: list[StoreError] = []
    service = NodeService(chain, storage_failed=told.append)
    address = encode_address(key[1:], chain.params.address_hrp)

    async def query() -> tuple[int, dict[str, dict[str, str]]]:
        async with TestClient(TestServer(create_app(service))) as client:
            answer = await client.get(f"/accounts/{address}")
            return answer.status, await answer.json()

    try:
        status, body = asyncio.run(query())
    finally:
        chain.close()
    assert status == 503 and body["error"]["reason"] == "store_mismatch", body
    assert [error.reason for error in told] == [Reason.STORE_MISMATCH]
