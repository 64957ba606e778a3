"""rev20b: the txs a block check verified are bounded by count only, not by bytes.

Attack: a byzantine proposer whose rounds abort (it equivocates, or sends its proposal
to too few) has every validator check blocks of up to `max_block_bytes` of large valid
txs (APP_SECRETS near `max_tx_bytes`, signed by one funded key at the same nonces each
time: never committed, so never paid for). Each passed check hands its txs to
`TxAdmission.note_verified`, which keeps up to VERIFIED_TXS (20,000) of them whatever
their size, and only a commit of the same id or newer entries push them out: 20,000 x
64 KiB = 1.25 GiB of raw bytes (plus the decoded ciphertexts) on every validator, where
the node's comparable store (the extra txs) stops at 16 MiB.
What a user sees: validators' memory grows by ~4 MiB per aborted round of that proposer,
to over a GiB, until they are OOM-killed.
Fix direction: bound the set by bytes too (two full blocks' `max_block_bytes`, as the
constant's comment intends "two full blocks"), oldest out first, ideally counted by the
proposer as the extra store counts by origin.
"""

from __future__ import annotations

from fluxchain.core.sealing import AEAD_TAG_SIZE, VALUE_NONCE_SIZE
from fluxchain.core.tx import MAX_SECRET_VALUE, AppSecrets, Secret, SecretKind, Tx
from fluxchain.node.admission import TxAdmission
from fluxchain.store.chain import Chain
from tests.support.chain import funded_key

SECRETS = 15  # 15 x 4,124 bytes of ciphertext: a tx of ~62 KB, under max_tx_bytes
TXS = 300  # ~18.6 MB in all: more than two full 4 MiB blocks


def large_tx(chain: Chain, nonce: int) -> Tx:
    ciphertext = bytes([nonce % 251]) * (MAX_SECRET_VALUE + VALUE_NONCE_SIZE + AEAD_TAG_SIZE)
    secrets = tuple(Secret("web", SecretKind.ENV, f"K{i}", ciphertext) for i in range(SECRETS))
    payload = AppSecrets(f"app{nonce}", bytes(16), bytes(32), secrets, ())
    return Tx.create(funded_key(), chain.params.chain_id, nonce, 10**9, payload)


def test_rev20b_block_checked_txs_are_bounded_by_bytes(chain: Chain) -> None:
    admission = TxAdmission(chain)
    txs = [large_tx(chain, nonce) for nonce in range(TXS)]
    assert all(len(tx.raw) <= chain.params.max_tx_bytes for tx in txs)
    assert sum(len(tx.raw) for tx in txs) > 2 * chain.params.max_block_bytes
    per_block = chain.params.max_block_bytes // len(txs[0].raw)
    for start in range(0, TXS, per_block):  # blocks of aborted rounds, each checked whole
        admission.note_verified(txs[start : start + per_block])
    kept = sum(len(admission.verified_tx(tx.id) or b"") for tx in txs)
    assert kept <= 2 * chain.params.max_block_bytes, (
        f"{kept / 2**20:.1f} MiB kept from {TXS} block-checked txs: nothing bounds the"
        f" set's bytes (at VERIFIED_TXS of this size: {20_000 * len(txs[0].raw) / 2**30:.2f} GiB)"
    )
