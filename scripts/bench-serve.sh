#!/usr/bin/env bash
# The policy server's throughput beside nginx's, in one run on loopback: `mailsec serve`'s
# serving path (benches/serve_load.rs: the accept loop, limits, router and policy index of
# the release build, with DOMAINS policies fed from memory instead of a cluster watch) and
# nginx (Debian's nginx-light) serving the same policy file, each under
# `wrk -t2 -c32 -d<SECONDS>s` with the Host cycling over mta-sts.d<i>.example. Prints req/s
# and p99 of each and the ratios.
#
#   scripts/bench-serve.sh [DOMAINS] [SECONDS]      (default 10000 and 10)
#
# nginx and wrk come from scripts/tools.d/nginx-wrk.sh (`make tools`). Both servers run with
# two workers on the same machine as wrk, so the figures compare them, nothing more.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
DOMAINS=${1:-10000}
SECONDS_PER_RUN=${2:-10}
[[ $DOMAINS =~ ^[1-9][0-9]*$ ]] || { echo "error: DOMAINS must be a positive integer, not $DOMAINS" >&2; exit 2; }
[[ $SECONDS_PER_RUN =~ ^[1-9][0-9]*$ ]] || { echo "error: SECONDS must be a positive integer, not $SECONDS_PER_RUN" >&2; exit 2; }
for tool in nginx wrk python3; do
  command -v "$tool" >/dev/null || { echo "error: no $tool (make tools installs nginx and wrk)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/mailsec-bench-serve.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Built first, so that nothing is timed while the compiler runs.
cd "$root"
echo "== building (release)" >&2
bench_bin=$(cargo bench --no-run --bench serve_load --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "serve_load":
        print(m["executable"])')
[ -x "$bench_bin" ] || { echo "error: the serve_load benchmark did not build" >&2; exit 1; }

mkdir -p "$work/www/.well-known" "$work/tmp"
# nginx's workers run as another user when started by root: they must be able to read the file.
chmod 0755 "$work" "$work/www" "$work/www/.well-known"
mailsec_port=$(free_port)
"$bench_bin" --bench --listen "127.0.0.1:$mailsec_port" --domains "$DOMAINS" \
  --policy "$work/www/.well-known/mta-sts.txt" >"$work/mailsec.log" 2>&1 &
pids+=($!)

nginx_port=$(free_port)
cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/tmp/body;
  proxy_temp_path $work/tmp/proxy;
  fastcgi_temp_path $work/tmp/fastcgi;
  uwsgi_temp_path $work/tmp/uwsgi;
  scgi_temp_path $work/tmp/scgi;
  keepalive_requests 1000;
  server {
    listen 127.0.0.1:$nginx_port default_server;
    root $work/www;
    location = /.well-known/mta-sts.txt {
      default_type "text/plain; charset=utf-8";
      add_header Cache-Control "max-age=300";
    }
  }
}
CONF

# Both answer before anything is timed.
for _ in $(seq 100); do
  grep -q '^listening' "$work/mailsec.log" 2>/dev/null && break
  sleep 0.1
done
grep -q '^listening' "$work/mailsec.log" || { cat "$work/mailsec.log" >&2; echo "error: the policy server did not start" >&2; exit 1; }
chmod 0644 "$work/www/.well-known/mta-sts.txt"
nginx -e "$work/nginx-error.log" -p "$work" -c "$work/nginx.conf" &
pids+=($!)
for _ in $(seq 100); do
  python3 - "$nginx_port" <<'PY' 2>/dev/null && break
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
PY
  sleep 0.1
done

cat >"$work/hosts.lua" <<LUA
local n, i = $DOMAINS, 0
request = function()
  i = i + 1
  return wrk.format("GET", "/.well-known/mta-sts.txt", {["Host"] = "mta-sts.d" .. (i % n) .. ".example"})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.0f %d %d\n", summary.requests,
    summary.requests / (summary.duration / 1e6), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
LUA

for name in mailsec nginx; do
  port=${name}_port
  curl_like=$(python3 - "${!port}" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2)
s.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.d1.example\r\nConnection: close\r\n\r\n")
print(s.recv(4096).split(b"\r\n", 1)[0].decode())
PY
)
  [ "$curl_like" = "HTTP/1.1 200 OK" ] || { echo "error: $name answered $curl_like" >&2; exit 1; }
  # Warm-up, then the measurement.
  wrk -t2 -c32 -d2s -s "$work/hosts.lua" "http://127.0.0.1:${!port}/" >/dev/null
  echo "== $name: wrk -t2 -c32 -d${SECONDS_PER_RUN}s, $DOMAINS hosts" >&2
  wrk -t2 -c32 -d"${SECONDS_PER_RUN}s" --latency -s "$work/hosts.lua" "http://127.0.0.1:${!port}/" | tee "$work/$name.wrk" >&2
done

python3 - "$work/mailsec.wrk" "$work/nginx.wrk" "$DOMAINS" <<'PY'
import sys
def result(path):
    for line in open(path):
        if line.startswith("RESULT "):
            requests, rps, p99, errors = map(float, line.split()[1:])
            return rps, p99 / 1000.0, int(errors)
    sys.exit(f"error: no result in {path}")
(m_rps, m_p99, m_err), (n_rps, n_p99, n_err) = result(sys.argv[1]), result(sys.argv[2])
print(f"policies: {sys.argv[3]}")
print(f"mailsec serve: {m_rps:10.0f} req/s  p99 {m_p99:7.2f} ms  errors {m_err}")
print(f"nginx:         {n_rps:10.0f} req/s  p99 {n_p99:7.2f} ms  errors {n_err}")
print(f"ratio mailsec/nginx: req/s {m_rps / n_rps:.2f}  p99 {m_p99 / n_p99 if n_p99 else float('nan'):.2f}")
if m_err or n_err:
    sys.exit("error: requests failed (non-2xx, timeouts or socket errors)")
PY
