#!/usr/bin/env bash
# Build the native archive_command helper native/build/pgbacula-wal-push (wal_push.c) and
# restore_command's helper native/build/pgbacula-wal-fetch (wal_fetch.c).
#
#   native/wal-push/build.sh [--force] [--out DIR] [--quiet]
#
# Runs after tsc (npm run build): the per-major facts and the archive's constants are generated
# from the compiled TypeScript in dist/ (gen-facts.mjs → wal_push_facts.h), never kept by hand.
# Needs gcc only (Debian 12 build-essential); the helper links against libc alone.
# Idempotent: does nothing when the helper is newer than its sources and the generated header is
# unchanged. Written to a temporary name and renamed, so an archiver never runs half a file.
set -euo pipefail

say() { [[ $QUIET == 1 ]] || printf 'wal-push-build: %s\n' "$*"; }
die() { printf 'wal-push-build: ERROR: %s\n' "$*" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$REPO/native/build
FORCE=0
QUIET=0
while (($#)); do
  case $1 in
    --force) FORCE=1; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --quiet) QUIET=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || die "no C compiler ($CC); apt-get install build-essential"
[[ -f $REPO/dist/src/pg/versions.js ]] || die "dist/src/pg/versions.js missing: run tsc first (npm run build does)"
mkdir -p "$OUT"
FACTS=$OUT/wal_push_facts.h
NEW_FACTS=$(mktemp "$OUT/.wal_push_facts.XXXXXX")
trap 'rm -f "$NEW_FACTS"' EXIT
node "$HERE/gen-facts.mjs" "$REPO" "$NEW_FACTS"
if [[ -f $FACTS ]] && cmp -s "$NEW_FACTS" "$FACTS"; then rm -f "$NEW_FACTS"; else mv -f "$NEW_FACTS" "$FACTS"; fi

CFLAGS=(-std=c11 -O2 -Wall -Wextra -Wno-unused-parameter -D_FORTIFY_SOURCE=2 -fstack-protector-strong -I"$HERE" -I"$OUT")
LDFLAGS=(-Wl,-z,relro,-z,now)

# build NAME CHECK-ARG SOURCES...: one helper (run once with CHECK-ARG to see that it runs), unless it is newer than its sources, the generated
# header and this script; written to a temporary name and renamed.
build() {
  local name=$1 check=$2
  shift 2
  local target=$OUT/$name
  if [[ $FORCE == 0 && -x $target && $target -nt $FACTS && $target -nt ${BASH_SOURCE[0]} ]]; then
    local fresh=1 s
    for s in "$@" "$HERE/sha256.h"; do [[ $target -nt $s ]] || fresh=0; done
    if [[ $fresh == 1 ]]; then say "up to date: $target"; return 0; fi
  fi
  TMP=$(mktemp "$OUT/.$name.XXXXXX")
  "$CC" "${CFLAGS[@]}" "$@" -o "$TMP" "${LDFLAGS[@]}"
  "$TMP" "$check" >/dev/null || die "the built $name does not run"
  chmod 0755 "$TMP"
  mv -f "$TMP" "$target"
  TMP=
  say "built $target"
}
TMP=
trap 'rm -f "$NEW_FACTS" ${TMP:+"$TMP"}' EXIT
build pgbacula-wal-push --print-facts "$HERE/wal_push.c" "$HERE/sha256.c"
# restore_command's quick "not archived" answer (wal_fetch.c); the rest goes to pgbacula wal-fetch.
# Its check: with /bin/true as the command to hand over to, it runs /bin/true.
build pgbacula-wal-fetch /bin/true "$HERE/wal_fetch.c"
