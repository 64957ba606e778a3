"""An uptime report's latency is a uint32: its top is what nodes.attestation_bytes prices.

Found in review (fix26g): the field allowed 2**32 itself, which msgpack writes in 9
bytes instead of 5, so an attester could send attestations about 120 bytes (k = 30)
larger than the active-node cap assumes, eating into the block room kept for others."""

import pytest

from fluxchain.core.errors import DecodeError
from fluxchain.core.nodes import _LONGEST_REPORT
from fluxchain.core.tx import UptimeReport


def test_the_largest_latency_decoded_is_the_one_priced() -> None:
    target, up, top = _LONGEST_REPORT.to_fields()
    assert UptimeReport.from_fields([target, up, top]).latency_ms == top
    with pytest.raises(DecodeError, match="latency_ms"):
        UptimeReport.from_fields([target, up, top + 1])
