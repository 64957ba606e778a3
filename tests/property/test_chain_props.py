"""Chain-level invariants over random sequences of blocks (in memory, no store).

- supply: balances + locked collateral + escrow == genesis + minted - burned, every block
  (with apps registered, updated and cancelled: escrows, refunds and burnt app charges);
- determinism: a second, independent state executing the same blocks gets the same roots;
- no replay: a tx id is included at most once, and re-submitting an included tx fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxchain.core import execute as ex
from fluxchain.core import vrf
from fluxchain.core.accounts import get_account
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.epochs import get_validators
from fluxchain.core.genesis import Genesis, build_genesis_state, genesis_supply
from fluxchain.core.params import COIN, Tier
from fluxchain.core.records import META, NODE, NodeStatus
from fluxchain.core.schema import new_state
from fluxchain.core.state import State
from fluxchain.core.statetree import StateTree
from fluxchain.core.supply import total_supply
from fluxchain.core.tx import (
    AppCancel,
    AppRegister,
    AppUpdate,
    Benchmark,
    Evidence,
    Hardware,
    NodeConfirm,
    NodeRegister,
    NodeUnregister,
    NodeUpdate,
    Payload,
    Transfer,
    Tx,
    prove_node_key,
)
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from tests.support.chain import (
    app_spec,
    default_fee,
    devnet_genesis,
    node_hot_key,
    owner_key,
    reveal_of,
)

ACCOUNTS = [owner_key(i) for i in range(8)]
HOT = [SigningKey(bytes([0x70 + i]) * 32) for i in range(8)]  # 0..3 register, 4..7 rotate
BENCH = Benchmark(4, 8, 8_192, 100, 100, 100, 100)


@dataclass
class MemChain:
    genesis: Genesis
    state: State = field(default_factory=new_state)
    tree: StateTree = field(default_factory=StateTree)
    height: int = 0
    prev_hash: bytes = b"\x00" * 32
    proposer: bytes = b""  # of the last block built: the round's, as the header rules say
    reveal: bytes = b""  # of the last block built

    def __post_init__(self) -> None:
        build_genesis_state(self.genesis, self.state)
        self.tree.update(self.state.pending_changes())
        self.state.commit()

    def build(self, candidates: list[Tx]) -> tuple[list[Tx], ex.Execution]:
        block, execution, _ = ex.build_block(
            self.state,
            self.tree,
            self.genesis.params,
            height=self.height + 1,
            round_=0,
            time_ms=self.height + 1,
            prev_hash=self.prev_hash,
            validators=get_validators(self.state),
            last_commit=None,
            candidates=candidates,
            reveal=reveal_of(
                self.genesis.chain_id,
                get_validators(self.state),
                self.height + 1,
                0,
                [*HOT, *ACCOUNTS],
            ),
        )
        ex.finish(self.state, execution)
        self.height += 1
        self.prev_hash = block.hash()
        self.proposer = block.header.proposer
        self.reveal = block.header.reveal
        included = [Tx.decode(raw, 1 << 20) for raw in block.txs]
        return included, execution

    def replay(self, txs: list[Tx], proposer: bytes, reveal: bytes) -> ex.Execution:
        execution = ex.execute(
            self.state,
            self.tree,
            self.genesis.params,
            self.height + 1,
            proposer,
            reveal,
            txs,
        )
        ex.finish(self.state, execution)
        self.height += 1
        return execution


def _actions(draw: st.DrawFn) -> list[tuple[str, int, int, int]]:
    kinds = st.sampled_from(
        [
            *("transfer", "transfer", "register", "confirm", "unregister", "rotate", "evidence"),
            *("app_register", "app_update", "app_cancel"),
        ]
    )
    return draw(
        st.lists(
            st.tuples(kinds, st.integers(0, 7), st.integers(0, 7), st.integers(1, 5_000)),
            max_size=8,
        )
    )


actions_per_block = st.composite(_actions)()


def _app_payload(
    chain: MemChain, kind: str, owner: SigningKey, b: int, amount: int
) -> tuple[SigningKey, Payload]:
    """An app action of `owner` on one of three names: cancel, or a register/update pinned
    to nodes that are active (the genesis validators), to a node that does not exist
    (refused), or to none."""
    name = f"app{b % 3}"
    if kind == "app_cancel":
        return owner, AppCancel(name)
    nodes = [n.node_id for _, n in chain.state.items(NODE)]
    pins = tuple(nodes[:3]) if amount % 3 == 0 else ()
    if amount % 5 == 0:
        pins = (b"\x01" * 20, *nodes[:2])
    spec = app_spec(
        owner,
        name,
        pinned_nodes=pins,
        instances=3 if pins else 3 + amount % 2,
        expire=chain.genesis.params.app_min_expire + amount % 7,
        ports=(31000 + b % 3,),
    )
    return owner, AppRegister(spec) if kind == "app_register" else AppUpdate(spec)


def _make_txs(
    chain: MemChain, nonces: dict[bytes, int], actions: list[tuple[str, int, int, int]]
) -> list[Tx]:
    chain_id = chain.genesis.chain_id
    out = []

    def tx(key: SigningKey, payload: object, fee: int | None = None) -> Tx:
        nonce = nonces.get(key.public_key, 0)
        nonces[key.public_key] = nonce + 1
        paid = default_fee(payload, fee)  # type: ignore[arg-type]
        return Tx.create(key, chain_id, nonce, paid, payload)  # type: ignore[arg-type]

    for kind, a, b, amount in actions:
        if kind == "transfer":
            to = address_of(ACCOUNTS[b].public_key if a != b else HOT[b % 4].public_key)
            out.append(tx(ACCOUNTS[a], Transfer(to, amount * COIN)))
        elif kind == "register":
            tier = list(Tier)[amount % 3]
            named = HOT[b % 4]
            proof = prove_node_key(
                named, chain_id, ACCOUNTS[a].public_key, nonces.get(ACCOUNTS[a].public_key, 0)
            )
            hardware = Hardware(4, 32_000, 440)  # within every tier's caps
            claim = vrf.claim(named, chain_id)
            register = NodeRegister(
                tier, named.public_key, "h:1", "DE", "EU", hardware, proof, *claim
            )
            out.append(tx(ACCOUNTS[a], register))
        elif kind in ("confirm", "unregister", "rotate"):
            node_ids = [n.node_id for _, n in chain.state.items(NODE)]
            if not node_ids:
                continue
            node = chain.state.get(NODE + node_ids[amount % len(node_ids)])
            if kind == "confirm":
                hot = next(
                    (
                        k
                        for k in HOT + [node_hot_key(i) for i in range(4)]
                        if k.public_key == node.node_key
                    ),
                    None,
                )
                if hot is not None:
                    out.append(tx(hot, NodeConfirm(node.node_id, BENCH, "t"), fee=0))
            else:
                owner = next(
                    (k for k in ACCOUNTS if address_of(k.public_key) == node.owner), ACCOUNTS[a]
                )
                if kind == "unregister":
                    out.append(tx(owner, NodeUnregister(node.node_id)))
                else:  # a key rotation: the old key's record stays for the evidence age
                    new = HOT[4 + b % 4]
                    nonce = nonces.get(owner.public_key, 0)
                    proof = prove_node_key(new, chain_id, owner.public_key, nonce, node.node_id)
                    claim = vrf.claim(new, chain_id)
                    update = NodeUpdate(
                        node.node_id, "h:2", "DE", "EU", new.public_key, proof, 0, *claim
                    )
                    out.append(tx(owner, update))
        elif kind.startswith("app_"):
            owner, payload = _app_payload(chain, kind, ACCOUNTS[a], b, amount)
            # the fee covers moving every instance (an update may move them all)
            out.append(tx(owner, payload, 1_000 + 4 * chain.genesis.params.relocation_price))
        elif chain.height > 1:
            offender = node_hot_key(b % 4)
            h = 1 + amount % (chain.height - 1) if chain.height > 2 else 1
            v1 = Vote.create(offender, chain_id, VoteType.PRECOMMIT, h, 0, b"\x01" * 32)
            v2 = Vote.create(offender, chain_id, VoteType.PRECOMMIT, h, 0, b"\x02" * 32)
            out.append(tx(ACCOUNTS[a], Evidence(*evidence_pair(v1, v2))))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(actions_per_block, min_size=1, max_size=14))
def test_supply_determinism_and_no_replay(blocks: list[list[tuple[str, int, int, int]]]) -> None:
    genesis = devnet_genesis()
    main, shadow = MemChain(genesis), MemChain(genesis)
    base = genesis_supply(genesis)
    nonces: dict[bytes, int] = {}
    seen: set[bytes] = set()
    submitted_before: list[Tx] = []
    for actions in blocks:
        # a little of everything, plus replays of txs that were already included
        candidates = _make_txs(main, nonces, actions) + submitted_before[-3:]
        included, execution = main.build(candidates)
        # dropped txs leave gaps in the nonces handed out: start again from the chain's
        nonces = {
            k.public_key: get_account(main.state, address_of(k.public_key)).nonce
            for k in ACCOUNTS + HOT + [node_hot_key(i) for i in range(4)]
        }
        for tx in included:
            assert tx.id not in seen, "a tx applied twice"
            seen.add(tx.id)
        submitted_before.extend(included)
        meta = main.state.get(META)
        assert total_supply(main.state) == base + meta.minted - meta.burned
        replayed = shadow.replay(included, main.proposer, main.reveal)
        shadow.prev_hash = main.prev_hash
        assert replayed.state_root == execution.state_root
        assert replayed.events_root == execution.events_root
        assert main.tree.root == shadow.tree.root


def test_random_blocks_reach_every_status() -> None:
    """A sanity run that the random actions above do exercise the node machinery."""
    genesis = devnet_genesis()
    chain = MemChain(genesis)
    nonces: dict[bytes, int] = {}
    acts = [("register", 4, 0, 1), ("register", 5, 1, 2)]
    chain.build(_make_txs(chain, nonces, acts))
    chain.build(_make_txs(chain, nonces, [("confirm", 0, 0, i) for i in range(6)]))
    registered = [
        n for _, n in chain.state.items(NODE) if n.node_key in {k.public_key for k in HOT}
    ]
    assert len(registered) == 2
    assert all(n.status is NodeStatus.CONFIRMED for n in registered)
    # a rotation moves a node to a key of the second half of HOT
    target = sorted(chain.state.keys(NODE)).index(NODE + registered[0].node_id)
    chain.build(_make_txs(chain, nonces, [("rotate", 0, 0, target)]))
    rotated = chain.state.get(NODE + registered[0].node_id)
    assert rotated.node_key in {k.public_key for k in HOT[4:]}
