"""Issue 24, api21 1: `ByOrigin` with clients apart chooses as the two-level plain rule
(clients as one origin against the peers; then the client group holding the most), by
count and by bytes, and its client groups are never more than the txs they hold."""

from __future__ import annotations

import random
from collections.abc import Sequence

from fluxchain.node.origins import API, ByOrigin, Origin

SEEDS = (3, 21, 2026)


def _outer(origin: Origin) -> Origin:
    return API if origin is not None and origin.startswith(API) else origin


def _max(of: dict[Origin, dict[bytes, int]], origins: Sequence[Origin], by_bytes: bool) -> bytes:
    """The oldest of the first origin (in the order they came) holding the most."""

    def weight(origin: Origin) -> int:
        return sum(of[origin].values()) if by_bytes else len(of[origin])

    return next(iter(of[max(origins, key=weight)]))


def _plain(
    outer: dict[Origin, dict[bytes, int]], inner: dict[Origin, dict[bytes, int]], by_bytes: bool
) -> bytes:
    """The rule as a scan: clients as one origin (API) against the others, then apart."""
    peers = [o for o in outer if o is not None]
    if not peers:
        return next(iter(outer[None]))
    victim = _max(outer, peers, by_bytes)
    return _max(inner, list(inner), by_bytes) if _outer_of(outer, victim) == API else victim


def _outer_of(outer: dict[Origin, dict[bytes, int]], tx_id: bytes) -> Origin:
    return next(o for o, ids in outer.items() if tx_id in ids)


def _put(of: dict[Origin, dict[bytes, int]], origin: Origin, tx_id: bytes, size: int) -> None:
    of.setdefault(origin, {})[tx_id] = size


def _drop(of: dict[Origin, dict[bytes, int]], origin: Origin, tx_id: bytes) -> None:
    del of[origin][tx_id]
    if not of[origin]:
        del of[origin]


def test_api21_victim_is_the_two_level_plain_rule() -> None:
    for seed in SEEDS:
        rng = random.Random(seed)
        fast = ByOrigin()
        outer: dict[Origin, dict[bytes, int]] = {}
        inner: dict[Origin, dict[bytes, int]] = {}
        held: dict[bytes, Origin] = {}
        origins: list[Origin] = [None, "", "ab12", "cd34", API, f"{API}/local"]
        origins += [f"{API}/81.{i}.0.0/16" for i in range(6)]
        for step in range(8_000):
            action = rng.random()
            by_bytes = rng.random() < 0.5
            if held and action < 0.45:
                if action < 0.2:
                    tx_id = _plain(outer, inner, by_bytes)
                    assert fast.victim(by_bytes=by_bytes) == tx_id, f"seed {seed} step {step}"
                else:
                    tx_id = rng.choice(list(held))
                origin = held.pop(tx_id)
                fast.remove(origin, tx_id)
                _drop(outer, _outer(origin), tx_id)
                if _outer(origin) == API:
                    _drop(inner, origin, tx_id)
                continue
            origin = rng.choice(origins)
            tx_id, size = rng.randbytes(16), rng.randrange(100, 5_000)
            held[tx_id] = origin
            fast.add(origin, tx_id, size)
            _put(outer, _outer(origin), tx_id, size)
            if _outer(origin) == API:
                _put(inner, origin, tx_id, size)
            assert fast.victim(by_bytes=by_bytes) == _plain(outer, inner, by_bytes), (
                f"seed {seed} step {step}"
            )


def test_api21_client_groups_churning_keep_the_heaps_bounded() -> None:
    """A client in a fresh address group for each tx (an IPv6 attacker with many /32s):
    groups exist only while they hold a tx, and neither level's heaps pass twice the
    origins held plus their slack."""
    held = ByOrigin()
    standing = [f"{API}/81.{i}.0.0/16" for i in range(20)]
    for origin in standing:
        held.add(origin, origin.encode())
    for i in range(20_000):
        churner, tx_id = f"{API}/2a{i:05x}::/32", i.to_bytes(8, "big")
        held.add(churner, tx_id)
        held.remove(churner, tx_id)
        held.add(standing[i % 20], b"s" + tx_id)
        clients = held._clients
        assert clients is not None
        for heap in (clients._heap, clients._bytes_heap):
            assert len(heap) <= 2 * len(clients._of) + 64 + 1, i
        assert len(clients._of) == len(standing)
        assert len(held._heap) <= 2 * len(held._of) + 64 + 1
