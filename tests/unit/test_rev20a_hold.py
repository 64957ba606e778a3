"""Review rev20a of api20: defences that held. `ByOrigin.victim` (heap) chooses as the
plain rule under bursty walks (few origins with equal counts, origins drained and refilled,
this node's own only when it holds all) and its heap stays bounded under peer-id churn."""

from __future__ import annotations

import random

from fluxchain.node.origins import ByOrigin, Origin

SEEDS = (1, 7, 20, 2024)


def _plain(of: dict[Origin, dict[bytes, None]]) -> bytes:
    peers = [origin for origin in of if origin is not None]
    return next(iter(of[max(peers or of, key=lambda origin: len(of[origin]))]))


def test_rev20a_victim_is_the_plain_rules_in_bursty_walks() -> None:
    for seed in SEEDS:
        rng = random.Random(seed)
        fast, plain, held = ByOrigin(), {}, {}  # type: ignore[var-annotated]
        origins: list[Origin] = [None, "", "a", "b", "c"]
        for step in range(6_000):
            phase = (step // 500) % 3  # grow, drain (ties, empties, refills), mixed
            action = rng.random()
            if held and ((phase == 1 and action < 0.7) or (phase == 2 and action < 0.4)):
                tx_id = _plain(plain) if action < 0.3 else rng.choice(list(held))
                if action < 0.3:
                    assert fast.victim() == tx_id, f"seed {seed} step {step}"
                origin = held.pop(tx_id)
                fast.remove(origin, tx_id)
                del plain[origin][tx_id]
                if not plain[origin]:
                    del plain[origin]
                continue
            origin = rng.choice(origins)
            tx_id = rng.randbytes(16)
            held[tx_id] = origin
            fast.add(origin, tx_id)
            plain.setdefault(origin, {})[tx_id] = None
            assert fast.victim() == _plain(plain), f"seed {seed} step {step}"


def test_rev20a_heap_stays_bounded_under_churn() -> None:
    """Fresh peer ids each adding one tx that is then pushed out, while standing peers'
    counts move: the heap never passes twice the live origins plus its slack (and one)."""
    rng = random.Random(5)
    held = ByOrigin()
    standing = [f"p{i}" for i in range(50)]
    for origin in standing:
        held.add(origin, origin.encode())
    for i in range(50_000):
        churner, tx_id = f"churn-{i}", i.to_bytes(8, "big")
        held.add(churner, tx_id)
        assert held.victim() != tx_id or len(standing) == 0
        held.remove(churner, tx_id)
        peer = rng.choice(standing)
        bump = f"{peer}-{i}".encode()
        held.add(peer, bump)
        held.remove(peer, bump)
        assert len(held._heap) <= 2 * (len(standing) + 1) + 64 + 1, i
