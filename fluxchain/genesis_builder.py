"""Making genesis files: `fluxchain genesis new` and the devnet.

Devnet keys come from a mnemonic (by default the published BIP39 test mnemonic, so
anyone can reproduce them — and so anyone can spend them: devnets only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from fluxchain.core import vrf
from fluxchain.core.crypto import address_of
from fluxchain.core.errors import FluxError, Reason
from fluxchain.core.genesis import Genesis, GenesisNode, check_whole
from fluxchain.core.params import COIN, Params, Tier, TierParams
from fluxchain.core.tx import Hardware, check_endpoint
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key, node_key_path

# Countries the devnet's nodes claim, so geolocation rules have something to act on.
DEVNET_LOCATIONS: Final = (("DE", "EU"), ("US", "NA"), ("JP", "AS"), ("FR", "EU"), ("BR", "SA"))
DEV_ACCOUNT_BALANCE: Final = 1_000_000 * COIN
DEV_ACCOUNTS: Final = 4  # funded accounts beyond the validators' owners


def mainnet_params(chain_id: str = "flux-mainnet-shaped", hrp: str = "flux") -> Params:
    """The public Flux network's economics: 30 s blocks, ~640-block confirm window."""
    return Params(
        chain_id=chain_id,
        address_hrp=hrp,
        block_time_ms=30_000,
        max_clock_drift_ms=15_000,  # half a block: NTP keeps honest clocks far closer
        max_time_advance_ms=86_400_000,  # a day: after a longer halt, time catches up by days
        max_block_txs=10_000,
        max_block_bytes=4 * 1024 * 1024,
        max_tx_bytes=64 * 1024,
        min_fee=1_000,
        base_fee=500,  # half of the minimum fee is burnt
        account_deposit=100_000,  # 0.001 FLUX burnt per new account
        relocation_price=10_000,  # 0.0001 FLUX burnt per instance moved
        # Declared hardware is capped at the next tier's minimums (Stratus: twice its own):
        # a bigger machine registers in the bigger tier, with the bigger collateral.
        cumulus=TierParams(1_000 * COIN, 2, 4, 8_000, 220, 25, 4, 32_000, 440, 1 * COIN),
        nimbus=TierParams(12_500 * COIN, 4, 8, 32_000, 440, 50, 8, 64_000, 880, 35 * COIN // 10),
        stratus=TierParams(40_000 * COIN, 8, 16, 64_000, 880, 100, 16, 128_000, 1_760, 9 * COIN),
        reserve_cores=1,
        reserve_ram_mb=2_048,
        reserve_disk_gb=80,
        block_subsidy=14 * COIN,
        halving_interval=4_204_800,  # four years of 30 s blocks
        confirm_window=640,
        epoch_length=20,  # 10 minutes: how often each node is checked
        checkers_per_node=30,  # quorum 21: 3.7e-5 per target at 33 %, 4.5e-9 at 20 %
        unbonding_period=2_880,  # one day
        max_validators=100,
        slash_bps=500,
        jail_period=2_880,
        down_cooldown=640,  # a confirm window of pay lost for being down
        evidence_max_age=2_800,  # expires before an unregistered validator's collateral returns
        app_min_instances=3,
        app_max_instances=100,
        app_min_expire=5_000,
        app_max_expire=264_000,
        app_max_components=10,
        app_price_period=22_000,
        app_price_cpu_tenth=3 * COIN // 100,
        app_price_ram_100mb=1 * COIN // 100,
        app_price_disk_gb=4 * COIN // 1_000,
        app_price_port=1 * COIN // 100,
        app_min_price=1 * COIN // 100,
        app_settle_interval=720,  # six hours of 30 s blocks
        app_charge=1 * COIN // 100,  # 0.01 FLUX burnt per register or update
        domain_hold_blocks=20_160,  # a week of 30 s blocks: time to repoint a domain's DNS
        secrets_pending_blocks=2_880,  # a day of 30 s blocks for the register to follow
        app_refills_per_block=20,  # each a placement search over the active nodes
        app_settles_per_block=100,  # 25,000 apps settle ~35 a block on average
        app_expiries_per_block=50,  # each frees up to app_max_instances instances
    )


def devnet_params(chain_id: str = "flux-devnet") -> Params:
    """Mainnet economics with 1 s blocks, short windows and laptop-sized tier minimums."""
    laptop = dict(min_cores=1, min_threads=1, min_ram_mb=256, min_disk_gb=1, min_bandwidth_mbit=0)
    base = mainnet_params(chain_id, "tflux")
    return replace(
        base,
        block_time_ms=1_000,
        max_clock_drift_ms=2_000,
        cumulus=replace(base.cumulus, **laptop),
        nimbus=replace(base.nimbus, **laptop),
        stratus=replace(base.stratus, **laptop),
        reserve_cores=0,
        reserve_ram_mb=0,
        reserve_disk_gb=0,
        confirm_window=60,
        epoch_length=5,
        checkers_per_node=3,
        # 10.5 days of 1 s blocks: a light client's default trust period is 2/3 of it, a
        # week (docs/light-client.md §1), so a wallet anchored at the genesis of a devnet
        # that has run for days still verifies, and no trust period is longer than the
        # time its signers stay bonded. Chain-rule tests that walk through an unbonding
        # set a short one (tests/support/chain.py).
        unbonding_period=907_200,
        evidence_max_age=20,
        jail_period=60,
        down_cooldown=10,  # two epochs: a devnet node back soon after a drill
        app_min_expire=100,
        app_settle_interval=60,
        domain_hold_blocks=600,  # ten minutes of 1 s blocks
        secrets_pending_blocks=3_600,  # an hour of 1 s blocks
    )


def new_devnet_genesis(
    validators: int,
    *,
    chain_id: str = "flux-devnet",
    mnemonic: str = INSECURE_TEST_MNEMONIC,
    genesis_time_ms: int = 0,
    base_api_port: int = 26700,
    endpoints: Sequence[str] | None = None,
    params: Params | None = None,
) -> Genesis:
    """A genesis with `validators` Stratus validator nodes and funded dev accounts.

    Validator i's owner is account i, its node key is node key i; dev accounts follow
    the owners (accounts validators .. validators + DEV_ACCOUNTS - 1). Validator i
    registers `endpoints[i]` (where uptime checkers probe its API), by default
    127.0.0.1:base_api_port+i as on a loopback devnet; containers name their service.
    """
    params = params or devnet_params(chain_id)
    params.validate()  # the same rules a genesis file is held to when it is loaded
    if endpoints is None:
        endpoints = [f"127.0.0.1:{base_api_port + i}" for i in range(validators)]
    if len(endpoints) != validators:
        raise FluxError(
            Reason.BAD_FIELD, f"{len(endpoints)} endpoints given for {validators} validators"
        )
    for i, endpoint in enumerate(endpoints):
        check_endpoint(endpoint, f"endpoint of validator {i}")
    nodes = []
    for i in range(validators):
        owner = address_of(derive_key(mnemonic, account_path(i)).public_key)
        country, continent = DEVNET_LOCATIONS[i % len(DEVNET_LOCATIONS)]
        node_key = derive_key(mnemonic, node_key_path(i))
        vrf_key, vrf_proof = vrf.claim(node_key, params.chain_id)
        nodes.append(
            GenesisNode(
                owner=owner,
                node_key=node_key.public_key,
                vrf_key=vrf_key,
                vrf_proof=vrf_proof,
                tier=Tier.STRATUS,
                endpoint=endpoints[i],
                country=country,
                continent=continent,
                hardware=Hardware(8, 65_536, 880),
                validator=True,
            )
        )
    balances = [
        (address_of(derive_key(mnemonic, account_path(i)).public_key), DEV_ACCOUNT_BALANCE)
        for i in range(validators + DEV_ACCOUNTS)
    ]
    genesis = Genesis(
        chain_id=params.chain_id,
        genesis_time_ms=genesis_time_ms,
        params=params,
        balances=tuple(balances),
        nodes=tuple(nodes),
        insecure_dev_mnemonic=mnemonic if mnemonic == INSECURE_TEST_MNEMONIC else "",
    )
    check_whole(genesis)  # what a loaded file is held to as a whole, too
    return genesis
