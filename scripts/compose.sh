#!/usr/bin/env bash
# `docker compose` (v2 plugin) when the client has it, else Debian's `docker-compose`.
set -euo pipefail
if docker compose version >/dev/null 2>&1; then
    exec docker compose "$@"
fi
exec docker-compose "$@"
