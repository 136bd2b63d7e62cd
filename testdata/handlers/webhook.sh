#!/bin/sh
# webhook.sh: vigil recovery handler (--recovery-handler). POSTs the decision
# JSON vigil writes on stdin to $VIGIL_WEBHOOK_URL, with the headers
# X-Vigil-Decision-Id and X-Vigil-Epoch. A non-2xx answer (or no answer) exits
# 1, so vigil retries with backoff; the receiver should deduplicate on
# X-Vigil-Decision-Id, which is the same on every attempt and every node.
#
# Reads: VIGIL_WEBHOOK_URL (required), WEBHOOK_TIMEOUT (seconds, default 10;
#   keep it below vigil's --handler-timeout), VIGIL_DECISION_ID, VIGIL_EPOCH,
#   and stdin: {"id","epoch","node","boot","addr","tags","executor",...}.
# Needs: curl.
# VIGIL_DRY_RUN=1: prints "would: curl ..." and the body instead of posting.
# Adapt: add -H "Authorization: Bearer $TOKEN" for an authenticated endpoint
#   (dry-run would print the token), or point it at a chat/pager integration.
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

url=${VIGIL_WEBHOOK_URL:-}
id=${VIGIL_DECISION_ID:-}
epoch=${VIGIL_EPOCH:-}
[ -n "$url" ] || die "VIGIL_WEBHOOK_URL is not set: nowhere to send decision ${id:-?}"
# Header values: no CR/LF or other surprises from the network.
case $id in '' | *[!A-Za-z0-9._-]*) die "bad or missing VIGIL_DECISION_ID: not run by vigil?" ;; esac
case $epoch in '' | *[!0-9]*) die "bad or missing VIGIL_EPOCH" ;; esac

set -- curl -sS -o /dev/null -w '%{http_code}' --max-time "${WEBHOOK_TIMEOUT:-10}" \
	-H 'Content-Type: application/json' -H "X-Vigil-Decision-Id: $id" -H "X-Vigil-Epoch: $epoch" \
	--data-binary @- --url "$url"
if dry; then
	run "$@"
	say "would post: $(cat)"
	exit 0
fi
code=$("$@") || die "decision $id: POST to $url failed (curl exit $?)"
case $code in
2??) say "decision $id: delivered (HTTP $code)" ;;
*) die "decision $id: $url answered HTTP $code" ;;
esac
