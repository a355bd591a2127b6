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
trap 'status=$?; if ((status != 0)); then say "no engine (exit $status); docker tests will skip"; fi; exit 0' EXIT
give_up() {
    say "$*"
    exit 1
}

answers() {
    [[ -S $SOCK ]] && curl --silent --fail --max-time 2 --unix-socket "$SOCK" http://d/_ping >/dev/null
}

install_podman() {
    if command -v podman >/dev/null && command -v runc >/dev/null; then
        return
    fi
    ((EUID == 0)) || give_up "podman or runc is missing and installing them needs root"
    command -v apt-get >/dev/null || give_up "podman or runc is missing and there is no apt-get"
    if ! apt-cache policy podman 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        say "no podman candidate in the package lists: apt-get update"
        apt-get update -q || give_up "apt-get update failed"
    fi
    say "installing podman and runc"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc \
        || give_up "apt-get install podman runc failed"
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

service_alive() {
    [[ -f $PID_FILE ]] && kill -0 "$(<"$PID_FILE")" 2>/dev/null
}

start_service() {
    if answers; then
        say "podman service already answers on $SOCK"
        return
    fi
    if ! service_alive; then
        rm -f "$SOCK"
        podman info >/dev/null 2>"$STATE_DIR/info.err" \
            || give_up "podman info failed: $(tail -n 3 "$STATE_DIR/info.err")"
        # Its own session, no tie to the caller's stdout, so `$(bash podman.sh)` returns
        # and the service outlives this step of the CI job.
        setsid podman system service --time=0 "unix://$SOCK" </dev/null >>"$LOG" 2>&1 &
        echo $! >"$PID_FILE"
        say "started podman system service (pid $!, log $LOG)"
    fi
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until answers; do
        service_alive || give_up "podman service exited: $(tail -n 5 "$LOG")"
        ((SECONDS < deadline)) || give_up "no answer on $SOCK within ${START_TIMEOUT_S} s"
        sleep 0.2
    done
}

main() {
    [[ $(uname -s) == Linux ]] || give_up "podman's service needs Linux, not $(uname -s)"
    command -v curl >/dev/null || give_up "curl is needed to probe the podman socket"
    install_podman
    mkdir -p "$STATE_DIR"
    write_config
    export CONTAINERS_CONF=$CONF
    start_service
    say "engine ready: $(podman --version)"
    printf 'export DOCKER_HOST=%q\n' "unix://$SOCK" >&3
    printf 'export CONTAINERS_CONF=%q\n' "$CONF" >&3
}

main "$@"
