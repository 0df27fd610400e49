# shellcheck shell=bash
# mailsec-external-dns (tools/external-dns, a Go module requiring sigs.k8s.io/external-dns
# v0.23.0): external-dns's plan, TXT registry and rfc2136/pdns providers behind a DNSEndpoint
# source of ours, for testing the operator's externalDNS export (the real external-dns binary
# cannot be built from the Go module proxy; see tools/external-dns/main.go). Also copies
# external-dns's DNSEndpoint CRD out of its module into the cache, for env-up.sh to apply.
# Sourced by scripts/tools.sh: $CACHE, $BIN and log come from there, as do GOPATH, GOCACHE,
# GOFLAGS=-mod=mod and CGO_ENABLED=0. external-dns v0.23.0 needs Go 1.27, so the go commands
# here run in subshells with GOTOOLCHAIN set (the toolchain comes from the module proxy).
# Rebuilt only when tools/external-dns/ or Go changes: the hash of both is kept next to the
# binary.
EXTERNAL_DNS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tools/external-dns" && pwd)"
EXTERNAL_DNS_GO_TOOLCHAIN=go1.27.3
EXTERNAL_DNS_MODULE_VERSION=0.23.0
EXTERNAL_DNS_CRDS=${EXTERNAL_DNS_CRDS:-$CACHE/crds/external-dns-$EXTERNAL_DNS_MODULE_VERSION}
EXTERNAL_DNS_CRD_FILE=dnsendpoints.externaldns.k8s.io.yaml

# The go command on the Go external-dns needs, for these builds only.
go127() { GOTOOLCHAIN=$EXTERNAL_DNS_GO_TOOLCHAIN go "$@"; }

build_external_dns() {
  local stamp="$BIN/mailsec-external-dns.stamp" want
  want=$( (cd "$EXTERNAL_DNS_SRC" &&
    cat go.mod go.sum ./*.go && go127 env GOVERSION) | sha256sum | cut -d' ' -f1)
  if [ -x "$BIN/mailsec-external-dns" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  log "building mailsec-external-dns (tools/external-dns, sigs.k8s.io/external-dns v$EXTERNAL_DNS_MODULE_VERSION; cold: several minutes)"
  # -mod=readonly: go.mod and go.sum in the repository are used as they are, never rewritten.
  (cd "$EXTERNAL_DNS_SRC" &&
    go127 build -mod=readonly -trimpath -ldflags "-s -w" -o "$BIN/mailsec-external-dns.tmp.$$" .)
  mv "$BIN/mailsec-external-dns.tmp.$$" "$BIN/mailsec-external-dns"
  printf '%s\n' "$want" > "$stamp"
}

# The CRD as external-dns v0.23.0 publishes it (config/crd/standard/ of its module, checked
# against the Go checksum database like any module); nothing lands in the repository.
fetch_external_dns_crd() {
  [ -s "$EXTERNAL_DNS_CRDS/$EXTERNAL_DNS_CRD_FILE" ] && return 0
  log "copying the DNSEndpoint CRD from sigs.k8s.io/external-dns@v$EXTERNAL_DNS_MODULE_VERSION"
  local dir tmp
  dir=$(cd "$EXTERNAL_DNS_SRC" &&
    go127 mod download -json "sigs.k8s.io/external-dns@v$EXTERNAL_DNS_MODULE_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  if [ -z "$dir" ] || [ ! -s "$dir/config/crd/standard/$EXTERNAL_DNS_CRD_FILE" ]; then
    log "error: sigs.k8s.io/external-dns has no config/crd/standard/$EXTERNAL_DNS_CRD_FILE"
    return 1
  fi
  tmp="$EXTERNAL_DNS_CRDS.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  install -m 0644 "$dir/config/crd/standard/$EXTERNAL_DNS_CRD_FILE" "$tmp/$EXTERNAL_DNS_CRD_FILE"
  rm -rf "$EXTERNAL_DNS_CRDS" && mv "$tmp" "$EXTERNAL_DNS_CRDS"
}

fetch_external_dns_crd
build_external_dns
