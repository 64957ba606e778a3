"""Issue 26 #7 and #4: state and re-placement work cost their sender, even in its own blocks.

- a burnt base fee: `base_fee` of every fee-paying tx's fee leaves the supply, so a
  proposer filling its own blocks still pays for them;
- an account-creation deposit, burnt: a new account is state every node keeps forever;
- a node relocates at most once per confirm window, and a relocation (NODE_UPDATE) or an
  app update (APP_UPDATE) pays, burnt, `relocation_price` for each instance it moves.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fluxchain.core import apps, nodes, placement, uptime
from fluxchain.core.accounts import get_account
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.events import EventKind, PayReason
from fluxchain.core.genesis import genesis_supply
from fluxchain.core.params import COIN, Tier
from fluxchain.core.records import META, Meta, account_key
from fluxchain.core.supply import total_supply
from fluxchain.core.tx import AppRegister, AppUpdate, NodeUpdate, Tx
from tests.support.chain import (
    FEE,
    Builder,
    funded_key,
    node_hot_key,
    open_chain,
    owner_key,
    proposer_reveal,
    uptime_attest,
)
from tests.support.state import StateRunner, geo, key_of, spec


@pytest.fixture
def b(tmp_path: Path) -> Builder:
    return Builder(open_chain(tmp_path / "home"))


def _build(b: Builder, txs: list[Tx]) -> tuple[int, list[tuple[Tx, Exception]], int]:
    """Build (then abort) the next block from `txs`: how many it holds, what it refused,
    and what it paid its proposer."""
    block, execution, rejected = b.chain.build_block(
        now_ms=b.time_ms + 1,
        round_=0,
        last_commit=b.last_commit,
        candidates=txs,
        reveal=proposer_reveal(b.chain, 0, b.node_keys.values()),
    )
    b.chain.abort(execution)
    paid = [
        e.fields[1]
        for e in execution.events
        if e.kind is EventKind.PAID and e.fields[2] == int(PayReason.PROPOSER)
    ]
    return len(block.txs), rejected, sum(paid)


def _proposer_subsidy(b: Builder, height: int) -> int:
    params = b.chain.params
    return params.subsidy_at(height) - sum(params.tier_reward_at(t, height) for t in Tier)


def _supply_balances(b: Builder) -> bool:
    meta: Meta = b.chain.state.get(META)
    total: int = total_supply(b.chain.state)
    return total == genesis_supply(b.chain.genesis) + meta.minted - meta.burned


# -- #7: the burnt base fee ------------------------------------------------------------------


def test_a_proposer_filling_its_own_blocks_still_pays_the_base_fee(b: Builder) -> None:
    """Before, every fee went to the proposer: a proposer filling its own blocks paid
    nothing for them. Now `base_fee` of each fee is burnt: the proposer is paid only the
    tips, and the supply shrinks by the base fees (the supply invariant counts the burn)."""
    params = b.chain.params
    b.commit()
    sender = funded_key()
    existing = address_of(owner_key(1).public_key)  # a genesis account: no deposit
    txs = [b.transfer(sender, existing, COIN + i) for i in range(5)]
    count, rejected, paid = _build(b, txs)
    assert (count, rejected) == (5, [])
    height = b.chain.height + 1
    assert paid == _proposer_subsidy(b, height) + 5 * (FEE - params.base_fee)
    burned = b.chain.state.get(META).burned
    b.commit(txs)
    assert b.chain.state.get(META).burned - burned == 5 * params.base_fee
    assert _supply_balances(b)


def test_fee_free_duties_burn_nothing(b: Builder) -> None:
    """NODE_CONFIRM, UPTIME_ATTEST and EVIDENCE stay fee-free: they carry no fee, so no
    base fee is taken from them (an empty block burns nothing either)."""
    burned = b.chain.state.get(META).burned
    b.commit()
    assert b.chain.state.get(META).burned == burned


# -- #7: the account-creation deposit --------------------------------------------------------


def test_creating_accounts_for_a_flat_fee_is_refused(b: Builder) -> None:
    """Before, a transfer of 1 base unit created an account (604 bytes on every node) for
    the flat fee: a day of full blocks made 28.8 M of them. Now a transfer to a new account
    must move at least `account_deposit` (refused `below_account_deposit` otherwise), and
    the sender burns `account_deposit` on top of the amount."""
    params = b.chain.params
    b.commit()
    sender = funded_key()
    new = bytes(range(20))
    assert get_account(b.chain.state, new).balance == 0
    dust = b.transfer(sender, new, params.account_deposit - 1)
    count, rejected, _ = _build(b, [dust])
    assert count == 0 and isinstance(rejected[0][1], TxError)
    assert rejected[0][1].reason is Reason.BELOW_ACCOUNT_DEPOSIT
    b.nonces.clear()
    before = get_account(b.chain.state, address_of(sender.public_key)).balance
    burned = b.chain.state.get(META).burned
    b.commit([b.transfer(sender, new, params.account_deposit)])
    after = get_account(b.chain.state, address_of(sender.public_key)).balance
    assert before - after == 2 * params.account_deposit + FEE
    assert get_account(b.chain.state, new).balance == params.account_deposit
    assert b.chain.state.get(META).burned - burned == params.account_deposit + params.base_fee
    # the account exists now: a small transfer to it is an ordinary one
    b.commit([b.transfer(sender, new, 1)])
    assert get_account(b.chain.state, new).balance == params.account_deposit + 1
    assert _supply_balances(b)


def test_rotating_node_keys_creates_accounts_without_the_deposit(b: Builder) -> None:
    """Review of issue 26: a NODE_UPDATE may name a fresh node key in every tx, for the flat
    fee; the new key's first fee-free duty (an UPTIME_ATTEST, once per epoch) writes an
    account record for its address, which every node keeps forever, with no deposit. A new
    account so costs `base_fee` (500 base units burnt) instead of `account_deposit`
    (100,000 burnt, and as much moved): 200 times cheaper. 1,000 nodes rotating every
    mainnet-shaped epoch (20 blocks) add 144,000 accounts a day for 0.72 FLUX."""
    params = b.chain.params
    while b.chain.height < params.epoch_length:  # the first epoch boundary builds a ring
        b.commit()
    state = b.chain.state
    node = nodes.get_node_by_key(state, node_hot_key(0).public_key)
    assert node is not None
    fresh = SigningKey(hashlib.sha256(b"a fresh node key").digest())
    fresh_account = account_key(address_of(fresh.public_key))
    assert state.get(fresh_account) is None
    burned = state.get(META).burned
    rotate = b.node_update(
        owner_key(0), node.node_id, fresh, country=node.country, continent=node.continent
    )
    b.commit([rotate])
    epoch = state.get(META).epoch
    targets = uptime.targets_of(state, node.node_id, params.checkers_per_node)
    assert targets
    b.commit([uptime_attest(b, fresh, node.node_id, epoch, dict.fromkeys(targets, True))])
    assert not b.rejected
    assert state.get(fresh_account) is not None  # a new account every node keeps
    paid = state.get(META).burned - burned
    assert paid >= params.account_deposit, (
        f"a new account was created for {paid} base units burnt, "
        f"below the account deposit {params.account_deposit}"
    )


# -- #4: relocations -------------------------------------------------------------------------

OWNER = key_of(7)


def _hosting_chain() -> tuple[StateRunner, bytes, int]:
    """Three German nodes of one owner hosting a three-instance app: one instance each.
    Returns the chain, the relocating node's id and the instances it hosts."""
    chain = StateRunner()
    owner = chain.fund(OWNER)
    for i in range(3):
        chain.add_node(i, owner=owner, country="DE", continent="EU")
    app_owner = chain.fund(key_of(8))
    chain.apply(apps.process_app_register, chain.tx(key_of(8), AppRegister(spec(app_owner))))
    node_id = placement.get_app_nodes(chain.state, "myapp")[0][1]
    hosted = len(placement.get_apps_on_node(chain.state, node_id))
    assert hosted >= 1
    return chain, node_id, hosted


def _relocate(chain: StateRunner, node_id: bytes, country: str, fee: int) -> Tx:
    continent = "EU" if country in ("DE", "FR") else "NA"
    return chain.tx(OWNER, NodeUpdate(node_id, "h:1", country, continent, b"", b"", 0), fee)


def test_relocating_a_node_for_the_flat_fee_is_refused() -> None:
    """Before, a NODE_UPDATE changing country re-placed everything the node hosted for the
    flat fee (200 flips: 0.002 FLUX, 120,203 events). Now its fee must cover
    `relocation_price` per hosted instance (refused `relocation_fee_too_low`, with nothing
    changed), and that charge is burnt, not tipped to the proposer."""
    chain, node_id, hosted = _hosting_chain()
    params = chain.params
    burned = chain.ctx.burned  # the app registers' charges
    cheap = _relocate(chain, node_id, "FR", params.min_fee)
    with pytest.raises(TxError) as refused:
        chain.apply(nodes.process_node_update, cheap)
    assert refused.value.reason is Reason.RELOCATION_FEE_TOO_LOW
    assert nodes.get_node(chain.state, node_id).country == "DE"  # type: ignore[union-attr]
    assert chain.ctx.burned == burned
    charge = hosted * params.relocation_price
    chain.apply(nodes.process_node_update, _relocate(chain, node_id, "FR", params.min_fee + charge))
    assert nodes.get_node(chain.state, node_id).country == "FR"  # type: ignore[union-attr]
    assert chain.ctx.burned - burned == charge


def test_relocation_flips_are_limited_per_confirm_window() -> None:
    """Before, a node could flip its country in every tx of every block, each flip
    re-placing all it hosts. Now it changes location at most once per `confirm_window`
    blocks (refused `relocated_this_window`); other updates (endpoint) stay free to make."""
    chain, node_id, hosted = _hosting_chain()
    params = chain.params
    fee = params.min_fee + hosted * params.relocation_price
    chain.apply(nodes.process_node_update, _relocate(chain, node_id, "FR", fee))
    moved_at = chain.height
    chain.end_block()
    flip_back = _relocate(chain, node_id, "DE", fee)
    with pytest.raises(TxError) as refused:
        chain.apply(nodes.process_node_update, flip_back)
    assert refused.value.reason is Reason.RELOCATED_THIS_WINDOW
    same_place = chain.tx(OWNER, NodeUpdate(node_id, "h:2", "FR", "EU", b"", b"", 0), 0)
    chain.apply(nodes.process_node_update, same_place)  # no move: no limit, no charge
    chain.advance_to(moved_at + params.confirm_window - 1)
    with pytest.raises(TxError) as refused:
        chain.apply(nodes.process_node_update, _relocate(chain, node_id, "DE", fee))
    assert refused.value.reason is Reason.RELOCATED_THIS_WINDOW
    chain.end_block()
    hosted = len(placement.get_apps_on_node(chain.state, node_id))
    fee = params.min_fee + hosted * params.relocation_price
    chain.apply(nodes.process_node_update, _relocate(chain, node_id, "DE", fee))
    assert nodes.get_node(chain.state, node_id).country == "DE"  # type: ignore[union-attr]


def test_moving_an_apps_instances_for_the_flat_fee_is_refused() -> None:
    """Before, an APP_UPDATE flipping geolocation moved every instance for the flat fee
    (200 events for 0.000001 FLUX). Now its fee must cover `relocation_price` per instance
    that no longer fits its node, counted before anything changes; an update that moves
    nothing costs only the flat fee."""
    chain = StateRunner()
    for i in range(3):
        chain.add_node(i, country="DE")
    for i in range(3, 6):
        chain.add_node(i, country="FR")
    app_owner = chain.fund(key_of(8))
    chain.apply(
        apps.process_app_register,
        chain.tx(key_of(8), AppRegister(spec(app_owner, geolocation=geo("EU_DE")))),
    )
    params = chain.params
    to_fr = spec(app_owner, geolocation=geo("EU_FR"))
    assert placement.count_moved_by_update(chain.state, "myapp", to_fr) == 3
    cheap = chain.tx(key_of(8), AppUpdate(to_fr), params.min_fee)
    with pytest.raises(TxError) as refused:
        chain.apply(apps.process_app_update, cheap)
    assert refused.value.reason is Reason.RELOCATION_FEE_TOO_LOW
    before = placement.get_app_nodes(chain.state, "myapp")
    burned = chain.ctx.burned
    fee = params.min_fee + 3 * params.relocation_price
    chain.apply(apps.process_app_update, chain.tx(key_of(8), AppUpdate(to_fr), fee))
    assert placement.get_app_nodes(chain.state, "myapp") != before
    # the instances moved, and the app charge every update pays
    assert chain.ctx.burned - burned == 3 * params.relocation_price + params.app_charge
    # staying where it is moves nothing: the flat fee is enough
    assert placement.count_moved_by_update(chain.state, "myapp", to_fr) == 0
    chain.apply(apps.process_app_update, chain.tx(key_of(8), AppUpdate(to_fr), params.min_fee))
