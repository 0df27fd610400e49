#!/usr/bin/env bash
# `make demo`: the operator doing its job end to end on this machine.
#
# 1. scripts/operator-up.sh: the local environment (kube-apiserver + etcd, BIND serving
#    example.test with a TSIG key), the `mailsec` build, `mailsec serve` and `mailsec controller`
#    in the background (kept, and stopped by `make down`);
# 2. examples/local/: namespace `mail`, the TSIG Secret and an rfc2136 DNSProvider for the local
#    BIND (filled in from the environment; with PROVIDER=powerdns, the API key Secret and a
#    powerdns DNSProvider for the local PowerDNS instead), a DKIM key Secret and the MailDomain
#    example.test;
# 3. waits (bounded) until the MailDomain is Ready, then shows it, the records as BIND serves
#    them and the policy as `mailsec serve` returns it.
#
# Idempotent: a second run re-applies (no change) and shows the same. The environment stays up.
# Tunables: see scripts/operator-up.sh; MAILSEC_DEMO_TIMEOUT (seconds to Ready, default 60).
set -euo pipefail
LOG_TAG=demo
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/demo-lib.sh
source "$here/demo-lib.sh"

READY_TIMEOUT=${MAILSEC_DEMO_TIMEOUT:-60}
NS=mail
NAME=example-test
SELECTOR=s2026

exports=$("$here/operator-up.sh") || { say "error: scripts/operator-up.sh failed"; exit 1; }
eval "$exports"

failed() {
  say "error: the demo failed (line $1)"
  k get maildomain "$NAME" -n "$NS" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2 2>/dev/null || true
  show_operator_logs 40
  say "the environment is still up; \`make down\` stops it"
}
trap 'failed $LINENO' ERR

cd "$DEMO_ROOT"
say "applying examples/local/ (namespace $NS)"
k apply -f examples/local/namespace.yaml
apply_provider "$NS"
k create secret generic dkim-$SELECTOR -n "$NS" \
  --from-file=public.pem=tests/fixtures/dkim/rsa2048.pub.pem --dry-run=client -o yaml | k apply -f -
k apply -f examples/local/maildomain.yaml

say "waiting (at most ${READY_TIMEOUT}s) for MailDomain $NS/$NAME to be Ready"
deadline=$((SECONDS + READY_TIMEOUT))
while :; do
  state=$(k get maildomain "$NAME" -n "$NS" \
    -o jsonpath='{.metadata.generation} {.status.observedGeneration} {.status.conditions[?(@.type=="Ready")].status}')
  read -r gen observed ready <<<"$state"
  [ "$ready" = True ] && [ "$gen" = "$observed" ] && break
  if [ $SECONDS -ge $deadline ]; then
    say "error: not Ready after ${READY_TIMEOUT}s (generation $gen, observed ${observed:-none}, Ready ${ready:-unset})"
    trap - ERR
    failed $LINENO
    exit 1
  fi
  sleep 0.5
done
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
echo "# The policy as mailsec serve returns it (what https://mta-sts.$DOMAIN/ would serve):"
show curl -sS --max-time 5 -H "Host: mta-sts.$DOMAIN" "http://$MAILSEC_SERVE_ADDR/.well-known/mta-sts.txt"
cat <<EOF

# Everything is still running: mailsec serve on $MAILSEC_SERVE_ADDR, the controller's
# /metrics on $MAILSEC_CONTROLLER_ADMIN_ADDR, logs in $MAILSEC_ENV_DIR/logs/.
#   eval "\$(make -s up)"   exports KUBECONFIG and PATH for kubectl (and MAILSEC_DNS_* for dig)
#   make down              stops the operator and the environment
EOF
