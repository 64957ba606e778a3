"""What tests share: one way to wait, to pick ports, and to build a chain.

- `wait`: `wait_until` (and its event-loop twin) with a deadline; on timeout it dumps
  every node's status (height, peers, round, head, last warnings/errors of its log).
- `ports`: ports bound by the process that uses them (port 0 and the node's port file),
  or leased race-free when a number must be known before that process starts.
- `chain`: the chain builder: signed txs, blocks and commits on a real store `Chain`.
- `state`: the state-level kit for rule tests that need no blocks (nodes put straight
  into a `State`, end-of-block hooks run by `StateRunner`).
"""
