#!/usr/bin/env bash
# Make a Docker engine and Compose available on this host, for `make devnet-docker` and
# `make test-containers`.
#
#   scripts/docker-engine.sh start   install what is missing (Debian's docker.io,
#                                    docker-compose), start dockerd if no engine answers
#   scripts/docker-engine.sh stop    stop the dockerd that `start` launched, if any
#
# A host that already runs Docker (Docker Desktop, a systemd docker.service) is used as
# it is: nothing is installed and no daemon is started. Installing needs root and apt
# (Debian/Ubuntu); elsewhere install Docker yourself.
set -euo pipefail

STATE_DIR=${FLUX_DOCKER_STATE:-/var/run/fluxchain-docker}
PID_FILE=$STATE_DIR/dockerd.pid
LOG_FILE=${FLUX_DOCKERD_LOG:-/var/log/fluxchain-dockerd.log}
ENGINE_DEADLINE_S=60

log() { echo "docker-engine: $*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

have_compose() { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; }

install_missing() {
    local packages=()
    command -v dockerd >/dev/null || packages+=(docker.io)
    have_compose || packages+=(docker-compose)
    [ ${#packages[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "missing ${packages[*]}: install Docker Engine and Compose, then retry"
        exit 1
    fi
    log "installing ${packages[*]} from the distribution"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${packages[@]}" iptables >/dev/null
}

start() {
    if engine_answers; then
        have_compose || install_missing
        return 0
    fi
    install_missing
    if engine_answers; then return 0; fi
    if [ "$(id -u)" != 0 ]; then
        log "no Docker engine answers and starting one needs root"
        exit 1
    fi
    mkdir -p "$STATE_DIR"
    log "starting dockerd (log: $LOG_FILE)"
    # setsid + redirected output: the daemon must not hold the caller's terminal or pipes
    setsid dockerd >>"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    local deadline=$((SECONDS + ENGINE_DEADLINE_S))
    until engine_answers; do
        if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
            log "dockerd exited; last lines of $LOG_FILE:"
            tail -n 20 "$LOG_FILE" >&2
            rm -f "$PID_FILE"
            exit 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            log "dockerd did not answer within ${ENGINE_DEADLINE_S}s; see $LOG_FILE"
            exit 1
        fi
        sleep 0.5
    done
    log "engine ready"
}

stop() {
    [ -f "$PID_FILE" ] || return 0
    local pid
    pid=$(cat "$PID_FILE")
    rm -f "$PID_FILE"
    kill -0 "$pid" 2>/dev/null || return 0
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            kill -KILL "$pid"
            break
        fi
        sleep 0.2
    done
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
