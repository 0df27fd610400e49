#!/usr/bin/env bash
# Builds the real components the tests and the demo run against, into a versioned cache
# outside the repository: kube-apiserver, kubectl (k8s.io/kubernetes), etcd, helm from Go
# modules; BIND, Knot, PowerDNS (sqlite3 backend) and the DNS tools from Debian; aiosmtpd and
# moto's Route 53 server from PyPI; cert-manager's published CRDs (Certificate, Issuer,
# ClusterIssuer) from the cert-manager Go module (deploy/crds/, checked against the Go checksum
# database like any module). Idempotent: with the cache present it only checks.
#
#   scripts/tools.sh                    build everything that is missing, print the bin directory
#   scripts/tools.sh bindir             print the bin directory only
#   scripts/tools.sh cert-manager-crds  print the directory of the cert-manager CRD files only
#   scripts/tools.sh gateway-api-crds   print the directory of the Gateway API CRD files only
#   scripts/tools.sh external-dns-crds  print the directory of external-dns's DNSEndpoint CRD only
#   scripts/tools.sh pythonpath         print the PYTHONPATH holding aiosmtpd only
#   scripts/tools.sh motopath           print the PYTHONPATH holding moto only
set -euo pipefail
# Absolute: the builds below change directory.
TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

KUBE_VERSION=${KUBE_VERSION:-1.36.3}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
HELM_VERSION=${HELM_VERSION:-3.22.0}
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-1.21.2}
# 1.7 needs Go 1.27; 1.6 serves gateway.networking.k8s.io/v1 HTTPRoute the same way.
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-1.6.3}
AIOSMTPD_VERSION=${AIOSMTPD_VERSION:-1.4.6}
MOTO_VERSION=${MOTO_VERSION:-5.2.5}

CACHE=${MAILSEC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mailsec}
BIN="$CACHE/bin/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"

# Only the CRDs the operator uses or a test creates; applied by env-up.sh. No cert-manager
# controller runs in the test environment: tests play its part by writing Certificate status.
CERT_MANAGER_CRDS="$CACHE/crds/cert-manager-$CERT_MANAGER_VERSION"
CERT_MANAGER_CRD_FILES=(cert-manager.io_certificates.yaml cert-manager.io_issuers.yaml cert-manager.io_clusterissuers.yaml)

# The standard-channel Gateway API CRDs the HTTPRoute policy host needs (no Gateway controller
# runs here either: tests play its part by writing route status).
GATEWAY_API_CRDS="$CACHE/crds/gateway-api-$GATEWAY_API_VERSION"
GATEWAY_API_CRD_FILES=(gateway.networking.k8s.io_gatewayclasses.yaml gateway.networking.k8s.io_gateways.yaml
  gateway.networking.k8s.io_httproutes.yaml gateway.networking.k8s.io_referencegrants.yaml)

# external-dns's DNSEndpoint CRD (from its Go module; scripts/tools.d/external-dns.sh), for the
# externalDNS export's tests.
EXTERNAL_DNS_CRDS="$CACHE/crds/external-dns-0.23.0"

if [ "${1:-}" = bindir ]; then echo "$BIN"; exit 0; fi
# A real SMTP server with STARTTLS (aiosmtpd, from PyPI) for the SMTP checks' tests.
PYTHON_TOOLS="$CACHE/python/aiosmtpd-$AIOSMTPD_VERSION"

# moto's Route 53 server (PyPI), run behind scripts/route53-strict.py for the route53 tests.
MOTO_TOOLS="$CACHE/python/moto-$MOTO_VERSION"

if [ "${1:-}" = cert-manager-crds ]; then echo "$CERT_MANAGER_CRDS"; exit 0; fi
if [ "${1:-}" = gateway-api-crds ]; then echo "$GATEWAY_API_CRDS"; exit 0; fi
if [ "${1:-}" = external-dns-crds ]; then echo "$EXTERNAL_DNS_CRDS"; exit 0; fi
if [ "${1:-}" = motopath ]; then echo "$MOTO_TOOLS"; exit 0; fi
if [ "${1:-}" = pythonpath ]; then echo "$PYTHON_TOOLS"; exit 0; fi

log() { printf '[tools] %s\n' "$*" >&2; }

export GOFLAGS=-mod=mod CGO_ENABLED=0
export GOPATH=${GOPATH:-$CACHE/gopath} GOCACHE=${GOCACHE:-$CACHE/gocache}
mkdir -p "$BIN" "$CACHE/build"

# debian_packages <package>...: installs those not installed yet.
debian_packages() {
  local want=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || want+=("$p")
  done
  [ ${#want[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${want[*]}"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  # The packaged named service must not hold port 53 or our files: we start our own.
  if command -v systemctl >/dev/null 2>&1; then
    $sudo systemctl disable --now named knot pdns >/dev/null 2>&1 || true
  fi
}

# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces the staging modules with local
# paths), so a throwaway module requires it and points every staging module at its published tag.
build_kubernetes() {
  [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kubectl" ] && return 0
  local dir="$CACHE/build/kubernetes-$KUBE_VERSION" minor
  minor="0.${KUBE_VERSION#*.}"
  log "building kube-apiserver and kubectl v$KUBE_VERSION (cold: several minutes)"
  mkdir -p "$dir" && cd "$dir"
  local modfile
  modfile=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module mailsec.local/kubebuild"
    echo "go 1.26"
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    echo "replace ("
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$modfile" |
      awk -v v="v$minor" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > go.mod
  local pkg=k8s.io/client-go/pkg/version comp=k8s.io/component-base/version ld="-s -w"
  local major=${KUBE_VERSION%%.*} mnr=${KUBE_VERSION#*.}; mnr=${mnr%%.*}
  for p in $pkg $comp; do
    ld="$ld -X $p.gitVersion=v$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$mnr -X $p.gitTreeState=clean"
  done
  go build -trimpath -ldflags "$ld" -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  go build -trimpath -ldflags "$ld" -o "$BIN/kubectl" k8s.io/kubernetes/cmd/kubectl
}

# etcd's own main module also uses local replaces; its server module exports etcdmain.Main.
build_etcd() {
  [ -x "$BIN/etcd" ] && return 0
  local dir="$CACHE/build/etcd-$ETCD_VERSION"
  log "building etcd v$ETCD_VERSION"
  mkdir -p "$dir" && cd "$dir"
  printf 'module mailsec.local/etcdbuild\ngo 1.26\nrequire go.etcd.io/etcd/server/v3 v%s\n' "$ETCD_VERSION" > go.mod
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" .
}

build_helm() {
  [ -x "$BIN/helm" ] && return 0
  log "building helm v$HELM_VERSION"
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
}

# crds_from_module <module> <version> <dir in the module> <cache dir> <file>...: copies CRD files
# out of a Go module (checked against the Go checksum database like any module) into the cache;
# nothing lands in the repository.
crds_from_module() {
  local module=$1 version=$2 sub=$3 target=$4 f missing=0
  shift 4
  for f in "$@"; do [ -s "$target/$f" ] || missing=1; done
  [ $missing -eq 0 ] && return 0
  log "fetching CRDs from the Go module $module@v$version ($sub)"
  local dir tmp
  dir=$(cd "$CACHE/build" && go mod download -json "$module@v$version" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -n "$dir" ] && [ -d "$dir/$sub" ] || { log "error: $module has no $sub"; return 1; }
  tmp="$target.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  for f in "$@"; do install -m 0644 "$dir/$sub/$f" "$tmp/$f"; done
  rm -rf "$target" && mv "$tmp" "$target"
}

# cert-manager's deploy/crds/ is controller-gen output: the same spec as its Helm chart's CRD
# templates, without Helm's labels.
fetch_cert_manager_crds() {
  crds_from_module github.com/cert-manager/cert-manager "$CERT_MANAGER_VERSION" deploy/crds \
    "$CERT_MANAGER_CRDS" "${CERT_MANAGER_CRD_FILES[@]}"
}

fetch_gateway_api_crds() {
  crds_from_module sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION" config/crd/standard \
    "$GATEWAY_API_CRDS" "${GATEWAY_API_CRD_FILES[@]}"
}

# pip_target <dir> <module> <requirement>: installs the requirement (with its dependencies)
# into <dir> unless <dir>/<module> is there; a half-done install never takes its place.
pip_target() {
  local dir=$1 module=$2 requirement=$3
  [ -d "$dir/$module" ] && return 0
  log "installing $requirement from PyPI"
  local tmp="$dir.tmp.$$"
  rm -rf "$tmp"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --no-warn-conflicts --target "$tmp" "$requirement" 2>&1 |
    grep -v "^WARNING: Running pip as" >&2 || true
  [ -d "$tmp/$module" ] || { log "error: installing $requirement failed"; exit 1; }
  rm -rf "$dir" && mv "$tmp" "$dir"
}

debian_packages bind9 bind9-utils bind9-dnsutils knot pdns-server pdns-backend-sqlite3 sqlite3
pip_target "$PYTHON_TOOLS" aiosmtpd "aiosmtpd==$AIOSMTPD_VERSION"
pip_target "$MOTO_TOOLS" moto "moto[server]==$MOTO_VERSION"
fetch_cert_manager_crds
fetch_gateway_api_crds
build_etcd
build_kubernetes
build_helm
# More tools, one file each (they may use log, debian_packages, pip_target, $CACHE and $BIN).
for extra in "$TOOLS_DIR"/tools.d/*.sh; do
  [ -e "$extra" ] || continue
  # shellcheck source=/dev/null
  source "$extra"
done
echo "$BIN"
