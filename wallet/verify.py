"""The wallet's verification of what nodes answer: the light client (fluxchain/light/)
checks the proof, then the wallet recomputes the answer from the proven state with the
API's own render functions (fluxchain/api/render.py) and requires it to equal what the
node said. So the check is written once: a field the node invents, or a value it did
not prove, fails here with the node named (docs/light-client.md).

The root of trust is the file `trusted_headers.json` in the wallet directory, made by
`flux-wallet trust --genesis FILE` or `--header HASH`, or on first use from the genesis
file FLUX_TRUST_GENESIS names. It pins the chain's genesis: its params are the ones the
wallet signs with (fee, chain id, address prefix, deposits, prices).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fluxchain.core.block import Header
from fluxchain.core.errors import FluxError
from fluxchain.core.genesis import Genesis
from fluxchain.core.params import Params
from fluxchain.core.state import State
from fluxchain.core.tx import Tx
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.views import (
    account_json,
    commit_json,
    event_concerns_tx,
    header_json,
    tx_json,
)
from fluxchain.light.answers import (
    verify_block,
    verify_events,
    verify_state_answer,
    verify_tx_inclusion,
)
from fluxchain.light.client import LightClient, wall_clock_ms
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.store import STORE_FILE, TrustStore
from fluxchain.light.verifier import LightBlock
from wallet.client import NodeTransport
from wallet.errors import WalletError, WalletReason

TRUST_GENESIS_ENV = "FLUX_TRUST_GENESIS"
_T = TypeVar("_T")


def trust_store_path(wallet_dir: Path) -> Path:
    return wallet_dir / STORE_FILE


def open_trust_store(wallet_dir: Path) -> TrustStore:
    """The wallet's trusted headers; on first use, anchored at FLUX_TRUST_GENESIS's genesis."""
    path = trust_store_path(wallet_dir)
    try:
        store = TrustStore.load(path)
    except LightError as exc:
        raise WalletError(str(exc.reason), exc.message) from None
    genesis_file = os.environ.get(TRUST_GENESIS_ENV)
    if store is not None:
        if genesis_file:
            _check_same_chain(store, load_genesis(Path(genesis_file)), path)
        return store
    if genesis_file:
        store = TrustStore.from_genesis(load_genesis(Path(genesis_file)), path)
        store.save()
        return store
    raise WalletError(
        str(LightReason.NO_TRUST_ANCHOR),
        f"{path} does not exist: tell the wallet what to trust with `flux-wallet trust"
        " --genesis FILE` (the chain's genesis.json) or `flux-wallet trust --header HASH`,"
        f" or set {TRUST_GENESIS_ENV}; or read unverified with --no-verify",
    )


def _check_same_chain(store: TrustStore, genesis: Genesis, path: Path) -> None:
    """FLUX_TRUST_GENESIS names the chain the existing store trusts, or the user meant
    another chain: say so rather than verify against the wrong one."""
    pinned = store.genesis_hash
    if genesis.chain_id != store.chain_id or (pinned is not None and genesis.hash() != pinned):
        raise WalletError(
            WalletReason.WRONG_NETWORK,
            f"{TRUST_GENESIS_ENV} names the genesis {genesis.hash().hex()} of chain"
            f" {genesis.chain_id!r}, but {path} trusts chain {store.chain_id!r}"
            f"{'' if pinned is None else ' (genesis ' + pinned.hex() + ')'}: use another"
            f" --wallet-dir, or anchor again with `flux-wallet trust --genesis FILE`",
        )


def load_genesis(path: Path) -> Genesis:
    try:
        return Genesis.load(path)
    except (OSError, ValueError, FluxError) as exc:
        raise WalletError(
            str(LightReason.NO_TRUST_ANCHOR), f"cannot read the genesis file {path}: {exc}"
        ) from None


class Verifier:
    """Checks each proven answer (wallet/client.py `Verifier`) with one LightClient."""

    def __init__(
        self,
        wallet_dir: Path,
        trust_period_ms: int | None = None,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.wallet_dir = wallet_dir
        self.trust_period_ms = trust_period_ms
        self.clock = clock
        self.witnesses: list[WitnessNode] = []
        self._light: LightClient | None = None

    def use_witnesses(self, nodes: Sequence[NodeTransport]) -> None:
        """The wallet's nodes: a header verified from one is compared with the others'
        (fluxchain/light/detector.py)."""
        self.witnesses = [WitnessNode(node) for node in nodes]
        if self._light is not None:
            self._light.witnesses = list(self.witnesses)

    def light(self) -> LightClient:
        if self._light is None:
            store = open_trust_store(self.wallet_dir)
            self._light = LightClient(
                store, self.clock, trust_period_ms=self.trust_period_ms, witnesses=self.witnesses
            )
        return self._light

    def params(self) -> Params:
        """The params of the genesis pinned in the trust store: what the wallet signs with
        (a node's `/params` is unproven; a liar could name any fee or chain id)."""
        store = self.light().store
        if store.params is None or store.genesis_hash is None:
            raise WalletError(
                str(LightReason.NO_TRUST_ANCHOR),
                f"{store.path} pins no genesis (it was written by an older wallet): anchor"
                " again with `flux-wallet trust --genesis FILE` or `--from-node`",
            )
        if store.params.chain_id != store.chain_id:  # a hand-edited file
            raise WalletError(
                str(LightReason.NO_TRUST_ANCHOR),
                f"{store.path} pins params of chain {store.params.chain_id!r} for chain"
                f" {store.chain_id!r}: anchor again with `flux-wallet trust`",
            )
        return store.params

    def account(
        self, node: NodeTransport, address: bytes, body: dict[str, Any], hrp: str
    ) -> Header:
        """The node's answer equals the account of `address` (the one asked about, not the
        one the body names) rebuilt from what it proved; the header it is proven against."""
        return self.view(node, 200, body, lambda state: account_json(state, address, hrp))

    def view(
        self,
        node: NodeTransport,
        status: int,
        body: dict[str, Any],
        render: Callable[[State], dict[str, Any] | None],
    ) -> Header:
        """The node's answer (`status` 404: an absence) equals `render` over what it proved;
        the header it is proven against (the dashboard shows it)."""
        if not isinstance(body.get("proof"), dict):
            raise LightError(LightReason.PROOF_INVALID, "the answer carries no proof")
        proven = verify_state_answer(self.light(), node, body["proof"])
        expected = render(proven.state)
        if status == 404:
            if expected is not None:
                raise LightError(
                    LightReason.PROOF_INVALID,
                    "the node says there is none, but its own proof shows one",
                )
            return proven.header
        said = {key: value for key, value in body.items() if key != "proof"}
        if expected != said:
            raise LightError(
                LightReason.PROOF_INVALID,
                f"the answer differs from what its proof shows at height {proven.header.height}"
                f" ({_first_difference(said, expected)})",
            )
        return proven.header

    def tx(self, node: NodeTransport, tx_id: str, body: dict[str, Any], hrp: str) -> Header | None:
        """A confirmed tx: included in a verified block, and the tx shown is that one; the
        block's header, or None for a status that cannot be proven."""
        if body.get("status") != "confirmed":
            return None  # pending, rejected, unknown: nothing on chain to prove
        if not isinstance(body.get("proof"), dict):
            raise LightError(LightReason.PROOF_INVALID, "a confirmed tx without its proof")
        try:
            wanted = bytes.fromhex(tx_id)
        except ValueError:
            raise LightError(LightReason.MALFORMED_ANSWER, "the tx id is not hex") from None
        raw, header = verify_tx_inclusion(self.light(), node, wanted, body["proof"])
        try:
            proven_tx = Tx.decode(raw, self.params().max_tx_bytes)
        except FluxError as exc:
            raise LightError(LightReason.PROOF_INVALID, f"the proven tx: {exc.message}") from None
        shown = tx_json(proven_tx, hrp)
        if body.get("height") != header.height or body.get("tx") != shown:
            raise LightError(
                LightReason.PROOF_INVALID, "the tx or height shown is not the one proven"
            )
        events = [event.to_json() for event in verify_events(header, body["proof"])]
        if body.get("events") != events:
            raise LightError(
                LightReason.PROOF_INVALID, "the events shown with the tx are not the ones proven"
            )
        for number, event in enumerate(events):
            if not event_concerns_tx(event, proven_tx):  # in the block, but another tx's
                raise LightError(
                    LightReason.PROOF_INVALID,
                    f"event {number} shown with the tx ({event.get('kind')}) does not concern it",
                )
        return header

    def block(self, node: NodeTransport, body: dict[str, Any], hrp: str, ref: str) -> Header:
        """A block: the one `ref` asked for (height, hash, or a fresh "latest"), its header
        verified by the light client from its commit, its txs and events those its roots
        commit to, and the answer (header, commit, txs, events) exactly what those proven
        bytes show; the verified header."""
        proven = verify_block(self.light(), node, body, ref)
        max_tx_bytes = self.params().max_tx_bytes
        try:
            txs = [tx_json(Tx.decode(raw, max_tx_bytes), hrp) for raw in proven.txs]
        except FluxError as exc:
            raise LightError(LightReason.PROOF_INVALID, f"a proven tx: {exc.message}") from None
        expected = {
            "header": header_json(proven.header),
            "txs": txs,
            "events": [event.to_json() for event in proven.events],
            "commit": commit_json(proven.commit),
        }
        said = {key: value for key, value in body.items() if key != "proof"}
        if said != expected:
            raise LightError(
                LightReason.PROOF_INVALID,
                f"the block shown differs from what its proof shows at height"
                f" {proven.header.height} ({_first_difference(said, expected)})",
            )
        return proven.header


class WitnessNode:
    """A node the light client compares headers with: a failure to answer is the light
    client's LightError (the witness is skipped), not the wallet's error for the read."""

    def __init__(self, node: NodeTransport) -> None:
        self.node = node

    @property
    def name(self) -> str:
        return self.node.name

    def light_block(self, height: int) -> LightBlock:
        return self._asked(lambda: self.node.light_block(height))

    def header(self, height: int) -> Header:
        return self._asked(lambda: self.node.header(height))

    def validators(self, height: int) -> ValidatorSet:
        return self._asked(lambda: self.node.validators(height))

    def _asked(self, ask: Callable[[], _T]) -> _T:
        try:
            return ask()
        except WalletError as exc:
            raise LightError(
                LightReason.MALFORMED_ANSWER, f"witness {self.name}: {exc.message}"
            ) from None


def _first_difference(said: dict[str, Any], expected: dict[str, Any] | None) -> str:
    if expected is None:
        return "the proof shows no such object"
    for key in sorted(set(said) | set(expected)):
        if said.get(key) != expected.get(key):
            said_value, proven_value = _short(said.get(key)), _short(expected.get(key))
            return f"{key}: node says {said_value}, proof shows {proven_value}"
    return "?"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
