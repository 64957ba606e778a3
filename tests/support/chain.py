"""The chain builder: a small devnet genesis with known keys, signed txs of every kind, and
blocks with their commits on a real store `Chain` (`Builder`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from fluxchain.core import vrf
from fluxchain.core.accounts import get_account
from fluxchain.core.appspec import AppSpec, Component, GeoRule, Port
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.genesis import Genesis
from fluxchain.core.params import COIN, Tier
from fluxchain.core.proposer import proposer as proposer_of
from fluxchain.core.tx import (
    FEE_FREE,
    AppCancel,
    AppExtend,
    AppRegister,
    AppUpdate,
    Benchmark,
    Evidence,
    Hardware,
    NodeConfirm,
    NodeRegister,
    NodeUnregister,
    NodeUpdate,
    Payload,
    Transfer,
    Tx,
    UptimeAttest,
    UptimeReport,
    prove_node_key,
)
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Commit, Vote, VoteType, evidence_pair, sign_commit
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from fluxchain.store.chain import Chain
from fluxchain.store.verifier import VerifierPool
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key, node_key_path

VALIDATORS = 4
FEE = 1_000
HARDWARE = Hardware(4, 8_192, 220)  # meets every devnet tier


def default_fee(payload: Payload, fee: int | None = None) -> int:
    """`fee`, or if None what the tx helpers pay: FEE, and 0 for a fee-free kind (it
    carries no fee: `fee_not_zero`)."""
    if fee is not None:
        return fee
    return 0 if payload.KIND in FEE_FREE else FEE


@cache
def owner_key(i: int) -> SigningKey:
    return derive_key(INSECURE_TEST_MNEMONIC, account_path(i))


@cache
def node_hot_key(i: int) -> SigningKey:
    return derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i))


@cache
def devnet_genesis(validators: int = VALIDATORS) -> Genesis:
    # The devnet's unbonding period is days long (its light clients' trust period); the
    # chain-rule tests walk a node through its unbonding in 30 blocks.
    params = replace(devnet_params(), unbonding_period=30)
    return new_devnet_genesis(validators, genesis_time_ms=1_000_000, params=params)


@cache
def history_genesis() -> Genesis:
    """The devnet with windows short enough that a few dozen blocks see every lifecycle:
    confirm windows, epochs (rings, attestations, validator changes), unbonding, jail and
    app expiry and settlement."""
    params = replace(
        devnet_params(),
        confirm_window=12,
        epoch_length=4,
        unbonding_period=16,
        evidence_max_age=10,  # + epoch_length below unbonding_period (Params.validate)
        down_cooldown=4,
        jail_period=10,
        app_min_expire=8,
        app_settle_interval=5,
    )
    return new_devnet_genesis(VALIDATORS, genesis_time_ms=1_000_000, params=params)


def funded_key(i: int = VALIDATORS) -> SigningKey:
    """A dev account with 1,000,000 FLUX (indices VALIDATORS.. are not node owners)."""
    return owner_key(i)


@dataclass
class Builder:
    """Builds, signs (with every validator's key) and imports blocks on a Chain."""

    chain: Chain
    nonces: dict[bytes, int] = field(default_factory=dict)
    time_ms: int = 1_000_000
    last_commit: Commit | None = None
    node_keys: dict[bytes, SigningKey] = field(default_factory=dict)  # beyond the genesis set
    rejected: list[tuple[Tx, Exception]] = field(default_factory=list)  # by the last block

    @property
    def signers(self) -> list[SigningKey]:
        keys = {node_hot_key(i).public_key: node_hot_key(i) for i in range(VALIDATORS)}
        keys.update(self.node_keys)
        return [keys[v.pubkey] for v in self.chain.validators().validators if v.pubkey in keys]

    @property
    def chain_id(self) -> str:
        return self.chain.params.chain_id

    def learn_node_key(self, key: SigningKey) -> None:
        """Sign commits with `key` too once its node is a validator (registered nodes are
        chosen at epoch starts like any other)."""
        self.node_keys[key.public_key] = key

    def tx(self, key: SigningKey, payload: Payload, fee: int | None = None) -> Tx:
        """`payload` signed by `key` at its next nonce, paying `fee` (`default_fee`)."""
        nonce = self.next_nonce(key)
        self.nonces[key.public_key] = nonce + 1
        return Tx.create(key, self.chain.params.chain_id, nonce, default_fee(payload, fee), payload)

    def chain_nonce(self, key: SigningKey) -> int:
        return get_account(self.chain.state, address_of(key.public_key)).nonce

    def next_nonce(self, key: SigningKey) -> int:
        """The nonce the next `tx` signed by `key` gets."""
        return self.nonces.get(key.public_key, self.chain_nonce(key))

    def node_register(
        self,
        owner: SigningKey,
        hot: SigningKey,
        tier: Tier = Tier.CUMULUS,
        *,
        endpoint: str = "10.0.0.1:16127",
        country: str = "DE",
        continent: str = "EU",
        hardware: Hardware = HARDWARE,
    ) -> Tx:
        """A NODE_REGISTER naming `hot`, with `hot`'s proof of possession for this tx."""
        return node_register(self, owner, hot, tier, country, continent, endpoint, hardware)

    def node_update(
        self,
        owner: SigningKey,
        node_id: bytes,
        new_hot: SigningKey | None = None,
        *,
        endpoint: str = "10.0.0.1:16127",
        country: str = "DE",
        continent: str = "EU",
        top_up: int = 0,
    ) -> Tx:
        """A NODE_UPDATE, rotating to `new_hot` (with its proof) if given."""
        return node_update(self, owner, node_id, country, continent, new_hot, endpoint, top_up)

    def transfer(self, key: SigningKey, to: bytes, amount: int = COIN) -> Tx:
        return self.tx(key, Transfer(to, amount))

    def block(self, txs: list[Tx], round_: int = 0) -> tuple[Block, Commit]:
        """Build, then abort, a block: what the proposer of `round_` would send (txs that
        fail are dropped), with a commit of that round."""
        self.time_ms += 1_000
        block, execution, rejected = self.chain.build_block(
            now_ms=self.time_ms,
            round_=round_,
            last_commit=self.last_commit,
            candidates=txs,
            reveal=proposer_reveal(self.chain, round_, self.node_keys.values()),
        )
        self.chain.abort(execution)
        self.rejected = rejected
        commit = sign_commit(
            self.signers, self.chain.params.chain_id, block.height, round_, block.hash()
        )
        return block, commit

    def commit(self, txs: list[Tx] | None = None, round_: int = 0) -> Block:
        """Build a block and import it with a commit, as a syncing node would."""
        block, commit = self.block(txs or [], round_)
        block = Block.decode(block.encode(), 1 << 30, 1 << 20)
        self.chain.import_block(block, commit)
        self.last_commit = commit
        return block


def open_chain(
    path: Path, genesis: Genesis | None = None, verifier: VerifierPool | None = None
) -> Chain:
    """A store `Chain` in `path` (the devnet genesis by default), verifying block
    signatures on `verifier`'s processes if given."""
    return Chain.open(path, genesis or devnet_genesis(), verifier)


def fail_next_block_write(chain: Chain) -> None:
    """Make the next block batch of `chain` fail as a full disk does (plyvel raises OSError);
    the writes after it go through."""
    write_block = chain.db.write_block

    def fail(**fields: Any) -> None:
        chain.db.write_block = write_block  # type: ignore[method-assign]
        raise OSError("IO error: No space left on device")

    chain.db.write_block = fail  # type: ignore[method-assign]


class NoGossip:
    """A driver's `Gossip` that sends nothing: a driver tested without a network."""

    def broadcast_proposal(self, payload: bytes) -> None:
        pass

    def broadcast_vote(self, payload: bytes) -> None:
        pass


# -- one helper per tx kind, so that a payload change is followed in one place ----------------


class Signer(Protocol):
    """What the tx helpers need: a Builder (in process), or a client of a live network's
    API (tests/integration/test_app_hash.py)."""

    @property
    def chain_id(self) -> str: ...

    def tx(self, key: SigningKey, payload: Payload, fee: int | None = None) -> Tx: ...

    def learn_node_key(self, key: SigningKey) -> None: ...

    def next_nonce(self, key: SigningKey) -> int: ...


BENCHMARKS = {  # what each tier's hardware reports (above the devnet's laptop minimums)
    Tier.CUMULUS: Benchmark(4, 8, 8_192, 220, 200, 1_000, 100),
    Tier.NIMBUS: Benchmark(8, 16, 32_768, 440, 200, 2_000, 100),
    Tier.STRATUS: Benchmark(16, 32, 65_536, 880, 200, 4_000, 100),
}


def node_register(
    b: Signer,
    owner: SigningKey,
    hot: SigningKey,
    tier: Tier,
    country: str,
    continent: str,
    endpoint: str = "10.0.0.1:16127",
    hardware: Hardware | None = None,
) -> Tx:
    """NODE_REGISTER of a node with key `hot` (remembered as a possible signer), with
    `hot`'s proof of possession for this tx; hardware as the tier's benchmark unless given."""
    b.learn_node_key(hot)
    if hardware is None:
        bench = BENCHMARKS[tier]
        hardware = Hardware(bench.cores, bench.ram_mb, bench.disk_gb)
    proof = prove_node_key(hot, b.chain_id, owner.public_key, b.next_nonce(owner))
    vrf_key, vrf_proof = vrf.claim(hot, b.chain_id)
    payload = NodeRegister(
        tier, hot.public_key, endpoint, country, continent, hardware, proof, vrf_key, vrf_proof
    )
    return b.tx(owner, payload)


def node_update(
    b: Signer,
    owner: SigningKey,
    node_id: bytes,
    country: str,
    continent: str,
    new_key: SigningKey | None = None,
    endpoint: str = "10.0.0.2:16127",
    top_up: int = 0,
    fee: int = FEE,
) -> Tx:
    """NODE_UPDATE: relocate, rotate the node key (with the new key's proof) and/or top
    the collateral up. A relocation's fee must also pay for the instances it moves."""
    rotated, proof, vrf_key, vrf_proof = b"", b"", b"", b""
    if new_key is not None:
        b.learn_node_key(new_key)
        rotated = new_key.public_key
        proof = prove_node_key(new_key, b.chain_id, owner.public_key, b.next_nonce(owner), node_id)
        vrf_key, vrf_proof = vrf.claim(new_key, b.chain_id)
    payload = NodeUpdate(
        node_id, endpoint, country, continent, rotated, proof, top_up, vrf_key, vrf_proof
    )
    return b.tx(owner, payload, fee)


def vrf_key_of(node_key: SigningKey) -> bytes:
    """The VRF key a node with `node_key` has (a validator set's entry)."""
    return _vrf_secret(node_key.secret).public_key


def proposer_reveal(chain: Chain, round_: int, keys: Iterable[SigningKey] = ()) -> bytes:
    """The reveal of the proposer of (next height, `round_`) on `chain`, made as the driver
    makes it; the proposer is a devnet node key or one of `keys`."""
    return reveal_of(chain.params.chain_id, chain.validators(), chain.height + 1, round_, keys)


def first_block(path: Path, genesis: Genesis) -> Block:
    """A valid empty block of (height 1, round 0) on `genesis`, built on a chain opened in
    `path` (a copy of a devnet's) and left uncommitted there."""
    builder = open_chain(path, genesis)
    try:
        block, execution, _ = builder.build_block(
            now_ms=genesis.genesis_time_ms + 1000,
            round_=0,
            last_commit=None,
            candidates=[],
            reveal=proposer_reveal(builder, 0),
        )
        builder.abort(execution)
    finally:
        builder.close()
    return block


def reveal_of(
    chain_id: str,
    validators: ValidatorSet,
    height: int,
    round_: int,
    keys: Iterable[SigningKey] = (),
) -> bytes:
    """The reveal of the proposer of (`height`, `round_`) in `validators`, made as the
    driver makes it; the proposer is a devnet node key or one of `keys`."""
    proposer = proposer_of(validators, height, round_)
    known = {k.public_key: k for k in keys}
    key = known.get(proposer) or _devnet_node_keys().get(proposer)
    assert key is not None, f"no key known for proposer {proposer.hex()}"
    return vrf.make_reveal(_vrf_secret(key.secret), chain_id, height)


@cache
def _devnet_node_keys() -> dict[bytes, SigningKey]:
    return {node_hot_key(i).public_key: node_hot_key(i) for i in range(2 * VALIDATORS)}


@cache
def _vrf_secret(node_secret: bytes) -> vrf.VrfSecret:
    return vrf.derive_secret(node_secret)


def node_confirm(b: Signer, hot: SigningKey, node_id: bytes, tier: Tier) -> Tx:
    return b.tx(hot, NodeConfirm(node_id, BENCHMARKS[tier], "test"))


def uptime_attest(
    b: Signer, hot: SigningKey, node_id: bytes, epoch: int, verdicts: dict[bytes, bool]
) -> Tx:
    """UPTIME_ATTEST of checker `node_id`: up/down for each of its targets."""
    reports = tuple(UptimeReport(target, up, 10) for target, up in sorted(verdicts.items()))
    return b.tx(hot, UptimeAttest(node_id, epoch, reports))


def node_unregister(b: Signer, owner: SigningKey, node_id: bytes) -> Tx:
    return b.tx(owner, NodeUnregister(node_id))


def app_spec(owner: SigningKey, name: str, **changes: Any) -> AppSpec:
    """A one-component app owned by `owner`; `changes` override AppSpec fields, and
    `cpu`/`ram_mb`/`disk_gb` the component's, and `ports` its host ports (tcp, to
    container port 80) or `Port` records."""
    component = Component(
        name="web",
        description="front end",
        image="nginx:1.27",
        ports=tuple(
            p if isinstance(p, Port) else Port(p, 80) for p in changes.pop("ports", (31000,))
        ),
        environment=("MODE=prod",),
        command=(),
        data_path="/data",
        cpu=changes.pop("cpu", 5),
        ram_mb=changes.pop("ram_mb", 500),
        disk_gb=changes.pop("disk_gb", 5),
    )
    base = AppSpec(
        name=name,
        description="an app",
        owner=address_of(owner.public_key),
        contacts=("ops@example.com",),
        components=(component,),
        instances=3,
        expire=20,
        geolocation=(),
    )
    return replace(base, **changes)


def geo_rules(*codes: str, allow: bool = True) -> tuple[GeoRule, ...]:
    """Rules from codes like "EU" or "EU_DE"."""
    rules = []
    for code in codes:
        continent, _, country = code.partition("_")
        rules.append(GeoRule(allow, continent, country))
    return tuple(rules)


def app_register(b: Signer, owner: SigningKey, spec: AppSpec) -> Tx:
    return b.tx(owner, AppRegister(spec))


def app_update(b: Signer, owner: SigningKey, spec: AppSpec) -> Tx:
    return b.tx(owner, AppUpdate(spec))


def app_extend(b: Signer, owner: SigningKey, name: str, blocks: int) -> Tx:
    return b.tx(owner, AppExtend(name, blocks))


def app_cancel(b: Signer, owner: SigningKey, name: str) -> Tx:
    return b.tx(owner, AppCancel(name))


def evidence(b: Signer, reporter: SigningKey, offender: SigningKey, height: int) -> Tx:
    """EVIDENCE that `offender` precommitted two blocks at `height`."""
    chain_id = b.chain_id
    first = Vote.create(offender, chain_id, VoteType.PRECOMMIT, height, 0, b"\x01" * 32)
    second = Vote.create(offender, chain_id, VoteType.PRECOMMIT, height, 0, b"\x02" * 32)
    return b.tx(reporter, Evidence(*evidence_pair(first, second)))
