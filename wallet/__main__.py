"""`python -m wallet …` runs flux-wallet (the same as the installed entry point)."""

from wallet.cli import run

run()
