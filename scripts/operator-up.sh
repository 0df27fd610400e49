#!/usr/bin/env bash
# Brings up the local environment (scripts/env-up.sh) and runs the operator against it:
# `mailsec serve` and `mailsec controller` (leader election on), as background processes on free
# loopback ports. Prints `export` lines for `eval` on stdout (the environment's, then ours):
#
#   eval "$(scripts/operator-up.sh)"
#
# Used by scripts/demo.sh (`make demo`) and scripts/bench-publish.sh (`make bench`).
#
# - builds `mailsec` with cargo (release profile by default: the demo and the benchmark should
#   show the operator as it is deployed; MAILSEC_PROFILE=debug reuses `cargo test`'s build);
# - runs a copy of the binary from the state directory ($STATE/bin/mailsec), so the command line
#   names that directory: env-down.sh stops these processes by their recorded PIDs with the same
#   safety check as the environment's (and a later `cargo build` never changes what runs);
# - PIDs in $STATE/pids/mailsec-{serve,controller}.pid, logs in $STATE/logs/, ports in
#   $STATE/ports/, the exports in $STATE/operator.env;
# - idempotent: processes that are up, healthy and running the freshly built binary with the
#   same settings are kept; otherwise they are stopped and started again.
#
# Tunables: MAILSEC_ENV_DIR, MAILSEC_PROFILE (release|debug), MAILSEC_OPERATOR_NAMESPACE
# (default mailsec-system: the Lease lives there), MAILSEC_START_TIMEOUT (seconds per process,
# default 60), MAILSEC_BUILD_TIMEOUT (seconds, default 3600), MAILSEC_LOG (log filter).
set -euo pipefail
LOG_TAG=operator-up
# shellcheck source=scripts/env-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/env-lib.sh"

PROFILE=${MAILSEC_PROFILE:-release}
OPERATOR_NAMESPACE=${MAILSEC_OPERATOR_NAMESPACE:-mailsec-system}
START_TIMEOUT=${MAILSEC_START_TIMEOUT:-60}
BUILD_TIMEOUT=${MAILSEC_BUILD_TIMEOUT:-3600}
IDENTITY=mailsec-local
LEASE=mailsec-operator

case $PROFILE in
  release) profile_flag=(--release) ;;
  debug) profile_flag=() ;;
  *) die "MAILSEC_PROFILE must be release or debug, not $PROFILE" ;;
esac

check_state_location

# --- the environment -------------------------------------------------------------------------
env_exports=$("$MAILSEC_ROOT/scripts/env-up.sh") || die "scripts/env-up.sh failed"
eval "$env_exports"

# --- the binary --------------------------------------------------------------------------------
log "building mailsec (cargo build ${profile_flag[*]} --bin mailsec)"
build_out=$(cd "$MAILSEC_ROOT" &&
  timeout -k 30 "$BUILD_TIMEOUT" cargo build "${profile_flag[@]}" --bin mailsec \
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
SETTINGS="launch=3 profile=$PROFILE namespace=$OPERATOR_NAMESPACE identity=$IDENTITY log=${MAILSEC_LOG:-} format=${MAILSEC_LOG_FORMAT:-}"

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
SERVE_PORT=$(pick_port "${taken[@]}")
SERVE_ADMIN_PORT=$(pick_port "${taken[@]}" "$SERVE_PORT")
CONTROLLER_ADMIN_PORT=$(pick_port "${taken[@]}" "$SERVE_PORT" "$SERVE_ADMIN_PORT")
echo "$SERVE_PORT" >"$STATE/ports/mailsec-serve"
echo "$SERVE_ADMIN_PORT" >"$STATE/ports/mailsec-serve-admin"
echo "$CONTROLLER_ADMIN_PORT" >"$STATE/ports/mailsec-controller-admin"

# Settings come from flags only: the processes get a clean environment (no MAILSEC_* or POD_*
# variable a shell may carry), so the demo behaves the same everywhere. NO_COLOR: plain logs.
run_env=(env -i "PATH=$PATH" "HOME=${HOME:-/}" "KUBECONFIG=$STATE/kubeconfig" NO_COLOR=1
  "MAILSEC_LOG=${MAILSEC_LOG:-info,kube=warn}" "MAILSEC_LOG_FORMAT=${MAILSEC_LOG_FORMAT:-text}")

log "starting mailsec serve on 127.0.0.1:$SERVE_PORT (admin 127.0.0.1:$SERVE_ADMIN_PORT)"
launch mailsec-serve "${run_env[@]}" "$MAILSEC" serve \
  --listen "127.0.0.1:$SERVE_PORT" --admin-addr "127.0.0.1:$SERVE_ADMIN_PORT"
wait_ready mailsec-serve "$SERVE_ADMIN_PORT"

# A fixed identity: a restarted controller takes its own Lease at once instead of waiting for
# the old holder's lease to expire.
log "starting mailsec controller (admin 127.0.0.1:$CONTROLLER_ADMIN_PORT, namespace $OPERATOR_NAMESPACE)"
launch mailsec-controller "${run_env[@]}" "$MAILSEC" controller \
  --namespace "$OPERATOR_NAMESPACE" \
  --leader-election true \
  --identity "$IDENTITY" \
  --lease-name "$LEASE" \
  --policy-server-url "http://127.0.0.1:$SERVE_PORT/" \
  --admin-addr "127.0.0.1:$CONTROLLER_ADMIN_PORT"
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
} >"$STATE/operator.env.tmp"
mv "$STATE/operator.env.tmp" "$STATE/operator.env"
echo "$SETTINGS" >"$STATE/operator.settings"
log "mailsec serve (pid $(recorded_pid mailsec-serve)) and controller (pid $(recorded_pid mailsec-controller)) are up; logs in $STATE/logs/"
print_exports
