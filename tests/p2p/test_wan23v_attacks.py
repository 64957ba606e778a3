"""Review rev13b of wan23v (consensus frames per height): p2p attacks that still work.

Each test here FAILS on the branch under review; its name is the attack, its failure
message says what went wrong. Defences that held are in test_wan23v_attacks_hold.py.
"""

from __future__ import annotations

from consensus.messages import Proposal, Step
from consensus.voteset import HeightVoteSet
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.validators import Validator, ValidatorSet
from fluxchain.node.node import (
    ANNOUNCE_EVERY_S,
    CONSENSUS_GOSSIP_S,
    RELAYED_HOLD_MS,
    RESEND_AFTER_MS,
)
from p2p.consensus_gossip import (
    ConsensusGossip,
    LocalConsensus,
    SendProposal,
    committed_announcement,
)
from tests.support.chain import vrf_key_of

CHAIN = "fluxchain-rev13b"
KEYS = sorted(
    (SigningKey(sha256(b"rev13b" + bytes([i]))) for i in range(4)), key=lambda k: k.public_key
)
VALIDATORS = ValidatorSet.of([Validator(k.public_key, 1, vrf_key_of(k)) for k in KEYS])
DECIDED = 4  # the height the waiting node committed
BLOCK = b"a block of the next height" * 1_000
WAITING = "waiting-node"


def test_a_node_that_took_the_next_proposal_during_its_commit_wait_is_not_sent_the_full_block() -> (
    None
):
    """wan23v: a node in its commit wait announces `committed_announcement` (the next
    height, round 0, holding nothing) whatever it took meanwhile: the function knows only
    the height. A peer at the next height relayed the compact proposal to it (or held it
    back `RELAYED_HOLD_MS` for its consensus gossip); the node rebuilt and buffered it, but
    its heartbeat still says it lacks the proposal, so once the hold passes the peer's
    consensus gossip sends it the FULL block (PROPOSAL, up to 4 MiB), again after every
    `RESEND_AFTER_MS`, up to 3 times, and so does every peer holding the proposal. wan23v
    put the buffered proposal in `proposals_held` so that the ROUND_STATE after the wait
    shows it; during the wait nothing does. A node's commit wait ends `block_time_ms`
    after ITS height started, so a node out of phase with the proposer (after a restart,
    say; 30 s blocks in genesis/testnet-example.json) waits through this every height.

    Changed by fix13v: the fix gives `committed_announcement` what the engine buffered
    (`Engine.buffered`), so the waiting node's heartbeat after it took the proposal is
    built from it; with the height alone no announcement could say so."""
    proposal = Proposal.create(KEYS[0], CHAIN, DECIDED + 1, 0, -1, sha256(BLOCK))
    local = LocalConsensus(
        DECIDED + 1,
        0,
        Step.PREVOTE,
        VALIDATORS,
        HeightVoteSet(CHAIN, DECIDED + 1, VALIDATORS),
        [(proposal, BLOCK)],
        None,
    )
    peer = ConsensusGossip(RESEND_AFTER_MS)  # a peer already at the next height
    assert peer.on_round_state(WAITING, committed_announcement(DECIDED)) is None
    # The peer relayed the compact proposal; the waiting node was not one of its 4 picks
    # and is held back RELAYED_HOLD_MS (Node._flooded), or was and got it at once.
    peer.on_sent_to_all([WAITING], proposal.signature, -(RESEND_AFTER_MS - RELAYED_HOLD_MS))
    wait_ms = 1_000  # the waiting node is one block interval of the devnet out of phase
    tick_ms = int(CONSENSUS_GOSSIP_S * 1000)
    full_blocks = 0
    for now in range(0, wait_ms, tick_ms):
        if now % int(ANNOUNCE_EVERY_S * 1000) == 0:  # its heartbeat, from its buffer
            heartbeat = committed_announcement(DECIDED, [proposal])
            assert peer.on_round_state(WAITING, heartbeat) is None
        full_blocks += sum(isinstance(s, SendProposal) for s in peer.plan(WAITING, local, now))
    assert full_blocks == 0, (
        f"a node that took the next height's proposal at the start of a {wait_ms} ms commit "
        f"wait was sent the full block ({len(BLOCK)} bytes here, up to 4 MiB) {full_blocks} "
        "time(s) by this one peer, and every peer holding the proposal does the same: "
        "`committed_announcement` cannot say that the node holds what it buffered"
    )
