"""Review rev24w: an equivocating proposer's extra blocks, which the engine drops, are still
relayed by every honest node.

rev23a 1 named two ways for one validator to push block after block through every honest
node within a height: its far rounds' proposals, and block after block for its own round
(an equivocation). fix23a2 keeps the second out of the WAL (`Engine.proposal_fate` says
DROP: no vote points at it); fix24w stops the relay of the first only:
`Node._take_proposal` withholds a proposal whose fate is REFUSE, and relays a DROP. So
each extra block (a new signature, up to max_block_bytes) is flooded on by every honest
node that takes it, although no honest engine keeps it: the relay half of the
equivocation is open, while docs/security.md's row for rev23a 1 lists "relayed" among what
the attack did and the fix as closing it.

Now: every extra block after the first is relayed (each is handed over only once the
driver has stepped the one before, so the engine's answer for it is DROP at that time).
Should be: only the kept first one is relayed; a proposal the engine would drop is not
(an honest peer relays only what its engine kept; if a vote later points at another block
of the round, the engine keeps it then and consensus gossip offers it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consensus.engine import Fate
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.support.chain import open_chain, proposer_reveal
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

EXTRA = 6  # the equivocating proposer's blocks after its first


def test_an_equivocating_proposers_extra_blocks_are_not_relayed(tmp_path: Path) -> None:
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    validators = devnet.genesis.validator_set()
    # Round 0 or 1 of height 1 (both within the engine's window), not the node's own.
    round_ = next(r for r in (0, 1) if proposer(validators, 1, r) != keys[0].public_key)
    byzantine = next(k for k in keys if k.public_key == proposer(validators, 1, round_))
    builder = open_chain(tmp_path / "builder", devnet.genesis)
    blocks = []
    try:  # distinct valid blocks of (height 1, round_): one timestamp each
        for n in range(EXTRA + 1):
            block, execution, _ = builder.build_block(
                now_ms=devnet.genesis.genesis_time_ms + 1000 + n,
                round_=round_,
                last_commit=None,
                candidates=[],
                reveal=proposer_reveal(builder, round_),
            )
            builder.abort(execution)
            blocks.append(block)
    finally:
        builder.close()
    chain_id = devnet.genesis.chain_id
    # Each from another peer, as an equivocator spreads them over the network.
    peers = ["02" + f"{0x70 + n:02x}" * 32 for n in range(EXTRA + 1)]

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            engine = node.driver.engine
            relayed: list[bool] = []
            fates: list[Fate] = []
            for peer, block in zip(peers, blocks, strict=True):
                p = Proposal.create(byzantine, chain_id, 1, round_, -1, block.hash())
                fates.append(engine.proposal_fate(p))
                relayed.append(
                    await node.on_gossip(peer, Kind.PROPOSAL, encode_proposal(p, block.encode()))
                )
                await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            kept = [b.hash() for b in blocks if engine.proposal(round_, b.hash()) is not None]
            print(
                f"round={round_} fates={[f.name for f in fates]} relayed={relayed} kept={len(kept)}"
            )
            assert kept == [blocks[0].hash()], "the engine keeps the first block only"
            assert fates[1:] == [Fate.DROP] * EXTRA
            assert relayed == [True] + [False] * EXTRA, (
                f"{sum(relayed[1:])} of the equivocating proposer's {EXTRA} extra blocks, "
                f"which the engine drops, relayed"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())
