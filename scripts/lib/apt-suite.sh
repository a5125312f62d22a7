# shellcheck shell=bash
# Fetch packages from ANOTHER Debian suite (sid, trixie, ...) without touching the system's apt
# configuration: a private sources file derived from the system's own Debian entry (same mirror,
# same keyring — no host name is written anywhere), private package lists, an empty dpkg status
# and no pins. Nothing is installed; callers extract .debs (dpkg -x) or unpack source packages.
#
#   apt_suite_init STATE SUITE [TYPES]     write STATE/sources.list.d/SUITE.sources, fill APT_SUITE_OPTS
#   apt_suite_update STATE [MAX_AGE_MIN]   apt-get update into STATE/lists unless younger than MAX_AGE_MIN (default 360)
#   apt_suite_download STATE DEST PKG...   binary .debs of the candidate versions into DEST
#   apt_suite_source STATE DEST PKG[=VER]  source package into DEST (apt-get source; --download-only
#                                          when APT_SUITE_SOURCE_NO_UNPACK=1)
#   apt_suite_lib_closure STATE PKG...     PKG... plus every lib*/zlib* package reachable from them through
#                                          Depends/Pre-Depends, one per line (first of each OR group)
#   apt_suite_policy_version STATE PKG     candidate version of PKG in that suite
#   apt_suite "STATE" apt-get|apt-cache ARGS...   run any apt command in that private setup
#
# STATE is a directory owned by the caller (e.g. /var/cache/pgbacula/apt/sid); one STATE per suite.
# Requires scripts/lib/common.sh (log, die).

# apt_suite_system_entry TYPES SUITE — print a deb822 stanza for SUITE built from the system's
# main Debian entry (the stanza whose Suites holds the release codename, not the security one).
apt_suite_system_entry() {
	local types=$1 suite=$2 codename f
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$codename" ] || die "apt-suite: cannot read VERSION_CODENAME from /etc/os-release"
	for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		# deb822: stanzas separated by blank lines; keep URIs/Components/Signed-By of the first
		# stanza whose Types has "deb" and whose Suites lists the codename itself.
		if awk -v types="$types" -v suite="$suite" -v cn="$codename" '
			function flush() {
				if (!done && has_deb && has_cn && uris != "") {
					print "Types: " types
					print "URIs: " uris
					print "Suites: " suite
					print "Components: " (comps != "" ? comps : "main")
					if (signed != "") print "Signed-By: " signed
					done = 1
				}
				has_deb = has_cn = 0; uris = comps = signed = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				key = $1; sub(/:$/, "", key); key = tolower(key)
				val = $0; sub(/^[^:]*:[ \t]*/, "", val)
				if (key == "types") { n = split(val, t, /[ \t]+/); for (i = 1; i <= n; i++) if (t[i] == "deb") has_deb = 1 }
				else if (key == "suites") { n = split(val, t, /[ \t]+/); for (i = 1; i <= n; i++) if (t[i] == cn) has_cn = 1 }
				else if (key == "uris") uris = val
				else if (key == "components") comps = val
				else if (key == "signed-by") signed = val
			}
			END { flush(); exit done ? 0 : 1 }' "$f"; then
			return 0
		fi
	done
	# One-line format fallback: "deb [opts] URI codename comp..."
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		if awk -v types="$types" -v suite="$suite" -v cn="$codename" '
			$1 == "deb" {
				i = 2; signed = ""
				if ($2 ~ /^\[/) { while (i <= NF) { if ($i ~ /signed-by=/) { signed = $i; sub(/.*signed-by=/, "", signed); sub(/\]$/, "", signed) } if ($i ~ /\]$/) { i++; break } i++ } }
				if ($(i + 1) != cn) next
				comps = ""; for (j = i + 2; j <= NF; j++) comps = comps (comps == "" ? "" : " ") $j
				print "Types: " types; print "URIs: " $i; print "Suites: " suite
				print "Components: " (comps != "" ? comps : "main")
				if (signed != "") print "Signed-By: " signed
				found = 1; exit 0
			}
			END { exit found ? 0 : 1 }' "$f"; then
			return 0
		fi
	done
	die "apt-suite: found no Debian entry for suite '$codename' in /etc/apt to derive a '$suite' source from"
}

# apt_suite_opts STATE — set the global array APT_SUITE_OPTS for the private setup in STATE.
apt_suite_opts() {
	local state=$1
	APT_SUITE_OPTS=(
		-o "Dir::Etc::SourceList=/dev/null"
		-o "Dir::Etc::SourceParts=$state/sources.list.d"
		-o "Dir::Etc::Preferences=/dev/null"
		-o "Dir::Etc::PreferencesParts=$state/preferences.d"
		-o "Dir::State::Lists=$state/lists"
		-o "Dir::State::status=$state/status"
		-o "Dir::Cache=$state/cache"
		-o "Dir::Cache::pkgcache="
		-o "Dir::Cache::srcpkgcache="
		-o "Acquire::Languages=none"
		# Machines of this kind have unreliable clocks (sid's InRelease was seen "expired" by 20
		# days); the signature is still checked.
		-o "Acquire::Check-Valid-Until=false"
		-o "Acquire::Check-Date=false"
		-o "APT::Get::List-Cleanup=true"
		-o "APT::Sandbox::User=root"
	)
}

# apt_suite_init STATE SUITE [TYPES] — create the private setup (idempotent; rewrites the sources
# file only when its content changes, which invalidates the lists).
apt_suite_init() {
	local state=$1 suite=$2 types=${3:-deb} entry
	mkdir -p "$state/sources.list.d" "$state/preferences.d" "$state/lists/partial" "$state/cache"
	[ -e "$state/status" ] || : >"$state/status"
	entry=$(apt_suite_system_entry "$types" "$suite")
	if [ ! -f "$state/sources.list.d/$suite.sources" ] || [ "$(cat "$state/sources.list.d/$suite.sources")" != "$entry" ]; then
		printf '%s\n' "$entry" >"$state/sources.list.d/$suite.sources"
		rm -f "$state/lists/.updated"
	fi
	apt_suite_opts "$state"
}

# apt_suite STATE CMD ARGS... — run an apt command (apt-get, apt-cache) in the private setup.
apt_suite() {
	local state=$1 cmd=$2
	shift 2
	apt_suite_opts "$state"
	"$cmd" "${APT_SUITE_OPTS[@]}" "$@"
}

# apt_suite_update STATE [MAX_AGE_MIN] — refresh the private lists when missing or stale.
apt_suite_update() {
	local state=$1 max_age=${2:-360} out
	if [ "$max_age" -gt 0 ] && [ -f "$state/lists/.updated" ] &&
		[ -z "$(find "$state/lists/.updated" -mmin +"$max_age")" ]; then
		return 0
	fi
	log "apt-get update for $(sed -n 's/^Suites: //p' "$state"/sources.list.d/*.sources | tr '\n' ' ')(private lists in $state/lists)"
	if ! out=$(apt_suite "$state" apt-get -q update 2>&1); then
		printf '%s\n' "$out" >&2
		die "apt-suite: apt-get update failed for $state"
	fi
	# apt-get update exits 0 on some fetch errors; treat "W:/E:" about our source as fatal.
	if printf '%s\n' "$out" | grep -qE '^(E:|W: Failed|Err:)'; then
		printf '%s\n' "$out" >&2
		die "apt-suite: apt-get update reported errors for $state"
	fi
	touch "$state/lists/.updated"
}

# apt_suite_download STATE DEST PKG... — download the candidate .debs into DEST.
apt_suite_download() {
	local state=$1 dest=$2
	shift 2
	local out
	mkdir -p "$dest"
	if ! out=$(cd "$dest" && apt_suite "$state" apt-get -q -y download "$@" 2>&1); then
		printf '%s\n' "$out" >&2
		die "apt-suite: apt-get download failed in $state for: $*"
	fi
}

# apt_suite_source STATE DEST PKG[=VER]... — fetch (and unless APT_SUITE_SOURCE_NO_UNPACK=1,
# unpack) source packages into DEST. STATE must have been initialised with TYPES "deb-src" (or
# "deb deb-src").
apt_suite_source() {
	local state=$1 dest=$2 extra=() out
	shift 2
	if [ "${APT_SUITE_SOURCE_NO_UNPACK:-0}" = 1 ]; then extra=(--download-only); fi
	mkdir -p "$dest"
	if ! out=$(cd "$dest" && apt_suite "$state" apt-get -q -y source "${extra[@]}" "$@" 2>&1); then
		printf '%s\n' "$out" >&2
		die "apt-suite: apt-get source failed in $state for: $*"
	fi
}

# apt_suite_policy_version STATE PKG — print PKG's candidate version ("" if unknown).
apt_suite_policy_version() {
	apt_suite "$1" apt-cache policy "$2" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }'
}

# apt_suite_lib_closure STATE PKG... — PKG... and the lib*/zlib* packages they need, transitively.
# Only lib*/zlib* packages are followed (perl, debconf and the like are scripts' needs, not the
# binaries'); of an OR group the first alternative is taken; virtual names are skipped.
apt_suite_lib_closure() {
	local state=$1
	shift
	apt_suite "$state" apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
		--no-breaks --no-replaces --no-enhances "$@" 2>/dev/null |
		awk -v roots="$*" '
			BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) { want[r[i]] = 1; queue[++q] = r[i] } }
			/^[^ ]/ { pkg = $1; inor = 0; next }
			/^ +\|?(Depends|PreDepends|Pre-Depends):/ {
				dep = $2
				# first alternative of an OR group only: a line starting with "|" means the next
				# line is another alternative of the same group.
				if (!inor && dep !~ /^</) edges[pkg] = edges[pkg] " " dep
				inor = ($1 ~ /^\|/)
				next
			}
			END {
				for (h = 1; h <= q; h++) {
					p = queue[h]; print p
					m = split(edges[p], d, " ")
					for (i = 1; i <= m; i++)
						if (!(d[i] in want) && d[i] ~ /^(lib|zlib)/) { want[d[i]] = 1; queue[++q] = d[i] }
				}
			}'
}
