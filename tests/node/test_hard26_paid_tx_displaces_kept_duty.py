"""hard26 2: a duty the next proposer refused `duty_pending` is kept *marked* in its
extra-txs store, to be taken back once its slot frees (p2p25 1, rev25p 1); a marked duty
wins its (sender, nonce) over a copy the pool let go, but a paid tx at that nonce
outbid it (`outbids(0, fee)`), so it took the slot, unmarked, and the duty was gone.

Only the sender signs at its nonce, but anyone relays what it signed: a stale paid tx of
the node's hot key at that nonce (one its operator signed and that another tx replaced,
or one that never made a block), kept by any peer that saw it. A rival relays it to the
next proposer P between N's last send of the re-signed duty and P's recheck; refused
there for a reason that may clear (here `unknown_app`: the app it cancels is gone), it is
kept unmarked in P's store, in the duty's place. The rival gains:
N's attestation misses P's block (its uptime unattested, its targets' reports lost).

The scene is p2p25 1's (tests/node/test_p2p25_resend_race.py), N's hot key funded.
What should happen: P takes the re-signed duty back when its recheck frees the nonce,
and its block holds N's attestation, whatever else was relayed at that nonce.
"""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import TxError
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.params import COIN
from fluxchain.core.tx import AppCancel, Tx, TxKind
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key
from tests.support.duties import (
    EPOCH_LENGTH,
    OFFENDER,
    REPORTER,
    NextProposer,
    attest_next,
    offence,
    open_duty_chain,
    rival_report,
)

RIVAL = "02" + "4e" * 32  # the peer that relays the stale tx


def test_a_stale_paid_tx_at_its_nonce_does_not_displace_a_kept_resigned_duty(
    tmp_path: Path,
) -> None:
    chain = open_duty_chain(tmp_path / "home")
    try:
        p = NextProposer(NodeService(chain, Mempool()))
        p_service, refusals = p.service, p.refusals
        n_service = NodeService(chain, Mempool(), gossip=p.receive)
        b = Builder(chain)
        b.commit([b.transfer(funded_key(), address_of(REPORTER.public_key), 10 * COIN)])
        while chain.height < EPOCH_LENGTH - 4:
            b.commit()
        chain_id = b.chain_id
        report = n_service.report_offence(REPORTER, offence(chain_id, OFFENDER, 3))
        attest, epoch = attest_next(n_service, chain, REPORTER)
        assert report.id in p_service.mempool and attest.id in p_service.mempool
        # Signed by N's hot key at the report's nonce, for an app since gone; seen by the
        # rival, never mined.
        stale = Tx.create(REPORTER, chain_id, report.nonce, 20_000, AppCancel("gone-app"))

        rival = rival_report(b)
        n_service.submit(rival.raw, from_peer=True)
        again = [
            t
            for t in n_service.mempool.of_sender(attest.sender_address)
            if t.kind is TxKind.UPTIME_ATTEST
        ]
        assert len(again) == 1 and again[0].nonce == report.nonce
        resigned = again[0]
        assert refusals.get(resigned.id) == ["duty_pending"], refusals

        block = b.commit([rival])
        n_service.on_committed(block, ())  # N first: its resend reaches P before P's recheck
        assert refusals.get(resigned.id) == ["duty_pending"] * 2, refusals
        # The rival's relay reaches P after N's resend, before P's recheck.
        try:
            p_service.submit(stale.raw, from_peer=True, peer=RIVAL)
            verdict = "pooled"
        except TxError as exc:
            verdict = str(exc.reason)
        print(f"the stale paid tx at P: {verdict}")
        p_service.on_committed(block, ())
        assert report.id not in p_service.mempool

        block = b.commit(p_service.candidates())
        p_service.on_committed(block, ())
        n_service.on_committed(block, ())
        recorded = get_node_by_key(chain.state, REPORTER.public_key)
        assert recorded is not None
        print(
            f"epoch={epoch} height={block.height} last_attest_epoch={recorded.last_attest_epoch} "
            f"stale in block={stale.raw in block.txs} "
            f"refusals at P={[(k.hex()[:8], v) for k, v in refusals.items()]}"
        )
        assert recorded.last_attest_epoch == epoch + 1, (
            "P's block has no attestation of N's: a stale paid tx of N's hot key at the "
            f"re-signed duty's nonce, relayed to P ({verdict}), took the duty's place in "
            "P's extra-txs store, and P's recheck had nothing to take back"
        )
    finally:
        chain.close()
