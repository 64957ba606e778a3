"""`flux-wallet trust`: what the light client starts from (docs/light-client.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fluxchain.core.errors import BlockError, FluxError
from fluxchain.core.genesis import Genesis
from fluxchain.core.params import Params
from fluxchain.light.client import wall_clock_ms
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.store import TrustStore, default_trust_period_ms, unbonding_period_ms
from fluxchain.light.verifier import (
    LightBlock,
    TrustedBlock,
    TrustOptions,
    check_light_block,
    is_expired,
)
from fluxchain.light.wire import commit_of, header_of, validators_of
from wallet.cli.common import Env, pass_env
from wallet.errors import WalletError, WalletReason
from wallet.verify import load_genesis, open_trust_store, trust_store_path


@click.command("trust")
@click.option(
    "--genesis",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Trust the chain this genesis file starts (the safest anchor for a new chain);"
    " with --header, the genesis of that header's chain, whose params the wallet signs with.",
)
@click.option(
    "--header",
    "header_hash",
    metavar="HASH",
    help="Trust the block with this hash (hex), got from a source you trust: for a chain"
    " older than the trust period. The chain's genesis comes from --genesis FILE, or else"
    " from the node (compare the hash shown with one from a source you trust).",
)
@click.option(
    "--from-node",
    is_flag=True,
    help="Trust the genesis the node serves (trust on first use): compare the hash it"
    " prints with one from a source you trust.",
)
@pass_env
def trust(env: Env, genesis: Path | None, header_hash: str | None, from_node: bool) -> None:
    """Set, or show, what the wallet trusts when it verifies a node's answers.

    \b
    Examples:
      flux-wallet trust --genesis ~/.fluxchain/devnet/node0/genesis.json
      flux-wallet trust --header 5be1… --genesis genesis.json   (fetched from --node, checked)
      flux-wallet trust --from-node         (the node's genesis: compare the hash shown)
      flux-wallet trust                     (show the anchor and the newest trusted header)

    The genesis is pinned with the anchor: the wallet signs with its params (fee, chain id,
    address prefix), never with what a node's /params says. A --trust-period given here
    is kept (with a warning when longer than the chain's unbonding period).
    """
    if from_node and (genesis is not None or header_hash is not None):
        raise WalletError(WalletReason.BAD_INPUT, "--from-node goes alone")
    path = trust_store_path(env.wallet_dir)
    if header_hash is not None:
        pinned = load_genesis(genesis) if genesis is not None else _node_genesis(env)
        store = _from_header(env, header_hash, pinned, path)
    elif genesis is not None:
        store = TrustStore.from_genesis(load_genesis(genesis), path)
    elif from_node:
        store = TrustStore.from_genesis(_node_genesis(env), path)
    else:
        store = open_trust_store(env.wallet_dir)
    if env.trust_period_s is not None:
        store.trust_period_ms = _checked_period(env, env.trust_period_s * 1000, store.params)
        store.changed = True
    store.save()
    body = _describe(store)
    env.emit(body)
    env.say(f"chain {store.chain_id}, trust period {body['trust_period_s']} s")
    env.say(f"genesis: {body['genesis_hash'] or 'not pinned (anchor again)'}")
    env.say(f"anchor: height {body['anchor']['height']} {body['anchor']['hash']}")
    env.say(f"newest trusted: height {body['latest']['height']} {body['latest']['hash']}")
    if store.attack is not None:  # kept until an anchor replaces the store
        env.say(f"HALTED [light_client_attack]: {store.attack.describe()}")


def _node_genesis(env: Env) -> Genesis:
    node = env.client().transports[0]
    body = node.ask("GET", "/genesis")
    try:
        genesis = Genesis.from_json(body["genesis"])
    except (KeyError, TypeError, ValueError, FluxError) as exc:
        raise WalletError(
            WalletReason.NODE_ERROR, f"node {node.base_url}: its /genesis is unreadable: {exc}"
        ) from None
    env.say(
        f"trusting the genesis {genesis.hash().hex()} of chain {genesis.chain_id} as"
        f" {node.base_url} serves it: compare this hash with one from a source you trust"
    )
    return genesis


def _checked_period(env: Env, period_ms: int, params: Params | None) -> int:
    """`period_ms`, with a warning when it is longer than the unbonding period of the
    pinned genesis: a header older than that may be signed by validators that have taken
    their stake back. Not refused: the user may know better (a private test chain)."""
    if params is not None and period_ms > unbonding_period_ms(params):
        env.err.print(
            f"warning: --trust-period {period_ms // 1000} s is longer than the chain's"
            f" unbonding period ({unbonding_period_ms(params) // 1000} s): a header that old"
            " may be signed by validators that could no longer be punished for it",
            markup=False,
        )
    return period_ms


def _from_header(env: Env, header_hash: str, genesis: Genesis, path: Path) -> TrustStore:
    """The header with this hash from the first node that has it, checked to be that one,
    of the chain `genesis` starts, and finalized by the set it names; the trust period is
    --trust-period or the one the genesis's params give (never a node's /params)."""
    try:
        wanted = bytes.fromhex(header_hash.strip())
    except ValueError:
        raise WalletError(WalletReason.BAD_INPUT, "--header must be a block hash in hex") from None
    node = env.client().transports[0]
    try:
        light = node.ask("GET", f"/headers/{wanted.hex()}")
        header = header_of(light)
        validators = validators_of(node.ask("GET", f"/validators?height={header.height}"))
        block = LightBlock(header, commit_of(light), validators)
        if header.hash() != wanted:
            raise LightError(LightReason.HEADER_UNVERIFIED, "the node served another header")
        check_light_block(block, header.chain_id)
        block.commit.verify(header.chain_id, block.validators, header.height, wanted)
    except LightError as exc:
        raise WalletError(str(exc.reason), f"node {node.base_url}: {exc.message}") from None
    except BlockError as exc:
        raise WalletError(
            str(LightReason.HEADER_UNVERIFIED), f"node {node.base_url}: {exc.message}"
        ) from None
    if header.chain_id != genesis.chain_id:
        raise WalletError(
            WalletReason.WRONG_NETWORK,
            f"header {header.height} is of chain {header.chain_id!r}, the genesis of"
            f" {genesis.chain_id!r}",
        )
    if header.height == 1 and header.prev_hash != genesis.hash():
        raise WalletError(
            str(LightReason.HEADER_UNVERIFIED), "block 1 does not follow the genesis given"
        )
    period_ms = _checked_period(
        env,
        default_trust_period_ms(genesis.params)
        if env.trust_period_s is None
        else env.trust_period_s * 1000,
        genesis.params,
    )
    trusted = TrustedBlock.of(block)
    if is_expired(trusted, TrustOptions(header.chain_id, period_ms), wall_clock_ms()):
        raise WalletError(
            str(LightReason.TRUST_EXPIRED),
            f"header {header.height} is older than the trust period ({period_ms // 1000} s)",
        )
    return TrustStore.from_block(header.chain_id, period_ms, trusted, path, genesis=genesis)


def _describe(store: TrustStore) -> dict[str, Any]:
    def one(block: TrustedBlock) -> dict[str, Any]:
        return {"height": block.height, "hash": block.hash.hex(), "time_ms": block.time_ms}

    return {
        "chain_id": store.chain_id,
        "trust_period_s": store.trust_period_ms // 1000,
        "genesis_hash": None if store.genesis_hash is None else store.genesis_hash.hex(),
        "anchor": one(store.anchor),
        "latest": one(store.latest()),
        "file": str(store.path),
        "attack": None if store.attack is None else store.attack.to_json(),
    }
