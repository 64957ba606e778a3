"""`flux-wallet dashboard`: the web dashboard on this machine, its reads verified
(wallet/dashboard.py, docs/dashboard.md)."""

from __future__ import annotations

import asyncio
import sys

import click
from aiohttp import web

from wallet.cli.common import Env, pass_env
from wallet.dashboard import LOCAL_HOSTS, create_dashboard_app
from wallet.errors import WalletError, WalletReason

DEFAULT_LISTEN = "127.0.0.1:26780"


def parse_listen(text: str) -> int:
    """The port of `127.0.0.1:PORT` (or `localhost:PORT`, or a bare PORT): the dashboard
    answers this machine only, so any other address is refused."""
    host, _, port_text = text.strip().rpartition(":")
    if host and host not in LOCAL_HOSTS:
        raise WalletError(
            WalletReason.BAD_INPUT,
            f"--listen {text}: the wallet's dashboard binds 127.0.0.1 only",
        )
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise WalletError(WalletReason.BAD_INPUT, f"--listen {text}: not 127.0.0.1:PORT")
    return port


@click.command("dashboard")
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    metavar="127.0.0.1:PORT",
    help="Where to serve the dashboard (this machine only; port 0 picks a free one).",
)
@pass_env
def dashboard(env: Env, listen: str) -> None:
    """Serve the web dashboard on this machine, every read it can prove verified.

    Accounts, nodes, apps, blocks and confirmed txs are asked of the wallet's nodes
    (--node) with their proofs and checked by the wallet's light client (its trust store,
    pinned genesis and fall-over), as `flux-wallet balance` does; each explorer page says
    against which block it was verified, or that it could not be, why, and which node
    served it. Lists, network figures and a tx status other than confirmed cannot be
    proven and are labelled unverified. Stop with Ctrl-C.

    \b
    Example:
      flux-wallet dashboard --listen 127.0.0.1:26780
    """
    port = parse_listen(listen)
    client = env.client()
    if client.verifier is not None:
        client.params()  # no trust anchor: say so now, not on every page
    try:
        asyncio.run(_serve(env, create_dashboard_app(client), port))
    except KeyboardInterrupt:
        env.say("dashboard stopped")


async def _serve(env: Env, app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        try:
            await site.start()
        except OSError as exc:
            raise WalletError(
                WalletReason.BAD_INPUT, f"cannot listen on 127.0.0.1:{port}: {exc.strerror}"
            ) from None
        bound = runner.addresses[0][1]
        url = f"http://127.0.0.1:{bound}/"
        how = "verified by this wallet's light client" if env.verify else "NOT verified"
        env.emit({"url": url, "nodes": env.node_url, "verify": env.verify})
        env.say(f"dashboard at {url} (reads from {env.node_url}, {how}); Ctrl-C stops it")
        sys.stdout.flush()
        await asyncio.Event().wait()  # until Ctrl-C (asyncio.run cancels this)
    finally:
        await runner.cleanup()
