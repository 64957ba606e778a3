"""Golden vectors: the bytes of every record, tx kind and message, pinned.

A scripted history over every tx kind runs on a fresh chain; the test pins each block's
hash and state root, the bytes of the first tx of every kind, every state table's
records (a digest of the table and its first record's bytes), the consensus messages and
one p2p frame of every kind. A change to any encoding, or to any rule's result, shows up
here as the table or kind whose bytes moved.

Refactors that must not change encodings (issue 19's record codec) keep this file passing
unchanged. A deliberate protocol change regenerates the vectors and says so in its commit:

    python -m tests.unit.test_golden_vectors --write
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from hashlib import sha256
from pathlib import Path
from typing import Any

from consensus.messages import Proposal
from fluxchain.core.appspec import Port, Protocol
from fluxchain.core.block import NO_COMMIT_HASH, Block, Header
from fluxchain.core.crypto import address_of
from fluxchain.core.encoding import pack
from fluxchain.core.merkle import merkle_root
from fluxchain.core.nodes import get_node, get_node_by_key
from fluxchain.core.params import COIN, Tier
from fluxchain.core.records import META
from fluxchain.core.schema import TABLES
from fluxchain.core.sealing import SEALED_KEY_SIZE
from fluxchain.core.secrets import get_hosts
from fluxchain.core.tx import (
    AppSecrets,
    AppSecretsReject,
    AppSecretsSeal,
    Seal,
    Secret,
    SecretKind,
    Transfer,
    Tx,
    TxKind,
    secrets_fee,
)
from fluxchain.core.uptime import targets_of
from fluxchain.core.votes import Vote, VoteType
from fluxchain.core.vrf import VRF_SIGNATURE_SIZE
from fluxchain.node.compact import CompactProposal
from fluxchain.store.chain import Chain
from p2p import messages as wire
from tests.support.chain import (
    VALIDATORS,
    Builder,
    app_cancel,
    app_extend,
    app_register,
    app_spec,
    app_update,
    evidence,
    geo_rules,
    history_genesis,
    node_confirm,
    node_hot_key,
    node_register,
    node_unregister,
    node_update,
    open_chain,
    owner_key,
    uptime_attest,
)

VECTORS = Path(__file__).with_name("golden_vectors.json")


def _history(home: Path) -> dict[str, Any]:
    """Run the scripted history; return what it pins."""
    chain = open_chain(home, history_genesis())
    b = Builder(chain)
    blocks: list[list[Any]] = []
    txs: dict[str, str] = {}

    def commit(batch: list[Tx]) -> Block:
        block = b.commit(batch)
        assert not b.rejected, f"block {block.height} rejected {b.rejected}"
        for raw in block.txs:
            tx = Tx.decode(raw, 1 << 20)
            txs.setdefault(TxKind(tx.kind).name, raw.hex())
        blocks.append([block.height, block.hash().hex(), block.header.state_root.hex()])
        return block

    funder = owner_key(VALIDATORS)
    owner = owner_key(VALIDATORS + 1)
    hot = node_hot_key(VALIDATORS)
    rotated = node_hot_key(VALIDATORS + 1)
    commit([b.transfer(funder, address_of(owner.public_key), 200_000 * COIN)])
    register = node_register(b, owner, hot, Tier.CUMULUS, "DE", "EU")
    # a domain per tcp port and a udp port: the domain table and both protocols are pinned
    ports = (Port(31000, 80, domains=("golden.example.com",)), Port(31053, 53, Protocol.UDP))
    spec = app_spec(funder, "golden", ports=ports)
    nowhere = app_spec(funder, "nowhere", geolocation=geo_rules("AS"))  # under-placed
    commit([register, app_register(b, funder, spec), app_register(b, funder, nowhere)])
    node_id = register.id[:20]
    commit([node_confirm(b, hot, node_id, Tier.CUMULUS)])
    commit([node_update(b, owner, node_id, "FR", "EU", new_key=rotated)])
    www = (replace(ports[0], domains=("golden.example.com", "www.golden.example.com")), ports[1])
    commit([app_update(b, funder, app_spec(funder, "golden", instances=4, ports=www))])
    commit([app_extend(b, funder, "golden", 10)])
    attested: set[int] = set()
    for _ in range(8):  # through epoch starts, rings and settlements
        attests = []
        epoch = _epoch(chain)
        if (chain.height + 1) % chain.params.epoch_length and epoch not in attested:
            attested.add(epoch)
            for i in range(VALIDATORS):
                checker = _node_id_of(chain, node_hot_key(i).public_key)
                k = chain.params.checkers_per_node
                targets = targets_of(chain.state, checker, k) if checker else []
                if checker and targets:
                    verdicts = dict.fromkeys(targets, True)
                    attests.append(uptime_attest(b, node_hot_key(i), checker, epoch, verdicts))
        commit(attests)
    mid = _tables(chain)
    height = chain.height
    commit([evidence(b, funder, node_hot_key(VALIDATORS - 1), height)])
    commit([app_cancel(b, funder, "golden"), node_unregister(b, owner, node_id)])
    for _ in range(4):
        commit([])
    end = _tables(chain)
    sealed = _secrets_history(chain, b, commit, funder)
    chain.close()
    return {"blocks": blocks, "txs": txs, "tables": {"mid": mid, "end": end, "secrets": sealed}}


def _secrets_history(chain: Chain, b: Builder, commit: Any, funder: Any) -> dict[str, list[Any]]:
    """Appended after the first history (whose pins stay as they were): an app's owner sets
    secrets sealed to one host, which seals the key on to the others; one rejects it.
    Ciphertexts and sealed keys are fixed bytes: the chain checks their shape, never opens
    them."""
    commit([app_register(b, funder, app_spec(funder, "sealed", ports=(31100,)))])
    hosts = get_hosts(chain.state, "sealed")
    check = b"\x05" * 32
    secret = Secret("web", SecretKind.ENV, "DB_PASSWORD", b"\x07" * 40)
    owner_seal = (Seal(hosts[0], b"\x04" * SEALED_KEY_SIZE),)
    owner_sets = AppSecrets("sealed", b"\x06" * 16, check, (secret,), owner_seal)
    fee = chain.params.min_fee + secrets_fee(len(secret.ciphertext), chain.params)  # 2 min_fee
    commit([b.tx(funder, owner_sets, fee=fee)])
    hot = {node_hot_key(i).public_key: node_hot_key(i) for i in range(VALIDATORS)}
    sealer = get_node(chain.state, hosts[0])
    assert sealer is not None
    seals = tuple(Seal(h, bytes([3 + i]) * SEALED_KEY_SIZE) for i, h in enumerate(hosts[1:]))
    payload = AppSecretsSeal("sealed", hosts[0], check, seals)
    # in the same block, one of them rejects its key ("it does not open") and its sealer
    rejecter = get_node(chain.state, hosts[1])
    assert rejecter is not None
    reject = AppSecretsReject("sealed", hosts[1], check)
    commit(
        [b.tx(hot[sealer.node_key], payload, fee=0), b.tx(hot[rejecter.node_key], reject, fee=0)]
    )
    return _tables(chain)


def _tables(chain: Chain) -> dict[str, list[Any]]:
    """Per state table: record count, digest of every (key, record bytes), first record."""
    tables: dict[str, list[Any]] = {}
    for prefix in sorted(TABLES):
        digest = sha256()
        first = ""
        count = 0
        for key, record in chain.state.items(prefix):
            raw = _encoded(record)
            digest.update(len(key).to_bytes(4, "big") + key + len(raw).to_bytes(4, "big") + raw)
            first = first or raw.hex()
            count += 1
        tables[prefix.decode("latin-1")] = [count, digest.hexdigest(), first]
    return tables


def _encoded(record: Any) -> bytes:
    return bytes(pack(record.to_fields()))


def _epoch(chain: Chain) -> int:
    meta = chain.state.get(META)
    return int(meta.epoch)


def _node_id_of(chain: Chain, node_key: bytes) -> bytes | None:
    node = get_node_by_key(chain.state, node_key)
    return None if node is None else node.node_id


def _messages() -> dict[str, str]:
    """Consensus messages and one p2p frame of every kind."""
    key = node_hot_key(0)
    chain_id = "golden-1"
    block_hash = sha256(b"block").digest()
    vote = Vote.create(key, chain_id, VoteType.PREVOTE, 7, 1, block_hash)
    vote_bytes = bytes(pack(vote.to_fields()))
    proposal = Proposal.create(key, chain_id, 7, 1, 0, block_hash)
    frames: list[Any] = [
        wire.Hello(3, chain_id, b"\x01" * 32, key.public_key, "127.0.0.1:16125", b"\x02" * 32),
        wire.Auth(b"\x03" * 64),
        wire.Status(9, b"\x06" * 32, 4),
        wire.Gossip(wire.Kind.VOTE, vote_bytes),
        wire.GetBlocks(1, 5, 10),
        wire.Blocks(2, ((b"\x04" * 10, b"\x05" * 10),)),
        wire.GetPeers(),
        wire.Peers(("127.0.0.1:16125", "10.0.0.2:16125")),
        wire.RoundState(7, 1, 2, block_hash, (wire.VoteBits(1, 1, 0b1011),)),
        # Compact proposals (issue 22): the txs a receiver lacks, asked and answered.
        wire.GetProposalTxs(3, block_hash, sha256(b"tx 1").digest() + sha256(b"tx 2").digest()),
        wire.ProposalTxs(3, (b"tx 1", b"tx 2")),
        # Txs relayed by id (issue 22, wan22n): announced, asked for, answered.
        wire.TxIds(sha256(b"tx 1").digest() + sha256(b"tx 2").digest()),
        wire.GetTxs(4, sha256(b"tx 2").digest()),
        wire.TxBodies(4, (b"tx 2",)),
    ]
    out = {"proposal": proposal.encode().hex(), "vote": vote_bytes.hex()}
    # A transfer with a memo (issue 22); one without keeps its bytes (the txs above).
    memo = Transfer(b"\x07" * 20, 5, b"invoice 42")
    out["tx.TRANSFER.memo"] = Tx.create(key, chain_id, 3, 2_000, memo).raw.hex()
    out["compact_proposal"] = _compact_proposal(key, chain_id).hex()
    for frame in frames:
        name = wire.kind_of(frame).name
        out[f"p2p.{name}"] = wire.encode(frame).hex()
        assert wire.encode(wire.decode(wire.encode(frame))) == wire.encode(frame)
    return out


def _compact_proposal(key: Any, chain_id: str) -> bytes:
    """A COMPACT_PROPOSAL payload: a proposal, its block's header and the ids of two txs."""
    ids = [sha256(b"tx 1").digest(), sha256(b"tx 2").digest()]
    header = Header(
        chain_id, 7, 1, 1_000_000, b"\x01" * 32, key.public_key, b"\x02" * VRF_SIGNATURE_SIZE,
        merkle_root(ids), b"\x03" * 32, b"\x04" * 32, b"\x05" * 32, NO_COMMIT_HASH,
    )  # fmt: skip
    proposal = Proposal.create(key, chain_id, 7, 1, -1, header.hash())
    return bytes(pack(CompactProposal(proposal, header, b"".join(ids), None).to_fields()))


def golden() -> dict[str, Any]:
    """Everything this test pins, computed from the current code."""
    with tempfile.TemporaryDirectory() as tmp:
        out = _history(Path(tmp))
    out["messages"] = _messages()
    return out


def test_encodings_and_results_match_the_golden_vectors() -> None:
    expected = json.loads(VECTORS.read_text())
    actual = json.loads(json.dumps(golden()))
    sections = [("txs", ...), ("tables", "mid"), ("tables", "end"), ("tables", "secrets")]
    sections.append(("messages", ...))
    for section, point in sections:
        want = expected[section] if point is ... else expected[section][point]
        got = actual[section] if point is ... else actual[section][point]
        for name in sorted(set(want) | set(got)):
            assert got.get(name) == want.get(name), (
                f"{section}/{name} changed: an encoding or a rule's result moved "
                "(see this file's docstring)"
            )
    for want, got in zip(expected["blocks"], actual["blocks"], strict=True):
        assert got == want, f"block {want[0]}: hash or state root changed"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.unit.test_golden_vectors --write")
    VECTORS.write_text(json.dumps(golden(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {VECTORS}")
