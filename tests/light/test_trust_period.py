"""The default trust period: derived from the pinned genesis's unbonding period (2/3 of it,
in seconds at the target block time), shorter than the unbonding period on every network
(a header older than that may be signed by validators who took their stake back), and
usable on a devnet without setting FLUX_TRUST_PERIOD: a week.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.genesis import Genesis
from fluxchain.light.client import LightClient
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.store import TrustStore, default_trust_period_ms, unbonding_period_ms
from fluxchain.light.verifier import TrustedBlock
from tests.light.test_verifier import (
    CHAIN,
    GENESIS_HASH,
    GENESIS_TIME,
    KEYS,
    steady,
    validator_set,
)
from tests.wallet.conftest import Cli, DevNode, devnode  # noqa: F401  (the fixture)

GENESIS_DIR = Path(__file__).resolve().parents[2] / "genesis"
WEEK_MS = 7 * 24 * 3_600_000
HOUR_MS = 3_600_000


@pytest.mark.parametrize("name", ["devnet.json", "testnet-example.json"])
def test_default_trust_period_is_shorter_than_the_unbonding_period(name: str) -> None:
    genesis = Genesis.load(GENESIS_DIR / name)
    store = TrustStore.from_genesis(genesis)
    assert store.trust_period_ms == default_trust_period_ms(genesis.params)
    assert 0 < store.trust_period_ms < unbonding_period_ms(genesis.params)


def test_devnet_default_trust_period_is_a_week() -> None:
    """The devnet's genesis (`fluxchain genesis new`, `make devnet`): a wallet anchored at
    it goes on verifying for a week without FLUX_TRUST_PERIOD (it was 20 s)."""
    devnet = Genesis.load(GENESIS_DIR / "devnet.json")
    assert TrustStore.from_genesis(devnet).trust_period_ms == WEEK_MS


def real_length_store(period_ms: int) -> TrustStore:
    anchor = TrustedBlock(0, GENESIS_HASH, GENESIS_TIME, validator_set(KEYS[:4]))
    return TrustStore.from_block(CHAIN, period_ms, anchor)


def test_trust_expires_after_a_real_length_trust_period() -> None:
    """The testnet's period (16 hours of its 24-hour unbonding): a header is verified
    from the anchor until the anchor is that old, and refused `trust_expired` after, and
    an answer proven against a header that old is `stale_header`."""
    params = Genesis.load(GENESIS_DIR / "testnet-example.json").params
    period = default_trust_period_ms(params)
    assert period == 16 * HOUR_MS
    chain = steady(5)
    within = LightClient(real_length_store(period), lambda: GENESIS_TIME + period - 1)
    within.verify_header(chain, chain.blocks[5].header, chain.blocks[5].commit)
    assert within.store.latest().height == 5
    expired = LightClient(real_length_store(period), lambda: GENESIS_TIME + period)
    with pytest.raises(LightError) as caught:
        expired.verify_header(chain, chain.blocks[5].header, chain.blocks[5].commit)
    assert caught.value.reason is LightReason.TRUST_EXPIRED
    later = LightClient(real_length_store(period), lambda: chain.time_of(5) + period)
    with pytest.raises(LightError) as stale:
        later.check_fresh(chain.blocks[5].header)
    assert stale.value.reason is LightReason.STALE_HEADER


def test_devnet_wallet_verifies_with_the_default_trust_period(
    devnode: DevNode,  # noqa: F811
) -> None:
    """A real devnet node: the wallet anchored at its genesis verifies a balance with no
    FLUX_TRUST_PERIOD, and keeps the devnet's default, a week."""
    cli = Cli(devnode.home.parent / "default-period-wallet", devnode.url)
    cli.import_devnet()
    assert "FLUX_TRUST_PERIOD" not in cli.env()
    assert cli.json("balance", "account4")["balance"] > 0
    assert cli.json("trust")["trust_period_s"] == WEEK_MS // 1000


def test_cli_labels_an_unknown_tx_status_as_the_nodes_unverified_claim(
    devnode: DevNode,  # noqa: F811
) -> None:
    cli = Cli(devnode.home.parent / "status-wallet", devnode.url)
    unknown = "00" * 32
    shown = cli.json("tx", "status", unknown)
    assert shown["status"] == "unknown" and shown["verified"] is False
    assert shown["served_by"] == devnode.url
    text = cli.run("tx", "status", unknown).stdout
    assert "unknown" in text and f"unverified: what {devnode.url} claims" in text, text
    assert "verified: included" not in text
