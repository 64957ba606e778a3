"""Request bodies of the API: pydantic models that both validate a body and give
`/openapi.json` its schema, so the document cannot drift from what is accepted."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BATCH: Final = 1_000
MAX_BODY: Final = 16 * 1024 * 1024  # a batch of MAX_BATCH txs in hex, with headroom
MAX_SPEC_BODY: Final = 64 * 1024  # a spec at every protocol maximum is well under this
MAX_OWNER_BODY: Final = 4 * 1024  # an owner request at every field's maximum is ~1 KiB


class SubmitTx(BaseModel):
    """One signed tx, hex-encoded canonical bytes."""

    model_config = ConfigDict(extra="forbid")  # the body's parse is bounded by its shape
    tx: str = Field(max_length=2 * 65_536, pattern="^[0-9a-fA-F]*$")


class SubmitBatch(BaseModel):
    """Up to 1,000 signed txs, hex-encoded."""

    model_config = ConfigDict(extra="forbid")
    txs: list[str] = Field(max_length=MAX_BATCH)


class ValidateSpec(BaseModel):
    """An app spec in its JSON form (as in a spec file), and optionally the blocks to price.

    Without `owner` the spec is checked as the wallet will sign it: with the signing
    account filled in as owner. `blocks` defaults to the spec's `expire`.
    """

    spec: dict[str, Any]
    blocks: int | None = Field(default=None, ge=1, le=2**32)


class VolumeDevice(BaseModel):
    """The agent's Syncthing device, as the node publishes it signed (GET /volumes/device)."""

    device_id: str = Field(pattern=r"^[A-Z2-7]{7}(-[A-Z2-7]{7}){7}$")
    address: str = Field(pattern=r"^tcp://[0-9.]{7,15}:[0-9]{1,5}$")


class WorkloadReport(BaseModel):
    """One workload as the agent sees it on its runtime."""

    app: str = Field(max_length=64)
    instance: int = Field(ge=0, le=1_000)
    component: str = Field(max_length=64)
    # standby: its app has a replicated volume and this host is not the app's primary
    state: Literal["starting", "running", "backoff", "failed", "stopping", "standby"]
    restarts: int = Field(ge=0)
    ports: list[str] = Field(max_length=16)  # host:port the workload answers on
    message: str = Field(default="", max_length=1_000)
    # a stable code when the agent stopped it on purpose: "disk_quota_exceeded"
    reason: str = Field(default="", max_length=64)
    owner_restarts: int = Field(default=0, ge=0)  # restarts and redeploys its owner asked for


class RuntimeCapacity(BaseModel):
    cores: int = Field(ge=0, le=1_000_000)
    ram_mb: int = Field(ge=0, le=1 << 40)
    disk_gb: int = Field(ge=0, le=1 << 40)


class AgentReport(BaseModel):
    """The agent's heartbeat: its runtime, what it can give, and every workload it runs."""

    runtime: Literal["docker", "process"]
    runtime_ok: bool
    error: str = Field(default="", max_length=1_000)
    height: int = Field(ge=0)  # last confirmed height the agent converged to
    capacity: RuntimeCapacity | None = None
    workloads: list[WorkloadReport] = Field(max_length=1_000)
    # the agent's Syncthing, which replicated volumes sync through (the node signs it)
    syncthing: VolumeDevice | None = None


class OwnerRequestBody(BaseModel):
    """An owner-signed request (core/owner_request.py parses and checks it; this model
    documents it): what to do with which app instance on which node, until when."""

    method: Literal["logs", "stats", "restart", "redeploy"]
    app: str = Field(max_length=64)
    instance: int = Field(ge=-1, le=1_000, description="-1: every instance on the node")
    node_id: str = Field(pattern="^[0-9a-f]{40}$", description="the node asked")
    expiry_ms: int = Field(ge=0, description="unix ms; at most 5 minutes ahead")
    nonce: str = Field(pattern="^[0-9a-f]{32}$")
    tail: int = Field(ge=0, le=10_000, description="logs: last lines first")
    follow: bool = Field(description="logs: then live, until the request expires")
    pubkey: str = Field(pattern="^[0-9a-f]{66}$", description="the owner's key")
    signature: str = Field(pattern="^[0-9a-f]{128}$")


# The body of every error response.
ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "reason": {"type": "string"},
                "message": {"type": "string"},
            },
        }
    },
}


# -- answers with proofs (docs/light-client.md, §4; checked by fluxchain/light/) -----------
# These models document answers in /openapi.json; the answers are built by queries.py.


class ProofEntry(BaseModel):
    """One state key the answer was built from: its value (null: absent) and the state
    proof of it (core/statetree.py `StateProof.to_fields`, each part in hex)."""

    key: str = Field(description="the state key, hex")
    value: str | None = Field(description="the key's canonical value, hex; null if absent")
    proof: list[str] = Field(description="[other_leaf, level_0, level_1, ...], hex")


class StateAnswerProof(BaseModel):
    """The proof of a state answer (`?prove=1` on accounts, nodes, apps): every key the
    answer read, proven against the state root of the node's head, with that header and
    the commit that finalized it. A 404 with `?prove=1` carries it too: a proven absence."""

    height: int
    header_raw: str = Field(description="the header's canonical encoding, hex")
    commit_raw: str = Field(description="its commit's canonical encoding, hex")
    entries: list[ProofEntry]


class EventProof(BaseModel):
    """One event shown with a tx: its canonical encoding, leaf `index` of the block's `count`
    events, and its Merkle path to the header's events_root."""

    raw: str
    index: int
    count: int
    path: list[str]


class TxInclusionProof(BaseModel):
    """The proof that a confirmed tx is in block `height`: the Merkle path (RFC 6962, lowest
    sibling first) from its id, leaf `index` of `count`, to the header's tx_root; and the
    proof of each event shown with it, in the order shown."""

    height: int
    header_raw: str
    commit_raw: str
    tx_raw: str = Field(description="the tx's canonical encoding, hex; its id is its SHA-256")
    index: int
    count: int
    path: list[str]
    events: list[EventProof]


class CommitSignature(BaseModel):
    validator: str
    signature: str


class CommitAnswer(BaseModel):
    """A commit in full: every precommit signature, and `raw`, its canonical bytes."""

    height: int
    round: int
    block_hash: str
    signers: list[str]
    signatures: list[CommitSignature]
    raw: str


class BlockProof(BaseModel):
    """`/blocks/{ref}?prove=1`: every tx and event of the block as canonical bytes, in
    order; their Merkle roots are the header's tx_root (over the txs' SHA-256 ids) and
    events_root (over the encoded events). The header and commit are proven by their own
    `raw` (docs/light-client.md §4)."""

    txs_raw: list[str]
    events_raw: list[str]


class LightHeaderAnswer(BaseModel):
    """`/headers/{ref}`: a header and the commit that finalized it, as a light client
    verifies it (the set that signed it: `/validators?height=`)."""

    height: int
    hash: str
    header: dict[str, Any]
    header_raw: str
    commit: CommitAnswer
    commit_raw: str


class ValidatorsAnswer(BaseModel):
    """A validator set; `validators_raw` is its canonical encoding, whose SHA-256 is the
    `validators_hash` of the headers it signs. `height`: given with `?height=`."""

    height: int | None = None
    total_power: int
    hash: str
    validators: list[dict[str, Any]]
    validators_raw: str
