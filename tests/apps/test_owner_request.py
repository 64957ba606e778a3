"""Owner-signed requests (core/owner_request.py): what a hosting node accepts and every
refusal, each with its status and stable reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core import apps, placement
from fluxchain.core.crypto import TAG_TX, SigningKey, address_of, tagged_hash, verify
from fluxchain.core.encoding import pack
from fluxchain.core.nodes import get_node
from fluxchain.core.owner_request import (
    ALL_INSTANCES,
    MAX_AHEAD_MS,
    Method,
    NonceBook,
    OwnerRequest,
    OwnerRequestError,
    Refusal,
    check_owner_request,
    hosted_instances,
    sign_owner_request,
)
from fluxchain.core.tx import AppRegister, Tx
from fluxchain.node.service import NodeService
from tests.api.test_api import commit
from tests.support.chain import Builder, funded_key, node_hot_key, open_chain
from tests.support.state import CHAIN, StateRunner, component, key_of, node_id_of, spec

OWNER_KEY = key_of(1)
STRANGER_KEY = key_of(2)
NOW_MS = 1_800_000_000_000


def placed_app() -> tuple[StateRunner, bytes, bytes]:
    """A state with app `myapp` (3 instances) placed; (runner, a host, a non-host)."""
    chain = StateRunner()
    for i in range(6):
        chain.add_node(i)
    owner = chain.fund(OWNER_KEY)
    chain.fund(STRANGER_KEY)
    tx = chain.tx(OWNER_KEY, AppRegister(spec(owner, instances=3)))
    chain.apply(apps.process_app_register, tx)
    chain.end_block()
    where = placement.get_placement(chain.state, "myapp")
    assert where is not None and len(where.instances) == 3
    hosts = {i.node_id for i in where.instances}
    idle = next(node_id_of(i) for i in range(6) if node_id_of(i) not in hosts)
    return chain, where.instances[0].node_id, idle


def request(key: SigningKey, node_id: bytes, **changes: object) -> OwnerRequest:
    fields: dict[str, object] = {
        "method": Method.RESTART,
        "app": "myapp",
        "node_id": node_id,
        "now_ms": NOW_MS,
    }
    fields.update(changes)
    return sign_owner_request(key, CHAIN, **fields)  # type: ignore[arg-type]


def refusal(chain: StateRunner, req: OwnerRequest, node_id: bytes, book: NonceBook) -> Refusal:
    with pytest.raises(OwnerRequestError) as info:
        check_owner_request(req, chain.state, CHAIN, node_id, NOW_MS, book)
    return info.value.reason


def test_the_owners_request_is_accepted_once() -> None:
    chain, host, _ = placed_app()
    book = NonceBook()
    req = request(OWNER_KEY, host)
    hosted = check_owner_request(req, chain.state, CHAIN, host, NOW_MS, book)
    assert hosted and all(isinstance(i, int) for i in hosted)
    assert refusal(chain, req, host, book) is Refusal.REPLAYED  # the same request again
    error = OwnerRequestError(Refusal.REPLAYED, "")
    assert error.status == 409


def test_json_round_trip_keeps_the_signature_valid() -> None:
    _, host, _ = placed_app()
    req = request(OWNER_KEY, host, method=Method.LOGS, tail=50, follow=True)
    again = OwnerRequest.from_json(req.to_json())
    assert again == req and again.signature_valid(CHAIN)


def test_a_strangers_request_is_refused_not_owner() -> None:
    chain, host, _ = placed_app()
    book = NonceBook()
    assert refusal(chain, request(STRANGER_KEY, host), host, book) is Refusal.NOT_OWNER
    assert len(book) == 0  # a refused request uses no nonce


def test_a_replayed_request_is_refused_within_its_window() -> None:
    chain, host, _ = placed_app()
    book = NonceBook()
    nonce = bytes(16)
    check_owner_request(
        request(OWNER_KEY, host, nonce=nonce), chain.state, CHAIN, host, NOW_MS, book
    )
    replay = request(OWNER_KEY, host, nonce=nonce, method=Method.STATS)
    assert refusal(chain, replay, host, book) is Refusal.REPLAYED


def test_an_expired_request_is_refused() -> None:
    chain, host, _ = placed_app()
    old = request(OWNER_KEY, host, now_ms=NOW_MS - 120_000, valid_ms=60_000)
    assert refusal(chain, old, host, NonceBook()) is Refusal.REQUEST_EXPIRED


def test_a_request_dated_far_ahead_is_refused() -> None:
    """Otherwise its nonce would have to be remembered for that long."""
    chain, host, _ = placed_app()
    ahead = request(OWNER_KEY, host, now_ms=NOW_MS + 60_000, valid_ms=MAX_AHEAD_MS)
    assert refusal(chain, ahead, host, NonceBook()) is Refusal.EXPIRY_TOO_FAR


def test_a_request_for_another_node_is_refused() -> None:
    """A host that received the owner's request cannot replay it at another host."""
    chain, host, idle = placed_app()
    assert refusal(chain, request(OWNER_KEY, host), idle, NonceBook()) is Refusal.WRONG_NODE


def test_a_node_not_hosting_the_app_refuses_not_hosted() -> None:
    chain, _, idle = placed_app()
    assert refusal(chain, request(OWNER_KEY, idle), idle, NonceBook()) is Refusal.NOT_HOSTED
    where = placement.get_placement(chain.state, "myapp")
    assert where is not None
    host = where.instances[0].node_id
    other = next(i.index for i in where.instances if i.node_id != host)
    req = request(OWNER_KEY, host, instance=other)
    assert refusal(chain, req, host, NonceBook()) is Refusal.NOT_HOSTED


def test_a_request_for_another_app_is_refused() -> None:
    chain, host, _ = placed_app()
    req = request(OWNER_KEY, host, app="nosuchapp")
    assert refusal(chain, req, host, NonceBook()) is Refusal.NOT_FOUND


def test_a_tampered_request_is_refused_bad_signature() -> None:
    chain, host, _ = placed_app()
    body = request(OWNER_KEY, host, method=Method.STATS).to_json()
    body["method"] = "redeploy"
    tampered = OwnerRequest.from_json(body)
    assert refusal(chain, tampered, host, NonceBook()) is Refusal.BAD_SIGNATURE
    other_chain = request(OWNER_KEY, host)
    with pytest.raises(OwnerRequestError) as info:
        check_owner_request(other_chain, chain.state, "another-chain", host, NOW_MS, NonceBook())
    assert info.value.reason is Refusal.BAD_SIGNATURE and info.value.status == 401


def test_a_request_signature_is_never_a_tx_signature() -> None:
    """Domain separation: the digest a request signs is not the one a tx signs over the
    same bytes, so neither signature verifies as the other."""
    _, host, _ = placed_app()
    req = request(OWNER_KEY, host)
    as_tx = tagged_hash(TAG_TX, CHAIN, pack(req.signed_fields()))
    assert not verify(OWNER_KEY.public_key, as_tx, req.signature)
    tx = Tx.create(OWNER_KEY, CHAIN, 0, 0, AppRegister(spec(bytes(20))))
    forged = OwnerRequest.from_json({**req.to_json(), "signature": tx.signature.hex()})
    assert not forged.signature_valid(CHAIN)


@pytest.mark.parametrize(
    "change",
    [
        {"method": "shell"},
        {"instance": -2},
        {"node_id": "00"},
        {"nonce": "zz" * 16},
        {"tail": 10_001},
        {"follow": "yes"},
        {"expiry_ms": 1.5},
    ],
)
def test_malformed_requests_are_refused_bad_request(change: dict[str, object]) -> None:
    _, host, _ = placed_app()
    body = {**request(OWNER_KEY, host).to_json(), **change}
    with pytest.raises(OwnerRequestError) as info:
        OwnerRequest.from_json(body)
    assert info.value.reason is Refusal.BAD_REQUEST and info.value.status == 400


def test_the_nonce_book_is_bounded_and_forgets_expired_nonces() -> None:
    book = NonceBook(capacity=2)
    book.use(b"k", b"1", NOW_MS + 10, NOW_MS)
    book.use(b"k", b"2", NOW_MS + 10_000, NOW_MS)
    with pytest.raises(OwnerRequestError) as info:
        book.use(b"k", b"3", NOW_MS + 10, NOW_MS)
    assert info.value.reason is Refusal.BUSY and info.value.status == 429
    book.use(b"k", b"3", NOW_MS + 10_000, NOW_MS + 20)  # nonce 1 expired: room again
    assert len(book) == 2
    with pytest.raises(OwnerRequestError):
        book.use(b"k", b"2", NOW_MS + 10_000, NOW_MS + 20)  # still remembered


def test_all_instances_covers_every_instance_on_the_node() -> None:
    chain, host, _ = placed_app()
    hosted = check_owner_request(
        request(OWNER_KEY, host, instance=ALL_INSTANCES),
        chain.state,
        CHAIN,
        host,
        NOW_MS,
        NonceBook(),
    )
    where = placement.get_placement(chain.state, "myapp")
    assert where is not None
    assert hosted == sorted(i.index for i in where.instances if i.node_id == host)


def test_one_app_owner_fills_the_nonce_book_and_locks_out_every_other_owner() -> None:
    """docs/security.md says only the owner's signed requests enter the replay book, so
    nobody can exhaust it. But the book is one per node, shared by every owner: the owner
    of any app the node hosts (a cheap one-instance app is enough) signs requests with
    fresh nonces until the book is full, and every other owner's request on that node is
    refused 429 `busy` for the next five minutes, again and again.

    The book's capacity is scaled down here (8 instead of 100,000: the attack only needs
    as many signatures). Should: one owner's requests cannot take another owner's share
    (a per-signer quota), so the victim's fresh request is accepted."""
    chain, host, _ = placed_app()  # "myapp", owned by the victim
    attacker = key_of(7)
    attacker_address = chain.fund(attacker)
    # the attacker's app, on every node (so on the victim's host), on another port
    own = spec(
        attacker_address, name="squatter", instances=6, components=(component(ports=(31001,)),)
    )
    chain.apply(apps.process_app_register, chain.tx(attacker, AppRegister(own)))
    chain.end_block()
    where = placement.get_placement(chain.state, "squatter")
    assert where is not None and host in where.nodes

    book = NonceBook(capacity=8)
    for _ in range(book.capacity):
        flood = request(attacker, host, app="squatter", valid_ms=300_000)
        check_owner_request(flood, chain.state, CHAIN, host, NOW_MS, book)

    victim = request(OWNER_KEY, host)
    try:
        check_owner_request(victim, chain.state, CHAIN, host, NOW_MS + 1_000, book)
    except OwnerRequestError as exc:
        assert exc.reason is not Refusal.BUSY, (
            "another owner's requests filled the node's replay book: the app owner's own"
            " request is refused 429 busy"
        )
        raise
    # the flooder alone is held to its quota
    more = request(attacker, host, app="squatter", valid_ms=300_000)
    assert refusal(chain, more, host, book) is Refusal.BUSY


def test_a_book_full_in_all_forgets_the_heaviest_signers_nonces_without_replay() -> None:
    """Many owners together fill the whole book: a newcomer is still accepted; the signer
    holding the most nonces forgets its earliest one, and a replay of that request (or any
    of its requests expiring no later) is refused, never accepted twice."""
    book = NonceBook(capacity=3, total=4)
    book.use(b"heavy", b"1", NOW_MS + 100, NOW_MS)
    book.use(b"heavy", b"2", NOW_MS + 200, NOW_MS)
    book.use(b"heavy", b"3", NOW_MS + 300, NOW_MS)
    book.use(b"light", b"1", NOW_MS + 300, NOW_MS)
    book.use(b"newcomer", b"1", NOW_MS + 300, NOW_MS)  # full in all: heavy forgets nonce 1
    assert len(book) == 4
    for nonce in (b"1", b"9"):  # the forgotten request, and any other expiring as early
        with pytest.raises(OwnerRequestError) as info:
            book.use(b"heavy", nonce, NOW_MS + 100, NOW_MS + 1)
        assert info.value.reason is Refusal.BUSY
    with pytest.raises(OwnerRequestError) as info:
        book.use(b"light", b"1", NOW_MS + 300, NOW_MS + 1)
    assert info.value.reason is Refusal.REPLAYED
    # once past their expiry, every nonce leaves the book (in expiry order, no scan)
    book.use(b"light", b"2", NOW_MS + 400_000, NOW_MS + 301)
    assert len(book) == 1


def test_a_restart_request_is_replayed_after_the_node_restarts(tmp_path: Path) -> None:
    """Attack: whoever saw an owner's signed `restart` (the request goes over the node's
    plain HTTP API: anyone on the path, a proxy's log) sends it again after the hosting
    node restarted, any time before the request's expiry (up to 5 minutes): the nonce
    book lives in the node's memory only, so the node accepts the same request twice and
    its agent restarts the app again (a `redeploy` pulls again). Should: the nonces of
    live requests survive a node restart (kept with the node's state until their
    expiry), and the replay is refused 409 `replayed`."""
    home = tmp_path / "home"
    chain = open_chain(home)
    b = Builder(chain)
    owner = funded_key()
    web = component(image="nginx:1.27", ports=())
    register = b.tx(
        owner, AppRegister(spec(address_of(owner.public_key), "hello", components=(web,)))
    )
    service = NodeService(chain)
    service.submit(register.raw)
    commit(service, b)
    state = chain.state.committed_view()
    where = placement.get_placement(state, "hello")
    assert where is not None and where.nodes
    host = where.nodes[0]
    node = get_node(state, host)
    assert node is not None
    (node_key,) = [k for k in map(node_hot_key, range(4)) if k.public_key == node.node_key]
    req = sign_owner_request(
        owner,
        chain.genesis.chain_id,
        method=Method.RESTART,
        app="hello",
        node_id=host,
        now_ms=NOW_MS,
        valid_ms=MAX_AHEAD_MS,
    )
    before = NodeService(chain, node_key=node_key, wall_clock_ms=lambda: NOW_MS)
    assert before.check_owner_request(req) == hosted_instances(state, "hello", host)
    chain.close()

    chain = open_chain(home)  # the node process restarts on the same home
    try:
        after = NodeService(chain, node_key=node_key, wall_clock_ms=lambda: NOW_MS + 30_000)
        with pytest.raises(OwnerRequestError) as info:
            after.check_owner_request(req)
        assert info.value.reason is Refusal.REPLAYED
    finally:
        chain.close()
