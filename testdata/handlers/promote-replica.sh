#!/bin/sh
# promote-replica.sh: vigil recovery handler (--recovery-handler). When the
# failed node was a PostgreSQL primary (tag role=primary), promotes its
# replica: ssh REPLICA pg_ctl promote -D PGDATA. Any other node: exit 0, nothing done.
#
# Reads: VIGIL_DECISION_ID, VIGIL_EPOCH, VIGIL_NODE; the failed node's tags
#   `role` and `replica` ([user@]host to ssh to, usually postgres@host), as
#   VIGIL_NODE_TAG_ROLE / VIGIL_NODE_TAG_REPLICA; fallback env VIGIL_REPLICA.
#   PGDATA (default /var/lib/postgresql/data) and PG_CTL (default pg_ctl) are
#   paths on the replica. HANDLER_STATE_DIR (default /var/lib/vigil-handlers).
# Idempotent: a marker per decision id; a decision already acted on exits 0.
# Fenced: the highest epoch acted on per replica is kept in the state dir; a
#   decision of a lower epoch (a stale executor) is refused, exit 0. The state
#   dir is local: to fence executors on other hosts too, keep it on shared
#   storage, or make the replica side check the epoch.
# VIGIL_DRY_RUN=1: prints "would: ssh ..." instead; checks still run; state is
#   written to $HANDLER_STATE_DIR/dry-run, so a rehearsal never blocks a real run.
# Adapt: for Patroni, replace the ssh line with patronictl failover.
set -eu

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { say "$*"; exit 1; }
dry() { [ "${VIGIL_DRY_RUN:-0}" = 1 ]; }
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
# safe WORD: fit for a remote shell line (ssh joins its arguments); no leading "-".
safe() { case $1 in '' | -* | *[!A-Za-z0-9@._:/-]*) return 1 ;; esac; }

id=${VIGIL_DECISION_ID:-}
epoch=${VIGIL_EPOCH:-}
node=${VIGIL_NODE:-?}
state=${HANDLER_STATE_DIR:-/var/lib/vigil-handlers}
case $id in '' | */* | *[!A-Za-z0-9._-]*) die "bad or missing VIGIL_DECISION_ID: not run by vigil?" ;; esac
case $epoch in '' | *[!0-9]*) die "bad or missing VIGIL_EPOCH" ;; esac
if [ "${VIGIL_NODE_TAG_ROLE:-}" != primary ]; then
	say "$node is not a primary (role=${VIGIL_NODE_TAG_ROLE:-none}): nothing to promote"
	exit 0
fi
replica=${VIGIL_NODE_TAG_REPLICA:-${VIGIL_REPLICA:-}}
[ -n "$replica" ] || die "no replica for primary $node: set its tag replica or VIGIL_REPLICA"
case $replica in */*) die "refusing replica $replica: unexpected characters" ;; esac
pgdata=${PGDATA:-/var/lib/postgresql/data}
for v in "$replica" "$pgdata" "${PG_CTL:-pg_ctl}"; do safe "$v" || die "refusing $v: unexpected characters"; done

marks=$state
dry && marks=$state/dry-run
if [ -e "$state/done.$id" ] || [ -e "$marks/done.$id" ]; then
	say "decision $id already handled: nothing to do"
	exit 0
fi
last=0
for f in "$state/epoch.$replica" "$marks/epoch.$replica"; do
	e=$(cat "$f" 2>/dev/null) || continue
	case $e in '' | *[!0-9]*) die "corrupt $f: remove it to go on" ;; esac
	if [ "$e" -gt "$last" ]; then last=$e; fi
done
if [ "$epoch" -lt "$last" ]; then
	say "stale: decision $id has epoch $epoch, $replica was acted on at epoch $last: refusing"
	exit 0
fi
mkdir -p "$marks"
printf '%s\n' "$epoch" >"$marks/epoch.$replica" # claimed before acting
say "decision $id (epoch $epoch): promoting $replica, primary $node failed"
run ssh -o BatchMode=yes -o ConnectTimeout=10 -- "$replica" "${PG_CTL:-pg_ctl}" promote -D "$pgdata"
: >"$marks/done.$id"
say "decision $id: $replica promoted"
