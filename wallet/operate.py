"""Owner operations from the wallet: one signed request per hosting node, sent to it.

The wallet reads where the app's instances run (the chain's placement, with each host's
registered endpoint), signs an owner request (fluxchain/core/owner_request.py) naming
each host in turn, and posts it to that host's API, which passes it to its agent. The
hosts are asked at once (a thread each), so `logs --follow` merges their streams.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from fluxchain.core.crypto import SigningKey
from fluxchain.core.owner_request import ALL_INSTANCES, Method, sign_owner_request
from wallet.client import NodeTransport
from wallet.errors import WalletError, WalletReason

REQUEST_VALID_S: Final = 60  # a one-shot request; `logs --follow` asks for longer
FOLLOW_VALID_S: Final = 290  # just under the nodes' 5-minute bound, whatever the clock skew


@dataclass(frozen=True, slots=True)
class Host:
    """A node hosting instances of the app, where the chain says it answers."""

    node_id: bytes
    endpoint: str
    instances: tuple[int, ...]


def hosts_of(view: dict[str, Any], instance: int | None) -> list[Host]:
    """The hosts of an app view's instances (all, or the one numbered `instance`)."""
    found: dict[bytes, Host] = {}
    for item in view.get("instances", []):
        if instance is not None and item["index"] != instance:
            continue
        node_id = bytes.fromhex(item["node_id"])
        host = found.get(node_id)
        indexes = (*host.instances, item["index"]) if host else (item["index"],)
        found[node_id] = Host(node_id, str(item.get("endpoint", "")), indexes)
    if not found:
        what = "no instance" if instance is None else f"no instance {instance}"
        raise WalletError(WalletReason.NOT_FOUND, f"{what} of {view.get('name')} is placed")
    return list(found.values())


def operate(
    key: SigningKey,
    chain_id: str,
    view: dict[str, Any],
    method: Method,
    *,
    instance: int | None = None,
    tail: int = 0,
    follow: bool = False,
    timeout_s: float = 30.0,
) -> Iterator[dict[str, Any]]:
    """Each host's answer lines (each with the host's `node_id`); a host that fails gives
    one line with its `error`, and the others go on."""
    hosts = hosts_of(view, instance)
    valid_s = FOLLOW_VALID_S if follow else REQUEST_VALID_S
    now_ms = time.time_ns() // 1_000_000
    lines: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=256)

    def ask(host: Host) -> None:
        request = sign_owner_request(
            key,
            chain_id,
            method=method,
            app=str(view["name"]),
            node_id=host.node_id,
            now_ms=now_ms,
            instance=ALL_INSTANCES if instance is None else instance,
            tail=tail,
            follow=follow,
            valid_ms=valid_s * 1000,
        )
        where = {"node_id": host.node_id.hex(), "endpoint": host.endpoint}
        try:
            transport = NodeTransport(f"http://{host.endpoint}", timeout_s)
            path = f"/apps/{quote(str(view['name']), safe='')}/operate"
            for line in transport.stream(path, request.to_json(), timeout_s):
                lines.put({**where, **line})
        except WalletError as exc:
            lines.put({**where, "error": {"reason": exc.reason, "message": exc.message}})
        finally:
            lines.put(None)

    threads = [threading.Thread(target=ask, args=(h,), daemon=True) for h in hosts]
    for thread in threads:
        thread.start()
    running = len(threads)
    while running:
        line = lines.get()
        if line is None:
            running -= 1
        else:
            yield line
