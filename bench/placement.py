"""Placement at FluxCloud scale: 10,000 nodes in 66 countries over three tiers, 25,000 apps.

    python -m bench.placement [--nodes N] [--apps N]

Measures, on one machine, in one process:
- initial_s: registering all apps (validation, pricing, escrow, placement) one by one;
- failover_ms: one loaded node going down, all its instances moved in that call;
- join_ms: one node becoming CONFIRMED and being offered to under-placed apps;
- rss_mb: peak resident memory of the whole run.
The raw primitive placement is bounded by is SHA-256 of ~60 bytes (rendezvous scores):
its rate is printed alongside. The last line is the summary the issue asks for.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import random
import resource
import sys
import time
from dataclasses import replace

from fluxchain.core import apps, placement
from fluxchain.core.accounts import credit
from fluxchain.core.appspec import AppSpec, Component, GeoRule, Port
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.params import COIN, Params, Tier
from fluxchain.core.records import NodeStatus, node_key
from fluxchain.core.schema import new_state
from fluxchain.core.state import State
from fluxchain.core.tx import AppRegister, Tx
from tests.support.state import CHAIN, make_node, make_params

CONTINENT_COUNTRIES = {
    "EU": [
        "DE",
        "FR",
        "NL",
        "GB",
        "PL",
        "IT",
        "ES",
        "SE",
        "FI",
        "CZ",
        "AT",
        "CH",
        "BE",
        "PT",
        "RO",
        "HU",
        "DK",
        "NO",
        "IE",
        "LT",
        "LV",
        "EE",
        "BG",
        "SK",
        "SI",
        "HR",
        "GR",
    ],
    "NA": ["US", "CA", "MX", "CR", "PA", "GT"],
    "AS": [
        "JP",
        "SG",
        "KR",
        "IN",
        "HK",
        "TW",
        "VN",
        "TH",
        "MY",
        "ID",
        "PH",
        "AE",
        "IL",
        "TR",
        "KZ",
    ],
    "SA": ["BR", "AR", "CL", "CO", "PE", "UY", "EC"],
    "OC": ["AU", "NZ", "FJ"],
    "AF": ["ZA", "NG", "KE", "EG", "MA", "GH", "TZ"],
    "AN": ["AQ"],
}
COUNTRIES = [(c, k) for k, cs in CONTINENT_COUNTRIES.items() for c in cs][:66]
TIERS = [(Tier.CUMULUS, 60), (Tier.NIMBUS, 25), (Tier.STRATUS, 15)]


def rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def make_spec(rng: random.Random, index: int, owner: bytes) -> AppSpec:
    roll = rng.random()
    if roll < 0.004:  # a few apps want more nodes in Fiji than Fiji has: under-placed
        rules: tuple[GeoRule, ...] = (GeoRule(True, "OC", "FJ"),)
    elif roll < 0.70:
        rules = ()
    elif roll < 0.85:
        rules = (GeoRule(True, rng.choice(["EU", "NA", "AS"]), ""),)
    elif roll < 0.95:
        country, continent = rng.choice(COUNTRIES[:20])
        rules = (GeoRule(True, continent, country),)
    else:
        rules = (GeoRule(False, "NA", ""),)
    tier_roll = rng.random()
    min_tier = Tier.CUMULUS if tier_roll < 0.7 else Tier.NIMBUS if tier_roll < 0.9 else Tier.STRATUS
    instance_roll = rng.random()
    instances = 3 if instance_roll < 0.8 else rng.randint(4, 10) if instance_roll < 0.99 else 30
    if rules and rules[0].country == "FJ":
        instances = 60
    components = tuple(
        Component(
            name=f"c{j}",
            description="",
            image="nginx:1.27",
            ports=(Port(31000 + (index * 3 + j) % 9000, 80),),
            environment=("MODE=prod",),
            command=(),
            data_path="/data",
            cpu=rng.randint(1, 6),
            ram_mb=rng.choice([200, 500, 1000, 1500]),
            disk_gb=rng.randint(1, 20),
        )
        for j in range(1 if rng.random() < 0.8 else 2)
    )
    return AppSpec(
        name=f"app{index}",
        description="bench",
        owner=owner,
        contacts=(),
        components=components,
        instances=instances,
        expire=22_000,
        geolocation=rules,
        min_tier=min_tier,
    )


def _activate_network(ctx: BlockContext, rng: random.Random, n_nodes: int) -> None:
    """The network: tiers 60/25/15 %, countries weighted towards the first ones listed."""
    state = ctx.state
    weights = [1.0 / (1 + i / 8) for i in range(len(COUNTRIES))]
    started = time.perf_counter()
    for i in range(n_nodes):
        tier = rng.choices([t for t, _ in TIERS], [w for _, w in TIERS])[0]
        country, continent = rng.choices(COUNTRIES, weights)[0]
        node = make_node(
            i, tier=tier, country=country, continent=continent, owner=bytes([i % 251]) * 20
        )
        state.put(node_key(node.node_id), node)
        placement.on_node_active(ctx, node.node_id)
    state.commit()
    nodes_s = time.perf_counter() - started
    print(
        f"nodes: {n_nodes} in {len({c for c, _ in COUNTRIES})} countries, "
        f"activated in {nodes_s:.2f}s"
    )


def _register_apps(ctx: BlockContext, rng: random.Random, n_apps: int) -> float:
    """Places `n_apps` apps from scratch; returns the seconds the registrations took."""
    state = ctx.state
    # owners and signed registrations (signing is not part of placement: built beforehand)
    keys = [SigningKey(hashlib.sha256(b"bench" + bytes([k])).digest()) for k in range(50)]
    for key in keys:
        credit(state, address_of(key.public_key), 10**9 * COIN)
    txs = []
    for n in range(n_apps):
        key = keys[n % len(keys)]
        txs.append(
            Tx.create(key, CHAIN, 0, 0, AppRegister(make_spec(rng, n, address_of(key.public_key))))
        )
    state.commit()

    started = time.perf_counter()
    for tx in txs:
        mark = state.snapshot()
        try:
            apps.process_app_register(ctx, tx)
        except Exception:
            state.revert(mark)
            raise
    apps.process_block(ctx)
    initial_s = time.perf_counter() - started
    instances = sum(len(p.instances) for _, p in state.items(placement.PLACEMENT))
    wanted = sum(p.wanted for _, p in state.items(placement.PLACEMENT))
    under = placement.get_underplaced(state)
    started = time.perf_counter()
    state.commit()
    commit_s = time.perf_counter() - started
    print(
        f"initial: {n_apps} apps, {instances}/{wanted} instances, {len(under)} under-placed, "
        f"{initial_s:.2f}s ({n_apps / initial_s:.0f} apps/s); state commit {commit_s:.2f}s"
    )
    return initial_s


def _failovers(state: State, params: Params, profile: bool) -> dict[str, float]:
    """Failover of a typical loaded node, then of the most loaded one (milliseconds each)."""
    loads = sorted(
        ((len(load.hosted), key[1:]) for key, load in state.items(placement.NODE_LOAD)),
        reverse=True,
    )
    typical = loads[len(loads) // 2][1]
    timings = {}
    for label, node_id in (("typical", typical), ("busiest", loads[0][1])):
        ctx = BlockContext(state, params, 2, b"\x02" * 33, b"\x00" * 32)
        hosted = len(placement.get_apps_on_node(state, node_id))
        node = state.get(node_key(node_id))
        profiler = cProfile.Profile() if profile and label == "busiest" else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        state.put(node_key(node_id), replace(node, status=NodeStatus.DOWN))
        placement.on_node_inactive(ctx, node_id, "down")
        elapsed = (time.perf_counter() - started) * 1_000
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        timings[label] = elapsed
        moved = sum(1 for e in ctx.events if e.kind.name == "ASSIGNED")
        print(
            f"failover ({label} node): {hosted} instances, {moved} re-assigned in {elapsed:.1f} ms"
        )
        state.commit()
    return timings


def _join(state: State, params: Params, index: int) -> float:
    """A fresh stratus node joins; the end of its block retries a bounded number of the
    under-placed apps (params.app_refills_per_block), round-robin (milliseconds)."""
    ctx = BlockContext(state, params, 3, b"\x02" * 33, b"\x00" * 32)
    node = make_node(index, tier=Tier.STRATUS, country="FJ", continent="OC")
    state.put(node_key(node.node_id), node)
    waiting = placement.count_underplaced(state)
    started = time.perf_counter()
    placement.on_node_active(ctx, node.node_id)
    placement.process_block(ctx)
    join_ms = (time.perf_counter() - started) * 1_000
    took = len(placement.get_apps_on_node(state, node.node_id))
    retried = min(waiting, params.app_refills_per_block)
    print(
        f"join: {waiting} under-placed apps, {retried} retried in its block, "
        f"took {took} in {join_ms:.1f} ms"
    )
    return join_ms


def _sha256_rate() -> float:
    """The raw primitive: sha256 of a 60-byte input, per second."""
    started = time.perf_counter()
    probe = b"x" * 60
    for _ in range(200_000):
        hashlib.sha256(probe).digest()
    return 200_000 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--apps", type=int, default=25_000)
    parser.add_argument("--profile", action="store_true", help="profile the busiest failover")
    args = parser.parse_args()
    rng = random.Random(5)
    params = make_params()
    state = new_state()
    ctx = BlockContext(state, params, 1, b"\x02" * 33, b"\x00" * 32)

    _activate_network(ctx, rng, args.nodes)
    initial_s = _register_apps(ctx, rng, args.apps)
    timings = _failovers(state, params, args.profile)
    join_ms = _join(state, params, args.nodes + 1)

    sha_rate = _sha256_rate()
    per_app_us = initial_s / args.apps * 1e6
    print(
        f"primitive: sha256(60 B) {sha_rate / 1e6:.2f} M/s; one registration costs "
        f"{per_app_us:.0f} us = {per_app_us * sha_rate / 1e6:.0f} sha256 calls"
    )

    print(
        f"placement: initial_s={initial_s:.2f} failover_ms={timings['typical']:.1f} "
        f"join_ms={join_ms:.1f} rss_mb={rss_mb()}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
