"""bench/profile.py sorts a node's sampled stacks into the activities of the devnet
profile table (docs/performance.md, "Devnet profile"); a wrong bucket would misstate
where the node's CPU goes."""

from __future__ import annotations

import os

from bench.profile import OTHER, activity_of, cpu_seconds, table, tally

LOOP = "run (asyncio/runners.py:118);BaseEventLoop._run_once (asyncio/base_events.py:1922)"


def stack(*frames: str) -> str:
    return ";".join([LOOP, *frames])


def test_admission_under_the_api_and_under_gossip_is_admission() -> None:
    api = stack(
        "post_tx_batch (fluxchain/api/routes.py:290)",
        "NodeService.submit (fluxchain/node/service.py:166)",
        "decode_tx (fluxchain/core/tx.py:665)",
        "Tx.signature_valid (fluxchain/core/tx.py:541)",
        "verify (fluxchain/core/crypto.py:154)",
    )
    gossip = stack(
        "GossipRelay.deliver (p2p/relay.py:97)",
        "Node._on_txs (fluxchain/node/node.py:505)",
        "NodeService.submit (fluxchain/node/service.py:166)",
        "Mempool.add (fluxchain/node/mempool.py:119)",
    )
    assert activity_of(api.split(";")) == "admission: signature"
    assert activity_of(gossip.split(";")) == "admission: mempool insert"


def test_admissions_decode_and_spent_nonce_refusal_are_named() -> None:
    """Admission decodes with `decode_unverified` and refuses a spent nonce before the
    proofs and the signature (vstore22): those samples are its decode and its look-up,
    not "admission: other"."""
    submit = "NodeService.submit (fluxchain/node/service.py:235)"
    admit = "TxAdmission.admit (fluxchain/node/admission.py:230)"
    decode = stack(submit, admit, "decode_unverified (fluxchain/core/tx.py:843)")
    proofs = stack(submit, admit, "check_proofs (fluxchain/core/tx.py:772)")
    spent = stack(submit, admit, "TxAdmission._refuse_spent (fluxchain/node/admission.py:247)")
    assert activity_of(decode.split(";")) == "admission: decode + stateless checks"
    assert activity_of(proofs.split(";")) == "admission: decode + stateless checks"
    assert activity_of(spent.split(";")) == "admission: confirmed-tx lookup"


def test_an_inbound_peer_link_is_p2p_not_the_api() -> None:
    """Inbound peer links are aiohttp websockets: their frames are p2p work."""
    inbound = stack(
        "Links._write_loop (p2p/connection.py:300)",
        "WebSocketResponse.send_bytes (aiohttp/web_ws.py:400)",
    )
    assert activity_of(inbound.split(";")) == "p2p links (Noise, websocket frames)"
    http = stack("RequestHandler.start (aiohttp/web_protocol.py:500)")
    assert activity_of(http.split(";")) == "API other (HTTP, block stream)"


def test_waiting_threads_are_not_counted_and_unknown_work_is_other() -> None:
    idle = stack("EpollSelector.select (selectors.py:468)")
    assert activity_of(idle.split(";")) is None
    assert activity_of(stack("something_new (fluxchain/x.py:1)").split(";")) == OTHER


def test_tally_and_table_give_each_node_its_shares() -> None:
    lines = [
        stack("Driver._run (fluxchain/node/driver.py:294)", "Driver._build (x:1)") + " 3\n",
        stack("Links._read_loop (p2p/connection.py:200)") + " 1\n",
        stack("EpollSelector.select (selectors.py:468)") + " 50\n",
        "a line that is not a sample\n",
    ]
    counts = tally(lines)
    assert counts == {"proposal build": 3, "p2p links (Noise, websocket frames)": 1}
    text = table([("node0", counts)])
    assert "| proposal build | 75.0 % | 75.0 % |" in text
    assert "| samples | 4 | 4 |" in text


def test_cpu_seconds_counts_this_process() -> None:
    spent = cpu_seconds(os.getpid())
    sum(i * i for i in range(200_000))  # some CPU
    assert cpu_seconds(os.getpid()) >= spent > 0


def test_tx_relay_and_compact_proposals_under_the_gossip_handler_are_not_consensus() -> None:
    """Node.on_gossip runs the tx relay's announcements and the compact proposal's rebuild:
    they were counted as "consensus other" (session 15's fourth devnet pass read 8.8 % of
    it as consensus; a GIL-only profile showed it was mostly the relay)."""
    handler = "Node.on_gossip (fluxchain/node/node.py:588)"
    announce = stack(handler, "TxFetcher.announce (p2p/tx_fetch.py:399)")
    rebuild = stack(handler, "Node._on_compact_proposal (fluxchain/node/node.py:653)")
    txs = stack(handler, "_decode_txs_payload (fluxchain/node/node.py:1064)")
    vote = stack(handler, "Node._on_vote (fluxchain/node/node.py:812)")
    assert activity_of(announce.split(";")) == "tx relay by id (announce, TX_IDS in and out)"
    assert activity_of(rebuild.split(";")) == "compact proposal (ids, rebuild, encode)"
    assert activity_of(txs.split(";")) == "tx gossip (TXS frames, relay)"
    assert activity_of(vote.split(";")) == "consensus other (WAL, votes, signer)"
