"""A light client: trust a chain's answers without replaying it (docs/light-client.md).

It starts from a root of trust (the genesis file, or the hash of a header the user got
from a source they trust), verifies headers forward the way CometBFT's light client does
(adjacent and skipping verification with bisection, a trust period, more than 1/3 of the
trusted power carried over, more than 2/3 of the new set signed), keeps what it verified
in a small file, and checks a node's answers (state entries, tx inclusion) against the
state root or tx root of a header it verified.

It imports only the pure modules of `fluxchain.core`: no consensus engine, no store, no
API. It reaches a node only through a `Source` its caller provides.

    errors    LightError and its stable reason codes
    verifier  the pure rules: one header against a trusted one
    wire      the API's JSON (hex of canonical encodings) into core objects
    store     the trusted headers, one JSON file per chain in the wallet directory
    client    LightClient: verify up to a height, with bisection, forwards or backwards
    answers   proofs of state entries and of tx inclusion, checked against a header
"""
