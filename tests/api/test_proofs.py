"""The API's answers with proofs: full commits on blocks and headers, the validator set
at a height, proofs of accounts, nodes, apps and tx inclusion that check against the
served header, and a proof asked for while a block executes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fluxchain.api import queries
from fluxchain.api.queries import ApiError
from fluxchain.api.routes import openapi_document
from fluxchain.core.block import Header
from fluxchain.core.crypto import address_of, encode_address
from fluxchain.core.encoding import unpack
from fluxchain.core.merkle import verify_merkle_path
from fluxchain.core.params import COIN
from fluxchain.core.records import VALIDATORS, account_key
from fluxchain.core.statetree import StateProof, verify_proof
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Commit
from fluxchain.node.service import NodeService
from tests.api.test_api import HRP, Client, commit, run
from tests.support.chain import Builder, funded_key, owner_key


def decode(hex_text: str) -> Any:
    return unpack(bytes.fromhex(hex_text))


def check_state_proof(proof: dict[str, Any]) -> Header:
    """Every entry verifies against the served header, which its commit finalizes."""
    header = Header.from_fields(decode(proof["header_raw"]))
    commit_ = Commit.from_fields(decode(proof["commit_raw"]))
    assert commit_.block_hash == header.hash() and proof["height"] == header.height
    for entry in proof["entries"]:
        value = None if entry["value"] is None else bytes.fromhex(entry["value"])
        levels = StateProof.from_fields([bytes.fromhex(p) for p in entry["proof"]])
        assert verify_proof(header.state_root, bytes.fromhex(entry["key"]), value, levels)
    return header


def test_blocks_and_headers_are_served_with_their_commits_in_full(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        for _ in range(3):
            commit(service, b)
        block = await (await client.get("/blocks/2")).json()
        light = await (await client.get(f"/headers/{block['header']['hash']}")).json()
        assert light["height"] == 2 and light["commit"] == block["commit"]
        assert (await (await client.get("/headers/latest")).json())["height"] == 3
        header = Header.from_fields(decode(light["header_raw"]))
        assert header.hash().hex() == light["hash"] == block["header"]["hash"]
        assert block["header"]["raw"] == light["header_raw"]
        signed = await (await client.get("/validators?height=2")).json()
        validators = ValidatorSet.from_fields(decode(signed["validators_raw"]))
        assert validators.hash() == header.validators_hash and signed["height"] == 2
        full = Commit.from_fields(decode(light["commit_raw"]))
        assert [s["signature"] for s in light["commit"]["signatures"]] == [
            sig.hex() for _, sig in full.signatures
        ]
        full.verify(header.chain_id, validators, 2, header.hash())  # > 2/3 of the set
        assert (await client.get("/validators?height=4")).status == 404  # not yet
        assert (await client.get("/validators?height=0")).status == 400
        assert (await client.get("/headers/9")).status == 404

    run(tmp_path, body)


def test_state_answers_carry_proofs_that_check_against_the_head(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        to = address_of(owner_key(6).public_key)
        service.submit(b.transfer(funded_key(), to, 3 * COIN).raw)
        commit(service, b)
        account = await (await client.get(f"/accounts/{encode_address(to, HRP)}?prove=1")).json()
        header = check_state_proof(account["proof"])
        assert header.height == service.chain.height
        keys = [bytes.fromhex(e["key"]) for e in account["proof"]["entries"]]
        assert keys == [account_key(to), VALIDATORS]  # and the set that signs the next block
        nobody = b"\x07" * 20
        empty = await (await client.get(f"/accounts/{encode_address(nobody, HRP)}?prove=1")).json()
        entry = empty["proof"]["entries"][0]
        assert empty["balance"] == 0 and entry["value"] is None
        assert entry["key"] == account_key(nobody).hex()
        check_state_proof(empty["proof"])  # the absence, proven
        node_id = service.chain.genesis.nodes[0].node_id().hex()
        node = await (await client.get(f"/nodes/{node_id}?prove=1")).json()
        check_state_proof(node["proof"])
        missing = await client.get("/apps/nothing-here?prove=1")
        assert missing.status == 404
        absent = await missing.json()
        assert absent["error"]["reason"] == "not_found"
        check_state_proof(absent["proof"])
        assert (await client.get("/accounts/x?prove=2")).status == 400

    run(tmp_path, body)


def test_tx_inclusion_proof_leads_to_the_tx_root(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        to = address_of(owner_key(6).public_key)
        txs = [b.transfer(funded_key(), to, COIN) for _ in range(3)]
        for tx in txs:
            service.submit(tx.raw)
        commit(service, b)
        for tx in txs:
            answer = await (await client.get(f"/txs/{tx.id.hex()}?prove=1")).json()
            proof = answer["proof"]
            header = Header.from_fields(decode(proof["header_raw"]))
            assert bytes.fromhex(proof["tx_raw"]) == tx.raw
            path = [bytes.fromhex(h) for h in proof["path"]]
            assert verify_merkle_path(header.tx_root, tx.id, proof["index"], proof["count"], path)
        pending = await (await client.get("/txs/" + "00" * 32 + "?prove=1")).json()
        assert pending["status"] == "unknown" and "proof" not in pending

    run(tmp_path, body)


def test_a_proof_asked_while_a_block_executes_waits_for_its_commit(tmp_path: Path) -> None:
    """The state tree holds an executing block's writes before its commit: a proof made then
    would be against a root no header carries. The query refuses (state_pending) and the
    route answers once the block is committed, proven against it."""

    async def body(client: Client, service: NodeService, b: Builder) -> None:
        commit(service, b)
        chain = service.chain
        to = address_of(owner_key(6).public_key)
        block, block_commit = b.block([b.transfer(funded_key(), to, COIN)])
        execution = chain.execute_proposal(block)
        try:
            queries.account(service, encode_address(to, HRP), prove=True)
            raise AssertionError("a proof against an executing block's state")
        except ApiError as exc:
            assert exc.reason == queries.STATE_PENDING

        def finish() -> None:
            chain.commit_block(block, block_commit, execution)
            b.last_commit = block_commit
            service.on_committed(block, tuple(chain.events(block.height)))

        asyncio.get_running_loop().call_later(0.2, finish)
        answer = await (await client.get(f"/accounts/{encode_address(to, HRP)}?prove=1")).json()
        assert check_state_proof(answer["proof"]).height == block.height == chain.height

    run(tmp_path, body)


def test_a_plain_read_while_a_block_executes_shows_the_committed_state(tmp_path: Path) -> None:
    """An executing block's writes are pending in the state until (and unless) it commits:
    a plain answer given meanwhile must show the head's state, not a block that may never
    be committed."""

    async def body(client: Client, service: NodeService, b: Builder) -> None:
        commit(service, b)
        chain = service.chain
        to = encode_address(address_of(owner_key(6).public_key), HRP)
        before = await (await client.get(f"/accounts/{to}")).json()
        block, _ = b.block([b.transfer(funded_key(), address_of(owner_key(6).public_key), COIN)])
        chain.execute_proposal(block)  # executed, voted on, never committed
        during = await (await client.get(f"/accounts/{to}")).json()
        assert during["balance"] == before["balance"], "an uncommitted block's write was shown"
        stats = await client.get("/network/stats")
        assert stats.status == 200

    run(tmp_path, body)


def test_openapi_documents_the_proofs() -> None:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    assert {"StateAnswerProof", "TxInclusionProof", "LightHeaderAnswer", "ValidatorsAnswer"} <= set(
        schemas
    )
    for path in ("/accounts/{address}", "/nodes/{id}", "/apps/{name}", "/txs/{id}"):
        names = [p["name"] for p in doc["paths"][path]["get"]["parameters"]]
        assert "prove" in names, path
    assert "/headers/{ref}" in doc["paths"]
    height = doc["paths"]["/validators"]["get"]["parameters"][0]
    assert height["name"] == "height" and height["in"] == "query"
