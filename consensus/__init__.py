"""BFT consensus: a sans-I/O Tendermint engine, its messages, and the double-sign guard.

Pure by design: nothing here opens a socket, reads a clock, starts a thread or draws a
random number. The host drives `Engine.step(input) -> outputs` (see `consensus.events`
and docs/consensus.md); the only module that touches the disk is `consensus.signer`,
whose record must reach it before a signature leaves the process.
"""
