# shellcheck shell=bash
# mailsec-kstatus (tools/health, a Go module requiring sigs.k8s.io/cli-utils): kstatus's
# verdict on one object, the health Flux reads; tests/gitops_health.rs runs it on MailDomains.
# Sourced by scripts/tools.sh: $BIN and log come from there, as do GOPATH, GOCACHE,
# GOFLAGS=-mod=mod and CGO_ENABLED=0. Rebuilt only when tools/health/ or Go changes: the
# hash of both is kept next to the binary.
KSTATUS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tools/health" && pwd)"

build_kstatus() {
  local stamp="$BIN/mailsec-kstatus.stamp" want
  want=$( (cd "$KSTATUS_SRC" && cat go.mod go.sum ./*.go && go env GOVERSION) | sha256sum | cut -d' ' -f1)
  if [ -x "$BIN/mailsec-kstatus" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  log "building mailsec-kstatus (tools/health, sigs.k8s.io/cli-utils kstatus)"
  # -mod=readonly: go.mod and go.sum in the repository are used as they are, never rewritten.
  (cd "$KSTATUS_SRC" &&
    go build -mod=readonly -trimpath -ldflags "-s -w" -o "$BIN/mailsec-kstatus.tmp.$$" .)
  mv "$BIN/mailsec-kstatus.tmp.$$" "$BIN/mailsec-kstatus"
  printf '%s\n' "$want" > "$stamp"
}

build_kstatus
