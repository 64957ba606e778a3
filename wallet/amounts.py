"""FLUX amounts as users write them ↔ base units (1 FLUX = 10^8 units), never via floats.

Accepted: digits with an optional fraction of at most 8 digits (`1`, `0.5`,
`0.00000001`, `12500.00`). Refused, with reason `bad_amount`: signs, exponents (`1e3`),
more than 8 decimals (`1.123456789` — it would silently round), separators, empty text,
and anything above the largest amount the chain encodes (2^63 - 1 units).
"""

from __future__ import annotations

import re
from typing import Final

from fluxchain.core.encoding import MAX_AMOUNT
from fluxchain.core.params import COIN
from wallet.errors import WalletError, WalletReason

DECIMALS: Final = 8  # COIN = 10^DECIMALS
_AMOUNT: Final = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
_MAX_DIGITS: Final = 30  # longer input cannot be a valid amount; refuse before int()


def parse_amount(text: str, *, allow_zero: bool = False) -> int:
    """Base units of an amount written in FLUX; raise WalletError(bad_amount)."""
    cleaned = text.strip()
    if len(cleaned) > _MAX_DIGITS:
        raise WalletError(WalletReason.BAD_AMOUNT, f"{text!r} is too large an amount")
    match = _AMOUNT.fullmatch(cleaned)
    if match is None:
        raise WalletError(
            WalletReason.BAD_AMOUNT,
            f"{text!r} is not an amount in FLUX (digits, optionally '.' and up to "
            f"{DECIMALS} decimals, e.g. 12.5)",
        )
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > DECIMALS:
        raise WalletError(
            WalletReason.BAD_AMOUNT,
            f"{text!r} has {len(fraction)} decimals; FLUX has {DECIMALS} (1 unit = 0.00000001)",
        )
    units = int(whole) * COIN + int(fraction.ljust(DECIMALS, "0"))
    if units > MAX_AMOUNT:
        raise WalletError(WalletReason.BAD_AMOUNT, f"{text!r} exceeds the largest amount")
    if units == 0 and not allow_zero:
        raise WalletError(WalletReason.BAD_AMOUNT, "the amount must be more than 0")
    return units


def format_amount(units: int) -> str:
    """`150000000` -> `"1.5"`; whole amounts without a fraction; exact for every integer."""
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), COIN)
    if not fraction:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{DECIMALS}d}".rstrip("0")


def format_flux(units: int) -> str:
    """`format_amount` with the unit: `"1.5 FLUX"`."""
    return f"{format_amount(units)} FLUX"
