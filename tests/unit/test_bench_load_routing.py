"""The benches' load generator submits each sender's txs through one node (issue 22,
wan15b): a sender's consecutive nonces spread over validators left a proposer lacking
nonce k unable to include k+1.. of that sender."""

from __future__ import annotations

from bench.devnet import by_client
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.tx import Transfer, Tx

SENDERS = 6
URLS = ["http://a", "http://b", "http://c", "http://d"]
CHAIN = "flux-routing-test"
CLIENTS = 2 * len(URLS)  # `--concurrent-clients`: a few a node


def test_every_tx_of_a_sender_goes_through_the_same_node_across_ticks() -> None:
    keys = [SigningKey(sha256(bytes([i]))) for i in range(SENDERS)]
    txs = [
        Tx.create(keys[i % SENDERS], CHAIN, i // SENDERS, 1_000, Transfer(b"\x01" * 20, 1, b""))
        for i in range(40)
    ]
    node_of: dict[bytes, set[str]] = {}
    routed_count = 0
    for offset in range(0, len(txs), 7):  # ticks of 7 txs: senders shift from tick to tick
        for client, routed in by_client(offset, txs[offset : offset + 7], SENDERS, CLIENTS).items():
            url = URLS[client % len(URLS)]  # a client posts to one node
            routed_count += len(routed)
            for tx in routed:
                node_of.setdefault(tx.sender_address, set()).add(url)
            nonces = [tx.nonce for tx in routed if tx.sender_address == routed[0].sender_address]
            assert nonces == sorted(nonces)  # in nonce order within a post
    assert routed_count == len(txs)
    assert all(len(urls) == 1 for urls in node_of.values())
    # All nodes get load (6 senders over 4 nodes: 2, 2, 1, 1).
    assert set().union(*node_of.values()) == set(URLS)
