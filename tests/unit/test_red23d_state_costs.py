"""red23d: attacks on what state costs its writer (fresh-eyes review; failing tests).

A pending secret set (APP_SECRETS for a name its sender has not registered) is state
every node keeps until its sender deletes it: nothing expires it. Its bytes are priced
(`tx.secrets_fee`: one min_fee per started 256 bytes of ciphertext), but that charge is
part of the fee's tip, paid to the proposer, not burnt: only `base_fee` leaves the
supply. A proposer filling its own blocks with pending sets under made-up names gets
every tip back, so ~60 KB of permanent state costs it 500 base units, and a small set
(a record like an account) costs it 1/200 of `account_deposit`. docs/economics.md says
of every such charge that it is burnt "whoever proposes" (relocations burn theirs with
`burn_from_fee`; accounts burn their deposit).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core import secrets
from fluxchain.core.crypto import address_of
from fluxchain.core.records import META, Meta
from fluxchain.core.sealing import new_key_salt
from fluxchain.core.tx import MAX_SECRET_VALUE, SecretKind, secrets_fee
from tests.support.chain import Builder, funded_key, open_chain


@pytest.fixture
def b(tmp_path: Path) -> Builder:
    return Builder(open_chain(tmp_path / "home"))


def _burned(b: Builder) -> int:
    meta: Meta = b.chain.state.get(META)
    return meta.burned


def test_red23d_pending_secret_bytes_kept_in_state_are_burnt_not_tipped(b: Builder) -> None:
    """Fifteen 4 KB secrets under a name nobody registers: ~60 KB that every node keeps
    for ever. The tx pays `secrets_fee` for those bytes, but the block burns only
    `base_fee` of it; the rest goes to the proposer, who is the attacker when it fills its
    own blocks. The byte charge must leave the supply, as the account deposit and the
    relocation charge do."""
    params = b.chain.params
    b.commit()
    sender = funded_key()
    values = {
        ("web", SecretKind.ENV, f"BLOB_{i:02d}"): bytes([i]) * MAX_SECRET_VALUE for i in range(15)
    }
    payload = secrets.seal_secrets(
        sender, b.chain_id, "never-registered", values, {}, new_key_salt()
    )
    stored = sum(len(s.ciphertext) for s in payload.secrets)
    charge = secrets_fee(stored, params)
    tx = b.tx(sender, payload, fee=params.min_fee + charge)
    burned = _burned(b)
    b.commit([tx])
    assert not b.rejected
    owner = address_of(sender.public_key)
    assert b.chain.state.get(secrets.pending_set_key("never-registered", owner)) is not None
    paid = _burned(b) - burned
    assert paid >= charge, (
        f"{stored} bytes of pending secrets kept in state burnt {paid} base units; "
        f"their charge of {charge} went to the proposer"
    )


def test_red23d_a_small_pending_set_costs_a_proposer_less_than_an_account(b: Builder) -> None:
    """A one-byte secret under a made-up name is a record every node keeps for ever, as
    an account is; an account costs `account_deposit` burnt (100,000 base units), this
    costs `base_fee` burnt (500): 200 times cheaper for a proposer filling its own blocks,
    with no bound on the names. What leaves the supply must be at least the deposit."""
    params = b.chain.params
    b.commit()
    sender = funded_key()
    values = {("web", SecretKind.ENV, "X"): b"x"}
    payload = secrets.seal_secrets(sender, b.chain_id, "squat-0001", values, {}, new_key_salt())
    stored = sum(len(s.ciphertext) for s in payload.secrets)
    tx = b.tx(sender, payload, fee=params.min_fee + secrets_fee(stored, params))
    burned = _burned(b)
    b.commit([tx])
    assert not b.rejected
    owner = address_of(sender.public_key)
    assert b.chain.state.get(secrets.pending_set_key("squat-0001", owner)) is not None
    paid = _burned(b) - burned
    assert paid >= params.account_deposit, (
        f"a pending set kept for ever burnt {paid} base units, "
        f"below the account deposit {params.account_deposit}"
    )
