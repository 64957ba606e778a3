#!/bin/sh
# One-shot init of the container devnet (docker-compose.yml's `init` service; in the image
# as fluxchain-devnet-init). Writes one node home per compose service under $DEVNET_ROOT:
#
#   $DEVNET_ROOT/node0 .. node{V-1}   validators: devnet node key i, endpoint nodeI:26700,
#                                     served by an agent (service agentI) on the Docker
#                                     runtime that publishes their apps on 127.0.1.{i+1}
#   $DEVNET_ROOT/node{V} ..           extra non-validator nodes with fresh keys, no agent
#
#   $DEVNET_VOLUMES/agent0 .. agent{V-1}  (when DEVNET_VOLUMES is set) agent i's directory
#                                     for its apps' declared volumes, the image's user's own
#
# Every node listens on 0.0.0.0 inside its container (p2p 26600, API 26700) and keeps the
# validators as persistent peers by service name. A devnet that already exists is left as
# it is (the chain resumes); a partial one is refused.
set -eu

ROOT=${DEVNET_ROOT:-/devnet}
VALIDATORS=${DEVNET_VALIDATORS:-4}
EXTRA=${DEVNET_EXTRA_NODES:-1}
CHAIN_ID=${DEVNET_CHAIN_ID:-flux-devnet}
LOG_LEVEL=${DEVNET_LOG_LEVEL:-info}
OWNER=${DEVNET_OWNER:-10001:10001}  # the image's `flux` user runs the nodes
P2P_PORT=26600
API_PORT=26700
TOTAL=$((VALIDATORS + EXTRA))

# the agents' volume directories (a host directory, docker-compose.yml): created whether
# the chain is new or resumed, owned by the user the agents run as, closed to others
if [ -n "${DEVNET_VOLUMES:-}" ]; then
    i=0
    while [ "$i" -lt "$VALIDATORS" ]; do
        install -d -o "${OWNER%%:*}" -g "${OWNER##*:}" -m 0700 "$DEVNET_VOLUMES/agent$i"
        i=$((i + 1))
    done
fi

existing=0
i=0
while [ "$i" -lt "$TOTAL" ]; do
    [ -f "$ROOT/node$i/config.toml" ] && existing=$((existing + 1))
    i=$((i + 1))
done
if [ "$existing" -eq "$TOTAL" ]; then
    echo "devnet-init: $TOTAL node homes exist in $ROOT; resuming that chain"
    exit 0
fi
if [ "$existing" -ne 0 ]; then
    echo "devnet-init: only $existing of $TOTAL node homes exist; remove the volumes" \
        "(make devnet-docker-down) and start again" >&2
    exit 1
fi

endpoints=""
validator_peers=""
i=0
while [ "$i" -lt "$VALIDATORS" ]; do
    endpoints="$endpoints --endpoint node$i:$API_PORT"
    validator_peers="$validator_peers node$i:$P2P_PORT"
    i=$((i + 1))
done

genesis=$(mktemp)
# shellcheck disable=SC2086  # word splitting of the option lists is intended
fluxchain genesis new -n "$VALIDATORS" --chain-id "$CHAIN_ID" \
    --time-ms "$(date +%s%3N)" $endpoints -o "$genesis"

i=0
while [ "$i" -lt "$TOTAL" ]; do
    peers=""
    for peer in $validator_peers; do
        [ "$peer" = "node$i:$P2P_PORT" ] || peers="$peers --peer $peer"
    done
    validator=""
    if [ "$i" -lt "$VALIDATORS" ]; then
        # each validator's apps get a loopback address of their own, as if on its own host
        validator="--dev-key $i --agent --agent-runtime docker --agent-bind 127.0.1.$((i + 1))"
    fi
    # shellcheck disable=SC2086
    fluxchain init --home "$ROOT/node$i" --genesis "$genesis" $validator --moniker "node$i" \
        --p2p-host 0.0.0.0 --p2p-port "$P2P_PORT" --api-host 0.0.0.0 --api-port "$API_PORT" \
        --log-level "$LOG_LEVEL" --reports-from-private $peers
    i=$((i + 1))
done
rm -f "$genesis"
i=0
while [ "$i" -lt "$TOTAL" ]; do
    chown -R "$OWNER" "$ROOT/node$i"
    chmod 0700 "$ROOT/node$i"
    i=$((i + 1))
done
echo "devnet-init: $VALIDATORS validators and $EXTRA extra nodes ready in $ROOT"
