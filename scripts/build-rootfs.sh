#!/usr/bin/env bash
# Build (or reuse) the root filesystem that enclave containers run from, and
# print its path on stdout.
#
#   scripts/build-rootfs.sh            build if needed, print the rootfs path
#   scripts/build-rootfs.sh --key      print the cache key only (no build)
#   scripts/build-rootfs.sh --force    rebuild even when cached
#
# Layout (the same as deploy/images/enclave.Containerfile): Debian bookworm
# (debootstrap minbase) + deploy/container/debian-packages.txt, security and
# point-release updates applied, a virtualenv at /opt/nestor with the project
# wheel and its dependencies pinned by constraints.txt (not the `analyses`
# extra: torch alone is ~700 MB), user `nestor` (uid/gid 10001), entrypoint
# /opt/nestor/bin/nestor. /etc/nestor-rootfs/ records what went in.
#
# Cached under ${NESTOR_ROOTFS_CACHE:-${XDG_CACHE_HOME:-~/.cache}/nestor/rootfs}:
#   base-<key>/  debootstrap + Debian packages + user (keyed by this script,
#                deploy/container/ and the mirror): the slow part, rarely rebuilt
#   <key>/       base + the project (keyed by the above plus constraints.txt,
#                pyproject.toml, README.md and every file under src/)
# Builds are atomic (built aside, then renamed) and serialised by a lock, so
# concurrent test runs share one build. The three newest project rootfs are kept.
#
# Needs root (debootstrap, chroot), debootstrap, and network access to the
# Debian mirror and the Python package index configured for pip on this
# machine. Wheels are fetched on this machine (with its pip configuration) and
# installed inside the chroot with --no-index, so the chroot itself never
# talks to a package index. See docs/dispatcher-container.md.
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "$0")/.." && pwd)
SCRIPT="$REPO/scripts/build-rootfs.sh"
SUITE=bookworm
NESTOR_UID=10001
CACHE=${NESTOR_ROOTFS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/rootfs}
# Builds the project wheel and downloads dependency wheels: must be the same
# Python minor version as the rootfs's python3 (3.11 on bookworm).
PY=${NESTOR_BUILD_PYTHON:-$REPO/.venv/bin/python}
KEEP=3

log() { printf '[build-rootfs] %s\n' "$*" >&2; }
die() { printf '[build-rootfs] error: %s\n' "$*" >&2; exit 1; }

# The Debian mirror this machine's apt uses (deb822 or one-line format), unless
# NESTOR_DEBIAN_MIRROR names one (e.g. a snapshot.debian.org URL, for a rebuild
# from a fixed archive state).
detect_mirror() {
  local f uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ && / '"$SUITE"'( |$)/ && u {print u; exit}' "$f")
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $3=="'"$SUITE"'" {print $2; exit}' /etc/apt/sources.list)
  fi
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${NESTOR_DEBIAN_MIRROR:-$(detect_mirror)}
MIRROR=${MIRROR%/}
SECURITY_MIRROR=${NESTOR_DEBIAN_SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}

mapfile -t PACKAGES < <(grep -v '^\s*\(#\|$\)' "$REPO/deploy/container/debian-packages.txt")

hash_of() { sha256sum | cut -c1-16; }

# What goes into the wheel: the source tree without build by-products.
source_files() {
  find src -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -name '*.pyc' -print0
}

base_key() {
  {
    sha256sum "$SCRIPT" "$REPO"/deploy/container/* | cut -d' ' -f1
    printf '%s\n' "$SUITE" "$MIRROR" "$SECURITY_MIRROR" "$(uname -m)"
  } | hash_of
}

project_key() {
  {
    base_key
    (cd "$REPO" && sha256sum constraints.txt pyproject.toml README.md)
    (cd "$REPO" && source_files | LC_ALL=C sort -z | xargs -0 sha256sum)
  } | hash_of
}

FORCE=0
case "${1:-}" in
  --key) project_key; exit 0 ;;
  --force) FORCE=1 ;;
  "") ;;
  *) die "usage: $0 [--key|--force]" ;;
esac

[ "$(id -u)" = 0 ] || die "debootstrap and chroot need root; run as root (or point \
NESTOR_ROOTFS at a root filesystem built elsewhere)"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap \
(scripts/bootstrap.sh does it)"
[ -x "$PY" ] || die "$PY not found: run scripts/bootstrap.sh first, or set NESTOR_BUILD_PYTHON"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

BASE_KEY=$(base_key)
KEY=$(project_key)
BASE="$CACHE/base-$BASE_KEY"
OUT="$CACHE/$KEY"
if [ "$FORCE" = 0 ] && [ -f "$OUT/etc/nestor-rootfs/manifest.txt" ]; then
  touch "$OUT"  # most recently used: spared by the pruning below
  printf '%s\n' "$OUT"
  exit 0
fi

WORK=$(mktemp -d "$CACHE/.build-XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# Runs a command chrooted into $1 with /proc and /dev mounted in a private
# mount namespace: the mounts vanish with the command, whatever happens.
in_root() {
  local root=$1
  shift
  unshare --mount --propagation private -- sh -euc '
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
      LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
  ' in_root "$root" "$@"
}

build_base() {
  local root="$WORK/base" started=$SECONDS
  log "debootstrap $SUITE (minbase + ${PACKAGES[*]}) from $MIRROR"
  debootstrap --variant=minbase --components=main \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$SUITE" "$root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
  log "applying $SUITE-updates and $SUITE-security"
  in_root "$root" apt-get -qq update >&2
  in_root "$root" apt-get -qq -y -o Dpkg::Options::=--force-confold upgrade >&2
  mkdir -p "$root/etc/nestor-rootfs"
  # The archive state the packages came from: the Release files' dates.
  for f in "$root"/var/lib/apt/lists/*Release; do
    printf '%s %s\n' "$(basename "$f")" "$(grep -m1 '^Date:' "$f" | cut -d' ' -f2-)"
  done >"$root/etc/nestor-rootfs/debian-release-dates.txt"
  in_root "$root" apt-get -qq clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log \
    "$root"/var/log/apt/* "$root"/var/cache/debconf/*-old "$root"/etc/resolv.conf
  in_root "$root" groupadd --gid "$NESTOR_UID" nestor
  in_root "$root" useradd --uid "$NESTOR_UID" --gid "$NESTOR_UID" --no-create-home \
    --home-dir /nonexistent --shell /usr/sbin/nologin nestor
  # Mount points the container dispatcher binds over: they exist in the image,
  # so a read-only root filesystem needs no new directories at run time.
  mkdir -p "$root/etc/nestor/config" "$root/var/lib/nestor/programs"
  touch "$root/etc/nestor/contract.json"
  dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package}=${Version}\n' |
    LC_ALL=C sort >"$root/etc/nestor-rootfs/debian-packages.txt"
  printf 'suite=%s\nmirror=%s\nsecurity_mirror=%s\nbase_key=%s\n' \
    "$SUITE" "$MIRROR" "$SECURITY_MIRROR" "$BASE_KEY" >"$root/etc/nestor-rootfs/base.txt"
  mv "$root" "$BASE"
  log "base ready in $((SECONDS - started)) s: $BASE"
}

build_project() {
  local root="$WORK/rootfs" wheels="$WORK/wheels" started=$SECONDS
  log "building the project wheel and fetching its dependencies"
  mkdir -p "$wheels" "$WORK/source"
  # A clean copy: building in the work tree would leave build/ and
  # *.egg-info behind there, and pick up whatever by-products it has.
  (cd "$REPO" && cp pyproject.toml README.md "$WORK/source/" &&
    source_files | xargs -0 cp --parents -t "$WORK/source")
  "$PY" -m pip wheel -q --no-deps -w "$wheels" "$WORK/source" >&2
  local wheel
  wheel=$(ls "$wheels"/nestor-*.whl)
  "$PY" -m pip download -q --only-binary=:all: -c "$REPO/constraints.txt" -d "$wheels" \
    "$wheel" >&2
  cp --reflink=auto -a "$BASE" "$root"
  cp -a "$wheels" "$root/tmp/wheels"
  cp "$REPO/constraints.txt" "$root/tmp/wheels/constraints.txt"
  log "installing into /opt/nestor (offline, from the fetched wheels)"
  in_root "$root" /usr/bin/python3 -m venv /opt/nestor
  in_root "$root" /opt/nestor/bin/python -m pip install -q --no-index --no-cache-dir \
    --disable-pip-version-check --find-links /tmp/wheels -c /tmp/wheels/constraints.txt \
    "/tmp/wheels/$(basename "$wheel")" >&2
  rm -rf "$root/tmp/wheels"
  ln -sf /opt/nestor/bin/nestor "$root/usr/local/bin/nestor"
  {
    cat "$root/etc/nestor-rootfs/base.txt"
    printf 'key=%s\nbuilt=%s\n' "$KEY" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'python=%s\n' "$(in_root "$root" /opt/nestor/bin/python -c \
      'import platform; print(platform.python_version())')"
    printf 'simulated_enclave_measurement=%s\n' "$(in_root "$root" /opt/nestor/bin/python -c \
      'from nestor.simtee.measure import measure_enclave; print(measure_enclave())')"
    printf 'entrypoint=/opt/nestor/bin/nestor\nuser=%s\n' "$NESTOR_UID"
  } >"$root/etc/nestor-rootfs/manifest.tmp"
  in_root "$root" /opt/nestor/bin/python -m pip freeze --all --disable-pip-version-check \
    >"$root/etc/nestor-rootfs/python-packages.txt"
  mv "$root/etc/nestor-rootfs/manifest.tmp" "$root/etc/nestor-rootfs/manifest.txt"
  rm -rf "$OUT"
  mv "$root" "$OUT"
  touch "$OUT"  # cp -a kept the base's date; pruning goes by this one
  log "rootfs ready in $((SECONDS - started)) s: $OUT"
}

if [ "$FORCE" = 1 ] || [ ! -f "$BASE/etc/nestor-rootfs/base.txt" ]; then
  rm -rf "$BASE"
  build_base
fi
build_project

# Keep the newest $KEEP project rootfs and the bases they use.
project_dirs() { ls -1dt "$CACHE"/*/ | grep -E '/[0-9a-f]{16}/$' || true; }
mapfile -t old < <(project_dirs | tail -n +$((KEEP + 1)))
for d in "${old[@]}"; do rm -rf "$d"; done
mapfile -t kept < <(project_dirs)
for b in "$CACHE"/base-*/; do
  k=$(basename "$b")
  k=${k#base-}
  used=0
  for d in "${kept[@]}"; do
    grep -qs "^base_key=$k\$" "$d/etc/nestor-rootfs/base.txt" && used=1
  done
  [ "$used" = 1 ] || rm -rf "$b"
done
printf '%s\n' "$OUT"
