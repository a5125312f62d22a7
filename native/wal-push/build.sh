#!/usr/bin/env bash
# Build the native archive_command helper native/build/pgbacula-wal-push (wal_push.c).
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
TARGET=$OUT/pgbacula-wal-push
FACTS=$OUT/wal_push_facts.h
NEW_FACTS=$(mktemp "$OUT/.wal_push_facts.XXXXXX")
trap 'rm -f "$NEW_FACTS"' EXIT
node "$HERE/gen-facts.mjs" "$REPO" "$NEW_FACTS"
if [[ -f $FACTS ]] && cmp -s "$NEW_FACTS" "$FACTS"; then rm -f "$NEW_FACTS"; else mv -f "$NEW_FACTS" "$FACTS"; fi

SRCS=("$HERE/wal_push.c" "$HERE/sha256.c")
CFLAGS=(-std=c11 -O2 -Wall -Wextra -Wno-unused-parameter -D_FORTIFY_SOURCE=2 -fstack-protector-strong -I"$HERE" -I"$OUT")
LDFLAGS=(-Wl,-z,relro,-z,now)
if [[ $FORCE == 0 && -x $TARGET && $TARGET -nt $FACTS && $TARGET -nt ${BASH_SOURCE[0]} ]]; then
  fresh=1
  for s in "${SRCS[@]}" "$HERE/sha256.h"; do [[ $TARGET -nt $s ]] || fresh=0; done
  if [[ $fresh == 1 ]]; then say "up to date: $TARGET"; exit 0; fi
fi
TMP=$(mktemp "$OUT/.pgbacula-wal-push.XXXXXX")
trap 'rm -f "$NEW_FACTS" "$TMP"' EXIT
"$CC" "${CFLAGS[@]}" "${SRCS[@]}" -o "$TMP" "${LDFLAGS[@]}"
"$TMP" --print-facts >/dev/null || die "the built helper does not run"
chmod 0755 "$TMP"
mv -f "$TMP" "$TARGET"
say "built $TARGET"
