#!/bin/sh
# restart-unit.sh: vigil recovery handler (--recovery-handler). Restarts the
# failed node's systemd unit on a standby host: ssh STANDBY systemctl restart UNIT.
#
# Reads: VIGIL_DECISION_ID (idempotency key), VIGIL_NODE; the failed node's
#   tags `standby` (ssh target, [user@]host) and `unit` (systemd unit), as
#   VIGIL_NODE_TAG_STANDBY / VIGIL_NODE_TAG_UNIT. Fallbacks: env VIGIL_STANDBY,
#   env RESTART_UNIT (default app.service). HANDLER_STATE_DIR (default
#   /var/lib/vigil-handlers) keeps one marker per decision id: a decision
#   already acted on exits 0 at once, whatever the attempt number.
# Needs: ssh with key auth (BatchMode) from every possible executor to the
#   standby, and a login there allowed to run systemctl restart (or add sudo).
# VIGIL_DRY_RUN=1: prints "would: ssh ..." instead of running it; markers go to
#   $HANDLER_STATE_DIR/dry-run, so a rehearsal never blocks a real run.
# Adapt: change the remote command in the `run ssh` line. Tags come from the
# network: ssh joins its arguments into a remote shell line, so every value
# sent there is checked against a strict character set first.
set -eu

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { say "$*"; exit 1; }
dry() { [ "${VIGIL_DRY_RUN:-0}" = 1 ]; }
# run CMD ARG...: run it, or with VIGIL_DRY_RUN=1 print it, quoted for sh.
run() {
	if dry; then
		line=would:
		for a; do
			case $a in '' | *[!A-Za-z0-9@%+=:,./_-]*) a="'$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'" ;; esac
			line="$line $a"
		done
		printf '%s\n' "$line"
	else "$@"; fi
}
# safe WORD: no shell metacharacters, no leading "-" (not taken as an option).
safe() { case $1 in '' | -* | *[!A-Za-z0-9@._:-]*) return 1 ;; esac; }

id=${VIGIL_DECISION_ID:-}
standby=${VIGIL_NODE_TAG_STANDBY:-${VIGIL_STANDBY:-}}
unit=${VIGIL_NODE_TAG_UNIT:-${RESTART_UNIT:-app.service}}
state=${HANDLER_STATE_DIR:-/var/lib/vigil-handlers}
safe "$id" || die "bad or missing VIGIL_DECISION_ID: not run by vigil?"
[ -n "$standby" ] || die "no standby for ${VIGIL_NODE:-?}: set its tag standby or VIGIL_STANDBY"
safe "$standby" || die "refusing standby $standby: unexpected characters"
safe "$unit" || die "refusing unit $unit: unexpected characters"

marks=$state
dry && marks=$state/dry-run
if [ -e "$state/done.$id" ] || [ -e "$marks/done.$id" ]; then
	say "decision $id already handled: nothing to do"
	exit 0
fi
say "decision $id: restarting $unit on $standby for failed node ${VIGIL_NODE:-?} (attempt ${VIGIL_ATTEMPT:-?})"
run ssh -o BatchMode=yes -o ConnectTimeout=10 -- "$standby" systemctl restart "$unit"
mkdir -p "$marks"
: >"$marks/done.$id"
say "decision $id: done"
