#!/usr/bin/env bash
# Starts the local test environment and prints `export` lines for `eval`:
#
#   eval "$(scripts/env-up.sh)"      (or: eval "$(make -s up)")
#
# - etcd + kube-apiserver started the way controller-runtime's envtest does it (loopback, free
#   ports, RBAC, ServiceAccount admission disabled), with a self-made CA, an admin client
#   certificate (O=system:masters) and a kubeconfig using it;
# - BIND 9 (`named -g`) on 127.0.0.1:<free port> (UDP+TCP), authoritative for example.test and
#   accepting RFC 2136 updates signed with a freshly generated TSIG key (hmac-sha256);
# - Knot DNS (`knotd`), a second RFC 2136 server: its own copy of example.test, the same key;
# - PowerDNS Authoritative (`pdns_server`, sqlite3 backend) with its HTTP API (a fresh API key)
#   and its own copy of example.test, created through that API;
# - moto's Route 53 API behind scripts/route53-strict.py (as strict as Route 53 about change
#   batches), with a hosted zone example.test;
# - the CRDs in crds/ (if any), the Gateway API's (GatewayClass, Gateway, HTTPRoute,
#   ReferenceGrant) and cert-manager's Certificate, Issuer and ClusterIssuer CRDs
#   (fetched by scripts/tools.sh into its cache; no cert-manager controller runs) applied
#   server-side and waited for until Established.
#
# State (pids, logs, certificates, kubeconfig, the `env` file) lives in $MAILSEC_ENV_DIR, by
# default ${XDG_RUNTIME_DIR:-/tmp}/mailsec-env-$USER; it must be outside the repository.
# Idempotent: if the environment in that directory is up and healthy, this only re-applies
# changed CRDs and prints the exports. Progress and errors go to stderr, exports to stdout.
# scripts/env-down.sh stops everything and removes the directory.
#
# Tunables: MAILSEC_ENV_DIR, MAILSEC_START_TIMEOUT (seconds per component, default 60),
# MAILSEC_BIND_EXTRA_ZONES (N more zones z1.example.test .. zN.example.test, in BIND only, same
# key; for `make bench-scale`; default 0).
set -euo pipefail
LOG_TAG=env-up
# shellcheck source=scripts/env-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/env-lib.sh"

START_TIMEOUT=${MAILSEC_START_TIMEOUT:-60}
ZONE=example.test
TSIG_NAME=mailsec-harness
TSIG_ALGORITHM=hmac-sha256

BIN=$("$MAILSEC_ROOT/scripts/tools.sh" bindir)
for b in etcd kube-apiserver kubectl; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run \`make tools\` (scripts/tools.sh) first"
done
CERT_MANAGER_CRDS=$("$MAILSEC_ROOT/scripts/tools.sh" cert-manager-crds)
GATEWAY_API_CRDS=$("$MAILSEC_ROOT/scripts/tools.sh" gateway-api-crds)
EXTERNAL_DNS_CRDS=$("$MAILSEC_ROOT/scripts/tools.sh" external-dns-crds)
MOTO_PATH=$("$MAILSEC_ROOT/scripts/tools.sh" motopath)
[ -d "$MOTO_PATH/moto" ] || die "moto is missing in $MOTO_PATH: run \`make tools\` (scripts/tools.sh) first"
[ -s "$CERT_MANAGER_CRDS/cert-manager.io_certificates.yaml" ] ||
  die "cert-manager CRDs are missing in $CERT_MANAGER_CRDS: run \`make tools\` (scripts/tools.sh) first"
[ -s "$GATEWAY_API_CRDS/gateway.networking.k8s.io_httproutes.yaml" ] ||
  die "Gateway API CRDs are missing in $GATEWAY_API_CRDS: run \`make tools\` (scripts/tools.sh) first"
[ -s "$EXTERNAL_DNS_CRDS/dnsendpoints.externaldns.k8s.io.yaml" ] ||
  die "external-dns's DNSEndpoint CRD is missing in $EXTERNAL_DNS_CRDS: run \`make tools\` (scripts/tools.sh) first"
NAMED=$(command -v named || echo /usr/sbin/named)
KNOTD=$(command -v knotd || echo /usr/sbin/knotd)
PDNS=$(command -v pdns_server || echo /usr/sbin/pdns_server)
PDNS_SCHEMA=/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql
for b in "$NAMED" "$KNOTD" "$PDNS" sqlite3 openssl curl dig ss setsid flock; do
  command -v "$b" >/dev/null || die "$b not found: run \`make tools\` (installs bind9, bind9-utils, bind9-dnsutils, knot, pdns-server, pdns-backend-sqlite3, sqlite3)"
done
[ -r "$PDNS_SCHEMA" ] || die "$PDNS_SCHEMA is missing: run \`make tools\` (installs pdns-backend-sqlite3)"

check_state_location
mkdir -p "$(dirname "$STATE")"
exec 9>"$STATE.lock"
flock -w 300 9 || die "another env-up/env-down holds $STATE.lock"

# ---------------------------------------------------------------------------------------------
api_ready() {
  local port; port=$(cat "$STATE/ports/kube-apiserver" 2>/dev/null) || return 1
  [ "$(curl -sS --max-time 5 --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt" \
    --key "$STATE/pki/admin.key" "https://127.0.0.1:$port/readyz" 2>/dev/null)" = ok ]
}

# soa_ready <port file>: the server answers the zone's SOA over UDP and TCP.
soa_ready() {
  local port; port=$(cat "$STATE/ports/$1" 2>/dev/null) || return 1
  dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 "$ZONE" SOA 2>/dev/null | grep -q "$ZONE" &&
    dig +tcp +short +time=1 +tries=1 -p "$port" @127.0.0.1 "$ZONE" SOA 2>/dev/null | grep -q "$ZONE"
}

pdns_api_ready() {
  local port; port=$(cat "$STATE/ports/pdns-api" 2>/dev/null) || return 1
  curl -sS --max-time 2 -H "X-API-Key: $(cat "$STATE/pdns/api-key" 2>/dev/null)" \
    "http://127.0.0.1:$port/api/v1/servers/localhost" 2>/dev/null | grep -q '"daemon_type": "authoritative"'
}

etcd_ready() {
  local port; port=$(cat "$STATE/ports/etcd" 2>/dev/null) || return 1
  curl -sS --max-time 2 "http://127.0.0.1:$port/health" 2>/dev/null | grep -q '"health":"true"'
}

healthy() {
  [ -f "$STATE/$STATE_MARKER" ] && [ -f "$STATE/env" ] || return 1
  local c
  for c in "${COMPONENTS[@]}"; do pid_is_ours "$(recorded_pid "$c")" || return 1; done
  api_ready && soa_ready named && soa_ready knot && soa_ready pdns && pdns_api_ready && route53_ready
}

route53_ready() {
  grep -q "^route53 (strict) on" "$STATE/logs/route53.log" 2>/dev/null
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$STATE/kubeconfig" --request-timeout=30s "$@"; }

crd_files() {
  local dir
  for dir in "$MAILSEC_ROOT/crds" "$CERT_MANAGER_CRDS" "$GATEWAY_API_CRDS" "$EXTERNAL_DNS_CRDS"; do
    find "$dir" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) 2>/dev/null | sort
  done
}

# Applies crds/ and the cert-manager CRDs (server-side) when their content changed since the
# last apply, then waits until every one of them is Established.
apply_crds() {
  local files sum names
  files=$(crd_files)
  if [ -z "$files" ]; then log "no CRD files, nothing to apply"; return 0; fi
  # shellcheck disable=SC2086
  sum=$(cat $files | sha256sum | cut -d' ' -f1)
  [ "$(cat "$STATE/crds.sha256" 2>/dev/null)" = "$sum" ] && return 0
  log "applying CRDs from crds/, $CERT_MANAGER_CRDS, $GATEWAY_API_CRDS and $EXTERNAL_DNS_CRDS"
  # shellcheck disable=SC2046
  names=$(kubectl_ apply --server-side --force-conflicts --field-manager=mailsec-env-up \
    $(printf -- '-f %s ' $files) -o name) || return 1
  # shellcheck disable=SC2086
  kubectl_ wait --for=condition=Established --timeout="${START_TIMEOUT}s" $names >&2 || return 1
  echo "$sum" >"$STATE/crds.sha256"
}

q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

print_env() { cat "$STATE/env"; }

fail_start() {
  log "error: $*"
  show_logs 25 "${COMPONENTS[@]}"
  local c
  for c in "${COMPONENTS[@]}"; do
    [ -n "$(recorded_pid "$c")" ] && log "$c: $(process_state "$c")"
  done
  stop_components
  log "processes stopped; logs kept in $STATE (scripts/env-down.sh removes it)"
  # Again last: CI shows the tail of the output, and the logs above push the first line out.
  log "error: $*"
  exit 1
}


# answers_within <seconds> <component> <command...>: polls the command for at most that long
# while the component runs; fails when it never succeeds.
answers_within() {
  local deadline=$((SECONDS + $1)) comp=$2; shift 2
  until "$@"; do
    pid_is_ours "$(recorded_pid "$comp")" && [ $SECONDS -lt $deadline ] || return 1
    sleep 0.25
  done
}

# process_state <component>: its process as ps sees it (state, age, the kernel function it
# waits in), for a start that hangs.
process_state() {
  local pid; pid=$(recorded_pid "$1")
  ps -o pid=,stat=,etime=,wchan:32=,args= -p "$pid" 2>/dev/null | cut -c1-200 || echo "pid $pid is gone"
}

# wait_for <component> <what> <command...>: polls until the command succeeds, bounded.
wait_for() {
  local comp=$1 what=$2; shift 2
  local deadline=$((SECONDS + START_TIMEOUT))
  until "$@"; do
    pid_is_ours "$(recorded_pid "$comp")" || fail_start "$comp exited before $what"
    [ $SECONDS -lt $deadline ] || fail_start "$comp: no $what after ${START_TIMEOUT}s"
    sleep 0.25
  done
}

# ---------------------------------------------------------------------------------------------
if healthy; then
  apply_crds || die "applying the CRDs failed"
  log "environment in $STATE is already up"
  print_env
  exit 0
fi

if [ -e "$STATE" ]; then
  [ -f "$STATE/$STATE_MARKER" ] || die "$STATE exists but was not created by env-up.sh; remove it or set MAILSEC_ENV_DIR"
  log "stale or unhealthy environment in $STATE: restarting it"
  stop_components
  rm -rf "$STATE"
fi

t0=$SECONDS
mkdir -p "$STATE"/{pids,logs,ports,pki,etcd,named,knot,pdns,route53}
chmod 700 "$STATE" "$STATE/etcd"
: >"$STATE/$STATE_MARKER"

# --- ports -----------------------------------------------------------------------------------
ETCD_PORT=$(pick_port)
ETCD_PEER_PORT=$(pick_port "$ETCD_PORT")
API_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT")
DNS_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT")
KNOT_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" "$DNS_PORT")
PDNS_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" "$DNS_PORT" "$KNOT_PORT")
PDNS_API_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" "$DNS_PORT" "$KNOT_PORT" "$PDNS_PORT")
ROUTE53_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" "$DNS_PORT" "$KNOT_PORT" "$PDNS_PORT" "$PDNS_API_PORT")
echo "$ROUTE53_PORT" >"$STATE/ports/route53"
echo "$KNOT_PORT" >"$STATE/ports/knot"
echo "$PDNS_PORT" >"$STATE/ports/pdns"
echo "$PDNS_API_PORT" >"$STATE/ports/pdns-api"
echo "$ETCD_PORT" >"$STATE/ports/etcd"
echo "$ETCD_PEER_PORT" >"$STATE/ports/etcd-peer"
echo "$API_PORT" >"$STATE/ports/kube-apiserver"
echo "$DNS_PORT" >"$STATE/ports/named"

# --- PKI: CA, apiserver serving cert, admin client cert, service-account key pair -------------
PKI=$STATE/pki
cat >"$PKI/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
sign() { # name subject extensions
  ec_key "$PKI/$1.key"
  openssl req -new -config "$PKI/openssl.cnf" -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr"
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 12)" -days 365 -extfile "$PKI/openssl.cnf" -extensions "$3" \
    -out "$PKI/$1.crt" 2>/dev/null
  rm -f "$PKI/$1.csr"
}
(
  umask 077
  ec_key "$PKI/ca.key"
  openssl req -x509 -new -config "$PKI/openssl.cnf" -key "$PKI/ca.key" -subj "/CN=mailsec-harness-ca" \
    -days 365 -extensions ca_ext -out "$PKI/ca.crt"
  sign apiserver "/CN=kube-apiserver" server_ext
  sign admin "/O=system:masters/CN=mailsec-admin" client_ext
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
) || fail_start "generating certificates failed"

# --- etcd --------------------------------------------------------------------------------------
log "starting etcd on 127.0.0.1:$ETCD_PORT"
PEER_URL=http://127.0.0.1:$ETCD_PEER_PORT
launch etcd "$BIN/etcd" \
  --name=mailsec \
  --data-dir="$STATE/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="$PEER_URL" \
  --initial-advertise-peer-urls="$PEER_URL" \
  --initial-cluster="mailsec=$PEER_URL" \
  --unsafe-no-fsync=true \
  --log-level=warn
wait_for etcd "health" etcd_ready

# --- kube-apiserver ----------------------------------------------------------------------------
log "starting kube-apiserver on https://127.0.0.1:$API_PORT"
# envtest's defaults, plus --endpoint-reconciler-type=none: the `kubernetes` Endpoints may not
# hold a loopback address, so reconciling it would only log an error every 10 s.
launch kube-apiserver "$BIN/kube-apiserver" \
  --advertise-address=127.0.0.1 \
  --bind-address=127.0.0.1 \
  --secure-port="$API_PORT" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --cert-dir="$PKI" \
  --tls-cert-file="$PKI/apiserver.crt" \
  --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --authorization-mode=RBAC \
  --service-cluster-ip-range=10.0.0.0/24 \
  --allow-privileged=true \
  --disable-admission-plugins=ServiceAccount \
  --service-account-issuer="https://127.0.0.1:$API_PORT/" \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --endpoint-reconciler-type=none

# --- BIND 9 (started while the apiserver boots) -----------------------------------------------
NAMED_DIR=$STATE/named
TSIG_SECRET=$(openssl rand -base64 32)
cat >"$NAMED_DIR/tsig.key" <<EOF
key "$TSIG_NAME" {
	algorithm $TSIG_ALGORITHM;
	secret "$TSIG_SECRET";
};
EOF
chmod 600 "$NAMED_DIR/tsig.key"
cat >"$NAMED_DIR/$ZONE.zone" <<EOF
\$ORIGIN $ZONE.
\$TTL 300
@	IN SOA	ns1.$ZONE. hostmaster.$ZONE. ( 1 3600 600 86400 60 )
@	IN NS	ns1.$ZONE.
@	IN A	192.0.2.10
@	IN MX	10 mx1.$ZONE.
ns1	IN A	127.0.0.1
; The demo's mail hosts and policy host answer on loopback (scripts/operator-up.sh).
mx1	IN A	127.0.0.1
mx2	IN A	127.0.0.1
mta-sts	IN A	127.0.0.1
EOF
cat >"$NAMED_DIR/named.conf" <<EOF
// Generated by scripts/env-up.sh: test-only authoritative server, loopback only.
options {
	directory "$NAMED_DIR";
	pid-file "$NAMED_DIR/named.pid";
	session-keyfile "$NAMED_DIR/session.key";
	managed-keys-directory "$NAMED_DIR";
	dump-file "$NAMED_DIR/named_dump.db";
	statistics-file "$NAMED_DIR/named.stats";
	memstatistics-file "$NAMED_DIR/named.memstats";
	listen-on port $DNS_PORT { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	allow-query { 127.0.0.1; };
	allow-transfer { none; };
	notify no;
	dnssec-validation no;
	empty-zones-enable no;
};
controls { };
include "$NAMED_DIR/tsig.key";
zone "$ZONE" {
	type primary;
	file "$NAMED_DIR/$ZONE.zone";
	update-policy { grant $TSIG_NAME zonesub ANY; };
	// external-dns's rfc2136 provider reads the zone by AXFR (tests/external_dns.rs).
	allow-transfer { key $TSIG_NAME; };
};
EOF
EXTRA_ZONES=${MAILSEC_BIND_EXTRA_ZONES:-0}
[[ $EXTRA_ZONES =~ ^[0-9]+$ ]] && [ "$EXTRA_ZONES" -le 1000 ] || fail_start "MAILSEC_BIND_EXTRA_ZONES must be 0..1000"
for i in $(seq 1 "$EXTRA_ZONES"); do
  extra=z$i.$ZONE
  cat >"$NAMED_DIR/$extra.zone" <<EOF
\$ORIGIN $extra.
\$TTL 300
@	IN SOA	ns1.$ZONE. hostmaster.$ZONE. ( 1 3600 600 86400 60 )
@	IN NS	ns1.$ZONE.
EOF
  cat >>"$NAMED_DIR/named.conf" <<EOF
zone "$extra" {
	type primary;
	file "$NAMED_DIR/$extra.zone";
	update-policy { grant $TSIG_NAME zonesub ANY; };
};
EOF
done
named-checkconf "$NAMED_DIR/named.conf" >&2 || fail_start "generated named.conf is invalid"
log "starting named on 127.0.0.1:$DNS_PORT (udp+tcp), zone $ZONE"
launch named "$NAMED" -g -4 -c "$NAMED_DIR/named.conf"
wait_for named "SOA answer for $ZONE" soa_ready named

# --- Knot DNS: the same zone and key, a second RFC 2136 implementation -------------------------
KNOT_DIR=$STATE/knot
cp "$NAMED_DIR/$ZONE.zone" "$KNOT_DIR/$ZONE.zone"
(
  umask 077
  cat >"$KNOT_DIR/knot.conf" <<EOF
# Generated by scripts/env-up.sh: test-only authoritative server, loopback only.
server:
    rundir: "$KNOT_DIR"
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$KNOT_DIR"
log:
  - target: stderr
    any: info
key:
  - id: $TSIG_NAME
    algorithm: $TSIG_ALGORITHM
    secret: $TSIG_SECRET
acl:
  - id: update
    key: $TSIG_NAME
    action: update
zone:
  - domain: $ZONE
    storage: "$KNOT_DIR"
    file: "$ZONE.zone"
    acl: update
    zonefile-sync: -1
    journal-content: changes
EOF
)
log "starting knotd on 127.0.0.1:$KNOT_PORT (udp+tcp), zone $ZONE"
launch knotd "$KNOTD" -c "$KNOT_DIR/knot.conf"
wait_for knotd "SOA answer for $ZONE" soa_ready knot

# --- PowerDNS Authoritative with the sqlite3 backend and its HTTP API ---------------------------
PDNS_DIR=$STATE/pdns
(umask 077; openssl rand -hex 24 >"$PDNS_DIR/api-key")
PDNS_API_KEY=$(cat "$PDNS_DIR/api-key")
sqlite3 "$PDNS_DIR/pdns.db" <"$PDNS_SCHEMA" || fail_start "creating the PowerDNS database failed"
(
  umask 077
  cat >"$PDNS_DIR/pdns.conf" <<EOF
# Generated by scripts/env-up.sh: test-only authoritative server, loopback only.
launch=gsqlite3
gsqlite3-database=$PDNS_DIR/pdns.db
local-address=127.0.0.1
local-port=$PDNS_PORT
socket-dir=$PDNS_DIR
api=yes
api-key=$PDNS_API_KEY
webserver=yes
webserver-address=127.0.0.1
webserver-port=$PDNS_API_PORT
webserver-allow-from=127.0.0.0/8
daemon=no
guardian=no
disable-syslog=yes
EOF
)
log "starting pdns_server on 127.0.0.1:$PDNS_PORT (dns), API on http://127.0.0.1:$PDNS_API_PORT"
launch pdns "$PDNS" --config-dir="$PDNS_DIR"
# Once in CI a pdns_server stayed silent (an empty log) and its API never answered; not seen
# here. One that has said nothing after 20 s is shown (where it waits) and started once more.
if ! answers_within 20 pdns pdns_api_ready && [ ! -s "$STATE/logs/pdns.log" ]; then
  log "pdns_server has logged nothing in 20s and its API does not answer: $(process_state pdns); starting it again"
  stop_component pdns
  launch pdns "$PDNS" --config-dir="$PDNS_DIR"
fi
wait_for pdns "API answer" pdns_api_ready
# The zone as BIND has it: SOA and NS come from the API, MX and the MX host's address here.
PDNS_ZONE_JSON=$(cat <<EOF
{"name": "$ZONE.", "kind": "Native", "nameservers": ["ns1.$ZONE."], "rrsets": [
  {"name": "$ZONE.", "type": "MX", "ttl": 300, "records": [{"content": "10 mx1.$ZONE.", "disabled": false}]},
  {"name": "mx1.$ZONE.", "type": "A", "ttl": 300, "records": [{"content": "127.0.0.1", "disabled": false}]},
  {"name": "mx2.$ZONE.", "type": "A", "ttl": 300, "records": [{"content": "127.0.0.1", "disabled": false}]},
  {"name": "mta-sts.$ZONE.", "type": "A", "ttl": 300, "records": [{"content": "127.0.0.1", "disabled": false}]}]}
EOF
)
[ "$(curl -sS --max-time 10 -o "$STATE/logs/pdns-zone.json" -w '%{http_code}' \
  -H "X-API-Key: $PDNS_API_KEY" -X POST -d "$PDNS_ZONE_JSON" \
  "http://127.0.0.1:$PDNS_API_PORT/api/v1/servers/localhost/zones")" = 201 ] ||
  fail_start "creating zone $ZONE in PowerDNS failed: $(cat "$STATE/logs/pdns-zone.json")"
wait_for pdns "SOA answer for $ZONE" soa_ready pdns

# --- Route 53: moto's server behind the strictness shim (run from a copy in the state dir, so
# its command line names that directory) -----------------------------------------------------
cp "$MAILSEC_ROOT/scripts/route53-strict.py" "$STATE/route53/route53-strict.py"
log "starting moto's Route 53 (strict) on http://127.0.0.1:$ROUTE53_PORT, hosted zone $ZONE"
PYTHONPATH="$MOTO_PATH" launch route53 python3 "$STATE/route53/route53-strict.py" \
  --port "$ROUTE53_PORT" --zone "$ZONE"
wait_for route53 "start" route53_ready

wait_for kube-apiserver "/readyz ok" api_ready

# --- kubeconfig, CRDs, env file ----------------------------------------------------------------
b64() { base64 -w0 <"$1"; }
(
  umask 077
  cat >"$STATE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mailsec-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: mailsec-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: mailsec-local
  context:
    cluster: mailsec-local
    user: mailsec-admin
    namespace: default
current-context: mailsec-local
preferences: {}
EOF
)
apply_crds || fail_start "applying the CRDs failed"

{
  echo "export KUBECONFIG=$(q "$STATE/kubeconfig")"
  echo "export MAILSEC_DNS_SERVER=$(q "127.0.0.1:$DNS_PORT")"
  echo "export MAILSEC_DNS_ZONE=$(q "$ZONE")"
  echo "export MAILSEC_TSIG_KEY_NAME=$(q "$TSIG_NAME")"
  echo "export MAILSEC_TSIG_ALGORITHM=$(q "$TSIG_ALGORITHM")"
  echo "export MAILSEC_TSIG_SECRET=$(q "$TSIG_SECRET")"
  echo "export MAILSEC_KNOT_SERVER=$(q "127.0.0.1:$KNOT_PORT")"
  echo "export MAILSEC_PDNS_SERVER=$(q "127.0.0.1:$PDNS_PORT")"
  echo "export MAILSEC_PDNS_API_URL=$(q "http://127.0.0.1:$PDNS_API_PORT")"
  echo "export MAILSEC_PDNS_API_KEY=$(q "$PDNS_API_KEY")"
  echo "export MAILSEC_ROUTE53_URL=$(q "http://127.0.0.1:$ROUTE53_PORT")"
  echo "export MAILSEC_ENV_DIR=$(q "$STATE")"
  echo "export MAILSEC_TOOLS_BIN=$(q "$BIN")"
  # shellcheck disable=SC2016
  echo "export PATH=$(q "$BIN")"':"$PATH"'
} >"$STATE/env.tmp"
chmod 600 "$STATE/env.tmp"
mv "$STATE/env.tmp" "$STATE/env"
log "environment up in $((SECONDS - t0))s (state: $STATE)"
print_env
