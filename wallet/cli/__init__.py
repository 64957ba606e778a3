"""`flux-wallet`: keys, money, staking and apps from the command line.

Global options come before the command: `flux-wallet --node URL --json send …`.
Every failure is one line `error [reason]: message` on stderr (with `--json`, a JSON
object `{"error": {"reason", "message"}}` on stdout) and a non-zero exit status
(wallet/errors.py, docs/wallet.md).
"""

from __future__ import annotations

from pathlib import Path

import click

from wallet.cli import app, dashboard, keys, node, send, trust, tx
from wallet.cli.common import Env, WalletGroup, consoles
from wallet.client import DEFAULT_NODE

DEFAULT_WALLET_DIR = Path("~/.fluxchain/wallet")


@click.group(cls=WalletGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--node",
    envvar="FLUX_NODE",
    default=DEFAULT_NODE,
    show_default=True,
    help="The node's API URL, or several separated by commas: a node that cannot be"
    " reached or whose answer does not verify is passed over for the next (env FLUX_NODE).",
)
@click.option(
    "--wallet-dir",
    envvar="FLUX_WALLET_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_WALLET_DIR,
    show_default=True,
    help="Directory holding wallet.json (env FLUX_WALLET_DIR).",
)
@click.option("--json", "json_mode", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option(
    "--no-verify",
    is_flag=True,
    envvar="FLUX_NO_VERIFY",
    help="Believe the node: skip the proofs of balances, nodes, apps and txs (env FLUX_NO_VERIFY).",
)
@click.option(
    "--trust-period",
    type=click.IntRange(1),
    envvar="FLUX_TRUST_PERIOD",
    default=None,
    help="Seconds a verified header vouches for later ones (default: 2/3 of the chain's"
    " unbonding period; env FLUX_TRUST_PERIOD).",
)
@click.version_option(package_name="fluxchain")
@click.pass_context
def main(
    ctx: click.Context,
    node: str,
    wallet_dir: Path,
    json_mode: bool,
    no_verify: bool,
    trust_period: int | None,
) -> None:
    """flux-wallet: keys, FLUX, node collateral and apps on a fluxchain network.

    \b
    Examples:
      flux-wallet create
      flux-wallet --node http://127.0.0.1:26700 balance
      flux-wallet send tflux1… 12.5
      flux-wallet app register app.yaml
      FLUX_WALLET_PASSWORD=… flux-wallet --json send tflux1… 1 --no-wait

    The password comes from a prompt, or from FLUX_WALLET_PASSWORD in scripts.
    Balances, nodes, apps and confirmed txs are verified against the chain's headers
    (`flux-wallet trust` sets what the wallet trusts; --no-verify skips it).
    """
    out, err = consoles()
    ctx.obj = Env(node, wallet_dir.expanduser(), json_mode, out, err, not no_verify, trust_period)


for _command in (
    keys.create,
    keys.import_,
    keys.add_account,
    keys.list_,
    keys.address,
    keys.export,
    send.balance,
    send.send,
    node.node,
    node.nodes,
    app.app,
    app.apps,
    tx.tx,
    trust.trust,
    dashboard.dashboard,
):
    main.add_command(_command)


def run() -> None:
    """Entry point with the exit status of the last failure."""
    main(prog_name="flux-wallet")


if __name__ == "__main__":
    run()
