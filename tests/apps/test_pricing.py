"""Pricing: Flux's published per-instance prices, integer arithmetic, rounding up once."""

from __future__ import annotations

from fractions import Fraction

from fluxchain.core.appspec import Port, Protocol
from fluxchain.core.params import COIN
from fluxchain.core.pricing import compute_period_price, compute_price
from tests.support.state import component, make_params, spec

OWNER = bytes(20)
PARAMS = make_params()
PERIOD = PARAMS.app_price_period  # 22,000 blocks


def flux_reference(
    cpu_cores: Fraction, ram_mb: int, hdd_gb: int, ports: int, instances: int
) -> Fraction:
    """Flux's published arithmetic for one period, per instance times instances:
    0.03 FLUX per 0.1 cpu, 0.01 per 100 MB, 0.004 per GB, 0.01 per port."""
    per_instance = (
        cpu_cores * 10 * Fraction(3, 100)
        + Fraction(ram_mb, 100) * Fraction(1, 100)
        + hdd_gb * Fraction(4, 1000)
        + ports * Fraction(1, 100)
    )
    return per_instance * instances


def test_worked_example_from_the_docs() -> None:
    # 1 core, 2,000 MB, 20 GB, no ports, 3 instances: (0.30 + 0.20 + 0.08) * 3 = 1.74 FLUX
    s = spec(
        OWNER,
        components=(component(cpu=10, ram_mb=2_000, disk_gb=20, ports=()),),
    )
    assert compute_period_price(s, PARAMS) == 174 * COIN // 100


def test_flux_prices_reproduced() -> None:
    cases = [
        # cpu tenths, ram MB, disk GB, ports, instances
        (1, 100, 1, 0, 3),
        (5, 500, 5, 1, 3),
        (10, 2_000, 20, 2, 3),
        (40, 8_000, 200, 5, 10),
        (150, 59_000, 820, 5, 100),
    ]
    for cpu, ram, disk, ports, instances in cases:
        c = component(
            cpu=cpu,
            ram_mb=ram,
            disk_gb=disk,
            ports=tuple(31000 + i for i in range(ports)),
        )
        s = spec(OWNER, components=(c,), instances=instances)
        expected = flux_reference(Fraction(cpu, 10), ram, disk, ports, instances) * COIN
        assert compute_period_price(s, PARAMS) == expected  # exact: every figure is whole


def test_components_add_up() -> None:
    a = component(cpu=5, ram_mb=500, disk_gb=5, ports=(31000,))
    b = component(name="db", cpu=3, ram_mb=250, disk_gb=7, ports=(31001,))
    both = spec(OWNER, components=(a, b))
    expected = flux_reference(Fraction(8, 10), 750, 12, 2, 3) * COIN
    assert compute_period_price(both, PARAMS) == expected


def test_a_port_costs_the_same_whatever_its_protocol() -> None:
    # one port, as on Flux (which publishes every port over both): udp or both cost as tcp
    prices = {
        compute_period_price(
            spec(OWNER, components=(component(ports=(Port(31000, 80, p),)),)), PARAMS
        )
        for p in Protocol
    }
    assert prices == {flux_reference(Fraction(5, 10), 500, 5, 1, 3) * COIN}


def test_price_scales_with_blocks_and_rounds_up_once() -> None:
    s = spec(OWNER)  # 0.23 FLUX per instance per period, 3 instances
    per_period = compute_period_price(s, PARAMS)
    assert per_period == 69 * COIN // 100
    # 1,000 blocks: 0.69 * 1000 / 22000 FLUX = 3,136,363.63... units -> 3,136,364
    assert compute_price(s, PARAMS, 1_000) == 3_136_364
    assert compute_price(s, PARAMS, 2 * PERIOD) == 2 * per_period
    for blocks in (1, 7, 999, 12_345, 264_000):
        exact = Fraction(per_period * blocks, PERIOD)
        price = compute_price(s, PARAMS, blocks)
        assert (price >= exact and price - exact < 1) or price == PARAMS.app_min_price


def test_minimum_price() -> None:
    s = spec(OWNER)
    assert compute_price(s, PARAMS, 1) == PARAMS.app_min_price  # 3,137 units < 0.01 FLUX
    assert compute_price(s, make_params(app_min_price=0), 1) == 3_137


def test_ram_is_proportional_not_rounded_to_100mb() -> None:
    base = spec(OWNER, components=(component(ram_mb=100, ports=()),))
    more = spec(OWNER, components=(component(ram_mb=150, ports=()),))
    diff = compute_period_price(more, PARAMS) - compute_period_price(base, PARAMS)
    assert diff == 3 * COIN // 200  # 0.5 unit of 100 MB * 0.01 FLUX * 3 instances
