#!/usr/bin/env bash
# Build Bacula Community 15.0.3 (Debian's source package) once, outside the repository, for the
# FD shim (native/) and the end-to-end tests (test/e2e/).
#
#   scripts/bacula-build.sh            fetch + configure + make + make install + metaplugin objects
#   PGBACULA_CACHE=/x scripts/...      use /x/bacula instead of /var/cache/pgbacula/bacula
#   BACULA_SRC=/path scripts/...       use an existing *configured* 15.0.3 tree (no fetch/configure)
#   scripts/bacula-build.sh --print    only print the locations (KEY=VALUE lines), build nothing
#
# Idempotent: every step leaves a stamp; a second run only re-runs the (fast, make-driven)
# metaplugin object step and prints the locations.
#
# The source comes from Debian's deb-src entry for suite trixie, derived from this machine's
# /etc/apt/sources.list.d/*.sources (no host name is written here). apt runs with a private
# configuration under the cache; the system's apt configuration and lists are not touched.
set -euo pipefail

BACULA_VERSION=15.0.3
BACULA_DEB_VERSION=15.0.3-3
SRC_SUITE=${BACULA_SRC_SUITE:-trixie}
CACHE_ROOT=${PGBACULA_CACHE:-/var/cache/pgbacula}
BDIR=$CACHE_ROOT/bacula
PREFIX=${BACULA_PREFIX:-$BDIR/install}
JOBS=${BACULA_MAKE_JOBS:-2}
BUILD_DEPS=(libsqlite3-dev libssl-dev zlib1g-dev libacl1-dev sqlite3 dpkg-dev build-essential)
METAPLUGIN_OBJS=(pluginlib.lo ptcomm.lo metaplugin.lo metaplugin_attributes.lo
                 metaplugin_accurate.lo metaplugin_metadata.lo)

say() { printf 'bacula-build: %s\n' "$*"; }
# run a command with its output prefixed (keeps the exit status thanks to pipefail)
prefixed() { "$@" 2>&1 | sed -u 's/^/bacula-build:   /'; }
die() { printf 'bacula-build: ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }

PRINT_ONLY=0
for arg in "$@"; do
  case $arg in
    --print) PRINT_ONLY=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

# ---------------------------------------------------------------------------------------------
# where things are
# ---------------------------------------------------------------------------------------------
if [[ -n ${BACULA_SRC:-} ]]; then
  SRC=$(cd "$BACULA_SRC" && pwd) || die "BACULA_SRC=$BACULA_SRC is not a directory"
  [[ -f $SRC/autoconf/Make.common ]] || die "BACULA_SRC=$SRC is not a configured Bacula tree (no autoconf/Make.common)"
  # stamps for a foreign tree live in the cache, keyed by its path
  STAMPS=$BDIR/stamps/ext$(printf '%s' "$SRC" | tr -c 'A-Za-z0-9._-' '_')
  EXTERNAL=1
  PREFIX=$(sed -n 's/^prefix[[:space:]]*=[[:space:]]*//p' "$SRC/autoconf/Make.common" | head -n1)
else
  SRC=$BDIR/src/bacula-$BACULA_VERSION
  STAMPS=$BDIR/stamps
  EXTERNAL=0
fi

# Read a make variable from the configured tree (e.g. sbindir, plugindir).
make_var() {
  sed -n "s/^$1[[:space:]]*=[[:space:]]*//p" "$SRC/autoconf/Make.common" | head -n1
}

print_locations() {
  local sbindir bindir plugindir scriptdir sysconfdir workdir libdir
  if [[ $EXTERNAL == 1 || -f $STAMPS/configure ]]; then
    sbindir=$(make_var sbindir); bindir=$(make_var bindir); plugindir=$(make_var plugindir)
    scriptdir=$(make_var scriptdir); sysconfdir=$(make_var sysconfdir)
    libdir=$(make_var libdir)
    workdir=$(sed -n 's/^[[:space:]]*Working directory:[[:space:]]*//p' "$SRC/config.out" 2>/dev/null | head -n1)
    # Make.common may hold ${prefix}-style references; resolve the common ones
    local p; p=$(make_var prefix); local ep; ep=$(make_var exec_prefix); ep=${ep//\$\{prefix\}/$p}
    resolve() { local v=$1; v=${v//\$\{exec_prefix\}/$ep}; v=${v//\$\{prefix\}/$p}; printf '%s' "$v"; }
    sbindir=$(resolve "$sbindir"); bindir=$(resolve "$bindir"); plugindir=$(resolve "$plugindir")
    scriptdir=$(resolve "$scriptdir"); sysconfdir=$(resolve "$sysconfdir"); libdir=$(resolve "$libdir")
  else
    sbindir=$PREFIX/sbin; bindir=$PREFIX/bin; plugindir=$PREFIX/plugins
    scriptdir=$PREFIX/scripts; sysconfdir=$PREFIX/etc; workdir=$PREFIX/working; libdir=$PREFIX/lib
  fi
  echo "BACULA_SRC=$SRC"
  echo "BACULA_PREFIX=$PREFIX"
  echo "BACULA_SBINDIR=$sbindir"
  echo "BACULA_DIR=$sbindir/bacula-dir"
  echo "BACULA_SD=$sbindir/bacula-sd"
  echo "BACULA_FD=$sbindir/bacula-fd"
  echo "BACULA_BCONSOLE=$sbindir/bconsole"
  echo "BACULA_LIBDIR=$libdir"
  echo "BACULA_PLUGINDIR=$plugindir"
  echo "BACULA_SCRIPTDIR=$scriptdir"
  echo "BACULA_SYSCONFDIR=$sysconfdir"
  echo "BACULA_WORKDIR=$workdir"
  echo "BACULA_PLUGINLIB=$SRC/src/plugins/fd/pluginlib"
}

if [[ $PRINT_ONLY == 1 ]]; then print_locations; exit 0; fi

T0=$(now)
mkdir -p "$STAMPS"
# build logs: next to the cached tree, or next to the stamps of a foreign tree
if [[ $EXTERNAL == 1 ]]; then LOGDIR=$STAMPS; else LOGDIR=$BDIR; fi

# ---------------------------------------------------------------------------------------------
# 1. build dependencies (Debian packages)
# ---------------------------------------------------------------------------------------------
missing=()
for p in "${BUILD_DEPS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  say "installing build dependencies: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! prefixed apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    say "apt-get install failed; refreshing the package lists once and retrying"
    prefixed apt-get update -q
    prefixed apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
else
  say "build dependencies present"
fi

# ---------------------------------------------------------------------------------------------
# 2. fetch Debian's source package (private apt configuration)
# ---------------------------------------------------------------------------------------------
fetch_source() {
  local aptdir=$BDIR/apt
  local parts=$aptdir/sources.list.d lists=$aptdir/lists cache=$aptdir/cache
  rm -rf "$aptdir"
  mkdir -p "$parts" "$lists/partial" "$cache/archives/partial"
  # Derive one deb-src stanza per stanza of the system's deb822 sources, keeping only stanzas
  # whose suites are plain releases (no -security/-updates/-backports: their trixie
  # counterparts have other names), with Types/Suites rewritten.
  local src n=0
  for src in /etc/apt/sources.list.d/*.sources; do
    [[ -f $src ]] || continue
    awk -v suite="$SRC_SUITE" '
      BEGIN { RS=""; ORS="\n\n" }
      {
        keep = 0; out = ""
        n = split($0, lines, "\n")
        for (i = 1; i <= n; i++) {
          l = lines[i]
          if (l ~ /^Suites:/) {
            m = split(substr(l, 8), s, /[ \t]+/)
            for (j = 1; j <= m; j++) if (s[j] != "" && s[j] !~ /-/) keep = 1
            l = "Suites: " suite
          } else if (l ~ /^Types:/) {
            l = "Types: deb-src"
          } else if (l ~ /^#/) {
            continue
          }
          out = out l "\n"
        }
        if (keep) printf "%s\n", out
      }' "$src" > "$parts/pgbacula-src-$n.sources"
    [[ -s $parts/pgbacula-src-$n.sources ]] || rm -f "$parts/pgbacula-src-$n.sources"
    n=$((n + 1))
  done
  compgen -G "$parts/*.sources" >/dev/null \
    || die "could not derive a deb-src entry from /etc/apt/sources.list.d/*.sources"
  local opts=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$parts"
              -o Dir::State::Lists="$lists" -o Dir::Cache="$cache"
              -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
              -o APT::Sandbox::User=root -o Acquire::Languages=none)
  say "apt-get update (private lists, deb-src $SRC_SUITE)"
  prefixed apt-get "${opts[@]}" update -q
  mkdir -p "$BDIR/src"
  say "apt-get source bacula=$BACULA_DEB_VERSION"
  (cd "$BDIR/src" && prefixed apt-get "${opts[@]}" source -q "bacula=$BACULA_DEB_VERSION")
  [[ -x $SRC/configure ]] || die "source unpacked but $SRC/configure not found"
}

if [[ $EXTERNAL == 0 ]]; then
  if [[ -f $STAMPS/fetch && -x $SRC/configure ]]; then
    say "source present: $SRC"
  else
    t=$(now); fetch_source; touch "$STAMPS/fetch"; say "fetched in $(( $(now) - t )) s"
  fi
fi

# ---------------------------------------------------------------------------------------------
# 3. configure (everything under the cache prefix)
# ---------------------------------------------------------------------------------------------
CONFIGURE_ARGS=(
  --prefix="$PREFIX"
  --exec-prefix="$PREFIX"
  --sbindir="$PREFIX/sbin"
  --bindir="$PREFIX/bin"
  --libdir="$PREFIX/lib"
  --sysconfdir="$PREFIX/etc"
  --mandir="$PREFIX/share/man"
  --docdir="$PREFIX/share/doc"
  --with-working-dir="$PREFIX/working"
  --with-pid-dir="$PREFIX/run"
  --with-subsys-dir="$PREFIX/run/subsys"
  --with-plugindir="$PREFIX/plugins"
  --with-scriptdir="$PREFIX/scripts"
  --with-logdir="$PREFIX/log"
  --with-archivedir="$PREFIX/archive"
  --with-bsrdir="$PREFIX/bsr"
  --with-sqlite3
  --disable-conio
  --enable-smartalloc
)

if [[ $EXTERNAL == 0 ]]; then
  want=$(printf '%s\n' "${CONFIGURE_ARGS[@]}")
  if [[ -f $STAMPS/configure && -f $SRC/autoconf/Make.common && "$(cat "$STAMPS/configure")" == "$want" ]]; then
    say "already configured"
  else
    rm -f "$STAMPS/configure" "$STAMPS/install"
    say "configure (log: $LOGDIR/configure.log)"
    t=$(now)
    if ! (cd "$SRC" && ./configure "${CONFIGURE_ARGS[@]}") >"$LOGDIR/configure.log" 2>&1; then
      tail -n 30 "$LOGDIR/configure.log" | sed 's/^/bacula-build:   /'
      die "configure failed (see $LOGDIR/configure.log)"
    fi
    printf '%s' "$want" >"$STAMPS/configure"
    say "configured in $(( $(now) - t )) s"
  fi
fi

# ---------------------------------------------------------------------------------------------
# 4. make && make install (once)
# ---------------------------------------------------------------------------------------------
if [[ -f $STAMPS/install ]]; then
  say "already built and installed"
else
  say "make -j$JOBS (log: $LOGDIR/make.log)"
  t=$(now)
  if ! make -C "$SRC" -j"$JOBS" >"$LOGDIR/make.log" 2>&1; then
    tail -n 30 "$LOGDIR/make.log" | sed 's/^/bacula-build:   /'
    die "make failed (see $LOGDIR/make.log)"
  fi
  say "built in $(( $(now) - t )) s; make install (log: $LOGDIR/install.log)"
  t=$(now)
  if ! make -C "$SRC" install >"$LOGDIR/install.log" 2>&1; then
    tail -n 30 "$LOGDIR/install.log" | sed 's/^/bacula-build:   /'
    die "make install failed (see $LOGDIR/install.log)"
  fi
  touch "$STAMPS/install"
  say "installed in $(( $(now) - t )) s"
fi

# ---------------------------------------------------------------------------------------------
# 5. metaplugin library objects (make decides whether anything is out of date)
# ---------------------------------------------------------------------------------------------
if ! make -C "$SRC/src/plugins/fd/pluginlib" "${METAPLUGIN_OBJS[@]}" >"$LOGDIR/pluginlib.log" 2>&1; then
  tail -n 30 "$LOGDIR/pluginlib.log" | sed 's/^/bacula-build:   /'
  die "building the metaplugin objects failed (see $LOGDIR/pluginlib.log)"
fi
for o in "${METAPLUGIN_OBJS[@]}"; do
  [[ -f $SRC/src/plugins/fd/pluginlib/$o ]] || die "missing $o after make"
done
say "metaplugin objects ready: ${METAPLUGIN_OBJS[*]}"

# ---------------------------------------------------------------------------------------------
# 6. where everything is
# ---------------------------------------------------------------------------------------------
print_locations | sed 's/^/bacula-build: /'
for b in bacula-dir bacula-sd bacula-fd bconsole; do
  f=$(print_locations | sed -n "s/^BACULA_SBINDIR=//p")/$b
  [[ -x $f ]] || say "WARNING: $f not found or not executable"
done
say "done in $(( $(now) - T0 )) s"
