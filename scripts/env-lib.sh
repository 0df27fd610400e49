# Shared by env-up.sh, env-down.sh, operator-up.sh and test-env-lifecycle.sh; sourced, not
# executed. Everything here must stay loopback-only and must only ever touch processes whose PID
# was recorded in the state directory by env-up.sh or operator-up.sh (and whose command line
# still names that directory, so a recycled PID is never signalled).

MAILSEC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAILSEC_USER=${USER:-$(id -un)}
STATE=${MAILSEC_ENV_DIR:-${XDG_RUNTIME_DIR:-/tmp}/mailsec-env-$MAILSEC_USER}
# Marker proving a directory was created by env-up.sh (env-down.sh only deletes such directories).
STATE_MARKER=.mailsec-env

# Components in start order; they are stopped in reverse order.
COMPONENTS=(etcd kube-apiserver named knotd pdns route53)
# The operator's processes, started by scripts/operator-up.sh (`make demo`, `make bench`) into
# the same state directory; optional, and stopped before the environment they depend on.
OPERATOR_COMPONENTS=(mailsec-serve mailsec-serve-tls mailsec-smtp-peer mailsec-receive mailsec-controller)

log() { printf '[%s] %s\n' "${LOG_TAG:-env}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# show_logs <lines> <component...>: the last lines of each component's log, to stderr.
show_logs() {
  local lines=$1 c
  shift
  for c in "$@"; do
    [ -e "$STATE/logs/$c.log" ] || continue
    if [ ! -s "$STATE/logs/$c.log" ]; then log "---- $STATE/logs/$c.log is empty ----"; continue; fi
    log "---- last lines of $STATE/logs/$c.log ----"
    tail -n "$lines" "$STATE/logs/$c.log" >&2
  done
}

# Resolves a path that may not exist yet (its parent must, or be creatable).
abspath() {
  local p=$1
  case $p in /*) ;; *) p="$PWD/$p" ;; esac
  if [ -d "$p" ]; then (cd "$p" && pwd -P); else
    local parent; parent=$(dirname "$p")
    mkdir -p "$parent"
    printf '%s/%s\n' "$(cd "$parent" && pwd -P)" "$(basename "$p")"
  fi
}

check_state_location() {
  STATE=$(abspath "$STATE")
  local root; root=$(cd "$MAILSEC_ROOT" && pwd -P)
  case "$STATE/" in "$root/"*) die "state dir $STATE must be outside the repository" ;; esac
  case "$STATE" in / | "$HOME" | /tmp | /run | /run/user/*[0-9]) die "refusing state dir $STATE" ;; esac
}

# True if PID is alive (not a zombie) and its command line mentions the state directory.
pid_is_ours() {
  local pid=$1 stat cmd
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  stat=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$stat" != Z ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case "$cmd" in *"$STATE/"*) return 0 ;; *) return 1 ;; esac
}

recorded_pid() { cat "$STATE/pids/$1.pid" 2>/dev/null || true; }

# Stops every recorded component in reverse start order, each one completely before the next
# (kube-apiserver still talks to etcd while it shuts down): TERM, bounded wait, then KILL.
# The operator's processes (if any were recorded) go first.
stop_components() {
  stop_operator
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_component "${COMPONENTS[$i]}"; done
}

# Stops the recorded operator processes (controller first, then the policy server).
stop_operator() {
  local i
  for ((i = ${#OPERATOR_COMPONENTS[@]} - 1; i >= 0; i--)); do stop_component "${OPERATOR_COMPONENTS[$i]}"; done
}

stop_component() {
  local c=$1 timeout=${MAILSEC_STOP_TIMEOUT:-15} pid
  pid=$(recorded_pid "$c")
  if pid_is_ours "$pid"; then
    log "stopping $c (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while pid_is_ours "$pid"; do
      if [ $SECONDS -ge $deadline ]; then
        log "$c (pid $pid) ignored TERM for ${timeout}s, sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
        break
      fi
      sleep 0.1
    done
  fi
  pid_is_ours "$pid" || rm -f "$STATE/pids/$c.pid"
}

# Is any socket (TCP or UDP, any state) using this local port?
port_in_use() { ss -Htuan "( sport = :$1 )" 2>/dev/null | grep -q .; }

# Picks a free port below the ephemeral range, not in the given exclusion list.
pick_port() {
  local p _ x taken
  for _ in $(seq 1 500); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    taken=
    for x in "$@"; do [ "$x" = "$p" ] && taken=1; done
    [ -z "$taken" ] && ! port_in_use "$p" && { echo "$p"; return 0; }
  done
  die "no free port found"
}

# Starts a daemon in its own session, stdio to its log file, without the lock's descriptor, and
# records its PID (the shell that writes the pid file execs the daemon, so it is the daemon's).
# The sourcing script defines fail_start.
launch() {
  local name=$1; shift
  local pidfile="$STATE/pids/$name.pid"
  rm -f "$pidfile"
  # shellcheck disable=SC2016
  setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
    </dev/null >>"$STATE/logs/$name.log" 2>&1 9>&- &
  local _
  for _ in $(seq 1 50); do [ -s "$pidfile" ] && return 0; sleep 0.1; done
  fail_start "$name did not start"
}
