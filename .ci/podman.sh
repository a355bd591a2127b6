#!/usr/bin/env bash
# A Docker-compatible engine (podman's Docker API) for the tests marked `docker`.
#
#   eval "$(bash .ci/podman.sh)"
#
# Installs podman and runc if missing (Debian 12, as root), writes a containers.conf that
# works on these hosts, starts `podman system service` on a unix socket unless one already
# answers there, and prints `export DOCKER_HOST=...` lines. Safe to run again. It never fails
# the caller: when podman cannot work here it says why on stderr, prints nothing on stdout and
# exits 0, and the `docker` tests skip themselves with their reason.
set -Eeuo pipefail

STATE_DIR=${DOCKYARD_PODMAN_DIR:-/tmp/dockyard-podman}
SOCK=$STATE_DIR/podman.sock
CONF=$STATE_DIR/containers.conf
LOG=$STATE_DIR/service.log
PID_FILE=$STATE_DIR/service.pid
START_TIMEOUT_S=30

# Only the final export lines go to the real stdout (fd 3); anything else, including the
# output of apt-get and podman, goes to stderr so that `eval "$(...)"` sees nothing else.
exec 3>&1 1>&2

say() { echo "podman.sh: $*" >&2; }
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR
# Whatever happened, the caller's CI goes on; the tests that need an engine skip themselves.
on_exit() {
    local status=$?
    if ((status != 0)); then
        say "no engine (exit $status); the docker tests will be skipped"
    fi
    exit 0
}
trap on_exit EXIT
give_up() {
    say "$*"
    exit 1
}

answers() {
    [[ -S $SOCK ]] && curl --silent --fail --max-time 2 --unix-socket "$SOCK" http://d/_ping >/dev/null
}

install_missing() {
    local command missing=()
    for command in podman runc curl; do
        command -v "$command" >/dev/null || missing+=("$command")
    done
    # The container target's tests make their base image from its one static binary.
    [[ -x /bin/busybox ]] || missing+=(busybox-static)
    ((${#missing[@]} > 0)) || return 0
    ((EUID == 0)) || give_up "${missing[*]} missing, and installing needs root"
    command -v apt-get >/dev/null || give_up "${missing[*]} missing, and there is no apt-get"
    # Captured first: `| grep -q` would stop reading early, and pipefail would count that.
    local policy
    policy=$(apt-cache policy podman 2>/dev/null || true)
    if [[ ! $policy =~ Candidate:\ [0-9] ]]; then
        say "no podman candidate in the package lists: apt-get update"
        apt-get update -q || give_up "apt-get update failed"
    fi
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" \
        || give_up "apt-get install ${missing[*]} failed"
}

# crun refuses this host's cgroups, and root here cannot raise rlimits past the hard limit
# (podman's default nofile/nproc would make every container fail to start).
write_config() {
    local wanted
    wanted=$(
        cat <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
EOF
    )
    if [[ ! -f $CONF ]] || [[ $(<"$CONF") != "$wanted" ]]; then
        printf '%s\n' "$wanted" >"$CONF"
    fi
}

# The service this script started last, still running (not some process that reused its pid).
service_alive() {
    local pid
    [[ -f $PID_FILE ]] && pid=$(<"$PID_FILE") && [[ -r /proc/$pid/cmdline ]] \
        && [[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == *"system service"*"$SOCK"* ]]
}

# Until the socket answers; fails if process $1 exits or START_TIMEOUT_S passes.
wait_for_answer() {
    local pid=$1 deadline=$((SECONDS + START_TIMEOUT_S))
    until answers; do
        kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

start_service() {
    if answers; then
        say "podman service already answers on $SOCK"
        return
    fi
    if service_alive; then
        say "waiting for the podman service already starting (pid $(<"$PID_FILE"))"
        wait_for_answer "$(<"$PID_FILE")" && return
    fi
    rm -f "$SOCK"
    podman info >/dev/null 2>"$STATE_DIR/info.err" \
        || give_up "podman info failed: $(tail -n 3 "$STATE_DIR/info.err")"
    # Its own session and none of this script's descriptors (fd 3 is the caller's stdout), so
    # `$(bash podman.sh)` returns and the service outlives this step of the CI job. It runs
    # from /: a service whose working directory (a checkout) was deleted starts no container
    # ("write child: broken pipe"), and a later checkout reuses the running service.
    (cd / && exec setsid podman system service --time=0 "unix://$SOCK" </dev/null >>"$LOG" 2>&1 3>&-) &
    local pid=$!
    echo "$pid" >"$PID_FILE"
    say "started podman system service (pid $pid, log $LOG)"
    if ! wait_for_answer "$pid"; then
        kill -0 "$pid" 2>/dev/null || give_up "podman service exited: $(tail -n 5 "$LOG")"
        kill "$pid"
        give_up "no answer on $SOCK within ${START_TIMEOUT_S} s; stopped the service"
    fi
}

main() {
    [[ $(uname -s) == Linux ]] || give_up "podman's service needs Linux, not $(uname -s)"
    install_missing
    mkdir -p "$STATE_DIR"
    write_config
    export CONTAINERS_CONF=$CONF
    start_service
    say "engine ready: $(podman --version)"
    printf 'export DOCKER_HOST=%q\n' "unix://$SOCK" >&3
    printf 'export CONTAINERS_CONF=%q\n' "$CONF" >&3
}

main "$@"
