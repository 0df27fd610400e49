# shellcheck shell=bash
# nginx (Debian's nginx-light) and wrk, for scripts/bench-serve.sh: the policy server's
# requests per second and p99 beside nginx serving the same policy file, both on loopback.
# The bench starts its own `nginx -c` from a temporary config; the packaged service must not be
# left running (it would hold port 80), so the install runs with a policy-rc.d that forbids
# starting services, and an nginx the install started anyway is stopped by its PID. Sourced by
# scripts/tools.sh: debian_packages and log come from there.

install_nginx_wrk() {
  if dpkg-query -W -f='${Status}' nginx-light 2>/dev/null | grep -q 'install ok installed' &&
    dpkg-query -W -f='${Status}' wrk 2>/dev/null | grep -q 'install ok installed'; then
    return 0
  fi
  local sudo="" policy=/usr/sbin/policy-rc.d made_policy="" before pid
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  # Only a policy-rc.d we wrote is removed afterwards; an existing one is left as it is.
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# scripts/tools.d/nginx-wrk.sh: no service starts while nginx installs\nexit 101\n' |
      $sudo tee "$policy" >/dev/null
    $sudo chmod 0755 "$policy"
    made_policy=1
  fi
  before=" $( (pgrep -x nginx || true) | tr '\n' ' ') "
  local status=0
  debian_packages nginx-light wrk || status=$?
  if [ -n "$made_policy" ]; then $sudo rm -f "$policy"; fi
  # An nginx that was not running before the install is the packaged service: stop it.
  for pid in $(pgrep -x nginx || true); do
    case "$before" in
      *" $pid "*) ;;
      *) log "stopping the nginx (pid $pid) the package install started"
         $sudo kill "$pid" 2>/dev/null || true ;;
    esac
  done
  if command -v systemctl >/dev/null 2>&1; then
    $sudo systemctl disable nginx >/dev/null 2>&1 || true
  fi
  return "$status"
}

install_nginx_wrk
