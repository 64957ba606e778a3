"""Errors of the p2p layer, each carrying a stable machine-readable reason code.

The codes appear in logs, in the close message a refused peer receives, in
`PeerInfo`/events the host sees, and in tests. Never rename a code; add new ones. The
framing codes reuse the strings of the core's decoding codes (`malformed`,
`non_canonical`, `too_large`, `unknown_kind`, `bad_field`), so an operator reads one
vocabulary whether a bad object arrived over the wire or through the API.
"""

from __future__ import annotations

from enum import StrEnum


class PeerReason(StrEnum):
    """Why a frame, a handshake, a request or a connection was refused or ended."""

    # framing
    MALFORMED = "malformed"
    NON_CANONICAL = "non_canonical"
    TOO_LARGE = "too_large"
    UNKNOWN_KIND = "unknown_kind"
    BAD_FIELD = "bad_field"
    NOT_BINARY = "not_binary"
    # handshake
    INCOMPATIBLE_VERSION = "incompatible_version"
    WRONG_CHAIN = "wrong_chain"
    WRONG_GENESIS = "wrong_genesis"
    SELF_CONNECTION = "self_connection"  # proven: the peer signed AUTH with our key
    WRONG_NODE_KEY = "wrong_node_key"  # dialed as key@host:port, another key answered
    DUPLICATE_PEER = "duplicate_peer"
    BAD_AUTH = "bad_auth"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    BAD_KEY_EXCHANGE = "bad_key_exchange"  # a Noise message of the wrong size or that fails
    UNEXPECTED_MESSAGE = "unexpected_message"
    BANNED = "banned"
    TOO_MANY_PEERS = "too_many_peers"
    SEED_MODE = "seed_mode"  # a seed answered GET_PEERS and hung up, as seeds do
    TOO_MANY_FROM_IP = "too_many_from_ip"
    TOO_MANY_FROM_SUBNET = "too_many_from_subnet"
    # a dial by name reached an IP a learned address may not point at (`LearnRule`)
    UNROUTABLE_ADDRESS = "unroutable_address"
    TOO_MANY_FROM_GROUP = "too_many_from_group"  # one /16 (IPv6 /32) holds its share
    # behaviour after the handshake
    RATE_LIMITED = "rate_limited"
    UNSOLICITED = "unsolicited"
    BAD_RESPONSE = "bad_response"
    UNDELIVERED = "undelivered"  # announced txs it then did not deliver when asked
    SLOW_PEER = "slow_peer"
    PUNISHED = "punished"
    BAD_ROUND_STATE = "bad_round_state"
    DECRYPT_FAILED = "decrypt_failed"  # altered, injected, replayed or reordered on the way
    # requests and connections
    TIMEOUT = "timeout"
    TOO_MANY_REQUESTS = "too_many_requests"
    NOT_HELD = "not_held"  # the peer answered that it does not hold what we asked for
    NOT_CONNECTED = "not_connected"
    CONNECT_FAILED = "connect_failed"
    CLOSED = "closed"
    SHUTDOWN = "shutdown"
    HOST_ERROR = "host_error"
    INTERNAL_ERROR = "internal_error"


class P2PError(Exception):
    """Base of every p2p error: a reason code plus a sentence for humans."""

    def __init__(self, reason: PeerReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class FrameError(P2PError):
    """Bytes from a peer that are not one canonical, well-formed, bounded frame."""


class HandshakeError(P2PError):
    """A connection that did not prove it belongs to a compatible peer of this chain."""


class PeerClosedError(HandshakeError):
    """The other end closed the connection during the handshake, giving `reason`.

    The reason is the remote's account (the dialer learns why it was refused), but a
    close frame is not sealed: anyone on the path can forge one. So it is never taken
    as evidence about the remote (no ban, no "this address is me"): it is a failed
    connection and nothing more.
    """
