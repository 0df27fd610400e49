#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo fuzz, libFuzzer), one process at a time, and prints per
# target: executions, executions per second, crashes, peak RSS.
#
#   scripts/fuzz.sh smoke [TARGET...]   short: FUZZ_RUNS (100,000) or FUZZ_SECONDS (20) per
#                                       target, whichever comes first; fails on any crash
#   scripts/fuzz.sh long [TARGET...]    FUZZ_RUNS (10,000,000) per target, no time limit
#   scripts/fuzz.sh build               builds the targets only
#
# Stable toolchain, no sanitizer (see the Makefile's fuzz comment). Seeds are made at run time
# into fuzz/corpus/<target>/ (gitignored) from the project's examples (through
# `mailsec render`), inline samples below, and ../shared/tlsrpt-samples when it is there.
# A crashing input lands in fuzz/artifacts/<target>/; `cargo fuzz run -s none -a <target>
# <file>` replays it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
mode=${1:-smoke}
shift || true

PATH="$("$here/tools.sh" bindir):$PATH"
command -v cargo-fuzz >/dev/null || { echo "error: no cargo-fuzz; run make tools" >&2; exit 1; }

# Same flags for build and run, or `cargo fuzz run` rebuilds everything.
FUZZ_FLAGS=(--sanitizer none --debug-assertions)
FUZZ_RSS_MB=${FUZZ_RSS_MB:-1024}
case $mode in
  smoke) FUZZ_RUNS=${FUZZ_RUNS:-100000} FUZZ_SECONDS=${FUZZ_SECONDS:-20} ;;
  long) FUZZ_RUNS=${FUZZ_RUNS:-10000000} FUZZ_SECONDS=${FUZZ_SECONDS:-0} ;;
  build) ;;
  *) echo "usage: scripts/fuzz.sh smoke|long|build [TARGET...]" >&2; exit 2 ;;
esac

cd "$root/fuzz"
# The fuzz build keeps its own target directory (fuzz/target), whatever CARGO_TARGET_DIR says
# for the main crate: its flags differ, so sharing would only rebuild both.
main_target_dir=${CARGO_TARGET_DIR:-}
unset CARGO_TARGET_DIR
start=$(date +%s)
cargo fuzz build "${FUZZ_FLAGS[@]}" >&2
echo "fuzz build: $(($(date +%s) - start)) s" >&2
[ "$mode" = build ] && exit 0

# Bounded memory per input: the longest input each target reads (-max_len), in bytes. Records
# and hosts are short; reports, mails and gzip get room for a few policies.
max_len() {
  case $1 in
    tlsrpt_json | report_mail | report_body) echo 65536 ;;
    tlsrpt_gzip) echo 16384 ;;
    mtasts_policy | serve_http | smtp_reply) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

# Seeds, made fresh each run (the fuzzer's own finds stay beside them).
seeds=$(mktemp -d "${TMPDIR:-/tmp}/mailsec-fuzz-seeds.XXXXXX")
trap 'rm -rf "$seeds"' EXIT
rendered="$seeds/rendered.json"
(cd "$root" && CARGO_TARGET_DIR=${main_target_dir:-$root/target} cargo run -q --bin mailsec -- render -o json \
   --report-url https://reports.example.com/v1/tlsrpt \
  -f examples/basic.yaml -f examples/full.yaml -f examples/tls-reports.yaml \
  -f examples/dkim/opendkim.yaml -f examples/dkim/rspamd.yaml) > "$rendered"
python3 - "$rendered" "$root/../shared/tlsrpt-samples" "$root/fuzz/corpus" <<'PY'
import email.message, gzip, hashlib, json, pathlib, sys

rendered, samples, corpus = json.load(open(sys.argv[1])), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])

def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)

def walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)

prefixes = {"v=spf1": "spf_record", "v=DMARC1": "dmarc_record", "v=DKIM1": "dkim_record",
            "v=STSv1": "sts_record", "v=TLSRPTv1": "tlsrpt_record", "v=BIMI1": "bimi_record"}
for node in walk(rendered):
    value = node.get("value")
    if isinstance(value, str):
        for prefix, target in prefixes.items():
            if value.startswith(prefix):
                seed(target, value)
        seed("txt_strings", value)
        # Zone-file presentation, as DNS APIs return it: 255-byte quoted strings.
        b = value.encode()
        seed("txt_strings", " ".join('"%s"' % b[i:i + 255].decode(errors="replace").replace("\\", "\\\\").replace('"', '\\"') for i in range(0, len(b), 255)))
        if value.startswith("v=TLSRPTv1"):
            for uri in value.split("rua=", 1)[1].split(","):
                seed("tlsrpt_record", uri)
    for key in ("name", "domain"):
        if isinstance(node.get(key), str):
            seed("domain_name", node[key].lstrip("_"))
            seed("serve_host", "mta-sts." + node[key] + ":443")
    policy = node.get("policy")
    if isinstance(policy, str):
        seed("mtasts_policy", policy)
        seed("mtasts_policy", policy.replace("\r\n", "\n"))
        for line in policy.splitlines():
            if line.startswith("mx: "):
                seed("domain_name", line[4:])

# Hosts and requests for the policy server (its index holds the domains in fuzz/common/).
for host in ("mta-sts.example.com", "MTA-STS.Example.ORG:8443", "mta-sts.bücher.example", "mta-sts.example.net."):
    seed("serve_host", host)
    seed("serve_http", "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
seed("serve_http", "HEAD /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n\r\n"
     "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.org\r\nConnection: close\r\n\r\n")
seed("serve_http", "POST /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\nContent-Length: 3\r\n\r\nabc")
seed("serve_http", "GET http://mta-sts.example.com/.well-known/mta-sts.txt HTTP/1.1\r\n\r\n")

# SMTP peers: a server offering STARTTLS, one that does not, one that refuses it.
ehlo = "220 mx.example.com ESMTP\r\n250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
seed("smtp_reply", ehlo + "250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n")
seed("smtp_reply", ehlo + "250 8BITMIME\r\n")
seed("smtp_reply", ehlo + "250-STARTTLS\r\n250 CHUNKING\r\n454 4.7.0 TLS not available\r\n")
seed("smtp_reply", "554 5.7.1 go away\r\n")

# TLS-RPT reports: a minimal one (RFC 8460 §4.4), and the shared samples when present.
minimal = json.dumps({
    "organization-name": "Org", "contact-info": "tlsrpt@example.org", "report-id": "r1",
    "date-range": {"start-datetime": "2026-01-09T00:00:00Z", "end-datetime": "2026-01-09T23:59:59Z"},
    "policies": [{
        "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: testing", "mx: mx.example.com", "max_age: 86400"],
                   "policy-domain": "example.com", "mx-host": ["mx.example.com"]},
        "summary": {"total-successful-session-count": 5, "total-failure-session-count": 1},
        "failure-details": [{"result-type": "certificate-expired", "sending-mta-ip": "192.0.2.1",
                             "receiving-mx-hostname": "mx.example.com", "failed-session-count": 1}]}]}).encode()
reports = [minimal]
gzips = [gzip.compress(minimal)]
mails = []
if samples.is_dir():
    reports += [p.read_bytes() for p in sorted((samples / "json").glob("*.json"))]
    gzips += [p.read_bytes() for p in sorted((samples / "gz").glob("*.gz"))]
    mails += [p.read_bytes() for p in sorted((samples / "eml").glob("*.eml"))]
for r in reports:
    seed("tlsrpt_json", r)
    seed("report_body", b"application/tlsrpt+json\n" + r)
    seed("report_body", b"\n" + r)
for g in gzips:
    seed("tlsrpt_gzip", g)
    seed("report_body", b"application/tlsrpt+gzip\n" + g)
m = email.message.EmailMessage()
m["From"], m["To"], m["Subject"] = "noreply@example.net", "tlsrpt@example.com", "Report Domain: example.com"
m["TLS-Report-Domain"], m["TLS-Report-Submitter"] = "example.com", "example.net"
m.set_content("This is an aggregate TLS report from example.net")
m.add_attachment(gzip.compress(minimal), maintype="application", subtype="tlsrpt+gzip", filename="example.net!example.com!1!2!r1.json.gz")
mails.append(m.as_bytes())
for mail in mails:
    seed("report_mail", mail)
seed("report_body", b"message/rfc822\n" + mails[-1])
PY

status=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$root/fuzz/corpus/$t" "$root/fuzz/artifacts/$t"
  log="$seeds/$t.log"
  before=$(find "$root/fuzz/artifacts/$t" -type f | wc -l)
  t0=$(date +%s.%N)
  rc=0
  cargo fuzz run "${FUZZ_FLAGS[@]}" "$t" "$root/fuzz/corpus/$t" -- \
    -runs="$FUZZ_RUNS" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb="$FUZZ_RSS_MB" \
    -max_len="$(max_len "$t")" -timeout=10 -print_final_stats=1 > "$log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  crashes=$(($(find "$root/fuzz/artifacts/$t" -type f | wc -l) - before))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  line=$(awk -v t="$t" -v n="${runs:-0}" -v a="$t0" -v b="$t1" -v c="$crashes" -v r="${rss:-?}" \
    'BEGIN { s = b - a; printf "%-14s %11d executions %7.1f s %9.0f exec/s  crashes %d  peak RSS %s MB", t, n, s, (s > 0 ? n / s : 0), c, r }')
  echo "$line" >&2
  summary+=("$line")
  if [ $rc -ne 0 ] || [ "$crashes" -gt 0 ]; then
    status=1
    echo "--- $t failed (exit $rc); the end of its log:" >&2
    tail -n 40 "$log" >&2
  fi
done
echo "== fuzz $mode: $(($(date +%s) - start)) s in all" >&2
printf '%s\n' "${summary[@]}"
exit $status
