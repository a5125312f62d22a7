#!/usr/bin/env bash
# The newest pgBackRest from Debian sid (2.60 at the time of writing; Debian 12 ships 2.45, which
# has no block incremental), extracted — not installed — with its library closure into
# $PGBACULA_CACHE/pgbackrest-newest/root and patched (ELF interpreter + RPATH) to run from there,
# like the PostgreSQL 18 client tools of scripts/setup.sh. For the block-incremental benchmark
# (bench/e2e/block-incremental.ts); nothing outside that directory is touched.
#
# Prints the path of the runnable binary on stdout. Idempotent: a second run downloads nothing.
#
# Environment:
#   PGBACULA_CACHE=/var/cache/pgbacula     cache root (the private sid apt state of setup.sh is copied from there)
#   PGBACULA_PGBACKREST_SUITE=sid          Debian suite to take pgbackrest from
#   PGBACULA_PGBACKREST_REFRESH=1          download again (pick up a newer version)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$SCRIPT_DIR/lib/common.sh"
# shellcheck source-path=SCRIPTDIR
. "$SCRIPT_DIR/lib/apt-suite.sh"
export LOG_TAG=pgbackrest-newest

CACHE=${PGBACULA_CACHE:-/var/cache/pgbacula}
SUITE=${PGBACULA_PGBACKREST_SUITE:-sid}
HOME_DIR=$CACHE/pgbackrest-newest
APT_STATE=$HOME_DIR/apt
ROOT=$HOME_DIR/root
BIN=$ROOT/usr/bin/pgbackrest

need_root
mkdir -p "$HOME_DIR"
exec 9>"$HOME_DIR/.lock"
flock 9

runs() { [ -x "$BIN" ] && "$BIN" version 2>/dev/null | grep -q '^pgBackRest '; }

# Every library the binary loads must come from $ROOT (sid's libc with sid's loader).
libs_inside() {
	local out bad
	out=$(LD_TRACE_LOADED_OBJECTS=1 "$BIN" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
	bad=$(printf '%s\n' "$out" | awk -v root="$ROOT/" '/not found/ { print; next } /=>/ && $3 != "" && index($3, root) != 1 { print }')
	[ -z "$bad" ] || { printf '%s\n' "$bad" >&2; return 1; }
}

if [ "${PGBACULA_PGBACKREST_REFRESH:-0}" != 1 ] && [ -f "$HOME_DIR/.complete" ] && runs; then
	printf '%s\n' "$BIN"
	exit 0
fi

# A copy of setup.sh's private apt state (its lists), so that setup and this script never share one.
if [ ! -d "$APT_STATE/lists" ] && [ -d "$CACHE/apt/$SUITE/lists" ]; then
	mkdir -p "$APT_STATE"
	cp -a "$CACHE/apt/$SUITE/." "$APT_STATE/"
fi
apt_suite_init "$APT_STATE" "$SUITE" deb
max_age=1440
if [ "${PGBACULA_PGBACKREST_REFRESH:-0}" = 1 ]; then max_age=0; fi
apt_suite_update "$APT_STATE" "$max_age"
ver=$(apt_suite_policy_version "$APT_STATE" pgbackrest)
if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then die "pgbackrest not found in suite $SUITE"; fi
mapfile -t pkgs < <(apt_suite_lib_closure "$APT_STATE" pgbackrest)
log "downloading pgbackrest $ver from $SUITE with ${#pkgs[@]} packages: ${pkgs[*]}"
rm -rf "$HOME_DIR/debs"
apt_suite_download "$APT_STATE" "$HOME_DIR/debs" "${pkgs[@]}"

rm -rf "$ROOT"
mkdir -p "$ROOT"
for d in "$HOME_DIR"/debs/*.deb; do dpkg -x "$d" "$ROOT"; done
ld=$ROOT/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
[ -f "$ld" ] || die "no ld-linux-x86-64.so.2 in the extracted libc6"
[ -f "$BIN" ] || die "$BIN missing after extraction"
libdirs=$ROOT/usr/lib/x86_64-linux-gnu
[ -d "$ROOT/lib/x86_64-linux-gnu" ] && libdirs=$libdirs:$ROOT/lib/x86_64-linux-gnu
patchelf --set-interpreter "$ld" --force-rpath --set-rpath "$libdirs" "$BIN"
libs_inside || die "pgbackrest: libraries not all resolved from $ROOT (see above)"
runs || die "$BIN does not run"
# The servers and pgbackrest itself run as postgres.
chmod -R a+rX "$HOME_DIR/root"
chmod a+rx "$HOME_DIR"
"$BIN" version >"$HOME_DIR/VERSION"
touch "$HOME_DIR/.complete"
log "ready: $BIN ($(cat "$HOME_DIR/VERSION"))"
printf '%s\n' "$BIN"
