#!/usr/bin/env bash
# Stops what scripts/env-up.sh (and scripts/operator-up.sh: `mailsec controller` and `mailsec
# serve`) started in $MAILSEC_ENV_DIR (default ${XDG_RUNTIME_DIR:-/tmp}/mailsec-env-$USER), by
# the PIDs they recorded, the operator first: TERM, a bounded wait
# (MAILSEC_STOP_TIMEOUT, default 15 s), then KILL; then removes the state directory.
# Safe to run when nothing is up. Never signals a process that those scripts did not record.
set -euo pipefail
LOG_TAG=env-down
# shellcheck source=scripts/env-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/env-lib.sh"

check_state_location
if [ ! -e "$STATE" ]; then
  log "nothing to stop ($STATE does not exist)"
  rm -f "$STATE.lock"
  exit 0
fi
[ -f "$STATE/$STATE_MARKER" ] || die "$STATE was not created by env-up.sh; not touching it"

exec 9>"$STATE.lock"
flock -w 120 9 || die "another env-up/env-down holds $STATE.lock"

t0=$SECONDS
stop_components
for c in "${OPERATOR_COMPONENTS[@]}" "${COMPONENTS[@]}"; do
  pid=$(recorded_pid "$c")
  if pid_is_ours "$pid"; then die "$c (pid $pid) is still running; state kept in $STATE"; fi
done
rm -rf "$STATE"
rm -f "$STATE.lock"
log "environment stopped and $STATE removed in $((SECONDS - t0))s"
