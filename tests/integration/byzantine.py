"""A byzantine validator for the devnet tests: a real node whose driver misbehaves.

    python -m tests.integration.byzantine --home HOME [--seed N] [--equivocate-from H]

It runs the node's own code (`Node`, with `ByzantineDriver` as its driver) and adds:

- proposals: every block it proposes is hostile, in turn: timed at 2^64 - 1, timed just
  past the parent + `max_time_advance_ms`, timed just past our clock +
  `max_clock_drift_ms`, or naming another validator as its proposer; each signed by its
  own key, as a validator can (honest voters must refuse them at validation); or two
  proposals for one round, the honest block to half its peers and a hostile twin to the
  other half;
- equivocation (from height `--equivocate-from` on): for each vote it signs, a second
  vote of the same (height, round, type) for another block, signed outside the signer
  guard; the peers are split in two, each half gets one of the two;
- from throwaway p2p identities (sybils, which get banned; the validator's own
  connection stays up so that its signed messages keep arriving), to its honest peers in
  turn: garbage proposal frames, a current proposal with its body swapped, votes signed
  by keys outside the validator set, votes and proposals for the next height (which
  cannot be checked against a validator set yet) from throwaway keys, and floods of
  fee-free NODE_CONFIRM, UPTIME_ATTEST and EVIDENCE txs from throwaway keys, for nodes
  that do not exist or not signed by the node's key.

Every attack logs `byzantine attack=<kind>` (and `block=<hash>` for a hostile proposal):
the test counts them, so that a toothless attacker cannot pass for a harmless one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from consensus.events import BuildProposal, Input, ProposeBlock, SignVote, VoteReceived
from consensus.messages import Proposal
from fluxchain.cli import setup_logging
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import U64, pack, unpack
from fluxchain.core.tx import (
    Benchmark,
    Evidence,
    NodeConfirm,
    Transfer,
    Tx,
    UptimeAttest,
    UptimeReport,
)
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.node.driver import Driver, _wall_clock_ms, decode_proposal, encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Gossip, Kind
from tests.p2p.harness import RawPeer

log = logging.getLogger("fluxchain.byzantine")

PROPOSAL_ATTACKS: Final = (
    "time_u64_max",
    "time_past_advance",
    "time_past_drift",
    "other_proposer",
    "double_proposal",
)
SYBIL_ATTACKS: Final = (
    "garbage_proposal",
    "swapped_body",
    "junk_votes",
    "duty_flood",
    "next_height_junk",
)
SYBIL_EVERY_S: Final = 0.5
JUNK_VOTES_PER_SYBIL: Final = 20  # 10 points each: the sybil is banned half-way
# Messages of the height after the live one cannot be checked against its validator set
# yet (it is not known): the engine buffers a bounded number, which junk must not take.
NEXT_HEIGHT_JUNK_VOTES: Final = 3_900  # under the VOTE burst (4,000), so they reach the engine
NEXT_HEIGHT_JUNK_PROPOSALS: Final = 8
DUTY_FLOOD_TXS: Final = 1_200  # per flood, in frames of FLOOD_FRAME_TXS
FLOOD_FRAME_TXS: Final = 400


class ByzantineDriver(Driver):
    """The node's driver, with hostile proposals and (once switched on) equivocation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = random.Random(0)  # ByzantineNode seeds it
        self.equivocate_from = 1  # ByzantineNode sets it
        self._twins: dict[bytes, Vote] = {}  # our vote's signature -> its conflicting twin
        self._proposal_turn = 0
        # (height, round) -> a second block we propose to half of our peers
        self.proposal_twins: dict[tuple[int, int], Block] = {}

    def take_twin(self, signature: bytes) -> Vote | None:
        """The conflicting twin of our vote with this signature, if we made one."""
        return self._twins.pop(signature, None)

    def _build(self, request: BuildProposal) -> Input | None:
        built = super()._build(request)
        if not isinstance(built, ProposeBlock) or self._pending is None:
            return built
        _, block, execution = self._pending
        attack = PROPOSAL_ATTACKS[self._proposal_turn % len(PROPOSAL_ATTACKS)]
        self._proposal_turn += 1
        params = self.chain.params
        header = block.header
        if attack == "time_u64_max":
            header = replace(header, time_ms=U64)
        elif attack == "time_past_advance":
            header = replace(
                header, time_ms=self.chain.head_time_ms + params.max_time_advance_ms + 1
            )
        elif attack in ("time_past_drift", "double_proposal"):
            header = replace(header, time_ms=_wall_clock_ms() + params.max_clock_drift_ms + 5_000)
        else:
            others = [v.pubkey for v in self.chain.validators().validators]
            others = [k for k in others if k != self.key.public_key]
            header = replace(header, proposer=self.rng.choice(others))
        hostile = Block(header, block.txs, block.last_commit)
        hostile_hash = hostile.hash()
        if attack == "double_proposal":
            # We propose the honest block, and its hostile twin to half of our peers.
            self.proposal_twins[(built.height, built.round)] = hostile
        else:
            self._pending = (hostile_hash, hostile, execution)
        log.warning(
            "byzantine attack=%s height=%d round=%d block=%s",
            attack,
            built.height,
            built.round,
            hostile_hash.hex(),
        )
        if attack == "double_proposal":
            return built
        return ProposeBlock(built.height, built.round, hostile_hash, hostile.encode())

    def _sign_vote(self, request: SignVote) -> Input | None:
        signed = super()._sign_vote(request)
        if request.height < self.equivocate_from or not isinstance(signed, VoteReceived):
            return signed
        vote = signed.vote
        other = sha256(b"byzantine twin" + vote.signature)
        twin = Vote.create(
            self.key, self.chain.params.chain_id, vote.type, vote.height, vote.round, other
        )
        self._twins[vote.signature] = twin
        return signed


class ByzantineNode(Node):
    """A validator node running `ByzantineDriver` and a sybil attacker beside it."""

    driver_class = ByzantineDriver

    def __init__(self, home: Home, seed: int, equivocate_from: int) -> None:
        super().__init__(home)
        self.rng = random.Random(seed)
        self.equivocate_from = equivocate_from

    @property
    def byzantine(self) -> ByzantineDriver:
        assert isinstance(self.driver, ByzantineDriver)
        return self.driver

    async def start(self) -> None:
        await super().start()
        self.byzantine.rng = self.rng
        self.byzantine.equivocate_from = self.equivocate_from
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._sybils(), name="byzantine-sybils"))

    # -- equivocation: each half of our peers gets one of two votes or proposals ----------

    def broadcast_proposal(self, payload: bytes) -> None:
        params = self.chain.params
        proposal, _ = decode_proposal(payload, params.max_block_bytes, params.max_block_txs)
        twin_block = self.byzantine.proposal_twins.pop((proposal.height, proposal.round), None)
        if twin_block is None or proposal.pol_round != -1:
            super().broadcast_proposal(payload)
            return
        twin = Proposal.create(
            self.key,
            self.genesis.chain_id,
            proposal.height,
            proposal.round,
            -1,
            twin_block.hash(),
        )
        self._split(Kind.PROPOSAL, payload, encode_proposal(twin, twin_block.encode()))

    def _split(self, kind: Kind, payload: bytes, twin_payload: bytes) -> None:
        """One half of our peers (shuffled) gets `payload`, the other half its twin."""
        peers = [peer.peer_id for peer in self.network.peers()]
        self.rng.shuffle(peers)
        half = len(peers) // 2
        for peer_id in peers[:half]:
            self.network.send_to(peer_id, kind, payload)
        for peer_id in peers[half:]:
            self.network.send_to(peer_id, kind, twin_payload)

    def broadcast_vote(self, payload: bytes) -> None:
        vote = Vote.from_fields(unpack(payload))
        twin = self.byzantine.take_twin(vote.signature)
        if twin is None:
            super().broadcast_vote(payload)
            return
        self._split(Kind.VOTE, payload, pack(twin.to_fields()))
        log.warning(
            "byzantine attack=equivocation type=%s height=%d round=%d",
            vote.type.name.lower(),
            vote.height,
            vote.round,
        )

    # -- sybils: throwaway identities carrying junk ---------------------------------------

    async def _sybils(self) -> None:
        turn = 0
        while True:
            await asyncio.sleep(SYBIL_EVERY_S)
            attack = SYBIL_ATTACKS[turn % len(SYBIL_ATTACKS)]
            address = self.config.persistent_peers[turn % len(self.config.persistent_peers)]
            turn += 1
            frames = self._junk(attack)
            if not frames:
                continue
            try:
                await self._send_as_sybil(address, frames)
            except Exception as exc:  # a refused or cut sybil connection is expected
                log.info("byzantine sybil to %s ended: %r", address, exc)
            log.warning("byzantine attack=%s peer=%s frames=%d", attack, address, len(frames))

    async def _send_as_sybil(self, address: str, frames: list[Gossip]) -> None:
        peer = await RawPeer.connect(address, SigningKey.generate())
        try:
            await peer.handshake(
                chain_id=self.genesis.chain_id, genesis_hash=self.chain.genesis_hash
            )
            for frame in frames:
                await peer.send(frame)
            with contextlib.suppress(Exception):
                await peer.closed_with(timeout=0.5)  # a ban closes it; else we leave
        finally:
            await peer.close()

    def _junk(self, attack: str) -> list[Gossip]:
        chain_id = self.genesis.chain_id
        height = self.chain.height + 1
        if attack == "garbage_proposal":
            return [Gossip(Kind.PROPOSAL, self.rng.randbytes(self.rng.randint(1, 600)))]
        if attack == "swapped_body":
            held = list(self.byzantine.proposals_held.values())
            if not held:
                return []
            proposal, block_bytes = held[0]
            params = self.chain.params
            block = Block.decode(block_bytes, params.max_block_bytes, params.max_block_txs)
            junk = Tx.create(SigningKey.generate(), chain_id, 0, 0, Transfer(bytes(20), 1))
            swapped = Block(block.header, (*block.txs, junk.raw), block.last_commit)
            return [Gossip(Kind.PROPOSAL, encode_proposal(proposal, swapped.encode()))]
        if attack == "next_height_junk":
            return self._next_height_junk()
        if attack == "junk_votes":
            votes = []
            for _ in range(JUNK_VOTES_PER_SYBIL):
                key = SigningKey.generate()
                kind = self.rng.choice((VoteType.PREVOTE, VoteType.PRECOMMIT))
                vote = Vote.create(key, chain_id, kind, height, 0, self.rng.randbytes(32))
                votes.append(Gossip(Kind.VOTE, pack(vote.to_fields())))
            return votes
        txs = [self._junk_duty(i) for i in range(DUTY_FLOOD_TXS)]
        return [
            Gossip(Kind.TXS, pack(txs[i : i + FLOOD_FRAME_TXS]))
            for i in range(0, len(txs), FLOOD_FRAME_TXS)
        ]

    def _next_height_junk(self) -> list[Gossip]:
        """Proposals and votes for the height after the live one, from throwaway keys."""
        chain_id = self.genesis.chain_id
        height = self.chain.height + 2
        held = list(self.byzantine.proposals_held.values())
        frames = []
        if held:
            proposal, block_bytes = held[0]
            for _ in range(NEXT_HEIGHT_JUNK_PROPOSALS):
                junk = Proposal.create(
                    SigningKey.generate(), chain_id, height, proposal.round, -1, proposal.block_hash
                )
                frames.append(Gossip(Kind.PROPOSAL, encode_proposal(junk, block_bytes)))
        key = SigningKey.generate()  # one key: signing is the attacker's cost, not ours
        for i in range(NEXT_HEIGHT_JUNK_VOTES):
            vote = Vote.create(key, chain_id, VoteType.PREVOTE, height, 0, i.to_bytes(32, "big"))
            frames.append(Gossip(Kind.VOTE, pack(vote.to_fields())))
        return frames

    def _junk_duty(self, i: int) -> bytes:
        """A fee-free duty tx from a throwaway key: for a node that does not exist, or for
        a real node but not signed by its key; or evidence against non-validators."""
        chain_id = self.genesis.chain_id
        key = SigningKey.generate()
        real = [n.node_id() for n in self.genesis.nodes]
        node_id = self.rng.choice(real) if i % 2 else self.rng.randbytes(20)
        kind = i % 3
        if kind == 0:
            bench = Benchmark(8, 16, 65_536, 880, 500, 1_000, 100)
            return Tx.create(key, chain_id, 0, 0, NodeConfirm(node_id, bench, "junk/1")).raw
        if kind == 1:
            epoch = self.chain.height // self.chain.params.epoch_length
            reports = (UptimeReport(self.rng.choice(real), False, 0),)
            return Tx.create(key, chain_id, 0, 0, UptimeAttest(node_id, epoch, reports)).raw
        signer = SigningKey.generate()
        height = max(1, self.chain.height)
        a = Vote.create(signer, chain_id, VoteType.PREVOTE, height, 0, self.rng.randbytes(32))
        b = Vote.create(signer, chain_id, VoteType.PREVOTE, height, 0, self.rng.randbytes(32))
        return Tx.create(key, chain_id, 0, 0, Evidence(*evidence_pair(a, b))).raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--equivocate-from", type=int, default=30, help="a height")
    args = parser.parse_args()
    home = Home(args.home)
    setup_logging(home.config().log_level)
    log.warning("byzantine seed=%d equivocate_from=%d", args.seed, args.equivocate_from)
    asyncio.run(ByzantineNode(home, args.seed, args.equivocate_from).run())


if __name__ == "__main__":
    main()
