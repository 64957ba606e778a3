"""red23d: a node's capacity for apps is whatever its own benchmark says (fresh-eyes
review; failing test).

NODE_CONFIRM carries a benchmark the node measured on itself, signed by its own key;
the chain checks it against the tier's *minimums* only, and placement takes the node's
capacity from it (`compute_capacity`: benchmark minus the reserve), with no upper bound:
not the hardware declared at register (`Node.hardware`, checked against the tier), not
the tier. A Cumulus node (1,000 FLUX of collateral, declared 4 cores / 8 GB / 220 GB)
confirms claiming 4,096 cores, 4 TB of RAM and 4 PB of disk, and becomes eligible for up
to `MAX_HOSTED` (10,000) instances: as the honest nodes fill, every app that ranks it
next lands on it, and its owner is paid each instance's hosting (escrow * d // (R*W))
for work no machine of that size can do. The capacity a node offers apps must be
bounded by something its collateral answers for (its declared hardware, or its tier).
"""

from __future__ import annotations

from dataclasses import replace

from fluxchain.core import nodes, placement
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import TxError
from fluxchain.core.records import KeyRecord, NodeStatus, node_by_key_key, node_key
from fluxchain.core.tx import Benchmark, NodeConfirm
from tests.support.state import StateRunner, make_node

HOT = SigningKey(b"\x07" * 32)
HUGE = Benchmark(4_096, 8_192, 4 * 1024 * 1024, 4 * 1024 * 1024, 2_000, 10_000, 10_000)


def test_red23d_a_cumulus_node_cannot_claim_a_data_centre_of_capacity() -> None:
    chain = StateRunner()
    node = make_node(0, status=NodeStatus.REGISTERED)
    node = replace(node, node_key=HOT.public_key, benchmark=None, last_confirm_height=0)
    chain.state.put(node_key(node.node_id), node)
    chain.state.put(node_by_key_key(HOT.public_key), KeyRecord(node.node_id, 0, 0, 0))
    declared = placement.compute_capacity(
        replace(
            node,
            benchmark=Benchmark(
                node.hardware.cores,
                2 * node.hardware.cores,
                node.hardware.ram_mb,
                node.hardware.disk_gb,
                0,
                0,
                0,
            ),
        ),
        chain.params,
    )
    confirm = chain.tx(HOT, NodeConfirm(node.node_id, HUGE, "test"))
    try:
        chain.apply(nodes.process_node_confirm, confirm)
    except TxError:  # refusing the claim is one fix
        return
    load = placement.get_load(chain.state, node.node_id)
    assert load is not None  # confirmed and ranked: at work in placement
    offered = (load.cap_cpu, load.cap_ram_mb, load.cap_disk_gb)
    assert all(o <= d for o, d in zip(offered, declared, strict=True)), (
        f"a cumulus node declared {node.hardware} offers apps {offered} "
        f"(cpu tenths, RAM MB, disk GB), its declared hardware {declared}"
    )
