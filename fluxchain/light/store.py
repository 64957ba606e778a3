"""The headers a light client trusts, kept in one JSON file (in the wallet directory).

    {"version": 1, "chain_id": "...", "trust_period_ms": N,
     "genesis_hash": hex, "params": {...}, "attack": null or {...},
     "blocks": [{"height", "hash", "time_ms", "prev_hash", "validators_raw",
                 "next_validators_raw" (or null)}, ...]}

The first block is the root of trust (the genesis anchor at height 0, or a header the
user named by hash); after it, the newest verified blocks, at most `MAX_KEPT` in all.
`genesis_hash` and `params` pin the chain's genesis when the anchor is set (from a genesis
file, or one a node served that the user accepted): the wallet signs with these params,
never with a node's unproven `/params` (a liar could name any fee or chain id). A store
written before they were kept has neither, and the wallet asks to anchor again.
`attack` is set when the client saw two signed headers at one height (detector.py): the
store then refuses every read until it is replaced by anchoring again.
The file is written with mode 0600 in a directory created 0700 (as the keystore's).
The file is replaced atomically (write, fsync, rename): a crash leaves the old one whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from fluxchain.core.encoding import pack, unpack
from fluxchain.core.errors import FluxError
from fluxchain.core.genesis import Genesis
from fluxchain.core.params import Params
from fluxchain.core.validators import ValidatorSet
from fluxchain.light.detector import Attack
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.verifier import TrustedBlock

STORE_VERSION: Final = 1
STORE_FILE: Final = "trusted_headers.json"
MAX_KEPT: Final = 64  # the anchor and the newest: enough to anchor any recent answer


def default_trust_period_ms(params: Params) -> int:
    """Two thirds of the unbonding period at the target block time: a validator that
    vouched for a trusted header is still bonded for all of it."""
    return unbonding_period_ms(params) * 2 // 3


def unbonding_period_ms(params: Params) -> int:
    """The unbonding period at the target block time: no trust period may be longer (a
    header older than it may be signed by validators that have taken their stake back)."""
    return params.unbonding_period * params.block_time_ms


@dataclass
class TrustStore:
    """Trusted blocks of one chain, lowest first; `path` None keeps them in memory."""

    chain_id: str
    trust_period_ms: int
    blocks: list[TrustedBlock]
    path: Path | None = None
    changed: bool = field(default=False, compare=False)
    # The pinned genesis's hash and params (see the module doc); None in a store written
    # before they were kept, or one made without a genesis (the light client's own tests).
    genesis_hash: bytes | None = None
    params: Params | None = None
    # A light-client attack seen on this chain: nothing is trusted until anchored again.
    attack: Attack | None = None

    @classmethod
    def from_genesis(cls, genesis: Genesis, path: Path | None = None) -> TrustStore:
        """Anchored at the genesis: its hash, its time, and the set that signs block 1."""
        first = genesis.validator_set()
        anchor = TrustedBlock(0, genesis.hash(), genesis.genesis_time_ms, first, b"", first)
        period = default_trust_period_ms(genesis.params)
        return cls(
            genesis.chain_id,
            period,
            [anchor],
            path,
            changed=True,
            genesis_hash=genesis.hash(),
            params=genesis.params,
        )

    @classmethod
    def from_block(
        cls,
        chain_id: str,
        trust_period_ms: int,
        block: TrustedBlock,
        path: Path | None = None,
        *,
        genesis: Genesis | None = None,
    ) -> TrustStore:
        """Anchored at a header the user trusts (named by hash, checked by the caller), with
        the chain's `genesis` pinned (its chain id must be the header's)."""
        if genesis is not None and genesis.chain_id != chain_id:
            raise LightError(
                LightReason.NO_TRUST_ANCHOR,
                f"the genesis is of chain {genesis.chain_id!r}, the header of {chain_id!r}",
            )
        pinned_hash = None if genesis is None else genesis.hash()
        params = None if genesis is None else genesis.params
        return cls(
            chain_id,
            trust_period_ms,
            [block],
            path,
            changed=True,
            genesis_hash=pinned_hash,
            params=params,
        )

    @classmethod
    def load(cls, path: Path) -> TrustStore | None:
        """The store in `path`, None if there is none; a damaged file is an error."""
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LightError(LightReason.NO_TRUST_ANCHOR, f"{path} is unreadable: {exc}") from None
        try:
            if raw["version"] != STORE_VERSION:
                raise ValueError(f"version {raw['version']}")
            blocks = [_block_of(item) for item in raw["blocks"]]
            if not blocks or [b.height for b in blocks] != sorted({b.height for b in blocks}):
                raise ValueError("blocks are not in height order")
            pinned = raw.get("genesis_hash")
            params = raw.get("params")
            attack = raw.get("attack")
            return cls(
                str(raw["chain_id"]),
                int(raw["trust_period_ms"]),
                blocks,
                path,
                genesis_hash=None if pinned is None else bytes.fromhex(pinned),
                params=None if params is None else Params.from_json(params),
                attack=None if attack is None else Attack.from_json(attack),
            )
        except (KeyError, TypeError, ValueError, FluxError) as exc:
            raise LightError(LightReason.NO_TRUST_ANCHOR, f"{path} is damaged: {exc}") from None

    def save(self) -> None:
        """Write the file if anything changed (atomically)."""
        if self.path is None or not self.changed:
            return
        body = {
            "version": STORE_VERSION,
            "chain_id": self.chain_id,
            "trust_period_ms": self.trust_period_ms,
            "genesis_hash": None if self.genesis_hash is None else self.genesis_hash.hex(),
            "params": None if self.params is None else self.params.to_json(),
            "blocks": [_json_of(block) for block in self.blocks],
            "attack": None if self.attack is None else self.attack.to_json(),
        }
        # The wallet's directory: only its owner lists it (the keystore lives there too).
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = self.path.with_suffix(f".{os.getpid()}.tmp")  # two wallets may save at once
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(body, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(self.path)
        self.changed = False

    # -- reading and adding ------------------------------------------------------------------

    @property
    def anchor(self) -> TrustedBlock:
        return self.blocks[0]

    def latest(self) -> TrustedBlock:
        return self.blocks[-1]

    def at(self, height: int) -> TrustedBlock | None:
        return next((b for b in self.blocks if b.height == height), None)

    def below(self, height: int) -> TrustedBlock | None:
        """The highest trusted block under `height`."""
        return next((b for b in reversed(self.blocks) if b.height < height), None)

    def above(self, height: int) -> TrustedBlock | None:
        """The lowest trusted block over `height`."""
        return next((b for b in self.blocks if b.height > height), None)

    def halt(self, attack: Attack) -> None:
        """Stop trusting this chain: every read refuses until the store is anchored again."""
        self.attack = attack
        self.changed = True
        self.save()

    def learn_next_validators(
        self, height: int, block_hash: bytes, validators: ValidatorSet
    ) -> None:
        """Remember the set that signs block `height` + 1, proven against the state root of
        the trusted block `block_hash` at `height` (nothing if that block is not kept)."""
        for index, block in enumerate(self.blocks):
            if block.height == height and block.hash == block_hash:
                if block.next_validators != validators:
                    self.blocks[index] = replace(block, next_validators=validators)
                    self.changed = True
                return

    def add(self, block: TrustedBlock) -> None:
        """Keep a newly verified block, dropping the oldest after the anchor past MAX_KEPT."""
        if self.at(block.height) is not None:
            return
        self.blocks.append(block)
        self.blocks.sort(key=lambda b: b.height)
        while len(self.blocks) > MAX_KEPT:
            del self.blocks[1]
        self.changed = True


def _json_of(block: TrustedBlock) -> dict[str, Any]:
    return {
        "height": block.height,
        "hash": block.hash.hex(),
        "time_ms": block.time_ms,
        "prev_hash": block.prev_hash.hex(),
        "validators_raw": pack(block.validators.to_fields()).hex(),
        "next_validators_raw": (
            None if block.next_validators is None else pack(block.next_validators.to_fields()).hex()
        ),
    }


def _block_of(item: dict[str, Any]) -> TrustedBlock:
    validators = ValidatorSet.from_fields(unpack(bytes.fromhex(item["validators_raw"])))
    next_raw = item.get("next_validators_raw")
    next_validators = (
        None if next_raw is None else ValidatorSet.from_fields(unpack(bytes.fromhex(next_raw)))
    )
    return TrustedBlock(
        int(item["height"]),
        bytes.fromhex(item["hash"]),
        int(item["time_ms"]),
        validators,
        bytes.fromhex(item["prev_hash"]),
        next_validators,
    )
