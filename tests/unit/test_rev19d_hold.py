"""Review rev19d: defences that held. Moving the parked set's accounting into `ByOrigin`
changed no eviction."""

from __future__ import annotations

import random

from fluxchain.node.origins import ByOrigin, Origin

SEED = 19_004


def _old_victim(of_origin: dict[Origin, dict[bytes, None]]) -> bytes:
    """`TxAdmission._evict`'s choice at b83cb0a, before `ByOrigin`, verbatim."""
    peers = [origin for origin in of_origin if origin is not None]
    return next(iter(of_origin[max(peers or of_origin, key=lambda o: len(of_origin[o]))]))


def test_by_origin_evicts_as_the_parked_set_did_before_the_refactor() -> None:
    rng = random.Random(SEED)
    new = ByOrigin()
    old: dict[Origin, dict[bytes, None]] = {}
    held: dict[bytes, Origin] = {}
    origins: list[Origin] = [None, "", "a" * 64, "b" * 64, "c" * 64]
    for step in range(5_000):
        action = rng.random()
        if held and action < 0.3:  # a forget (offered and pooled, or committed)
            tx_id = rng.choice(list(held))
            origin = held.pop(tx_id)
            new.remove(origin, tx_id)
            of = old[origin]
            del of[tx_id]
            if not of:
                del old[origin]
        elif held and action < 0.45:  # past the bound: one pushed out
            victim = _old_victim(old)
            assert new.victim() == victim, f"seed {SEED} step {step}"
            origin = held.pop(victim)
            new.remove(origin, victim)
            del old[origin][victim]
            if not old[origin]:
                del old[origin]
        else:
            tx_id = rng.randbytes(32)
            origin = rng.choice(origins)
            held[tx_id] = origin
            new.add(origin, tx_id)
            old.setdefault(origin, {})[tx_id] = None


def test_own_txs_go_only_when_they_are_all_that_is_held() -> None:
    held = ByOrigin()
    held.add(None, b"own-1")
    held.add("p" * 64, b"peer-1")
    held.add(None, b"own-2")
    held.add(None, b"own-3")
    assert held.victim() == b"peer-1"  # the peer holds fewer, yet loses first
    held.remove("p" * 64, b"peer-1")
    assert held.victim() == b"own-1"
