"""Shared test kit: a small devnet genesis with known keys, and helpers to make blocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from fluxchain.core.accounts import get_account
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.genesis import Genesis
from fluxchain.core.params import COIN, Tier
from fluxchain.core.tx import (
    Hardware,
    NodeRegister,
    NodeUpdate,
    Payload,
    Transfer,
    Tx,
    prove_node_key,
)
from fluxchain.core.votes import Commit, sign_commit
from fluxchain.genesis_builder import new_devnet_genesis
from fluxchain.store.chain import Chain
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key, node_key_path

VALIDATORS = 4
FEE = 1_000
HARDWARE = Hardware(4, 8_192, 220)  # meets every devnet tier


@cache
def owner_key(i: int) -> SigningKey:
    return derive_key(INSECURE_TEST_MNEMONIC, account_path(i))


@cache
def node_hot_key(i: int) -> SigningKey:
    return derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i))


@cache
def devnet_genesis(validators: int = VALIDATORS) -> Genesis:
    return new_devnet_genesis(validators, genesis_time_ms=1_000_000)


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

    @property
    def signers(self) -> list[SigningKey]:
        keys = {node_hot_key(i).public_key: node_hot_key(i) for i in range(VALIDATORS)}
        return [keys[v.pubkey] for v in self.chain.validators().validators if v.pubkey in keys]

    def tx(self, key: SigningKey, payload: Payload, fee: int = FEE) -> Tx:
        nonce = self.next_nonce(key)
        self.nonces[key.public_key] = nonce + 1
        return Tx.create(key, self.chain.params.chain_id, nonce, fee, payload)

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
        proof = prove_node_key(
            hot, self.chain.params.chain_id, owner.public_key, self.next_nonce(owner)
        )
        payload = NodeRegister(tier, hot.public_key, endpoint, country, continent, hardware, proof)
        return self.tx(owner, payload)

    def node_update(
        self,
        owner: SigningKey,
        node_id: bytes,
        new_hot: SigningKey | None = None,
        *,
        endpoint: str = "10.0.0.1:16127",
        country: str = "DE",
        continent: str = "EU",
    ) -> Tx:
        """A NODE_UPDATE, rotating to `new_hot` (with its proof) if given."""
        new_key, proof = b"", b""
        if new_hot is not None:
            new_key = new_hot.public_key
            proof = prove_node_key(
                new_hot,
                self.chain.params.chain_id,
                owner.public_key,
                self.next_nonce(owner),
                node_id,
            )
        return self.tx(owner, NodeUpdate(node_id, endpoint, country, continent, new_key, proof))

    def transfer(self, key: SigningKey, to: bytes, amount: int = COIN) -> Tx:
        return self.tx(key, Transfer(to, amount))

    def block(self, txs: list[Tx], round_: int = 0) -> tuple[Block, Commit]:
        """Build, then abort, a block: what the proposer of `round_` would send (txs that
        fail are dropped), with a commit of that round."""
        self.time_ms += 1_000
        block, execution, _ = self.chain.build_block(
            now_ms=self.time_ms,
            round_=round_,
            last_commit=self.last_commit,
            candidates=txs,
        )
        self.chain.abort(execution)
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


def open_chain(path: Path, genesis: Genesis | None = None) -> Chain:
    return Chain.open(path, genesis or devnet_genesis())
