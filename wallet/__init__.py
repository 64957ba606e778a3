"""flux-wallet: BIP39/BIP32 keys, an encrypted keystore, tx builders and a CLI (docs/wallet.md).

Depends only on `fluxchain.core` and talks to a node over its HTTP API.
"""
