"""Genesis: the document that starts a chain, and the state it starts from.

JSON format (docs/genesis.md documents every field):

    {"chain_id": "...", "genesis_time_ms": 0, "params": {...},
     "balances": [{"address": "tflux1...", "amount": 100000000}],
     "nodes": [{"owner": "tflux1...", "node_key": "<33-byte hex>",
                "vrf_key": "<48-byte hex>", "vrf_proof": "<96-byte hex>", "tier": "stratus",
                "endpoint": "127.0.0.1:26601", "country": "DE", "continent": "EU",
                "hardware": {"cores": 8, "ram_mb": 65536, "disk_gb": 880},
                "validator": true}],
     "insecure_dev_mnemonic": "..."}   # devnets only: where the keys above come from

Genesis nodes start CONFIRMED (their declared hardware stands in for a benchmark until
their first NODE_CONFIRM); those marked `validator` form the first validator set, with
power = collateral in whole FLUX. Their collateral is locked on top of `balances`. Each
names its VRF key with a proof of possession for this chain and its node key (core/vrf.py),
as a NODE_REGISTER does; genesis nodes get their rank keys from the genesis hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Self

from fluxchain.core import history, nodes, uptime, vrf
from fluxchain.core.accounts import credit
from fluxchain.core.block import fixed_bytes
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import (
    ADDRESS_SIZE,
    Address,
    decode_address,
    encode_address,
    is_valid_pubkey,
    sha256,
)
from fluxchain.core.encoding import (
    MAX_AMOUNT,
    MAX_ARRAY,
    OFF_WIRE,
    Amount,
    Bool,
    Bytes,
    ChainId,
    Int,
    ListOf,
    Record,
    Tuple,
    pack,
    record,
)
from fluxchain.core.errors import DecodeError, FluxError, GenesisError, Reason
from fluxchain.core.params import COIN, Params, Tier
from fluxchain.core.records import META, VALIDATORS, Meta, NodeStatus
from fluxchain.core.state import State
from fluxchain.core.tx import (
    MAX_REPORTS,
    Benchmark,
    CountryCode,
    Endpoint,
    Hardware,
    NodeKey,
    check_endpoint,
    check_location,
)
from fluxchain.core.validators import Validator, ValidatorSet
from fluxchain.core.vrf import VRF_KEY_SIZE, VRF_SIGNATURE_SIZE

Balance = Tuple(address=Bytes(ADDRESS_SIZE), amount=Int(0, MAX_AMOUNT))  # (address, amount)


@record("genesis_node")
@dataclass(frozen=True, slots=True)
class GenesisNode(Record):
    owner: Address
    node_key: NodeKey
    tier: Tier
    endpoint: Endpoint
    country: CountryCode
    continent: CountryCode
    hardware: Hardware
    validator: Annotated[bool, Bool()]
    vrf_key: Annotated[bytes, Bytes(VRF_KEY_SIZE)]
    vrf_proof: Annotated[bytes, Bytes(VRF_SIGNATURE_SIZE)]  # vrf.pop_prove for (chain_id, node_key)

    def node_id(self) -> bytes:
        return sha256(pack(["genesis-node", self.node_key]))[:20]


@record("genesis")
@dataclass(frozen=True, slots=True)
class Genesis(Record):
    """The chain's first document. Its wire form is what the genesis hash commits to."""

    chain_id: Annotated[str, ChainId()]
    genesis_time_ms: Amount
    params: Params
    balances: Annotated[tuple[tuple[bytes, int], ...], ListOf(Balance, max_len=MAX_ARRAY)]
    nodes: Annotated[tuple[GenesisNode, ...], ListOf(GenesisNode, max_len=MAX_ARRAY)]
    # Where a devnet's keys come from: a convenience of the file, not part of the chain.
    insecure_dev_mnemonic: str = field(default="", metadata=OFF_WIRE)

    def hash(self) -> bytes:
        """Identity of the chain: peers refuse each other unless this matches."""
        return sha256(pack(self.to_fields()))

    def validator_set(self) -> ValidatorSet:
        collateral = {t: self.params.tier(t).collateral for t in Tier}
        return ValidatorSet.of(
            [
                Validator(n.node_key, max(1, collateral[n.tier] // COIN), n.vrf_key)
                for n in self.nodes
                if n.validator
            ]
        )

    # -- JSON --------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        hrp = self.params.address_hrp
        out: dict[str, Any] = {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "params": self.params.to_json(),
            "balances": [
                {"address": encode_address(a, hrp), "amount": amount} for a, amount in self.balances
            ],
            "nodes": [
                {
                    "owner": encode_address(n.owner, hrp),
                    "node_key": n.node_key.hex(),
                    "vrf_key": n.vrf_key.hex(),
                    "vrf_proof": n.vrf_proof.hex(),
                    "tier": n.tier.name.lower(),
                    "endpoint": n.endpoint,
                    "country": n.country,
                    "continent": n.continent,
                    "hardware": {
                        "cores": n.hardware.cores,
                        "ram_mb": n.hardware.ram_mb,
                        "disk_gb": n.hardware.disk_gb,
                    },
                    "validator": n.validator,
                }
                for n in self.nodes
            ],
        }
        if self.insecure_dev_mnemonic:
            out["insecure_dev_mnemonic"] = self.insecure_dev_mnemonic
        return out

    @classmethod
    def from_json(cls, raw: Any) -> Self:
        """Parse and validate a genesis document; every error names its field."""
        try:
            return cls._from_json(raw)
        except GenesisError:
            raise
        except KeyError as exc:
            raise GenesisError(Reason.BAD_GENESIS, f"genesis: missing key {exc}") from None
        except (FluxError, TypeError, ValueError, AttributeError) as exc:
            message = exc.message if isinstance(exc, FluxError) else str(exc)
            raise GenesisError(Reason.BAD_GENESIS, f"genesis: {message}") from None

    @classmethod
    def _from_json(cls, raw: Any) -> Self:
        if not isinstance(raw, dict):
            raise GenesisError(Reason.BAD_GENESIS, "genesis must be a JSON object")
        known = {
            "chain_id",
            "genesis_time_ms",
            "params",
            "balances",
            "nodes",
            "insecure_dev_mnemonic",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise GenesisError(Reason.BAD_GENESIS, f"genesis: unknown keys {unknown}")
        params = Params.from_json(raw["params"])
        params.validate()
        if raw["chain_id"] != params.chain_id:
            raise GenesisError(Reason.BAD_GENESIS, "chain_id differs from params.chain_id")
        hrp = params.address_hrp
        balances = tuple(
            (decode_address(b["address"], hrp), _amount(b["amount"], f"balances[{i}].amount"))
            for i, b in enumerate(raw["balances"])
        )
        if len({a for a, _ in balances}) != len(balances):
            raise GenesisError(Reason.BAD_GENESIS, "balances: an address appears twice")
        genesis_nodes = []
        for i, n in enumerate(raw["nodes"]):
            where = f"nodes[{i}]"
            key = bytes.fromhex(n["node_key"])
            if not is_valid_pubkey(key):
                raise GenesisError(Reason.BAD_GENESIS, f"{where}.node_key is not a public key")
            hw = n["hardware"]
            tier_name = str(n["tier"]).upper()
            if tier_name not in Tier.__members__:
                raise GenesisError(
                    Reason.BAD_GENESIS,
                    f"{where}.tier: {n['tier']!r} is not cumulus, nimbus or stratus",
                )
            node = GenesisNode(
                owner=decode_address(n["owner"], hrp),
                node_key=key,
                tier=Tier[tier_name],
                endpoint=str(n["endpoint"]),
                country=str(n["country"]),
                continent=str(n["continent"]),
                hardware=Hardware(int(hw["cores"]), int(hw["ram_mb"]), int(hw["disk_gb"])),
                validator=bool(n.get("validator", True)),
                vrf_key=bytes.fromhex(n["vrf_key"]),
                vrf_proof=bytes.fromhex(n["vrf_proof"]),
            )
            try:
                check_endpoint(node.endpoint, where + ".endpoint")
                check_location(node.country, node.continent, where)
                proved = vrf.pop_verify(node.vrf_key, node.vrf_proof, params.chain_id, key)
            except DecodeError as exc:
                raise GenesisError(Reason.BAD_GENESIS, f"{where}: {exc.message}") from None
            if not proved:
                raise GenesisError(
                    Reason.BAD_GENESIS,
                    f"{where}.vrf_proof is not the VRF key's proof for this chain and node key",
                )
            # the caps NODE_REGISTER holds a node to: a genesis node's hardware stands in
            # for its benchmark, so it is all it offers apps until it confirms
            hw = node.hardware
            excess = params.tier(node.tier).hardware_excess(hw.cores, hw.ram_mb, hw.disk_gb)
            if excess:
                raise GenesisError(
                    Reason.BAD_GENESIS,
                    f"{where}.hardware is above its tier's caps: " + ", ".join(excess),
                )
            genesis_nodes.append(node)
        if len({n.node_key for n in genesis_nodes}) != len(genesis_nodes):
            raise GenesisError(Reason.BAD_GENESIS, "nodes: a node key appears twice")
        genesis = cls(
            chain_id=params.chain_id,
            genesis_time_ms=_amount(raw["genesis_time_ms"], "genesis_time_ms"),
            params=params,
            balances=balances,
            nodes=tuple(genesis_nodes),
            insecure_dev_mnemonic=str(raw.get("insecure_dev_mnemonic", "")),
        )
        check_whole(genesis)
        return genesis

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise GenesisError(Reason.BAD_GENESIS, f"cannot read {path}: {exc}") from None
        return cls.from_json(raw)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def check_whole(genesis: Genesis) -> None:
    """What no single field shows: a validator to start with, room in a tx for an
    attestation and in the epochs for the genesis nodes' attestations, and a supply that
    fits."""
    validators = len(genesis.validator_set().validators)
    if not validators:
        raise GenesisError(Reason.BAD_GENESIS, "genesis needs at least one validator node")
    # Epoch 0's set is the genesis one, uncapped until the first epoch boundary; its
    # commits must fit what the params price a block's commit at (`block.fixed_bytes`).
    if validators > genesis.params.max_validators:
        raise GenesisError(
            Reason.BAD_GENESIS,
            f"{validators} genesis validators, above params.max_validators "
            f"{genesis.params.max_validators}",
        )
    _check_attestation_fits(genesis.params)
    # Genesis nodes start active: each attests its targets every epoch, in the blocks
    # after the epoch's first (`nodes.max_active`). With no room there (epoch_length 1,
    # one-tx blocks) every NODE_CONFIRM would be refused `network_full` and no genesis
    # node's uptime ever attested; past the cap, the chain would start over it.
    cap = nodes.max_active(genesis.params)
    if cap == 0:
        raise GenesisError(
            Reason.BAD_GENESIS,
            "params leave no room for uptime attestations (nodes.max_active is 0: no node "
            "could ever confirm); raise epoch_length, max_block_txs or max_block_bytes",
        )
    if len(genesis.nodes) > cap:
        raise GenesisError(
            Reason.BAD_GENESIS,
            f"{len(genesis.nodes)} genesis nodes start active, above the {cap} whose "
            "attestations the params' epochs hold (nodes.max_active)",
        )
    # Each amount fits on its own; their sum must too, or a payment into an account could
    # overflow its balance (a node would stop on it instead of refusing it).
    if genesis_supply(genesis) > MAX_AMOUNT:
        raise GenesisError(
            Reason.BAD_GENESIS,
            f"the genesis supply (balances plus collateral) exceeds {MAX_AMOUNT} units",
        )


def _check_attestation_fits(params: Params) -> None:
    """An uptime attestation of the most targets a checker can have fits one tx, and one
    block beside the block's header and parent commit: the cap on active nodes sums an
    epoch's room and sees no single tx or block."""
    reports = min(MAX_REPORTS, uptime.WALK_FACTOR * params.checkers_per_node)
    needed = nodes.attestation_tx_bytes(params.chain_id, reports)
    if params.max_tx_bytes < needed:
        raise GenesisError(
            Reason.BAD_GENESIS,
            f"params.max_tx_bytes {params.max_tx_bytes} is below the {needed} bytes of an "
            f"uptime attestation of {reports} reports (a checker has up to "
            f"{uptime.WALK_FACTOR} x checkers_per_node targets): no node's attestation "
            "would be accepted",
        )
    fixed = fixed_bytes(params.max_validators)
    needed = fixed + nodes.attestation_bytes(params.chain_id, reports)
    if params.max_block_bytes < needed:
        raise GenesisError(
            Reason.BAD_GENESIS,
            f"params.max_block_bytes {params.max_block_bytes} is below the {needed} bytes "
            f"of a block's header and parent commit ({fixed} at most, with max_validators "
            f"{params.max_validators}) and one uptime attestation of {reports} reports",
        )


def _amount(value: Any, where: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_AMOUNT:
        raise GenesisError(Reason.BAD_GENESIS, f"{where} must be a non-negative integer")
    return value


def genesis_supply(genesis: Genesis) -> int:
    """All FLUX that exists at genesis: balances plus locked collateral."""
    collateral = sum(genesis.params.tier(n.tier).collateral for n in genesis.nodes)
    return sum(amount for _, amount in genesis.balances) + collateral


def build_genesis_state(genesis: Genesis, state: State) -> None:
    """Write the genesis records into an empty `state` (left pending, like a block)."""
    params = genesis.params
    ctx = BlockContext(state, params, 0, b"", b"")
    # The genesis hash seeds epochs 0 and 1 and the genesis nodes' rank keys; from then
    # on, proposers' reveals (core/epochs.py).
    origin = genesis.hash()
    state.put(META, Meta(0, 0, origin, 0, 0, origin, origin))
    state.put(VALIDATORS, genesis.validator_set())
    history.record_validators(state, 1, genesis.validator_set())
    for address, amount in genesis.balances:
        credit(state, address, amount)
    for g in genesis.nodes:
        hw = g.hardware
        node = nodes.new_node(
            node_id=g.node_id(),
            owner=g.owner,
            node_key=g.node_key,
            vrf_key=g.vrf_key,
            tier=g.tier,
            endpoint=g.endpoint,
            country=g.country,
            continent=g.continent,
            hardware=hw,
            collateral=params.tier(g.tier).collateral,
            height=0,
            # The declared hardware stands in for a benchmark until the first NODE_CONFIRM.
            benchmark=Benchmark(hw.cores, hw.cores, hw.ram_mb, hw.disk_gb, 0, 0, 0),
            version="genesis",
            rank_key=nodes.compute_rank_key(origin, g.node_id()),
        )
        nodes.add_node(ctx, node)
        nodes.set_status(ctx, node, NodeStatus.CONFIRMED, "genesis")
    uptime.start_epoch(ctx, 0, origin)
