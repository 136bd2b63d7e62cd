#!/bin/sh
# fence.sh: vigil fence handler (--fence-handler). vigil runs it when this
# node's lease ran out (VIGIL_REASON=lease-expired: no quorum of its view
# answered within --fence-after) or when it learned it was removed from the
# view (VIGIL_REASON=removed): the rest of the cluster recovers this node's
# work elsewhere once the lease has run out, so stop serving it here, now.
# It stops the local systemd unit $FENCE_UNIT (default app.service).
#
# Reads: FENCE_UNIT, VIGIL_REASON, VIGIL_EPOCH, VIGIL_SELF. No stdin.
# Needs: systemctl and the right to stop the unit (vigil's user, or sudo).
# vigil runs a fence handler once, without retries, and kills it at
#   --handler-timeout: keep it short and make it stop what matters first.
#   Stopping a unit that is already stopped succeeds, so running twice is safe.
# VIGIL_DRY_RUN=1: prints "would: systemctl stop UNIT" instead.
# Adapt: add more `run` lines (drop a virtual IP, block a port, release a
#   lock). Do not skip lease-expired: the recovery elsewhere is timed on the
#   assumption that this handler stopped the service by then.
set -eu

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
run() {
	if [ "${VIGIL_DRY_RUN:-0}" = 1 ]; then
		line=would:
		for a; do
			case $a in '' | *[!A-Za-z0-9@%+=:,./_-]*) a="'$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'" ;; esac
			line="$line $a"
		done
		printf '%s\n' "$line"
	else "$@"; fi
}

unit=${FENCE_UNIT:-app.service}
reason=${VIGIL_REASON:-}
case $reason in
removed | lease-expired) ;;
*) say "unexpected VIGIL_REASON '$reason': fencing anyway" ;;
esac
say "${VIGIL_SELF:-this node} fenced ($reason, epoch ${VIGIL_EPOCH:-?}): stopping $unit"
run systemctl stop -- "$unit"
say "$unit stopped"
