"""rev20b (found checking conc20's bound against the node's others; not conc20's code):
the parked txs are bounded by count only, not by bytes.

Attack: any peer signs, with fresh unfunded keys (free), txs near `max_tx_bytes`
(APP_SECRETS of ~62 KB) at nonce 1 and pushes them. Each passes every stateless check
and its signature, and the mempool refuses it as insufficient_funds, a refusal a commit
of its sender can clear, so it is parked: PARKED_TXS (10,000) of them is ~620 MB held
(plus their decodings, ~2x), where the extra-txs store stops at 16 MiB and the mempool
at 64 MiB. By-origin eviction starts only past the count.
What a user sees: a node's memory grows by ~62 KB per junk tx, to over a GB, from one
peer with no funds.
Fix direction: bound the parked set by bytes too (as `ExtraTxs` is, EXTRA_TXS_BYTES),
the origin holding the most bytes losing its oldest first.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import TxError
from fluxchain.core.sealing import AEAD_TAG_SIZE, VALUE_NONCE_SIZE
from fluxchain.core.tx import MAX_SECRET_VALUE, AppSecrets, Secret, SecretKind, Tx
from fluxchain.node.extra_txs import EXTRA_TXS_BYTES
from fluxchain.node.service import NodeService
from tests.support.chain import open_chain

JUNK = 300  # ~18.6 MB of txs from as many unfunded keys


def junk_tx(chain_id: str, i: int) -> Tx:
    key = SigningKey(i.to_bytes(4, "big") * 8)
    ciphertext = b"\x07" * (MAX_SECRET_VALUE + VALUE_NONCE_SIZE + AEAD_TAG_SIZE)
    secrets = tuple(Secret("web", SecretKind.ENV, f"K{n}", ciphertext) for n in range(15))
    return Tx.create(
        key, chain_id, 1, 10**12, AppSecrets(f"app{i}", bytes(16), bytes(32), secrets, ())
    )


def test_rev20b_parked_txs_are_bounded_by_bytes(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "node")
    try:
        service = NodeService(chain)
        sent: list[Tx] = []
        parked = 0  # the most held at once over the flood (a bound evicts the oldest)
        for i in range(1, JUNK + 1):
            tx = junk_tx(chain.params.chain_id, i)
            with suppress(TxError):  # refused, as expected: what does it leave held?
                service.submit(tx.raw, from_peer=True, peer="flooder")
            sent.append(tx)
            held = sum(len(t.raw) for t in sent if service.admission.is_parked(t.id))
            parked = max(parked, held)
        assert service.admission.is_parked(sent[-1].id)  # parked, not refused outright
        assert parked <= EXTRA_TXS_BYTES, (
            f"{parked / 2**20:.1f} MiB of unfunded junk parked for one peer: nothing bounds"
            " the parked set's bytes (PARKED_TXS of these: ~620 MB)"
        )
    finally:
        chain.close()
