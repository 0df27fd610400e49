#!/usr/bin/env bash
# `make bench-scale`: N MailDomains applied at once, measured from outside.
#
#   scripts/bench-scale.sh [N] [ZONES]     (default 10000 MailDomains in 1 zone; N <= 20000,
#                                            ZONES <= 1000)
#
# Starts an environment of its own (scripts/env-up.sh in its own state directory, with ZONES-1
# more zones in BIND when ZONES > 1) and a release build of `mailsec controller` (no leader
# election, live checks off: this measures publishing), then:
#   1. applies N MailDomains (MTA-STS testing, TLS-RPT, DMARC; round-robin over the zones) with
#      `kubectl create` (8 in parallel), and measures from the first create until every one is
#      Ready=True for its generation (a `kubectl get` of all of them every 5 s): the time, the
#      controller's peak RSS (VmHWM), DNS requests by result (DNSUnreachable = a timeout or a
#      refused connection), reconcile errors, status writes and API requests per MailDomain (the
#      controller's own counters, /metrics);
#   2. restarts the controller with all N converged and measures until it has reconciled each
#      once: the time, and the DNS writes and status writes it made (goal: 0 and 0).
# Prints a table and one JSON line. Everything it started is stopped (by PID) and its state
# directory removed at the end, also on failure. Bounded: 30 minutes per phase.
#
# Tunables: MAILSEC_BENCH_CONCURRENCY (--reconcile-concurrency, default the controller's),
# MAILSEC_BENCH_TIMEOUT (seconds per phase, default 1800), MAILSEC_BENCH_KEEP=1 (leave the
# environment up).
set -euo pipefail
LOG_TAG=bench-scale
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=scripts/demo-lib.sh
source "$here/demo-lib.sh"

N=${1:-10000}
ZONES=${2:-1}
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] && [ "$N" -le 20000 ] || { say "error: N must be 1..20000, not $N"; exit 2; }
[[ $ZONES =~ ^[0-9]+$ ]] && [ "$ZONES" -ge 1 ] && [ "$ZONES" -le 1000 ] || { say "error: ZONES must be 1..1000, not $ZONES"; exit 2; }
PHASE_TIMEOUT=${MAILSEC_BENCH_TIMEOUT:-1800}
NS=mailsec-scale

export MAILSEC_ENV_DIR=${MAILSEC_BENCH_ENV_DIR:-${XDG_RUNTIME_DIR:-/tmp}/mailsec-bench-scale-$(id -un)}
export MAILSEC_BIND_EXTRA_ZONES=$((ZONES - 1))
work=$(mktemp -d "${TMPDIR:-/tmp}/mailsec-bench-scale.XXXXXX")
controller_pid=''
stop_controller() {
  [ -n "$controller_pid" ] || return 0
  kill "$controller_pid" 2>/dev/null || true
  wait "$controller_pid" 2>/dev/null || true
  controller_pid=''
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_controller
  if [ "${MAILSEC_BENCH_KEEP:-0}" != 1 ]; then
    "$here/env-down.sh" >/dev/null 2>&1 || say "warning: env-down.sh failed"
  fi
  [ $rc -eq 0 ] || { [ -s "$work/controller.log" ] && tail -n 30 "$work/controller.log" >&2; }
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "environment ($ZONES zone(s)) in $MAILSEC_ENV_DIR"
exports=$("$here/env-up.sh") || { say "error: env-up.sh failed"; exit 1; }
eval "$exports"
say "building mailsec (release; the first build takes about 15 minutes on 2 cores)"
(cd "$root" && cargo build -q --release --bin mailsec)
target=$(cd "$root" && cargo metadata -q --no-deps --format-version 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$target/release/mailsec

zone_of() { # zone_of <i>: round-robin over the zones
  local z=$(($1 % ZONES))
  if [ "$z" -eq 0 ]; then echo "$MAILSEC_DNS_ZONE"; else echo "z$z.$MAILSEC_DNS_ZONE"; fi
}

# The provider: every zone.
{
  cat <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
---
apiVersion: v1
kind: Secret
metadata:
  name: tsig
  namespace: $NS
stringData:
  secret: "$MAILSEC_TSIG_SECRET"
---
apiVersion: mailsec.io/v1alpha1
kind: DNSProvider
metadata:
  name: local
  namespace: $NS
spec:
  type: rfc2136
  zones:
EOF
  for i in $(seq 0 $((ZONES - 1))); do echo "    - $(zone_of "$i")"; done
  cat <<EOF
  rfc2136:
    server: "$MAILSEC_DNS_SERVER"
    tsigKeyName: "$MAILSEC_TSIG_KEY_NAME"
    tsigAlgorithm: "$MAILSEC_TSIG_ALGORITHM"
    tsigSecretRef:
      name: tsig
      key: secret
EOF
} | k apply -f - >/dev/null

# The MailDomains, in 8 files for 8 parallel creates.
for i in $(seq 1 "$N"); do
  zone=$(zone_of "$i")
  cat >>"$work/md-$((i % 8)).yaml" <<EOF
---
apiVersion: mailsec.io/v1alpha1
kind: MailDomain
metadata:
  name: d$i
  namespace: $NS
spec:
  domain: d$i.$zone
  ttl: 300
  dnsProviderRef:
    name: local
  mx:
    - mx1.d$i.$zone
  mtaSts:
    mode: testing
    maxAge: 86400
  tlsRpt:
    rua:
      - mailto:tlsrpt@d$i.$zone
  dmarc:
    policy: none
    rua:
      - mailto:dmarc@d$i.$zone
EOF
done

ADMIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_controller() {
  local extra=()
  [ -n "${MAILSEC_BENCH_CONCURRENCY:-}" ] && extra=(--reconcile-concurrency "$MAILSEC_BENCH_CONCURRENCY")
  MAILSEC_LOG=warn "$BIN" controller --leader-election=false --check-interval 0 \
    --namespace "$NS" --owner-id bench --admin-addr "127.0.0.1:$ADMIN_PORT" "${extra[@]}" \
    >>"$work/controller.log" 2>&1 &
  controller_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  say "error: the controller did not become ready"; exit 1
}
metric() { # metric <name> [label filter]: the sum of the series
  curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" -v f="${2:-}" '
    $1 ~ "^"m"(\\{|$)" && index($1, f) { s += $2 } END { printf "%d", s }'
}
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$controller_pid/status"; }
ready_count() {
  k get maildomains -n "$NS" --chunk-size=1000 \
    -o jsonpath='{range .items[*]}{.metadata.generation}={.status.observedGeneration}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    awk -F= '$1 == $2 && $3 == "True"' | wc -l
}
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# --- 1. N at once -----------------------------------------------------------------------------
start_controller
say "creating $N MailDomains in $ZONES zone(s)"
t0=$EPOCHREALTIME
printf '%s\n' "$work"/md-*.yaml | xargs -P 8 -I{} kubectl --request-timeout=120s create -f {} -o name >/dev/null
created=$(seconds_since "$t0")
say "created in ${created}s; waiting until all are Ready"
while :; do
  ready=$(ready_count)
  elapsed=$(seconds_since "$t0")
  say "  ${elapsed}s: $ready/$N Ready, controller RSS peak $(($(hwm_kib) / 1024)) MiB"
  [ "$ready" -ge "$N" ] && break
  if awk -v e="$elapsed" -v t="$PHASE_TIMEOUT" 'BEGIN { exit !(e > t) }'; then
    say "error: not all Ready within ${PHASE_TIMEOUT}s"; exit 1
  fi
  sleep 5
done
all_ready=$(seconds_since "$t0")
peak_mib=$(($(hwm_kib) / 1024))
reconciles=$(metric mailsec_reconciles_total)
errors=$(metric mailsec_reconcile_errors_total)
dns_requests=$(metric mailsec_dns_requests_total)
dns_unreachable=$(metric mailsec_dns_requests_total DNSUnreachable)
status_writes=$(metric mailsec_status_writes_total)
kube_requests=$(metric mailsec_kube_requests_total)
dns_changes=$(metric mailsec_dns_changes_total)
say "errors by category:"; curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^mailsec_reconcile_errors_total' >&2 || true

# --- 2. restart with all converged -------------------------------------------------------------
stop_controller
start_controller
t1=$EPOCHREALTIME
while [ "$(metric mailsec_reconciles_total)" -lt "$N" ]; do
  if awk -v e="$(seconds_since "$t1")" -v t="$PHASE_TIMEOUT" 'BEGIN { exit !(e > t) }'; then
    say "error: the restarted controller did not reconcile all within ${PHASE_TIMEOUT}s"; exit 1
  fi
  sleep 0.5
done
resync=$(seconds_since "$t1")
sleep 2
resync_dns_changes=$(metric mailsec_dns_changes_total)
resync_status_writes=$(metric mailsec_status_writes_total)
resync_kube=$(metric mailsec_kube_requests_total)
resync_peak=$(($(hwm_kib) / 1024))

per() { awk -v a="$1" -v n="$N" 'BEGIN { printf "%.2f", a / n }'; }
echo
printf '%-44s %s\n' "MailDomains / zones" "$N / $ZONES"
printf '%-44s %s\n' "kubectl create of all (8 parallel)" "${created} s"
printf '%-44s %s\n' "first create -> all Ready" "${all_ready} s"
printf '%-44s %s\n' "controller peak RSS" "$peak_mib MiB"
printf '%-44s %s\n' "reconciles (per MailDomain)" "$reconciles ($(per "$reconciles"))"
printf '%-44s %s\n' "reconcile errors" "$errors"
printf '%-44s %s\n' "DNS requests (per MailDomain)" "$dns_requests ($(per "$dns_requests"))"
printf '%-44s %s\n' "DNS timeouts/unreachable" "$dns_unreachable"
printf '%-44s %s\n' "TXT values written" "$dns_changes"
printf '%-44s %s\n' "status writes (per MailDomain)" "$status_writes ($(per "$status_writes"))"
printf '%-44s %s\n' "API requests (per MailDomain)" "$kube_requests ($(per "$kube_requests"))"
printf '%-44s %s\n' "restart: all reconciled once" "${resync} s"
printf '%-44s %s\n' "restart: DNS writes / status writes" "$resync_dns_changes / $resync_status_writes"
printf '%-44s %s\n' "restart: API requests / peak RSS" "$resync_kube / $resync_peak MiB"
printf '{"benchmark":"scale","n":%d,"zones":%d,"create_s":%s,"all_ready_s":%s,"peak_rss_mib":%d,"reconciles":%d,"errors":%d,"dns_requests":%d,"dns_unreachable":%d,"dns_changes":%d,"status_writes":%d,"kube_requests":%d,"resync_s":%s,"resync_dns_changes":%d,"resync_status_writes":%d,"resync_kube_requests":%d,"resync_peak_rss_mib":%d}\n' \
  "$N" "$ZONES" "$created" "$all_ready" "$peak_mib" "$reconciles" "$errors" "$dns_requests" "$dns_unreachable" "$dns_changes" "$status_writes" "$kube_requests" "$resync" "$resync_dns_changes" "$resync_status_writes" "$resync_kube" "$resync_peak"
