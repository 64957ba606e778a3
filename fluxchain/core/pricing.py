"""The price of running an app: integer arithmetic over genesis params, rounded up once.

For one instance and one `app_price_period` (Flux: 22,000 blocks), summed over components:

    per_period = cpu_tenths   * app_price_cpu_tenth
               + ram_mb / 100 * app_price_ram_100mb     (proportional: 150 MB = 1.5 units)
               + disk_gb      * app_price_disk_gb
               + ports        * app_price_port      (a port record: tcp, udp or both alike)

and for `instances` instances and `blocks` blocks:

    price = max(app_min_price, ceil(per_period * instances * blocks / app_price_period))

Everything is multiplied out first and divided once, rounding up (the payer, never the
protocol, absorbs the rounding, and by at most one base unit). The mainnet-shaped
defaults are Flux's published per-instance prices: 0.03 FLUX per 0.1 cpu, 0.01 per
100 MB RAM, 0.004 per GB disk and 0.01 per published port per 22,000 blocks, at least
0.01 FLUX. Worked example (docs/apps.md): 1 core, 2,000 MB, 20 GB, no ports, 3 instances,
22,000 blocks = (0.30 + 0.20 + 0.08) * 3 = 1.74 FLUX.
"""

from __future__ import annotations

from fluxchain.core.appspec import AppSpec
from fluxchain.core.params import Params

RAM_UNIT_MB = 100  # the RAM price is per 100 MB


def compute_period_numerator(spec: AppSpec, params: Params) -> int:
    """One instance's price per period, times RAM_UNIT_MB (so RAM stays exact)."""
    return (
        spec.cpu * params.app_price_cpu_tenth * RAM_UNIT_MB
        + spec.ram_mb * params.app_price_ram_100mb
        + spec.disk_gb * params.app_price_disk_gb * RAM_UNIT_MB
        + len(spec.ports) * params.app_price_port * RAM_UNIT_MB
    )


def compute_price(spec: AppSpec, params: Params, blocks: int) -> int:
    """Base units `spec` costs for `blocks` blocks at `spec.instances` instances."""
    numerator = compute_period_numerator(spec, params) * spec.instances * blocks
    denominator = RAM_UNIT_MB * params.app_price_period
    exact = -(-numerator // denominator)  # ceiling division on non-negative integers
    return max(params.app_min_price, exact)


def compute_period_price(spec: AppSpec, params: Params) -> int:
    """Base units for one full `app_price_period` (what a price list shows)."""
    return compute_price(spec, params, params.app_price_period)
