#!/usr/bin/env bash
# Build the hash/compress kernels addon (kernels.c) into native/build/pgbacula_kernels.node.
#
#   native/kernels/build.sh [--force] [--out DIR] [--quiet]
#
#   --force   rebuild even when the addon is newer than its sources
#   --out     output directory (default native/build, gitignored)
#   --quiet   print nothing when the addon is already up to date
#
# Needs (Debian 12): build-essential (gcc), liblz4-dev, libxxhash-dev, and Node-API headers
# (node_api.h): those of the installed node (/usr/include/node from the nodesource `nodejs`
# package, or Debian's libnode-dev), or env NODE_API_INCLUDE=DIR. Node-API is ABI-stable, so the
# addon built once works with every Node >= 12.22 on the machine; at run time it needs liblz4-1
# and libxxhash0 only. Plain gcc, no node-gyp: one C file, two system libraries.
#
# Idempotent: does nothing when the addon is newer than kernels.c and this script and was built
# with the same command. The addon is written to a temporary name and renamed, so a process that
# loads it meanwhile never sees half a file.
set -euo pipefail

say() { [[ $QUIET == 1 ]] || printf 'kernels-build: %s\n' "$*"; }
die() { printf 'kernels-build: ERROR: %s\n' "$*" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(cd "$HERE/.." && pwd)/build
FORCE=0
QUIET=0
while (($#)); do
  case $1 in
    --force) FORCE=1; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --quiet) QUIET=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

SRC=$HERE/kernels.c
# page_verify.c: page checksums on native threads (verify --pgdata); walk_dir.c: one directory listed
SRCS=("$HERE/kernels.c" "$HERE/page_verify.c" "$HERE/walk_dir.c")
TARGET=$OUT/pgbacula_kernels.node
STAMP=$OUT/pgbacula_kernels.cmd
CC=${CC:-cc}

# ---- Node-API headers -------------------------------------------------------------------------
find_node_api_include() {
  local candidates=()
  [[ -n ${NODE_API_INCLUDE:-} ]] && candidates+=("$NODE_API_INCLUDE")
  if command -v node >/dev/null 2>&1; then
    local prefix version
    prefix=$(node -p 'require("node:path").resolve(process.execPath, "..", "..")' 2>/dev/null || true)
    version=$(node -p 'process.versions.node' 2>/dev/null || true)
    [[ -n $prefix ]] && candidates+=("$prefix/include/node")
    [[ -n $version ]] && candidates+=("${HOME:-/root}/.cache/node-gyp/$version/include/node")
  fi
  candidates+=(/usr/include/node /usr/local/include/node "$HERE/../../node_modules/node-api-headers/include")
  local dir
  for dir in "${candidates[@]}"; do
    if [[ -f $dir/node_api.h ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

NODE_INC=$(find_node_api_include) \
  || die "node_api.h not found (looked next to node, in ~/.cache/node-gyp and /usr/include/node); install Debian's libnode-dev or set NODE_API_INCLUDE"

CFLAGS=(-std=c11 -O3 -fPIC -fvisibility=hidden -Wall -Wextra -Wno-unused-parameter -I"$NODE_INC")
LDFLAGS=(-shared -Wl,-z,relro,-z,now -Wl,--as-needed)
LIBS=(-llz4 -lxxhash -lpthread)
COMMAND="$CC ${CFLAGS[*]} ${SRCS[*]} -o $TARGET ${LDFLAGS[*]} ${LIBS[*]}"

if [[ $FORCE == 0 && -f $TARGET && -f $STAMP && $TARGET -nt $SRC && $TARGET -nt $HERE/page_verify.c && $TARGET -nt $HERE/page_verify.h && $TARGET -nt $HERE/walk_dir.c && $TARGET -nt $HERE/walk_dir.h && $TARGET -nt ${BASH_SOURCE[0]} ]] \
  && [[ $(cat "$STAMP") == "$COMMAND" ]]; then
  say "up to date: $TARGET"
  exit 0
fi

command -v "$CC" >/dev/null 2>&1 || die "no C compiler ($CC); apt-get install build-essential"
for header in lz4.h xxhash.h; do
  printf '#include <%s>\n' "$header" | "$CC" -E -x c - >/dev/null 2>&1 \
    || die "$header not found; apt-get install liblz4-dev libxxhash-dev"
done

mkdir -p "$OUT"
TMP=$(mktemp "$OUT/.pgbacula_kernels.XXXXXX")
trap 'rm -f "$TMP"' EXIT
"$CC" "${CFLAGS[@]}" "${SRCS[@]}" -o "$TMP" "${LDFLAGS[@]}" "${LIBS[@]}"
# Prove it loads (all symbols resolve, the module registers) before it replaces a working one.
node -e 'const m = { exports: {} }; process.dlopen(m, process.argv[1]); if (m.exports.abiVersion !== 1) throw new Error("abiVersion " + m.exports.abiVersion)' "$TMP" \
  || die "the built addon does not load in node"
chmod 0644 "$TMP"
mv -f "$TMP" "$TARGET"
trap - EXIT
printf '%s' "$COMMAND" >"$STAMP"
say "built $TARGET (node_api.h from $NODE_INC)"
