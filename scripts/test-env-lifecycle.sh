#!/usr/bin/env bash
# Checks that `make up` brings the environment up (idempotently) and `make down` leaves no
# process, no listening port and no state behind. Uses a state directory of its own, so an
# environment started by `make up` or `make test` is not disturbed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MAILSEC_ENV_DIR="${TMPDIR:-/tmp}/mailsec-lifecycle-$$"
state=$MAILSEC_ENV_DIR
fail() { echo "[lifecycle] FAIL: $*" >&2; exit 1; }
say() { echo "[lifecycle] $*" >&2; }
# Safety net if a check fails half-way: stop what we started.
trap '[ -e "$state" ] && "$root/scripts/env-down.sh" >/dev/null 2>&1 || true' EXIT

mk() { make -s --no-print-directory -C "$root" "$@"; }

t=$SECONDS
out=$(mk up) || fail "make up failed"
say "make up (cold) took $((SECONDS - t))s"
for var in KUBECONFIG MAILSEC_DNS_SERVER MAILSEC_DNS_ZONE MAILSEC_TSIG_KEY_NAME \
  MAILSEC_TSIG_ALGORITHM MAILSEC_TSIG_SECRET MAILSEC_KNOT_SERVER MAILSEC_PDNS_SERVER \
  MAILSEC_PDNS_API_URL MAILSEC_PDNS_API_KEY MAILSEC_ROUTE53_URL MAILSEC_ENV_DIR PATH; do
  grep -q "^export $var=" <<<"$out" || fail "make up printed no export for $var"
done
if grep -qv '^export ' <<<"$out"; then fail "make up printed non-export lines on stdout"; fi

(
  eval "$out"
  [ "$(kubectl get --raw /readyz)" = ok ] || fail "kubectl from PATH cannot reach the API server"
  dig +short -p "${MAILSEC_DNS_SERVER##*:}" "@${MAILSEC_DNS_SERVER%:*}" "$MAILSEC_DNS_ZONE" SOA |
    grep -q "$MAILSEC_DNS_ZONE" || fail "no SOA answer"
  for server in "$MAILSEC_KNOT_SERVER" "$MAILSEC_PDNS_SERVER"; do
    dig +short -p "${server##*:}" "@${server%:*}" "$MAILSEC_DNS_ZONE" SOA |
      grep -q "$MAILSEC_DNS_ZONE" || fail "no SOA answer from $server"
  done
  curl -sf -H "X-API-Key: $MAILSEC_PDNS_API_KEY" "$MAILSEC_PDNS_API_URL/api/v1/servers/localhost" >/dev/null ||
    fail "the PowerDNS API does not answer"
)

mapfile -t pids < <(cat "$state"/pids/*.pid)
mapfile -t ports < <(cat "$state"/ports/*)
[ ${#pids[@]} -eq 6 ] || fail "expected 6 recorded pids, got ${#pids[@]}"
[ ${#ports[@]} -ge 3 ] || fail "expected recorded ports, got ${#ports[@]}"
for pid in "${pids[@]}"; do ps -p "$pid" >/dev/null || fail "recorded pid $pid is not running"; done
for port in "${ports[@]}"; do
  ss -Hltnup "( sport = :$port )" | grep -q . || fail "nothing listens on recorded port $port"
done
say "up: pids ${pids[*]}, ports ${ports[*]}"

t=$SECONDS
out2=$(mk up) || fail "second make up failed"
say "make up (already up) took $((SECONDS - t))s"
[ "$out2" = "$out" ] || fail "second make up printed different exports"
mapfile -t pids2 < <(cat "$state"/pids/*.pid)
[ "${pids2[*]}" = "${pids[*]}" ] || fail "second make up restarted processes"

t=$SECONDS
mk down || fail "make down failed"
say "make down took $((SECONDS - t))s"

for pid in "${pids[@]}"; do
  if ps -p "$pid" -o stat= 2>/dev/null | grep -qv Z; then fail "pid $pid still running after make down"; fi
done
for port in "${ports[@]}"; do
  if ss -Hltnup "( sport = :$port )" | grep -q .; then
    fail "port $port still listening after make down: $(ss -Hltnup "( sport = :$port )")"
  fi
done
[ ! -e "$state" ] || fail "state dir $state still exists"
[ ! -e "$state.lock" ] || fail "lock file $state.lock still exists"
mk down || fail "make down on a stopped environment failed"
say "OK: no process, port or state left behind"
