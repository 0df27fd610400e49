# Shared by demo.sh and bench-publish.sh; sourced, not executed, after
# `eval "$(scripts/operator-up.sh)"` (which exports KUBECONFIG, MAILSEC_DNS_*, MAILSEC_TSIG_*,
# MAILSEC_ENV_DIR, MAILSEC_SERVE_ADDR, ...).

DEMO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '[%s] %s\n' "${LOG_TAG:-demo}" "$*" >&2; }

k() { kubectl --request-timeout=30s "$@"; }

# The placeholders a template in examples/local/ may use: the environment's exports.
TEMPLATE_VARS=(MAILSEC_DNS_SERVER MAILSEC_DNS_ZONE MAILSEC_TSIG_KEY_NAME MAILSEC_TSIG_ALGORITHM
  MAILSEC_TSIG_SECRET MAILSEC_PDNS_API_URL MAILSEC_PDNS_API_KEY)

# Which local DNS server the demo writes to: rfc2136 (BIND) or powerdns (the PowerDNS API).
DEMO_PROVIDER=${MAILSEC_DEMO_PROVIDER:-rfc2136}
case $DEMO_PROVIDER in
  rfc2136) PROVIDER_TEMPLATE=dnsprovider.yaml.tmpl ;;
  powerdns) PROVIDER_TEMPLATE=dnsprovider-powerdns.yaml.tmpl ;;
  *) say "error: PROVIDER must be rfc2136 or powerdns, not $DEMO_PROVIDER"; exit 1 ;;
esac

# Prints a template with its ${MAILSEC_...} placeholders filled in (like envsubst, without
# needing it, and without touching anything else); fails on a placeholder left unfilled.
render_template() {
  local text v
  text=$(<"$1")
  for v in "${TEMPLATE_VARS[@]}"; do
    [ -n "${!v:-}" ] || { say "error: $v is not set"; return 1; }
    text=${text//"\${$v}"/"${!v}"}
  done
  case $text in *'${'*) say "error: $1 has a placeholder that is not one of ${TEMPLATE_VARS[*]}"; return 1 ;; esac
  printf '%s\n' "$text"
}

# Creates namespace $1 (if needed) and applies the DNSProvider `local` of $DEMO_PROVIDER and its
# Secret to it.
apply_provider() {
  local ns=$1
  k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
  render_template "$DEMO_ROOT/examples/local/$PROVIDER_TEMPLATE" | k apply -n "$ns" -f -
}

# The DNS side of the server the demo's provider writes: host:port.
provider_dns_server() {
  case $DEMO_PROVIDER in
    powerdns) echo "$MAILSEC_PDNS_SERVER" ;;
    *) echo "$MAILSEC_DNS_SERVER" ;;
  esac
}

# dig against the local BIND: dns_txt <name>
dns_txt() {
  dig +short +time=1 +tries=1 -p "${MAILSEC_DNS_SERVER##*:}" "@${MAILSEC_DNS_SERVER%:*}" "$1" TXT
}

show_operator_logs() {
  local c
  for c in mailsec-controller mailsec-serve; do
    [ -s "$MAILSEC_ENV_DIR/logs/$c.log" ] || continue
    say "---- last lines of $MAILSEC_ENV_DIR/logs/$c.log ----"
    tail -n "${1:-40}" "$MAILSEC_ENV_DIR/logs/$c.log" >&2
  done
}

# Sets NOW to the microseconds since the epoch (a variable, not output: no fork).
now_us() { local t=$EPOCHREALTIME; NOW=${t//[!0-9]/}; }
