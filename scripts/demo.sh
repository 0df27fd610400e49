#!/usr/bin/env bash
# `make demo`: the operator doing its job end to end on this machine.
#
# 1. scripts/operator-up.sh: the local environment (kube-apiserver + etcd, BIND serving
#    example.test with a TSIG key), the `mailsec` build, `mailsec serve` and `mailsec controller`
#    in the background (kept, and stopped by `make down`), `mailsec receive` (TLS reports), and
#    what the internet would see of
#    example.test: the policy over TLS (`mailsec serve`, a local test CA) and an SMTP peer with
#    STARTTLS for its MX hosts; the controller's live checks ask the local DNS server;
# 2. examples/local/: namespace `mail`, the TSIG Secret and an rfc2136 DNSProvider for the local
#    BIND (filled in from the environment; with PROVIDER=powerdns, the API key Secret and a
#    powerdns DNSProvider for the local PowerDNS instead), a DKIM key Secret and the MailDomain
#    example.test;
# 3. waits (bounded) until the MailDomain is Ready with every live check verified, then shows
#    it, the records as BIND serves them and the policy as senders fetch it;
# 4. TLS reports: a sender's report with failures at mx1 is POSTed to the receiver; it becomes
#    a TLSReport, and the MailDomain's status.tlsReports and TLSReportsClean follow;
# 5. safe enforce: adds a second MX host (mx2) to DNS and asks for `enforce`: the operator holds
#    the policy in `testing` (Enforced=False, HeldInTesting) because mx2 is not covered; adds
#    mx2 to the MailDomain: the policy is promoted to `enforce`;
# 6. `mailsec check example.test` against the local setup, as anyone would run it.
#
# Idempotent: a second run starts again from the testing policy and one MX. The environment
# stays up. (Each run POSTs a new report, so the summary grows.)
# Tunables: see scripts/operator-up.sh; MAILSEC_DEMO_TIMEOUT (seconds per wait, default 90).
set -euo pipefail
LOG_TAG=demo
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/demo-lib.sh
source "$here/demo-lib.sh"

READY_TIMEOUT=${MAILSEC_DEMO_TIMEOUT:-90}
NS=mail
NAME=example-test
SELECTOR=s2026

# The checks ask the DNS server the demo's provider writes to.
case $DEMO_PROVIDER in
  powerdns) check_resolver_var=MAILSEC_PDNS_SERVER ;;
  *) check_resolver_var=MAILSEC_DNS_SERVER ;;
esac
env_exports=$("$here/env-up.sh") || { say "error: scripts/env-up.sh failed"; exit 1; }
eval "$env_exports"
export MAILSEC_CHECK_RESOLVER=${!check_resolver_var}
# The test build (MAILSEC_PROFILE=debug): `make demo` then `make test` compile the project once.
exports=$(MAILSEC_CHECKS=on MAILSEC_PROFILE=${MAILSEC_PROFILE:-debug} "$here/operator-up.sh") || { say "error: scripts/operator-up.sh failed"; exit 1; }
eval "$exports"

failed() {
  say "error: the demo failed (line $1)"
  k get maildomain "$NAME" -n "$NS" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2 2>/dev/null || true
  show_operator_logs 40
  say "the environment is still up; \`make down\` stops it"
}
trap 'failed $LINENO' ERR

# wait_until <what> <jsonpath> <expected>: polls the MailDomain (bounded) until the jsonpath,
# for the current generation, prints <expected>.
wait_until() {
  local what=$1 path=$2 want=$3 deadline=$((SECONDS + READY_TIMEOUT)) got gen observed
  say "waiting (at most ${READY_TIMEOUT}s) until $what"
  while :; do
    read -r gen observed got < <(k get maildomain "$NAME" -n "$NS" \
      -o jsonpath="{.metadata.generation} {.status.observedGeneration} $path" 2>/dev/null || true) || true
    [ "$gen" = "$observed" ] && [ "$got" = "$want" ] && return 0
    if [ $SECONDS -ge $deadline ]; then
      say "error: not $what after ${READY_TIMEOUT}s (generation $gen, observed ${observed:-none}: ${got:-nothing})"
      trap - ERR
      failed $LINENO
      exit 1
    fi
    sleep 0.5
  done
}
cond() { printf '{.status.conditions[?(@.type=="%s")].%s}' "$1" "${2:-status}"; }
VERIFIED=(MTASTSVerified TLSRPTVerified MXCovered SMTPTLSVerified SPFVerified DMARCVerified DKIMVerified)
all_verified_path() { local t p=""; for t in Ready "${VERIFIED[@]}"; do p+="$(cond "$t")"; done; echo "$p"; }
ALL_TRUE=$(printf 'True%.0s' Ready "${VERIFIED[@]}")

# The zone's MX records: mx_hosts mx1 [mx2]. Written to the DNS server directly, as the owner of
# the zone would (these are not the operator's records).
mx_hosts() {
  local h
  case $DEMO_PROVIDER in
    powerdns)
      local records="" pref=10
      for h in "$@"; do
        records+="${records:+,}{\"content\": \"$pref $h.$MAILSEC_DNS_ZONE.\", \"disabled\": false}"
        pref=$((pref + 10))
      done
      curl -sS --fail --max-time 10 -o /dev/null -H "X-API-Key: $MAILSEC_PDNS_API_KEY" -X PATCH \
        -d "{\"rrsets\": [{\"name\": \"$MAILSEC_DNS_ZONE.\", \"type\": \"MX\", \"ttl\": 60, \"changetype\": \"REPLACE\", \"records\": [$records]}]}" \
        "$MAILSEC_PDNS_API_URL/api/v1/servers/localhost/zones/$MAILSEC_DNS_ZONE."
      ;;
    *)
      {
        echo "server ${MAILSEC_DNS_SERVER%:*} ${MAILSEC_DNS_SERVER##*:}"
        echo "zone $MAILSEC_DNS_ZONE"
        echo "update delete $MAILSEC_DNS_ZONE. MX"
        local pref=10
        for h in "$@"; do echo "update add $MAILSEC_DNS_ZONE. 60 MX $pref $h.$MAILSEC_DNS_ZONE."; pref=$((pref + 10)); done
        echo send
      } | nsupdate -y "$MAILSEC_TSIG_ALGORITHM:$MAILSEC_TSIG_KEY_NAME:$MAILSEC_TSIG_SECRET"
      ;;
  esac
}

cd "$DEMO_ROOT"
say "applying examples/local/ (namespace $NS); the zone's MX: mx1.$MAILSEC_DNS_ZONE"
mx_hosts mx1
k apply -f examples/local/namespace.yaml
apply_provider "$NS"
k create secret generic dkim-$SELECTOR -n "$NS" \
  --from-file=public.pem=tests/fixtures/dkim/rsa2048.pub.pem --dry-run=client -o yaml | k apply -f -
k apply -f examples/local/maildomain.yaml
wait_until "MailDomain $NS/$NAME is Ready with every live check verified" "$(all_verified_path)" "$ALL_TRUE"
trap - ERR

DOMAIN=$(k get maildomain "$NAME" -n "$NS" -o jsonpath='{.spec.domain}')
SERVER=$(provider_dns_server)
DNS_HOST=${SERVER%:*} DNS_PORT=${SERVER##*:}
case $DEMO_PROVIDER in powerdns) SERVER_NAME=PowerDNS ;; *) SERVER_NAME=BIND ;; esac

# Prints a command (arguments with spaces in single quotes), then runs it.
show() {
  local a line='$'
  for a in "$@"; do
    case $a in *[[:space:]]*) line+=" '$a'" ;; *) line+=" $a" ;; esac
  done
  printf '\n%s\n' "$line"
  "$@"
}
show kubectl get maildomains -A
echo
echo "# The records as $SERVER_NAME ($SERVER) serves them (DNSProvider type $DEMO_PROVIDER):"
for name in "_mta-sts.$DOMAIN" "_smtp._tls.$DOMAIN" "$DOMAIN" "_dmarc.$DOMAIN" "$SELECTOR._domainkey.$DOMAIN"; do
  show dig "@$DNS_HOST" -p "$DNS_PORT" +short TXT "$name"
done
echo
echo "# The policy as a sender fetches it from https://mta-sts.$DOMAIN/ (mailsec serve with TLS,"
echo "# a certificate of the local test CA; mta-sts.$DOMAIN is 127.0.0.1 in the zone):"
show curl -sS --max-time 5 --cacert "$MAILSEC_TEST_CA" \
  --resolve "mta-sts.$DOMAIN:${MAILSEC_HTTPS_ADDR##*:}:127.0.0.1" \
  "https://mta-sts.$DOMAIN:${MAILSEC_HTTPS_ADDR##*:}/.well-known/mta-sts.txt"
conditions() {
  show kubectl get maildomain "$NAME" -n "$NS" \
    -o jsonpath='{range .status.conditions[*]}{.type}{"\t"}{.status}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end}'
}
echo
echo "# Every live check passed: records, policy over TLS, MX coverage, STARTTLS on the MX hosts."
conditions

trap 'failed $LINENO' ERR
echo
echo "# TLS reports. The _smtp._tls record names the receiver (mailsec receive). A sender's daily"
echo "# report about yesterday, with failures at mx1, is POSTed to it as senders do (RFC 8460 §5.2):"
report_json() { # <org> <report-id> <failed sessions>
  local yesterday policy
  yesterday=$(date -u -d yesterday +%F)
  policy=$(k get maildomain "$NAME" -n "$NS" -o jsonpath='{.status.servedPolicy}' |
    tr -d '\r' | sed 's/.*/"&"/' | paste -sd, -)
  printf '{"organization-name":"%s","date-range":{"start-datetime":"%sT00:00:00Z","end-datetime":"%sT23:59:59Z"},"contact-info":"tlsrpt@%s.example","report-id":"%s","policies":[{"policy":{"policy-type":"sts","policy-string":[%s],"policy-domain":"%s","mx-host":["mx1.%s"]},"summary":{"total-successful-session-count":120,"total-failure-session-count":%s},"failure-details":[%s]}]}' \
    "$1" "$yesterday" "$yesterday" "$1" "$2" "$policy" "$DOMAIN" "$DOMAIN" "$3" \
    "$([ "$3" -gt 0 ] && printf '{"result-type":"certificate-expired","receiving-mx-hostname":"mx1.%s","receiving-ip":"127.0.0.1","failed-session-count":%s}' "$DOMAIN" "$3")"
}
report_json demo-sender "demo-$(date -u +%s)" 4 >"$MAILSEC_ENV_DIR/report.json"
show curl -sS --max-time 5 -H 'Content-Type: application/tlsrpt+json' --data-binary "@$MAILSEC_ENV_DIR/report.json" \
  "http://$MAILSEC_RECEIVE_ADDR/v1/reports"
wait_until "the report is read into the status" "$(cond TLSReportsClean reason)" FailuresReported
show kubectl get tlsreports -n "$NS"
show kubectl get maildomain "$NAME" -n "$NS" -o jsonpath='{.status.tlsReports.windows[1]}{"\n"}'
conditions
trap - ERR

trap 'failed $LINENO' ERR
echo
echo "# Safe enforce. The zone gets a second MX host, mx2.$DOMAIN, that the policy does not cover,"
echo "# and the MailDomain asks for mode enforce:"
mx_hosts mx1 mx2
show kubectl patch maildomain "$NAME" -n "$NS" --type merge -p '{"spec":{"mtaSts":{"mode":"enforce"}}}'
wait_until "enforce is held in testing" "$(cond Enforced reason)" HeldInTesting
echo "# Senders in enforce mode would refuse mx2: the operator keeps serving testing."
conditions
echo
echo "# The MX list is fixed: mx2 is added to the MailDomain. The checks pass, the policy is promoted:"
show kubectl patch maildomain "$NAME" -n "$NS" --type merge \
  -p "{\"spec\":{\"mx\":[\"mx1.$DOMAIN\",\"mx2.$DOMAIN\"]}}"
wait_until "enforce is served" "$(cond Enforced reason)$(cond Ready)" EnforcedTrue
show curl -sS --max-time 5 --cacert "$MAILSEC_TEST_CA" \
  --resolve "mta-sts.$DOMAIN:${MAILSEC_HTTPS_ADDR##*:}:127.0.0.1" \
  "https://mta-sts.$DOMAIN:${MAILSEC_HTTPS_ADDR##*:}/.well-known/mta-sts.txt"
conditions
trap - ERR

echo
echo "# mailsec check, as anyone would run it against the domain (here: the local DNS server, the"
echo "# test CA, and the local ports of the policy host and the SMTP peer):"
show "$MAILSEC_BIN" check "$DOMAIN" --resolver "$MAILSEC_CHECK_RESOLVER" --ca-file "$MAILSEC_TEST_CA" \
  --https-port "${MAILSEC_HTTPS_ADDR##*:}" --smtp-port "${MAILSEC_SMTP_ADDR##*:}" --timeout 3
cat <<EOF

# Everything is still running: mailsec serve on $MAILSEC_SERVE_ADDR (and with TLS on
# $MAILSEC_HTTPS_ADDR), the SMTP peer on $MAILSEC_SMTP_ADDR, the controller's
# /metrics on $MAILSEC_CONTROLLER_ADMIN_ADDR, logs in $MAILSEC_ENV_DIR/logs/.
#   eval "\$(make -s up)"   exports KUBECONFIG and PATH for kubectl (and MAILSEC_DNS_* for dig)
#   make down              stops the operator and the environment
EOF
