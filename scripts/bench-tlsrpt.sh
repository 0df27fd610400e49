#!/usr/bin/env bash
# TLS-RPT report parsing: reports per second of mailsec's parser (benches/tlsrpt_parse.rs) and
# of parsedmarc (the Python tool most users know) over the same sample files
# (shared/tlsrpt-samples beside the repository), in one run, and the ratio. Goal: >= 20x.
#
#   scripts/bench-tlsrpt.sh [SECONDS]      (per kind and tool, default 3)
#
# Kinds: json (plain JSON reports), gzip (the gzipped attachments), mail (whole report e-mails).
# parsedmarc is timed in one Python process, N passes over the files after a warm-up, through
# parse_smtp_tls_report_json for JSON (its TLS-RPT parser) and parse_report_file(offline=True)
# for every kind (its general entry point, which unpacks gzip and mail). Both sides report the
# median of 5 rounds, in reports per second of the timing thread's CPU time (so that other work
# on a shared machine skews neither); the load average is printed with the results.
# parsedmarc is installed once into $HOME/.cache/mailsec/python/parsedmarc-<version>
# (PARSEDMARC_VERSION, default below), never into the repository or the system's Python.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
SECONDS_PER_KIND=${1:-3}
[[ $SECONDS_PER_KIND =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "error: SECONDS must be a number, not $SECONDS_PER_KIND" >&2; exit 2; }
PARSEDMARC_VERSION=${PARSEDMARC_VERSION:-11.1.0}
samples="$root/../shared/tlsrpt-samples"
[ -d "$samples" ] || { echo "error: no samples at $samples" >&2; exit 1; }
python=${PYTHON:-python3}
cache="$HOME/.cache/mailsec/python/parsedmarc-$PARSEDMARC_VERSION"

if ! PYTHONPATH="$cache" "$python" -c 'import parsedmarc' 2>/dev/null; then
  echo "installing parsedmarc $PARSEDMARC_VERSION into $cache" >&2
  mkdir -p "$(dirname "$cache")"
  "$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$cache" "parsedmarc==$PARSEDMARC_VERSION" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mailsec-bench-tlsrpt.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Built first, so that neither side is timed while the compiler runs.
cd "$root"
export TLSRPT_BENCH_SECONDS="$SECONDS_PER_KIND"
# The benchmark is a `harness = false` target when Cargo.toml says so; until then cargo
# builds it with the test harness, and its test runs the same measurement.
if grep -Eq '^name = "tlsrpt_parse"' Cargo.toml; then
  run_ours=(cargo bench -q --bench tlsrpt_parse -- "$SECONDS_PER_KIND")
  cargo bench -q --no-run --bench tlsrpt_parse
else
  run_ours=(cargo test -q --release --bench tlsrpt_parse -- --nocapture --test-threads 1)
  cargo test -q --release --no-run --bench tlsrpt_parse
fi

echo "== parsedmarc $PARSEDMARC_VERSION ($("$python" --version 2>&1))" >&2
PYTHONPATH="$cache" "$python" - "$samples" "$SECONDS_PER_KIND" >"$work/parsedmarc" <<'EOF'
import glob, logging, os, statistics, sys, time
logging.disable(logging.CRITICAL)
import parsedmarc

samples, seconds = sys.argv[1], float(sys.argv[2])
report_file = lambda b: parsedmarc.parse_report_file(b, offline=True)
cases = [
    ("json", "json", "parse_smtp_tls_report_json", parsedmarc.parse_smtp_tls_report_json),
    ("json", "json", "parse_report_file", report_file),
    ("gzip", "gz", "parse_report_file", report_file),
    ("mail", "eml", "parse_report_file", report_file),
]

def rate(fn, files, budget):
    """Reports per second of this thread's CPU time, as the Rust side counts."""
    start, cpu, n = time.perf_counter(), time.thread_time(), 0
    while time.perf_counter() - start < budget:
        for b in files:
            fn(b)
            n += 1
    return n / (time.thread_time() - cpu)

for kind, sub, name, fn in cases:
    files, failed = [], []
    for path in sorted(glob.glob(os.path.join(samples, sub, "*"))):
        data = open(path, "rb").read()
        try:
            fn(data)
            files.append(data)
        except Exception as e:  # timed only on what it parses
            failed.append(f"{os.path.basename(path)}: {e}")
    for f in failed:
        print(f"parsedmarc {name} fails on {sub}/{f}", file=sys.stderr)
    if not files:
        continue
    rate(fn, files, seconds / 20)
    rounds = sorted(rate(fn, files, seconds / 5) for _ in range(5))
    median = statistics.median(rounds)
    print(f"{kind:>5} {name}: {median:12.0f} reports/s ({len(files)} files)", file=sys.stderr)
    print(f"rate {kind} {name} {median:.0f} {len(files)}")
EOF

echo "== mailsec (${run_ours[*]})" >&2
"${run_ours[@]}" | tee "$work/mailsec" >&2

echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown); $(nproc 2>/dev/null || echo '?') cores"
printf '%-5s %16s %16s %-28s %8s\n' kind "mailsec /s" "parsedmarc /s" "parsedmarc function" ratio
while read -r _ kind name theirs files; do
  ours=$(awk -v k="$kind" '$1 == "rate" && $2 == k { print $3 }' "$work/mailsec")
  [ -n "$ours" ] || { echo "error: no mailsec rate for $kind" >&2; exit 1; }
  ours_files=$(awk -v k="$kind" '$1 == "rate" && $2 == k { print $4 }' "$work/mailsec")
  note=''
  [ "$files" = "$ours_files" ] || note=" (parsedmarc parsed $files of $ours_files files)"
  ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.1fx", a / b }')
  printf '%-5s %16s %16s %-28s %8s%s\n' "$kind" "$ours" "$theirs" "$name" "$ratio" "$note"
done < <(grep '^rate ' "$work/parsedmarc")
