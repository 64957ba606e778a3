"""`fluxchain gateway`: an ingress that routes to app instances the chain placed (docs/ingress.md).

Modules, one job each: `specports` reads a spec's ports (the adapter to the spec's shape),
`routes` turns confirmed chain facts and agent reports into a routing table (pure),
`haproxy` renders HAProxy's config and speaks its runtime API, `proxy` runs HAProxy as a
child and applies tables to it, `follower` reads the node API, `service` ties them.
"""
