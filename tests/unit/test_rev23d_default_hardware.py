"""rev23d: a node registered the documented way offers apps only its tier's minimum
(fresh-eyes review of e57c0d7; failing test).

Since red23d #4 a node's capacity is its benchmark capped, figure by figure, by the
hardware it declared at register (`placement.compute_machine`). The wallet's
`node register` declares the tier's *minimum* unless `--cores/--ram-mb/--disk-gb` are
given (`wallet.builders.tier_hardware`), and README's tour and docs/wallet.md register
that way. The declaration was harmless while capacity came from the benchmark; now it is
a ceiling: an honest Cumulus machine of 4 cores / 16 GB / 400 GB (within the tier's caps,
4 / 32,000 / 440) that confirms that benchmark offers apps 1 core, 5,952 MB and 140 GB
(the minimum less the reserve) for good, since the hardware cannot be declared again
(NODE_UPDATE does not carry it). Its owner is paid for a third of the CPU it runs, and
the network loses the rest, with no error or warning anywhere. A default that can only
lose capacity must be the tier's cap (the benchmark still bounds what counts), or the
register must make the operator say what the machine has.
"""

from __future__ import annotations

from dataclasses import replace

from fluxchain.core import nodes, placement
from fluxchain.core.crypto import SigningKey
from fluxchain.core.params import Tier
from fluxchain.core.records import KeyRecord, NodeStatus, node_by_key_key, node_key
from fluxchain.core.tx import Benchmark, NodeConfirm
from tests.support.state import StateRunner, make_node
from wallet import builders

HOT = SigningKey(b"\x0b" * 32)
# an ordinary Cumulus-sized machine: above the tier's minimums, within its caps
MACHINE = Benchmark(4, 8, 16_000, 400, 500, 1_000, 100)


def test_rev23d_a_node_registered_with_the_wallets_default_hardware_offers_its_benchmark() -> None:
    chain = StateRunner()
    params = chain.params
    tier = params.tier(Tier.CUMULUS)
    assert not tier.hardware_excess(MACHINE.cores, MACHINE.ram_mb, MACHINE.disk_gb)
    declared = builders.tier_hardware(params, Tier.CUMULUS)  # `node register` without flags
    node = make_node(0, status=NodeStatus.REGISTERED)
    node = replace(
        node, node_key=HOT.public_key, hardware=declared, benchmark=None, last_confirm_height=0
    )
    chain.state.put(node_key(node.node_id), node)
    chain.state.put(node_by_key_key(HOT.public_key), KeyRecord(node.node_id, 0, 0, 0))

    chain.apply(nodes.process_node_confirm, chain.tx(HOT, NodeConfirm(node.node_id, MACHINE, "t")))

    load = placement.get_load(chain.state, node.node_id)
    assert load is not None
    expected = (
        (MACHINE.cores - params.reserve_cores) * 10,
        MACHINE.ram_mb - params.reserve_ram_mb,
        MACHINE.disk_gb - params.reserve_disk_gb,
    )
    offered = (load.cap_cpu, load.cap_ram_mb, load.cap_disk_gb)
    assert offered == expected, (
        f"a cumulus node registered with the wallet's default hardware {declared} and "
        f"benchmarked at {MACHINE.cores} cores/{MACHINE.ram_mb} MB/{MACHINE.disk_gb} GB "
        f"(within the tier's caps) offers apps {offered} (cpu tenths, RAM MB, disk GB), "
        f"not its benchmark's {expected}"
    )
