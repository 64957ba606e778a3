"""`fluxchain`: the node's command line.

Today it makes and checks genesis files; `init`, `run`, `devnet` and `agent` arrive with
the full node (see README's status table).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fluxchain.core.errors import FluxError
from fluxchain.core.genesis import Genesis, genesis_supply
from fluxchain.core.params import COIN
from fluxchain.genesis_builder import devnet_params, mainnet_params, new_devnet_genesis
from wallet.hd import INSECURE_TEST_MNEMONIC, check_mnemonic


def _fail(exc: FluxError) -> None:
    click.echo(f"error [{exc.reason}]: {exc.message}", err=True)
    sys.exit(1)


@click.group()
@click.version_option(package_name="fluxchain")
def main() -> None:
    """fluxchain: a full node for a chain that runs a decentralized cloud."""


@main.group()
def genesis() -> None:
    """Create and inspect genesis files."""


@genesis.command("new")
@click.option(
    "--validators",
    "-n",
    type=click.IntRange(1, 100),
    default=4,
    show_default=True,
    help="Number of Stratus validator nodes.",
)
@click.option("--chain-id", default="flux-devnet", show_default=True)
@click.option(
    "--mnemonic",
    envvar="FLUX_GENESIS_MNEMONIC",
    default=None,
    help="Mnemonic the keys derive from (env FLUX_GENESIS_MNEMONIC). "
    "Default: the published BIP39 test mnemonic — insecure, devnets only.",
)
@click.option(
    "--shape",
    type=click.Choice(["devnet", "mainnet"]),
    default="devnet",
    show_default=True,
    help="devnet: 1 s blocks, short windows; mainnet: the public Flux network's values.",
)
@click.option("--time-ms", type=click.IntRange(0), default=0, help="Genesis time, ms since epoch.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
def genesis_new(
    validators: int, chain_id: str, mnemonic: str | None, shape: str, time_ms: int, out: Path
) -> None:
    """Write a genesis file for N validators with funded dev accounts.

    \b
    Example:
      fluxchain genesis new -n 4 --out genesis.json
    """
    try:
        words = check_mnemonic(mnemonic) if mnemonic else INSECURE_TEST_MNEMONIC
        params = devnet_params(chain_id) if shape == "devnet" else mainnet_params(chain_id, "flux")
        doc = new_devnet_genesis(
            validators, chain_id=chain_id, mnemonic=words, genesis_time_ms=time_ms, params=params
        )
    except FluxError as exc:
        _fail(exc)
        return
    doc.save(out)
    click.echo(f"wrote {out}: chain {chain_id}, {validators} validators, hash {doc.hash().hex()}")
    if words == INSECURE_TEST_MNEMONIC:
        click.echo(
            "warning: keys derive from the public test mnemonic; never use them with value",
            err=True,
        )


@genesis.command("show")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def genesis_show(path: Path, as_json: bool) -> None:
    """Validate a genesis file and print its hash and totals."""
    try:
        doc = Genesis.load(path)
    except FluxError as exc:
        _fail(exc)
        return
    summary = {
        "chain_id": doc.chain_id,
        "hash": doc.hash().hex(),
        "validators": len(doc.validator_set().validators),
        "nodes": len(doc.nodes),
        "accounts": len(doc.balances),
        "supply_flux": genesis_supply(doc) // COIN,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            click.echo(f"{key:12} {value}")
