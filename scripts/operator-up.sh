#!/usr/bin/env bash
# Brings up the local environment (scripts/env-up.sh) and runs the operator against it:
# `mailsec serve` and `mailsec controller` (leader election on), as background processes on free
# loopback ports. With the live checks on (the default), also what the internet would see of
# the zone's domain: `mailsec serve` over TLS for https://mta-sts.<zone>/ with a certificate of a
# local test CA (made with openssl in $STATE/demo-pki/), and an SMTP peer with STARTTLS (aiosmtpd, as
# in the tests) for mx1/mx2.<zone>; the controller checks through the local DNS server. Prints `export` lines for `eval` on stdout (the environment's, then ours):
#
#   eval "$(scripts/operator-up.sh)"
#
# Used by scripts/demo.sh (`make demo`) and scripts/bench-publish.sh (`make bench`).
#
# - builds `mailsec` with cargo (release profile by default: the benchmark should show the
#   operator as it is deployed; MAILSEC_PROFILE=debug, the demo's default, builds exactly what
#   `cargo test --all-targets` builds, so `make demo` and `make test` compile the project once);
# - runs a copy of the binary from the state directory ($STATE/bin/mailsec), so the command line
#   names that directory: env-down.sh stops these processes by their recorded PIDs with the same
#   safety check as the environment's (and a later `cargo build` never changes what runs);
# - PIDs in $STATE/pids/mailsec-{serve,controller}.pid, logs in $STATE/logs/, ports in
#   $STATE/ports/, the exports in $STATE/operator.env;
# - idempotent: processes that are up, healthy and running the freshly built binary with the
#   same settings are kept; otherwise they are stopped and started again.
#
# Tunables: MAILSEC_ENV_DIR, MAILSEC_PROFILE (release|debug), MAILSEC_CHECKS (on|off),
# MAILSEC_CHECK_RESOLVER (the DNS server the checks ask, default the local BIND),
# MAILSEC_CHECK_INTERVAL (seconds, default 5), MAILSEC_OPERATOR_NAMESPACE
# (default mailsec-system: the Lease lives there), MAILSEC_START_TIMEOUT (seconds per process,
# default 60), MAILSEC_BUILD_TIMEOUT (seconds, default 3600), MAILSEC_LOG (log filter).
set -euo pipefail
LOG_TAG=operator-up
# shellcheck source=scripts/env-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/env-lib.sh"

PROFILE=${MAILSEC_PROFILE:-release}
CHECKS=${MAILSEC_CHECKS:-on}
CHECK_INTERVAL=${MAILSEC_CHECK_INTERVAL:-5}
OPERATOR_NAMESPACE=${MAILSEC_OPERATOR_NAMESPACE:-mailsec-system}
START_TIMEOUT=${MAILSEC_START_TIMEOUT:-60}
BUILD_TIMEOUT=${MAILSEC_BUILD_TIMEOUT:-3600}
IDENTITY=mailsec-local
LEASE=mailsec-operator

# debug builds what `cargo test --all-targets` builds (same units, same features), so a demo and
# a test run on a new machine compile the project once.
case $PROFILE in
  release) build_args=(--release --bin mailsec) first_build="15 minutes" ;;
  debug) build_args=(--all-targets) first_build="8 minutes" ;;
  *) die "MAILSEC_PROFILE must be release or debug, not $PROFILE" ;;
esac
case $CHECKS in on | off) ;; *) die "MAILSEC_CHECKS must be on or off, not $CHECKS" ;; esac

check_state_location

# --- the environment -------------------------------------------------------------------------
env_exports=$("$MAILSEC_ROOT/scripts/env-up.sh") || die "scripts/env-up.sh failed"
eval "$env_exports"
CHECK_RESOLVER=${MAILSEC_CHECK_RESOLVER:-$MAILSEC_DNS_SERVER}

# --- the binary --------------------------------------------------------------------------------
log "building mailsec (cargo build ${build_args[*]}): the first build on a new machine takes about $first_build on 2 cores, later ones seconds"
build_out=$(cd "$MAILSEC_ROOT" &&
  timeout -k 30 "$BUILD_TIMEOUT" cargo build "${build_args[@]}" \
    --message-format=json-render-diagnostics) || die "cargo build failed"
BUILT=$(sed -n 's/.*"executable":"\([^"]*\/mailsec\)".*/\1/p' <<<"$build_out" | tail -n 1)
[ -x "$BUILT" ] || die "cargo build did not report the mailsec executable"

# --- the processes -----------------------------------------------------------------------------
exec 9>"$STATE.lock"
flock -w 300 9 || die "another env-up/env-down/operator-up holds $STATE.lock"
[ -f "$STATE/$STATE_MARKER" ] && [ -f "$STATE/env" ] || die "the environment in $STATE went away"

kubectl_() { kubectl --kubeconfig "$STATE/kubeconfig" --request-timeout=30s "$@"; }
port_of() { cat "$STATE/ports/$1" 2>/dev/null || true; }
readyz() { [ "$(curl -sS --max-time 2 "http://127.0.0.1:$1/readyz" 2>/dev/null)" = ok ]; }
# What a running operator must have been started with to be kept (bump `launch=` when the way
# it is started changes).
SETTINGS="launch=4 checks=$CHECKS resolver=$CHECK_RESOLVER interval=$CHECK_INTERVAL profile=$PROFILE namespace=$OPERATOR_NAMESPACE identity=$IDENTITY log=${MAILSEC_LOG:-} format=${MAILSEC_LOG_FORMAT:-}"

operator_healthy() {
  local c
  for c in "${OPERATOR_COMPONENTS[@]}"; do pid_is_ours "$(recorded_pid "$c")" || return 1; done
  [ "$(cat "$STATE/operator.settings" 2>/dev/null)" = "$SETTINGS" ] || return 1
  cmp -s "$BUILT" "$STATE/bin/mailsec" || return 1
  [ -f "$STATE/operator.env" ] || return 1
  readyz "$(port_of mailsec-serve-admin)" && readyz "$(port_of mailsec-controller-admin)"
}

fail_start() {
  log "error: $*"
  show_logs 30 "${OPERATOR_COMPONENTS[@]}"
  stop_operator
  exit 1
}


wait_ready() {
  local name=$1 port=$2 deadline=$((SECONDS + START_TIMEOUT))
  until readyz "$port"; do
    pid_is_ours "$(recorded_pid "$name")" || fail_start "$name exited before it was ready"
    [ $SECONDS -lt $deadline ] || fail_start "$name: /readyz not ok after ${START_TIMEOUT}s"
    sleep 0.2
  done
}

# /readyz of the controller is ok on a standby replica too: leadership is read from the Lease.
wait_leader() {
  local deadline=$((SECONDS + START_TIMEOUT)) holder
  while :; do
    holder=$(kubectl_ get lease "$LEASE" -n "$OPERATOR_NAMESPACE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
    [ "$holder" = "$IDENTITY" ] && return 0
    pid_is_ours "$(recorded_pid mailsec-controller)" || fail_start "mailsec-controller exited before it led"
    [ $SECONDS -lt $deadline ] ||
      fail_start "mailsec-controller: Lease $OPERATOR_NAMESPACE/$LEASE held by ${holder:-nobody}, not $IDENTITY, after ${START_TIMEOUT}s"
    sleep 0.2
  done
}

# A local test CA and one certificate for the policy host and the MX hosts of the zone (what a
# public CA would sign), valid 30 days, remade when it has less than a day left.
make_pki() {
  local dir=$STATE/demo-pki zone=$MAILSEC_DNS_ZONE
  if [ -s "$dir/leaf.crt" ] && openssl x509 -checkend 86400 -noout -in "$dir/leaf.crt" >/dev/null 2>&1; then
    return 0
  fi
  log "making a local test CA and a certificate for mta-sts.$zone, mx1.$zone, mx2.$zone ($dir)"
  rm -rf "$dir" && mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
      -subj "/CN=mailsec local test CA" -keyout ca.key -out ca.crt \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=mta-sts.$zone" -keyout leaf.key -out leaf.csr 2>/dev/null
    printf 'subjectAltName=DNS:mta-sts.%s,DNS:mx1.%s,DNS:mx2.%s\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' \
      "$zone" "$zone" "$zone" >leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile leaf.ext -out leaf.crt 2>/dev/null
    chmod 600 ca.key leaf.key
  ) || die "openssl could not make the test certificates"
}

wait_port() {
  local name=$1 port=$2 deadline=$((SECONDS + START_TIMEOUT))
  until port_in_use "$port"; do
    pid_is_ours "$(recorded_pid "$name")" || fail_start "$name exited before it listened"
    [ $SECONDS -lt $deadline ] || fail_start "$name: nothing listens on $port after ${START_TIMEOUT}s"
    sleep 0.2
  done
}

print_exports() { printf '%s\n' "$env_exports"; cat "$STATE/operator.env"; }

if operator_healthy; then
  log "mailsec serve and controller are already up (logs: $STATE/logs/mailsec-*.log)"
  print_exports
  exit 0
fi

stop_operator
for c in "${OPERATOR_COMPONENTS[@]}"; do
  if pid_is_ours "$(recorded_pid "$c")"; then die "$c (pid $(recorded_pid "$c")) is still running"; fi
done
rm -f "$STATE/operator.env" "$STATE/operator.settings"

kubectl_ create namespace "$OPERATOR_NAMESPACE" --dry-run=client -o yaml |
  kubectl_ apply -f - >/dev/null || die "creating namespace $OPERATOR_NAMESPACE failed"

mkdir -p "$STATE/bin"
cp "$BUILT" "$STATE/bin/mailsec.tmp"
mv -f "$STATE/bin/mailsec.tmp" "$STATE/bin/mailsec"
MAILSEC=$STATE/bin/mailsec

mapfile -t taken < <(cat "$STATE"/ports/* 2>/dev/null)
picked=()
pick() { local p; p=$(pick_port "${taken[@]}" "${picked[@]}"); picked+=("$p"); echo "$p" >"$STATE/ports/$1"; }
for p in mailsec-serve mailsec-serve-admin mailsec-serve-tls mailsec-serve-tls-admin mailsec-smtp-peer mailsec-receive mailsec-receive-admin mailsec-controller-admin; do
  pick "$p"
done
SERVE_PORT=$(port_of mailsec-serve) SERVE_ADMIN_PORT=$(port_of mailsec-serve-admin)
TLS_PORT=$(port_of mailsec-serve-tls) TLS_ADMIN_PORT=$(port_of mailsec-serve-tls-admin)
SMTP_PORT=$(port_of mailsec-smtp-peer) CONTROLLER_ADMIN_PORT=$(port_of mailsec-controller-admin)
RECEIVE_PORT=$(port_of mailsec-receive) RECEIVE_ADMIN_PORT=$(port_of mailsec-receive-admin)
# The receiver's public URL (an Ingress in a cluster); the demo POSTs to its local port.
REPORT_URL="https://tlsrpt.$MAILSEC_DNS_ZONE/v1/reports"

# Settings come from flags only: the processes get a clean environment (no MAILSEC_* or POD_*
# variable a shell may carry), so the demo behaves the same everywhere. NO_COLOR: plain logs.
run_env=(env -i "PATH=$PATH" "HOME=${HOME:-/}" "KUBECONFIG=$STATE/kubeconfig" NO_COLOR=1
  "MAILSEC_LOG=${MAILSEC_LOG:-info,kube=warn}" "MAILSEC_LOG_FORMAT=${MAILSEC_LOG_FORMAT:-text}")

log "starting mailsec serve on 127.0.0.1:$SERVE_PORT (admin 127.0.0.1:$SERVE_ADMIN_PORT)"
launch mailsec-serve "${run_env[@]}" "$MAILSEC" serve \
  --listen "127.0.0.1:$SERVE_PORT" --admin-addr "127.0.0.1:$SERVE_ADMIN_PORT"
wait_ready mailsec-serve "$SERVE_ADMIN_PORT"

check_flags=(--check-interval 0)
if [ "$CHECKS" = on ]; then
  make_pki
  # The public side: https://mta-sts.<zone>/ as a sender fetches it (an Ingress in a cluster).
  log "starting mailsec serve with TLS on 127.0.0.1:$TLS_PORT (https://mta-sts.$MAILSEC_DNS_ZONE/, test CA)"
  launch mailsec-serve-tls "${run_env[@]}" "$MAILSEC" serve \
    --listen "127.0.0.1:$TLS_PORT" --admin-addr "127.0.0.1:$TLS_ADMIN_PORT" \
    --tls-cert "$STATE/demo-pki/leaf.crt" --tls-key "$STATE/demo-pki/leaf.key"
  wait_ready mailsec-serve-tls "$TLS_ADMIN_PORT"
  # The MX hosts' SMTP service with STARTTLS.
  cp "$MAILSEC_ROOT/tests/fixtures/smtp/server.py" "$STATE/bin/smtp-peer.py"
  log "starting an SMTP peer with STARTTLS on 127.0.0.1:$SMTP_PORT (aiosmtpd: mx1/mx2.$MAILSEC_DNS_ZONE)"
  launch mailsec-smtp-peer env -i "PATH=$PATH" "PYTHONPATH=$("$MAILSEC_ROOT/scripts/tools.sh" pythonpath)" \
    python3 "$STATE/bin/smtp-peer.py" "$SMTP_PORT" starttls "$STATE/demo-pki/leaf.crt" "$STATE/demo-pki/leaf.key"
  wait_port mailsec-smtp-peer "$SMTP_PORT"
  check_flags=(--check-resolver "$CHECK_RESOLVER" --check-interval "$CHECK_INTERVAL" --check-timeout 3
    --check-ca-file "$STATE/demo-pki/ca.crt" --check-https-port "$TLS_PORT" --check-smtp-port "$SMTP_PORT")
fi

log "starting mailsec receive on 127.0.0.1:$RECEIVE_PORT (TLS reports for $REPORT_URL)"
launch mailsec-receive "${run_env[@]}" "$MAILSEC" receive \
  --listen "127.0.0.1:$RECEIVE_PORT" --admin-addr "127.0.0.1:$RECEIVE_ADMIN_PORT"
wait_ready mailsec-receive "$RECEIVE_ADMIN_PORT"

# A fixed identity: a restarted controller takes its own Lease at once instead of waiting for
# the old holder's lease to expire.
log "starting mailsec controller (admin 127.0.0.1:$CONTROLLER_ADMIN_PORT, namespace $OPERATOR_NAMESPACE)"
launch mailsec-controller "${run_env[@]}" "$MAILSEC" controller \
  --namespace "$OPERATOR_NAMESPACE" \
  --leader-election true \
  --identity "$IDENTITY" \
  --lease-name "$LEASE" \
  --policy-server-url "http://127.0.0.1:$SERVE_PORT/" \
  --report-url "$REPORT_URL" \
  --admin-addr "127.0.0.1:$CONTROLLER_ADMIN_PORT" "${check_flags[@]}"
wait_ready mailsec-controller "$CONTROLLER_ADMIN_PORT"
wait_leader

q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
{
  echo "export MAILSEC_BIN=$(q "$MAILSEC")"
  echo "export MAILSEC_PROFILE=$(q "$PROFILE")"
  echo "export MAILSEC_OPERATOR_NAMESPACE=$(q "$OPERATOR_NAMESPACE")"
  echo "export MAILSEC_SERVE_ADDR=$(q "127.0.0.1:$SERVE_PORT")"
  echo "export MAILSEC_SERVE_ADMIN_ADDR=$(q "127.0.0.1:$SERVE_ADMIN_PORT")"
  echo "export MAILSEC_CONTROLLER_ADMIN_ADDR=$(q "127.0.0.1:$CONTROLLER_ADMIN_PORT")"
  echo "export MAILSEC_CHECKS=$(q "$CHECKS")"
  echo "export MAILSEC_RECEIVE_ADDR=$(q "127.0.0.1:$RECEIVE_PORT")"
  echo "export MAILSEC_RECEIVE_ADMIN_ADDR=$(q "127.0.0.1:$RECEIVE_ADMIN_PORT")"
  if [ "$CHECKS" = on ]; then
    echo "export MAILSEC_HTTPS_ADDR=$(q "127.0.0.1:$TLS_PORT")"
    echo "export MAILSEC_SMTP_ADDR=$(q "127.0.0.1:$SMTP_PORT")"
    echo "export MAILSEC_CHECK_RESOLVER=$(q "$CHECK_RESOLVER")"
    echo "export MAILSEC_TEST_CA=$(q "$STATE/demo-pki/ca.crt")"
  fi
} >"$STATE/operator.env.tmp"
mv "$STATE/operator.env.tmp" "$STATE/operator.env"
echo "$SETTINGS" >"$STATE/operator.settings"
log "mailsec serve (pid $(recorded_pid mailsec-serve)) and controller (pid $(recorded_pid mailsec-controller)) are up; logs in $STATE/logs/"
print_exports
