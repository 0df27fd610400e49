# shellcheck shell=bash
# Dovecot's IMAP server from Debian, for tests/imap_intake.rs (the TLS-RPT mailbox poller):
# each test starts its own `dovecot -F` from a temporary config on a loopback port. The
# packaged service must not be left running (it would hold ports 143/993 and /run/dovecot),
# so the install runs with a policy-rc.d that forbids starting services, and a dovecot the
# install started anyway is stopped by its PID. Sourced by scripts/tools.sh: debian_packages
# and log come from there.

install_dovecot() {
  if dpkg-query -W -f='${Status}' dovecot-imapd 2>/dev/null | grep -q 'install ok installed'; then
    return 0
  fi
  local sudo="" policy=/usr/sbin/policy-rc.d made_policy="" before pid
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  # Only a policy-rc.d we wrote is removed afterwards; an existing one is left as it is.
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# scripts/tools.d/dovecot.sh: no service starts while dovecot installs\nexit 101\n' |
      $sudo tee "$policy" >/dev/null
    $sudo chmod 0755 "$policy"
    made_policy=1
  fi
  before=" $( (pgrep -x dovecot || true) | tr '\n' ' ') "
  local status=0
  debian_packages dovecot-imapd || status=$?
  if [ -n "$made_policy" ]; then $sudo rm -f "$policy"; fi
  # A dovecot that was not running before the install is the packaged service: stop it.
  for pid in $(pgrep -x dovecot || true); do
    case "$before" in
      *" $pid "*) ;;
      *) log "stopping the dovecot (pid $pid) the package install started"
         $sudo kill "$pid" 2>/dev/null || true ;;
    esac
  done
  if command -v systemctl >/dev/null 2>&1; then
    $sudo systemctl disable dovecot >/dev/null 2>&1 || true
  fi
  return "$status"
}

install_dovecot
