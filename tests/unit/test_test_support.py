"""The shared test kit keeps its promises: a timed-out wait shows every node's view, and a
leased port is given to no other test process."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ports as ports_module
from tests.support.ports import lease_ports, lease_range
from tests.support.wait import NodeStatus, wait_until, wait_until_async

ROOT = Path(__file__).resolve().parents[2]


def _nodes(tmp_path: Path) -> list[NodeStatus]:
    log = tmp_path / "node.log"
    log.write_text(
        "2026-01-01 00:00:00 INFO    fluxchain.node block committed height=6\n"
        "2026-01-01 00:00:01 ERROR   fluxchain.node stopping: storage failed: disk full\n"
        "2026-01-01 00:00:02 INFO    fluxchain.node node stopped height=7\n"
    )
    return [
        NodeStatus("node0", True, height=7, peers=3, round=2, head="ab" * 32, logs=(log,)),
        NodeStatus("node1", False),
    ]


def test_a_timed_out_wait_dumps_every_node_it_was_given(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as caught:
        wait_until(lambda: False, 0.2, "height 10", nodes=lambda: _nodes(tmp_path), poll_s=0.05)
    text = str(caught.value)
    assert text.startswith("timed out after 0.2 s waiting for: height 10")
    assert "--- node0 (up) height=7 peers=3 round=2 head=abababababab" in text
    assert "stopping: storage failed: disk full" in text  # the last error of its log
    assert "--- node1 (down) height=? peers=? round=?" in text


def test_the_event_loop_wait_fails_the_same_way(tmp_path: Path) -> None:
    async def scenario() -> None:
        await wait_until_async(lambda: False, 0.1, "a peer", nodes=lambda: _nodes(tmp_path))

    with pytest.raises(AssertionError, match=r"(?s)waiting for: a peer.*node0 \(up\) height=7"):
        asyncio.run(scenario())


def test_a_wait_that_holds_returns_at_once() -> None:
    assert wait_until(lambda: True, 5, "nothing") < 1


LEASE_IN_CHILD = """
import sys
from tests.support.ports import lease_ports
print(" ".join(map(str, lease_ports(int(sys.argv[1])).ports)))
"""


def test_a_leased_port_is_given_to_no_other_process() -> None:
    """`free_ports` bound port 0, read the port and closed it: the next bind(0) anywhere on
    the machine (another test's node, an outgoing connection) could be given it before
    the node bound it. A lease is held until released and lies outside the range the
    kernel hands out, so neither another test process nor the kernel can take it."""
    with lease_ports(40) as mine:
        child = subprocess.run(
            [sys.executable, "-c", LEASE_IN_CHILD, "40"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        theirs = {int(port) for port in child.stdout.split()}
        assert len(theirs) == 40
        assert not theirs & set(mine.ports)
        _, ephemeral_low = lease_range()
        assert max(mine.ports) < ephemeral_low  # bind(port 0) never returns one of them


def test_a_contiguous_lease_is_a_run_of_ports() -> None:
    with lease_ports(4, contiguous=True) as lease:
        first = lease.ports[0]
        assert lease.ports == [first, first + 1, first + 2, first + 3]


def test_a_lease_never_released_lasts_until_the_process_exits() -> None:
    """A harness left unclosed, in a reference cycle: its lease must not end at some later
    collection (its lock files closed by their finalizers, a ResourceWarning each, charged
    to whichever test runs then): it holds its ports until the process exits."""
    lease = lease_ports(2)
    ports = list(lease.ports)
    harness: dict[str, object] = {"lease": lease}
    harness["itself"] = harness
    del lease, harness
    gc.collect()
    try:
        for port in ports:
            assert ports_module._try_lock(port) is None, f"port {port}'s lease ended"
    finally:
        for held in [h for h in ports_module._UNRELEASED if h.ports == ports]:
            held.release()
