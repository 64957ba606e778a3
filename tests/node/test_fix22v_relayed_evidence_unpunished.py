"""fix22v (rev22v): why `bad_evidence` stays out of the refusals that punish a peer while
`bad_key_proof` and `bad_vrf_key` went in.

An honest node admits evidence of any offence up to the height it is deciding; a node a
height behind refuses the same bytes `bad_evidence` (`core.admission.check_fee_free`).
So an honest peer a height ahead relays txs its lagging peers refuse for that reason, and
punishing it would ban honest peers for the race. The reason punishes nothing.
"""

from __future__ import annotations

import asyncio

import pytest

from fluxchain.core.encoding import pack
from fluxchain.core.errors import Reason, TxError
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from p2p.messages import Kind
from tests.support.chain import Builder, funded_key, node_hot_key
from tests.support.gossip_host import gossip_host
from tests.unit.test_future_evidence_shields_equivocator import _evidence


def test_evidence_relayed_by_a_peer_a_height_ahead_does_not_punish_it(chain: Chain) -> None:
    builder = Builder(chain)
    builder.commit()
    service = NodeService(chain)
    # Our next block is chain.height + 1; a peer that committed it decides the one after
    # and admits evidence of that height.
    ahead = chain.height + 2
    evidence = _evidence(builder, funded_key(), node_hot_key(1), ahead)
    with pytest.raises(TxError) as refused:
        service.submit(evidence.raw, from_peer=True, peer="p")
    assert refused.value.reason is Reason.BAD_EVIDENCE
    host, punished = gossip_host(service)

    relay = asyncio.run(Node.on_gossip(host, "peer-a", Kind.TXS, pack([evidence.raw])))  # type: ignore[arg-type]

    assert relay is False
    assert punished == [], "an honest peer a height ahead was punished for relaying evidence"
