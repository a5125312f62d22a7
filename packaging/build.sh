#!/usr/bin/env bash
# Build the release artifacts of pgbacula from the built checkout (npm run build first; `npm run
# package` does both): a self-contained tarball, a .deb and an .rpm of the same staged tree,
# SHA256SUMS and its detached GPG signature, package signatures. docs/packaging.md explains
# the layout and every choice.
#
#   packaging/build.sh [--out DIR] [--formats tar,deb,rpm] [--reuse-stage]
#
#   --out DIR        artifacts and the work tree (default: dist-pkg/ of the checkout, gitignored)
#   --formats LIST   which artifacts (default tar,deb,rpm)
#   --reuse-stage    package the tree staged by a previous run as it is (e.g. the same files
#                    under another PGBACULA_PKG_RELEASE)
#
# Environment:
#   PGBACULA_SIGN_KEY        GPG key (fingerprint, id or user id) that signs SHA256SUMS, the rpm
#                            and the deb; GNUPGHOME selects the keyring. Unset: nothing is signed
#                            (said on stderr), unless PGBACULA_REQUIRE_SIGNATURE=1 (then an error).
#   PGBACULA_PKG_VERSION     package version (default: package.json's)
#   PGBACULA_PKG_RELEASE     package release (default 1)
#   PGBACULA_GLIBC_MAX       refuse ELFs needing a newer glibc than this (default 2.34)
#   PGBACULA_CACHE           download cache (default /var/cache/pgbacula): node-runtime/
#   BACULA_SRC               configured Bacula 15.0.x tree for the shim (default: the tree of
#                            scripts/bacula-build.sh)
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source-path=SCRIPTDIR
. "$REPO/scripts/lib/common.sh"
export LOG_TAG=package

OUT=$REPO/dist-pkg
FORMATS=tar,deb,rpm
REUSE=0
while (($#)); do
  case $1 in
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --formats) FORMATS=${2:?--formats needs a list}; shift 2 ;;
    --formats=*) FORMATS=${1#*=}; shift ;;
    --reuse-stage) REUSE=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done
want() { [[ ,$FORMATS, == *,$1,* ]]; }

# shellcheck source=node-runtime.env
. "$HERE/node-runtime.env"
CACHE=${PGBACULA_CACHE:-/var/cache/pgbacula}
VERSION=${PGBACULA_PKG_VERSION:-$(node -p 'require(process.argv[1]).version' "$REPO/package.json")}
RELEASE=${PGBACULA_PKG_RELEASE:-1}
GLIBC_MAX=${PGBACULA_GLIBC_MAX:-2.34}
SIGN_KEY=${PGBACULA_SIGN_KEY:-}
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+([+~][A-Za-z0-9.]+)?$ ]] || die "unusable package version: $VERSION"
[[ $RELEASE =~ ^[0-9]+$ ]] || die "PGBACULA_PKG_RELEASE must be a number: $RELEASE"
if [[ -z $SIGN_KEY && ${PGBACULA_REQUIRE_SIGNATURE:-0} == 1 ]]; then
  die "PGBACULA_REQUIRE_SIGNATURE=1 but PGBACULA_SIGN_KEY is not set"
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$OUT/work
STAGE=$WORK/stage            # the installed file system: opt/, etc/, usr/
APP=$STAGE/opt/pgbacula
T0=$(now_s)

for tool in objdump patchelf gpg; do command -v $tool >/dev/null || die "$tool not found: run scripts/setup.sh"; done
if want deb; then command -v dpkg-deb >/dev/null || die "dpkg-deb not found: run scripts/setup.sh"; fi
if want rpm; then command -v rpmbuild >/dev/null || die "rpmbuild not found (Debian package rpm): run scripts/setup.sh"; fi

# ---------------------------------------------------------------------------------------------
# 1. the staged tree
# ---------------------------------------------------------------------------------------------
node_runtime() {
  local dir=$CACHE/node-runtime tgz
  tgz=$dir/$NODE_RUNTIME_PACKAGE-$NODE_RUNTIME_VERSION.tgz
  mkdir -p "$dir"
  if [[ ! -f $tgz ]]; then
    log "downloading $NODE_RUNTIME_PACKAGE@$NODE_RUNTIME_VERSION from the npm registry"
    (cd "$dir" && npm pack "$NODE_RUNTIME_PACKAGE@$NODE_RUNTIME_VERSION" --silent >/dev/null) || die "npm pack $NODE_RUNTIME_PACKAGE@$NODE_RUNTIME_VERSION failed"
  fi
  local got
  got=sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tgz")
  if [[ $got != "$NODE_RUNTIME_INTEGRITY" ]]; then
    rm -f "$tgz"
    die "$tgz does not match the pinned integrity of packaging/node-runtime.env (got $got); removed it"
  fi
  printf '%s\n' "$tgz"
}

stage() {
  [[ -f $REPO/dist/src/cli/main.js && -f $REPO/dist/workers/index.js ]] || die "dist/ is missing: run npm run build (npm run package does)"
  [[ -f $REPO/native/build/pgbacula_kernels.node ]] || die "native/build/pgbacula_kernels.node is missing: run npm run build"
  ls "$REPO"/dist/wasm/*.wasm >/dev/null 2>&1 || die "dist/wasm/*.wasm missing: run npm run build"
  rm -rf "$WORK"
  mkdir -p "$APP"/{bin,libexec,lib/bacula,node/bin,native/build/lib,share/pgbacula,share/licenses} \
           "$STAGE/etc/pgbacula" "$STAGE/usr/bin" "$STAGE/usr/lib/systemd/system"

  # Node.js runtime: only the executable and its licence (no npm, no headers)
  local tgz
  tgz=$(node_runtime)
  tar -xzf "$tgz" -C "$WORK" package/bin/node package/LICENSE
  install -m 0755 "$WORK/package/bin/node" "$APP/node/bin/node"
  install -m 0644 "$WORK/package/LICENSE" "$APP/node/LICENSE"
  rm -rf "$WORK/package"
  local nv
  nv=$("$APP/node/bin/node" --version) || die "the bundled node does not run"
  [[ $nv == "v$NODE_RUNTIME_VERSION" ]] || die "bundled node says $nv, expected v$NODE_RUNTIME_VERSION"

  # the built JavaScript and the WebAssembly kernel (no source maps, no declarations)
  local d
  mkdir -p "$APP/dist"
  for d in src workers wasm; do cp -R "$REPO/dist/$d" "$APP/dist/$d"; done
  find "$APP/dist" -type f \( -name '*.map' -o -name '*.d.ts' \) -delete
  install -m 0644 "$REPO/bin/pgbacula.js" "$APP/bin/pgbacula.js"

  # production dependencies only, exactly as locked
  node -e '
    const fs = require("fs");
    const p = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    const out = { name: p.name, version: process.argv[3], description: p.description, license: p.license,
                  type: p.type, dependencies: p.dependencies, devDependencies: p.devDependencies };
    fs.writeFileSync(process.argv[2], JSON.stringify(out, null, 2) + "\n");' \
    "$REPO/package.json" "$APP/package.json" "$VERSION"
  cp "$REPO/package-lock.json" "$APP/package-lock.json"
  log "npm ci --omit=dev (log: $WORK/npm-ci.log)"
  (cd "$APP" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline >"$WORK/npm-ci.log" 2>&1) \
    || { tail -n 30 "$WORK/npm-ci.log" >&2; die "npm ci --omit=dev failed"; }
  rm -f "$APP/package-lock.json" "$APP/node_modules/.package-lock.json"
  node -e '
    const fs = require("fs"); const f = process.argv[1];
    const p = JSON.parse(fs.readFileSync(f, "utf8")); delete p.devDependencies;
    fs.writeFileSync(f, JSON.stringify(p, null, 2) + "\n");' "$APP/package.json"

  # native kernels: the addon with its two libraries next to it (RUNPATH $ORIGIN/lib)
  install -m 0755 "$REPO/native/build/pgbacula_kernels.node" "$APP/native/build/pgbacula_kernels.node"
  local lib path
  for lib in liblz4.so.1 libxxhash.so.0; do
    path=$(ldd "$REPO/native/build/pgbacula_kernels.node" | awk -v l="$lib" '$1 == l { print $3 }')
    [[ -n $path && -f $path ]] || die "$lib of the kernels addon not found (ldd)"
    install -m 0644 "$(readlink -f "$path")" "$APP/native/build/lib/$lib"
  done
  patchelf --set-rpath '$ORIGIN/lib' "$APP/native/build/pgbacula_kernels.node"
  # the native archive_command helper (docs/wal-archive.md): where archive-command.ts looks for it
  [[ -x $REPO/native/build/pgbacula-wal-push ]] || die "native/build/pgbacula-wal-push is missing: run npm run build"
  install -m 0755 "$REPO/native/build/pgbacula-wal-push" "$APP/native/build/pgbacula-wal-push"
  # restore_command's quick "not archived" answer, put in front of wal-fetch by restores
  [[ -x $REPO/native/build/pgbacula-wal-fetch ]] || die "native/build/pgbacula-wal-fetch is missing: run npm run build"
  install -m 0755 "$REPO/native/build/pgbacula-wal-fetch" "$APP/native/build/pgbacula-wal-fetch"

  # the FD shim, built for the installed backend launcher
  install -m 0755 "$HERE/files/pgbacula" "$APP/bin/pgbacula"
  install -m 0755 "$HERE/files/pgbacula-backend" "$APP/libexec/pgbacula-backend"
  install -m 0755 "$HERE/files/pgbacula-maint" "$APP/libexec/pgbacula-maint"
  "$APP/bin/pgbacula" shim-params --json >"$WORK/shim-params.json" || die "shim-params of the staged CLI failed"
  local bsrc=${BACULA_SRC:-}
  [[ -n $bsrc ]] || bsrc=$("$REPO/scripts/bacula-build.sh" --print | sed -n 's/^BACULA_SRC=//p')
  [[ -f $bsrc/src/plugins/fd/Makefile.inc ]] || die "no configured Bacula tree at $bsrc: run scripts/setup.sh"
  BACULA_VERSION=$(sed -n 's/^VERSION=//p' "$bsrc/src/plugins/fd/Makefile.inc" | head -n1)
  [[ $BACULA_VERSION == 15.0.* ]] || die "$bsrc is Bacula $BACULA_VERSION, not 15.0.x"
  log "building pgbacula-fd.so against Bacula $BACULA_VERSION"
  BACULA_SRC=$bsrc "$REPO/native/build.sh" --params "$WORK/shim-params.json" \
    --backend /opt/pgbacula/libexec/pgbacula-backend --out "$WORK/shim" >"$WORK/shim.log" 2>&1 \
    || { cat "$WORK/shim.log" >&2; die "native/build.sh failed"; }
  install -m 0644 "$WORK/shim/pgbacula-fd.so" "$APP/lib/bacula/pgbacula-fd.so"
  local smartalloc=no
  if nm -D --undefined-only "$APP/lib/bacula/pgbacula-fd.so" | grep -q sm_get_pool_memory; then smartalloc=yes; fi

  # configuration, unit, command
  install -m 0640 "$HERE/files/pgbacula.conf" "$STAGE/etc/pgbacula/pgbacula.conf"
  install -m 0644 "$HERE/files/pgbacula.conf" "$APP/share/pgbacula/pgbacula.conf.sample"
  install -m 0644 "$HERE/files/pgbacula-wal-receive@.service" "$STAGE/usr/lib/systemd/system/pgbacula-wal-receive@.service"
  install -m 0644 "$HERE/files/pgbacula-wal-receive@.service" "$APP/share/pgbacula/pgbacula-wal-receive@.service"
  ln -s /opt/pgbacula/bin/pgbacula "$STAGE/usr/bin/pgbacula"
  ln -s /opt/pgbacula/native/build/pgbacula-wal-push "$STAGE/usr/bin/pgbacula-wal-push"
  "$APP/bin/pgbacula" --help >"$APP/share/pgbacula/help.txt"
  "$APP/bin/pgbacula" help parameters >>"$APP/share/pgbacula/help.txt"

  licenses "$bsrc"
  glibc_floor
  node -e '
    const fs = require("fs");
    const [file, version, nodev, bacula, smart, floor] = process.argv.slice(1);
    fs.writeFileSync(file, JSON.stringify({ version, node: nodev, baculaVersion: bacula, shimSmartalloc: smart === "yes",
      glibcFloor: floor, builtAt: new Date().toISOString() }, null, 2) + "\n");' \
    "$APP/pgbacula-build.json" "$VERSION" "$nv" "$BACULA_VERSION" "$smartalloc" "$GLIBC_FLOOR"

  # modes: directories 0755, files 0644 unless executable (0755); the config 0640
  find "$STAGE" -type d -exec chmod 0755 {} +
  find "$STAGE" -type f -perm /111 -exec chmod 0755 {} +
  find "$STAGE" -type f ! -perm /111 -exec chmod 0644 {} +
  chmod 0640 "$STAGE/etc/pgbacula/pgbacula.conf"
  "$APP/bin/pgbacula" --version >"$WORK/version.txt" || die "the staged pgbacula --version failed"
  sed 's/^/package:   /' "$WORK/version.txt" >&2
}

# Licence texts of everything bundled: Node.js, every npm package, the two C libraries of the
# kernels, Bacula (its metaplugin library is linked into the shim) and pgbacula itself.
licenses() {
  local bsrc=$1 L=$APP/share/licenses
  install -m 0644 "$APP/node/LICENSE" "$L/node.LICENSE"
  install -m 0644 "$bsrc/LICENSE" "$L/bacula.LICENSE"
  [[ -f $bsrc/LICENSE-FAQ ]] && install -m 0644 "$bsrc/LICENSE-FAQ" "$L/bacula.LICENSE-FAQ"
  install -m 0644 /usr/share/doc/liblz4-1/copyright "$L/lz4.copyright"
  install -m 0644 /usr/share/doc/libxxhash0/copyright "$L/xxhash.copyright"
  [[ -f $REPO/LICENSE ]] && install -m 0644 "$REPO/LICENSE" "$L/pgbacula.LICENSE"
  # one line per npm package: name, version, licence, file; a package without a licence file fails
  node -e '
    const fs = require("fs"), path = require("path");
    const [nm, out] = process.argv.slice(1);
    const rows = [], missing = [];
    const visit = (dir) => {
      for (const e of fs.readdirSync(dir)) {
        if (e.startsWith(".")) continue;
        const d = path.join(dir, e);
        if (e.startsWith("@")) { visit(d); continue; }
        const pj = path.join(d, "package.json");
        if (!fs.existsSync(pj)) continue;
        const p = JSON.parse(fs.readFileSync(pj, "utf8"));
        const lic = fs.readdirSync(d).find((f) => /^(licen[cs]e|copying)/i.test(f));
        // Some packages ship no licence file (platform sub-packages of napi addons, a few small
        // ones): their declared SPDX licence is recorded; a package with neither fails the build.
        if (lic) rows.push(`${p.name}@${p.version}\t${p.license ?? "?"}\topt/pgbacula/node_modules/${path.relative(nm, d)}/${lic}`);
        else if (typeof p.license === "string" && p.license) rows.push(`${p.name}@${p.version}\t${p.license}\t(no licence file in the package; declared in its package.json)`);
        else missing.push(p.name);
        if (fs.existsSync(path.join(d, "node_modules"))) visit(path.join(d, "node_modules"));
      }
    };
    visit(nm);
    if (missing.length) { console.error("no licence file or declared licence in: " + missing.join(", ")); process.exit(1); }
    fs.writeFileSync(out, "# npm packages bundled in /opt/pgbacula/node_modules: name@version, licence, licence file\n" + rows.sort().join("\n") + "\n");' \
    "$APP/node_modules" "$L/npm-packages.txt" || die "a bundled npm package has no licence file"
}

# The newest GLIBC_x.y symbol version any bundled ELF needs (objdump -T), per file and overall.
glibc_floor() {
  local report=$APP/share/pgbacula/glibc-floor.txt f need n=0
  : >"$WORK/glibc.tsv"
  while IFS= read -r -d '' f; do
    [[ $(head -c4 "$f" | od -An -c | tr -d ' ') == '177ELF' ]] || continue
    need=$(objdump -T "$f" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -n1)
    printf '%s\t%s\n' "${need:-none}" "${f#"$STAGE"}" >>"$WORK/glibc.tsv"
    n=$((n + 1))
  done < <(find "$STAGE" -type f -print0)
  ((n > 0)) || die "no ELF file found in the staged tree"
  GLIBC_FLOOR=$(cut -f1 "$WORK/glibc.tsv" | grep -v none | sort -V | tail -n1)
  { printf '# glibc symbol versions needed by every bundled ELF (objdump -T); the floor is %s\n' "$GLIBC_FLOOR"
    sort -V "$WORK/glibc.tsv"; } >"$report"
  if [[ $(printf '%s\n%s\n' "$GLIBC_FLOOR" "$GLIBC_MAX" | sort -V | tail -n1) != "$GLIBC_MAX" ]]; then
    sort -V "$WORK/glibc.tsv" >&2
    die "a bundled ELF needs glibc $GLIBC_FLOOR, newer than the allowed $GLIBC_MAX (PGBACULA_GLIBC_MAX)"
  fi
  log "$n ELF files; glibc floor $GLIBC_FLOOR"
}

if [[ $REUSE == 1 ]]; then
  [[ -f $APP/pgbacula-build.json ]] || die "--reuse-stage: nothing staged in $STAGE"
  GLIBC_FLOOR=$(node -p 'require(process.argv[1]).glibcFloor' "$APP/pgbacula-build.json")
  NODE_VERSION=$(node -p 'require(process.argv[1]).node' "$APP/pgbacula-build.json")
  [[ -z ${PGBACULA_PKG_VERSION:-} ]] || die "--reuse-stage keeps the staged version; change PGBACULA_PKG_RELEASE instead"
  VERSION=$(node -p 'require(process.argv[1]).version' "$APP/pgbacula-build.json")
else
  stage
  NODE_VERSION=v$NODE_RUNTIME_VERSION
fi

# ---------------------------------------------------------------------------------------------
# 2. artifacts
# ---------------------------------------------------------------------------------------------
EPOCH=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)
ARTIFACTS=()
TARBALL=pgbacula-$VERSION-linux-x86_64.tar.gz
DEB=pgbacula_$VERSION-${RELEASE}_amd64.deb
RPM=pgbacula-$VERSION-$RELEASE.x86_64.rpm

if want tar; then
  rm -f "$OUT/$TARBALL"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
      --transform "s,^opt/pgbacula,pgbacula-$VERSION," -C "$STAGE" -cf - opt/pgbacula \
    | gzip -6n >"$OUT/$TARBALL.tmp"
  mv "$OUT/$TARBALL.tmp" "$OUT/$TARBALL"
  ARTIFACTS+=("$TARBALL")
  log "built $TARBALL"
fi

if want deb; then
  rm -rf "$STAGE/DEBIAN"
  mkdir -p "$STAGE/DEBIAN"
  size=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
  cat >"$STAGE/DEBIAN/control" <<CTRL
Package: pgbacula
Version: $VERSION-$RELEASE
Architecture: amd64
Maintainer: pgbacula maintainers <pgbacula@localhost>
Installed-Size: $size
Depends: libc6 (>= $GLIBC_FLOOR)
Enhances: bacula-fd
Section: admin
Priority: optional
Description: PostgreSQL backup and point-in-time recovery for Bacula Community
 pgbacula backs up PostgreSQL clusters through a Bacula Community 15.0.x File
 Daemon plugin (pgbacula-fd.so): logical dumps, physical base backups with WAL
 for point-in-time recovery. Self-contained: bundles its Node.js $NODE_VERSION
 runtime and every library it needs under /opt/pgbacula.
CTRL
  echo /etc/pgbacula/pgbacula.conf >"$STAGE/DEBIAN/conffiles"
  install -m 0755 "$HERE/deb/postinst" "$HERE/deb/prerm" "$HERE/deb/postrm" "$STAGE/DEBIAN/"
  chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/conffiles"
  rm -f "$OUT/$DEB"
  SOURCE_DATE_EPOCH=$EPOCH dpkg-deb --root-owner-group -Zgzip -z6 --build "$STAGE" "$OUT/$DEB.tmp" >/dev/null
  rm -rf "$STAGE/DEBIAN"
  mv "$OUT/$DEB.tmp" "$OUT/$DEB"
  if [[ -n $SIGN_KEY ]]; then
    command -v debsigs >/dev/null || die "debsigs not found (Debian package debsigs): run scripts/setup.sh"
    debsigs --sign=origin -k "$SIGN_KEY" "$OUT/$DEB" || die "debsigs could not sign $DEB"
  fi
  ARTIFACTS+=("$DEB")
  log "built $DEB"
fi

if want rpm; then
  top=$WORK/rpmbuild
  rm -rf "$top"
  mkdir -p "$top"/{BUILD,RPMS,SOURCES,SPECS,SRPMS,BUILDROOT}
  sed -e "s|@VERSION@|${VERSION//[+~]/_}|; s|@RELEASE@|$RELEASE|; s|@STAGE@|$STAGE|; s|@GLIBC_FLOOR@|$GLIBC_FLOOR|; s|@NODE_VERSION@|$NODE_VERSION|" \
    "$HERE/rpm/pgbacula.spec.in" >"$top/SPECS/pgbacula.spec"
  SOURCE_DATE_EPOCH=$EPOCH rpmbuild -bb --quiet --define "_topdir $top" --define "_tmppath $top/tmp" \
    --define "_buildhost localhost" "$top/SPECS/pgbacula.spec" >"$WORK/rpmbuild.log" 2>&1 \
    || { tail -n 40 "$WORK/rpmbuild.log" >&2; die "rpmbuild failed (log: $WORK/rpmbuild.log)"; }
  built=$(find "$top/RPMS" -name '*.rpm' | head -n1)
  [[ -n $built ]] || die "rpmbuild produced no package"
  mv "$built" "$OUT/$RPM"
  if [[ -n $SIGN_KEY ]]; then
    rpmsign --addsign --define "__gpg $(command -v gpg)" --define "_gpg_name $SIGN_KEY" ${GNUPGHOME:+--define "_gpg_path $GNUPGHOME"} "$OUT/$RPM" >"$WORK/rpmsign.log" 2>&1 \
      || { cat "$WORK/rpmsign.log" >&2; die "rpmsign could not sign $RPM"; }
  fi
  ARTIFACTS+=("$RPM")
  log "built $RPM"
fi

# ---------------------------------------------------------------------------------------------
# 3. checksums and their signature
# ---------------------------------------------------------------------------------------------
(cd "$OUT" && sha256sum "${ARTIFACTS[@]}" >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
rm -f "$OUT/SHA256SUMS.asc"
if [[ -n $SIGN_KEY ]]; then
  gpg --batch --yes --local-user "$SIGN_KEY" --armor --detach-sign --output "$OUT/SHA256SUMS.asc" "$OUT/SHA256SUMS" \
    || die "gpg could not sign SHA256SUMS"
  gpg --batch --yes --armor --export "$SIGN_KEY" >"$OUT/pgbacula-release-key.asc"
  log "signed SHA256SUMS with $SIGN_KEY"
else
  warn "PGBACULA_SIGN_KEY is not set: SHA256SUMS, the rpm and the deb are not signed"
fi
for a in "${ARTIFACTS[@]}"; do log "  $a $(du -h "$OUT/$a" | cut -f1)"; done
log "done in $(elapsed "$T0") s: $OUT"
