#!/usr/bin/env bash
# `make bench`: how long from `kubectl apply` of a MailDomain until BIND answers its
# `_mta-sts` TXT record with the policy's id, and until the MailDomain's Ready condition is True.
#
#   scripts/bench-publish.sh [N]        (N MailDomains, default 20, at most 500)
#
# Starts what is missing through scripts/operator-up.sh (environment, build, serve, controller;
# release build unless MAILSEC_PROFILE=debug), then, one at a time, applies a MailDomain
# b<i>-<run>.example.test (MTA-STS testing, TLS-RPT, DMARC) in the namespace mailsec-bench and
# measures from the moment `kubectl apply` returns:
#   dns:   until `dig` against the local BIND returns the expected `v=STSv1; id=...` (the id that
#          `mailsec render` computes for the same manifest), polling (one `dig` after another with
#          a 10 ms pause; the average period is printed), 30 s at most;
#   ready: until a watch (`kubectl get -w`, started before) delivers the MailDomain with Ready=True
#          for its current generation, 30 s at most.
# Prints each measurement, then min / median / p90 / max in ms for both, and the same figures as
# one JSON line at the end of stdout. The benchmark's MailDomains are deleted afterwards (with
# mailsec.io/skip-withdrawal=true, so no mode-none policy is kept for max_age), also on failure.
set -euo pipefail
LOG_TAG=bench
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/demo-lib.sh
source "$here/demo-lib.sh"

N=${1:-${MAILSEC_BENCH_N:-20}}
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] && [ "$N" -le 500 ] || { say "error: N must be 1..500, not $N"; exit 2; }
NS=mailsec-bench
TIMEOUT_US=30000000
RUN=$(printf '%04x%04x' $((RANDOM % 65536)) $((RANDOM % 65536)))

# The benchmark measures publishing: the live checks stay off (Ready does not wait for them).
exports=$(MAILSEC_CHECKS=${MAILSEC_BENCH_CHECKS:-off} "$here/operator-up.sh") || { say "error: scripts/operator-up.sh failed"; exit 1; }
eval "$exports"
apply_provider "$NS" >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/mailsec-bench.XXXXXX")
watch_pid='' stamp_pid=''
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if k get maildomains -n "$NS" -l "mailsec.io/bench-run=$RUN" -o name 2>/dev/null | grep -q .; then
    say "deleting this run's MailDomains (skip-withdrawal)"
    # Without the annotation a deleted MailDomain keeps a mode-none policy for max_age (a day).
    if k annotate maildomains -n "$NS" -l "mailsec.io/bench-run=$RUN" --overwrite \
      mailsec.io/skip-withdrawal=true >/dev/null; then
      k delete maildomains -n "$NS" -l "mailsec.io/bench-run=$RUN" --wait=true --timeout=60s >/dev/null || {
        say "error: the benchmark's MailDomains were not deleted within 60s"
        rc=1
      }
    else
      say "error: could not annotate this run's MailDomains; left in place (label mailsec.io/bench-run=$RUN)"
      rc=1
    fi
  fi
  # Only the two processes this script started, by PID.
  [ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null || true
  [ -n "$stamp_pid" ] && kill "$stamp_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
  case $rc in 0 | 130 | 143) ;; *) show_operator_logs 20 ;; esac
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The watch, started before the first apply: every event of this run's MailDomains, stamped with
# the time it arrived (microseconds).
mkfifo "$work/watch"
kubectl get maildomains -n "$NS" -l "mailsec.io/bench-run=$RUN" --watch --request-timeout=0 \
  -o jsonpath='{.metadata.name} {.metadata.generation} {.status.observedGeneration} {.status.conditions[?(@.type=="Ready")].status}{"\n"}' \
  >"$work/watch" 2>"$work/watch.err" &
watch_pid=$!
(
  trap - EXIT
  while IFS= read -r line; do now_us; printf '%s %s\n' "$NOW" "$line"; done
) <"$work/watch" >"$work/events" &
stamp_pid=$!

manifest() { # manifest <i> <domain>
  cat <<EOF
apiVersion: mailsec.io/v1alpha1
kind: MailDomain
metadata:
  name: b$1-$RUN
  namespace: $NS
  labels:
    mailsec.io/bench-run: "$RUN"
spec:
  domain: $2
  ttl: 60
  dnsProviderRef:
    name: local
  mx:
    - mx1.$2
  mtaSts:
    mode: testing
    maxAge: 86400
  tlsRpt:
    rua:
      - mailto:tlsrpt@$2
  dmarc:
    policy: none
    rua:
      - mailto:dmarc@$2
EOF
}

ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }

say "run $RUN: $N MailDomains in namespace $NS, one at a time ($MAILSEC_PROFILE build)"
printf '%-32s %10s %10s\n' domain dns_ms ready_ms
dns_list=() ready_list=() polls=0 dns_total=0
for i in $(seq 1 "$N"); do
  name=b$i-$RUN
  domain=$name.$MAILSEC_DNS_ZONE
  manifest "$i" "$domain" >"$work/$name.yaml"
  want=$("$MAILSEC_BIN" render -f "$work/$name.yaml" | grep -o 'v=STSv1; id=[A-Za-z0-9]*') ||
    { say "error: mailsec render gave no _mta-sts record"; exit 1; }

  k apply -f "$work/$name.yaml" >/dev/null
  now_us; t0=$NOW

  # dns: poll BIND every 10 ms.
  while :; do
    got=$(dns_txt "_mta-sts.$domain" || true)
    now_us; t=$NOW
    polls=$((polls + 1))
    [ "$got" = "\"$want\"" ] && break
    if [ $((t - t0)) -ge $TIMEOUT_US ]; then
      say "error: $domain: BIND did not answer \"$want\" within 30s (last answer: ${got:-none})"
      exit 1
    fi
    sleep 0.01
  done
  dns_us=$((t - t0)) dns_total=$((dns_total + t - t0))

  # ready: the first watch event with Ready=True for the current generation (1: just created).
  gen=1
  while :; do
    stamp=$(awk -v n="$name" -v g="$gen" '$2 == n && $3 == g && $4 == g && $5 == "True" { print $1; exit }' "$work/events")
    [ -n "$stamp" ] && break
    now_us
    if [ $((NOW - t0)) -ge $TIMEOUT_US ]; then
      say "error: $name: not Ready within 30s"
      k get maildomain "$name" -n "$NS" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2 || true
      [ -s "$work/watch.err" ] && { say "watch errors:"; cat "$work/watch.err" >&2; }
      exit 1
    fi
    sleep 0.01
  done
  ready_us=$((stamp - t0))

  dns_list+=("$dns_us") ready_list+=("$ready_us")
  printf '%-32s %10s %10s\n' "$domain" "$(ms "$dns_us")" "$(ms "$ready_us")"
done

# stats <microseconds...>: "min median p90 max" in ms (median: mean of the middle two for even
# N; p90: nearest rank).
stats() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    n = NR; med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    r = int(0.9 * n); if (r < 0.9 * n) r++; if (r < 1) r = 1
    printf "%.1f %.1f %.1f %.1f", v[1] / 1000, med / 1000, v[r] / 1000, v[n] / 1000 }'
}
read -r dmin dmed dp90 dmax <<<"$(stats "${dns_list[@]}")"
read -r rmin rmed rp90 rmax <<<"$(stats "${ready_list[@]}")"
poll_us=$((dns_total / polls))
echo
printf '%-34s %8s %8s %8s %8s\n' "(ms, n=$N)" min median p90 max
printf '%-34s %8s %8s %8s %8s\n' "apply -> BIND answers _mta-sts id" "$dmin" "$dmed" "$dp90" "$dmax"
printf '%-34s %8s %8s %8s %8s\n' "apply -> Ready=True" "$rmin" "$rmed" "$rp90" "$rmax"
echo "(one dig poll every $(ms "$poll_us") ms on average: the dns figures are late by up to that much)"
printf '{"benchmark":"publish","n":%d,"profile":"%s","dns_ms":{"min":%s,"median":%s,"p90":%s,"max":%s},"ready_ms":{"min":%s,"median":%s,"p90":%s,"max":%s},"dns_poll_ms":%s}\n' \
  "$N" "$MAILSEC_PROFILE" "$dmin" "$dmed" "$dp90" "$dmax" "$rmin" "$rmed" "$rp90" "$rmax" "$(ms "$poll_us")"
