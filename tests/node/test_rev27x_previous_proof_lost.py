"""rev27x: a target restarted in the new epoch cannot prove it was up in the last one.

Attack (an honest node reported down, DESIGN.md §11 "a restart at the worst moment"): a
checker still at epoch E's last block (its attest started late: a benchmark ran first, or
its first send failed) probes a target that has just committed epoch E+1's first block.
probe27 keeps the target's epoch-E proof as `previous` in /health so that this checker
still counts it up (`test_probe27_a_target_already_in_the_next_epoch_is_up_for_a_checker_behind`).
But `previous` is only the proof this process happened to sign and keep in memory: a
target restarted at the boundary (or asked nothing during E) answers with E+1's proof
alone, though it can sign E's at once (E's nonce is its committed `epoch_seed`).

Now: /health of the restarted target carries no "previous"; the checker's probe is down.
Should: the honest target, serving and registered, is up for a checker one block behind
(the same answer a target that never restarted gives).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.api.server import create_app
from fluxchain.core.records import META
from fluxchain.node.duties import probe_health
from fluxchain.node.service import NodeService
from tests.node.test_probe27_health_proof import DEVNET, _check, _serve
from tests.support.chain import Builder, node_hot_key, open_chain


def test_rev27x_a_target_restarted_at_the_epoch_boundary_is_up_for_a_checker_behind(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    b = Builder(chain)

    async def scene() -> None:
        before = NodeService(chain, node_key=node_hot_key(0))
        runner, endpoint = await _serve(create_app(before))
        try:
            epoch = chain.state.get(META).epoch
            # Its checkers probed it at the epoch's start: up, and its proof of E signed.
            assert (await probe_health(endpoint, _check(chain, 0), DEVNET))[0]
            while chain.state.get(META).height + 1 < (epoch + 1) * chain.params.epoch_length:
                b.commit()
            behind = _check(chain, 0)  # a checker at epoch E's last block
        finally:
            await runner.cleanup()
        b.commit()  # the target commits E+1's first block, and restarts (same chain, key)
        assert chain.state.get(META).epoch == epoch + 1
        after = NodeService(chain, node_key=node_hot_key(0))
        runner, endpoint = await _serve(create_app(after))
        try:
            up, _ = await probe_health(endpoint, behind, DEVNET)
        finally:
            await runner.cleanup()
        assert up, (
            "an honest target restarted at the epoch boundary was down for a checker one "
            f"block behind (its /health: {sorted(after.health())})"
        )

    try:
        asyncio.run(scene())
    finally:
        chain.close()
