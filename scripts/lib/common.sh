# shellcheck shell=bash
# Small helpers shared by pgbacula's setup scripts. Source this file; it defines functions only.

# log MSG... — one clear line on stderr, prefixed with the calling script's tag (default "setup").
log() { printf '%s: %s\n' "${LOG_TAG:-setup}" "$*" >&2; }
warn() { printf '%s: WARNING: %s\n' "${LOG_TAG:-setup}" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "${LOG_TAG:-setup}" "$*" >&2; exit 1; }

# need_root — abort unless running as uid 0.
need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (installs Debian packages, creates users)"; }

# now_s — seconds since the epoch with sub-second precision (for step timings).
now_s() { date +%s.%N; }
# elapsed START — seconds since START, one decimal.
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
