"""`flux-wallet trust`: what the light client starts from (docs/light-client.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fluxchain.core.errors import BlockError, FluxError
from fluxchain.core.genesis import Genesis
from fluxchain.light.client import wall_clock_ms
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.store import TrustStore, default_trust_period_ms
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
    help="Trust the chain this genesis file starts (the safest anchor for a new chain).",
)
@click.option(
    "--header",
    "header_hash",
    metavar="HASH",
    help="Trust the block with this hash (hex), got from a source you trust: for a chain"
    " older than the trust period.",
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
      flux-wallet trust --header 5be1…      (fetched from --node, checked, kept)
      flux-wallet trust --from-node         (the node's genesis: compare the hash shown)
      flux-wallet trust                     (show the anchor and the newest trusted header)
    """
    if sum((genesis is not None, header_hash is not None, from_node)) > 1:
        raise WalletError(WalletReason.BAD_INPUT, "give one of --genesis, --header and --from-node")
    path = trust_store_path(env.wallet_dir)
    if genesis is not None:
        store = TrustStore.from_genesis(load_genesis(genesis), path)
    elif from_node:
        store = TrustStore.from_genesis(_node_genesis(env), path)
    elif header_hash is not None:
        store = _from_header(env, header_hash, path)
    else:
        store = open_trust_store(env.wallet_dir)
    if env.trust_period_s is not None:
        store.trust_period_ms = env.trust_period_s * 1000
        store.changed = True
    store.save()
    body = _describe(store)
    env.emit(body)
    env.say(f"chain {store.chain_id}, trust period {body['trust_period_s']} s")
    env.say(f"anchor: height {body['anchor']['height']} {body['anchor']['hash']}")
    env.say(f"newest trusted: height {body['latest']['height']} {body['latest']['hash']}")


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


def _from_header(env: Env, header_hash: str, path: Path) -> TrustStore:
    """The header with this hash from the first node that has it, checked to be that one
    and finalized by the set it names."""
    try:
        wanted = bytes.fromhex(header_hash.strip())
    except ValueError:
        raise WalletError(WalletReason.BAD_INPUT, "--header must be a block hash in hex") from None
    client = env.client()
    node = client.transports[0]
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
    period_ms = (
        env.trust_period_s * 1000
        if env.trust_period_s is not None
        else default_trust_period_ms(client.params())
    )
    trusted = TrustedBlock.of(block)
    if is_expired(trusted, TrustOptions(header.chain_id, period_ms), wall_clock_ms()):
        raise WalletError(
            str(LightReason.TRUST_EXPIRED),
            f"header {header.height} is older than the trust period ({period_ms // 1000} s)",
        )
    return TrustStore.from_block(header.chain_id, period_ms, trusted, path)


def _describe(store: TrustStore) -> dict[str, Any]:
    def one(block: TrustedBlock) -> dict[str, Any]:
        return {"height": block.height, "hash": block.hash.hex(), "time_ms": block.time_ms}

    return {
        "chain_id": store.chain_id,
        "trust_period_s": store.trust_period_ms // 1000,
        "anchor": one(store.anchor),
        "latest": one(store.latest()),
        "file": str(store.path),
    }
