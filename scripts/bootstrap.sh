#!/usr/bin/env bash
# Set up everything `make` needs on a fresh machine that has python3 and make:
# Debian packages (when missing and we may install them), a virtualenv in
# .venv, and the pinned dependencies from constraints.txt.
# Idempotent: a stamp file records the inputs it was built from.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${NESTOR_VENV:-.venv}
PY=${PYTHON:-python3}

log() { printf '[bootstrap] %s\n' "$*" >&2; }

need_apt=()
# Debian splits venv/ensurepip out of python3.
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
# bubblewrap sandboxes enclave programs (no network, read-only filesystem).
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
# The container dispatcher runs enclaves as OCI containers with podman and
# runc (crun does not run on every kernel), from a root filesystem that
# scripts/build-rootfs.sh makes with debootstrap.
command -v podman >/dev/null || need_apt+=(podman)
command -v runc >/dev/null || need_apt+=(runc)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    log "missing Debian packages: ${need_apt[*]} (run as root, or install them first)"
    [[ " ${need_apt[*]} " == *" python3-venv "* ]] && exit 1
  fi
fi

stamp="$VENV/.nestor-stamp"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/nestor" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
log "installing pinned dependencies (constraints.txt)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt \
  -e '.[dev,analyses,kubernetes,s3]'
echo "$want" > "$stamp"
