"""FLUX amounts: exact decimal parsing into base units; never floats, never rounding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluxchain.core.encoding import MAX_AMOUNT
from fluxchain.core.params import COIN
from wallet.amounts import format_amount, format_flux, parse_amount
from wallet.errors import WalletError


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("1", COIN),
        ("0.00000001", 1),
        ("12.5", 1_250_000_000),
        (" 40000 ", 40_000 * COIN),
        ("0.1", 10_000_000),  # the classic float trap: exact here
        ("1.00000000", COIN),
        ("92233720368.54775807", MAX_AMOUNT),
    ],
)
def test_parse(text: str, units: int) -> None:
    assert parse_amount(text) == units


@pytest.mark.parametrize(
    "text",
    [
        "1.123456789",  # 9 decimals would round
        "-1",
        "1e3",
        "1E3",
        "0x10",
        "1,5",
        "1_000",
        ".5",
        "5.",
        "",
        "nan",
        "inf",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: str.isdigit() says yes, we say no
        "92233720368.54775808",  # one unit above the chain's maximum
        "9" * 40,
        "0",
    ],
)
def test_refused(text: str) -> None:
    with pytest.raises(WalletError) as info:
        parse_amount(text)
    assert info.value.reason == "bad_amount"


def test_zero_only_when_allowed() -> None:
    assert parse_amount("0", allow_zero=True) == 0


def test_format() -> None:
    assert format_amount(COIN) == "1"
    assert format_amount(1) == "0.00000001"
    assert format_amount(150_000_000) == "1.5"
    assert format_amount(-1) == "-0.00000001"
    assert format_flux(40_000 * COIN) == "40000 FLUX"


@given(st.integers(min_value=1, max_value=MAX_AMOUNT))
def test_round_trip(units: int) -> None:
    assert parse_amount(format_amount(units)) == units
