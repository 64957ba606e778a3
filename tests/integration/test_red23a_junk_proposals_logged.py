"""Red team red23a: anyone's signed proposal of the current height goes into the WAL.

`Node.on_gossip` takes a full PROPOSAL whose block matches it (`check_proposal_block`) and
whose signature is valid, by any key, and hands it to the driver (`_take_proposal`: not
relayed if its signer is not the round's proposer, but submitted). `Driver._feed` logs
every input of the WAL's height (`ConsensusWal.record`) before the engine steps it, and
the engine then drops a proposal not signed by its round's proposer (`Engine.on_proposal`),
with no punishment for the sender. Votes were fixed so (issue 17 #4: "relayed and logged
only if the engine would keep it", `Engine.admits`); proposals were not.

So a peer with a throw-away key and one block of round 0 signs proposals of the height
for rounds 1, 2, 3, ... (a re-proposal on a proof-of-lock round 0 passes
`check_proposal_round` with a block of round 0), each a new WAL record with the whole
block's bytes (up to max_block_bytes, MAX_RECORD is 16 MiB): while a height is stalled
the WAL grows at the PROPOSAL rate and byte budget a peer (16 MiB/s), the node's disk
fills, and a restart reads all of it (`ConsensusWal._read`: `read_bytes`) and replays it.

The fix belongs in `Driver._feed` (log a proposal only if the engine will keep it: a
check like `Engine.admits` for proposals, the round's proposer at least) or earlier, in
`Node.on_gossip`, which could refuse a non-proposer's proposal of the current height
before decoding its block.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consensus.events import ProposalReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.crypto import SigningKey
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.support.chain import first_block
from tests.support.wait import wait_until_async

JUNK = 50


def test_proposals_no_engine_would_keep_are_not_logged_in_the_wal(tmp_path: Path) -> None:
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block = first_block(tmp_path / "builder", devnet.genesis)
    attacker = SigningKey(b"\x5a" * 32)  # no validator's key
    chain_id = devnet.genesis.chain_id

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            validators = node.chain.validators()
            assert validators.power_of(attacker.public_key) == 0
            peer = "02" + "11" * 32
            for round_ in range(1, JUNK + 1):
                junk = Proposal.create(attacker, chain_id, 1, round_, 0, block.hash())
                payload = encode_proposal(junk, block.encode())
                await node.on_gossip(peer, Kind.PROPOSAL, payload)
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            wal = node.driver.wal
            assert wal is not None
            logged = [
                item.proposal
                for item in wal.replay(1)
                if isinstance(item, ProposalReceived)
                and item.proposal.proposer != proposer(validators, 1, item.proposal.round)
            ]
            held = [p for p, _ in node.driver.proposals_held.values()]
            print(
                f"junk={JUNK} logged={len(logged)} held={len(held)} wal_bytes={wal.size} "
                f"block_bytes={len(block.encode())}"
            )
            assert not any(p.proposer == attacker.public_key for p in held)
            assert logged == [], (
                f"{len(logged)} of {JUNK} proposals by a non-validator, which the engine "
                f"dropped, are in the WAL ({wal.size} bytes)"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())
