//! `scripts/bench-tlsrpt.sh`: TLS reports parsed per second by `mailsec_operator::report`,
//! over the real sample reports in shared/tlsrpt-samples: their plain JSON (`parse_json`),
//! their gzipped attachments (`parse_gzip`) and their whole e-mails (`parse_mail`).
//!
//!   cargo bench --bench tlsrpt_parse -- [SECONDS]     (default 3 per kind)
//!
//! Each kind runs 5 rounds over all its files after a warm-up; printed are the median
//! round's rate (reports per second of this thread's CPU time, which other work on a shared
//! machine does not skew; MB/s of input) and a line `rate <kind> <reports/s> <files>` for
//! scripts. Every file must parse, else the numbers would mean nothing.
//! Under `cargo test --all-targets` (no `--bench` argument) it runs as a smoke test: one
//! pass over each file, so the benchmark cannot rot unnoticed.
//! Without a `harness = false` entry in Cargo.toml cargo builds this with the test harness:
//! then the test `tlsrpt_parse` is the entry point, a smoke test unless
//! `TLSRPT_BENCH_SECONDS=N cargo test --release --bench tlsrpt_parse -- --nocapture`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailsec_operator::report::{Limits, Report, ReportError, parse_gzip, parse_json, parse_mail};

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tlsrpt-samples");
const ROUNDS: u32 = 5;
/// No run may take longer than this, whatever was asked.
const MAX_SECONDS: f64 = 120.0;

type Parser = fn(&[u8], &Limits) -> Result<Report, ReportError>;

fn mail(bytes: &[u8], limits: &Limits) -> Result<Report, ReportError> {
    parse_mail(bytes, limits).map(|m| m.report)
}

const KINDS: [(&str, &str, Parser); 3] = [
    ("json", "json", parse_json),
    ("gzip", "gz", parse_gzip),
    ("mail", "eml", mail),
];

/// The `harness = false` entry point (with the test harness, the test below is).
fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let seconds = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .find_map(|a| a.parse::<f64>().ok())
        .or_else(seconds_from_env);
    run(benchmarking.then(|| seconds.unwrap_or(3.0)));
}

#[test]
fn tlsrpt_parse() {
    run(seconds_from_env());
}

fn seconds_from_env() -> Option<f64> {
    std::env::var("TLSRPT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// `seconds`: the time per kind; `None` is the smoke test.
fn run(seconds: Option<f64>) {
    let dir = PathBuf::from(SAMPLES);
    if !dir.is_dir() {
        assert!(
            seconds.is_none() && !in_ci(),
            "the TLS-RPT samples are missing at {SAMPLES}"
        );
        eprintln!("skipped: no TLS-RPT samples at {SAMPLES}");
        return;
    }
    let limits = Limits::default();
    for (kind, sub, parse) in KINDS {
        let files = files(&dir.join(sub));
        assert!(!files.is_empty(), "no sample files in {sub}/");
        for (name, bytes) in &files {
            if let Err(e) = parse(bytes, &limits) {
                panic!("{sub}/{name} does not parse: {e}");
            }
        }
        let Some(seconds) = seconds else {
            eprintln!("smoke: {kind}: {} files parse", files.len());
            continue;
        };
        let seconds = seconds.clamp(0.05, MAX_SECONDS / 3.0);
        let round = Duration::from_secs_f64(seconds / f64::from(ROUNDS));
        let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
        // Warm-up: caches, branch predictors, the allocator.
        measure(&files, parse, &limits, round / 4);
        let mut rates: Vec<f64> = (0..ROUNDS)
            .map(|_| measure(&files, parse, &limits, round))
            .collect();
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let mb_per_s = median * (bytes as f64 / files.len() as f64) / 1e6;
        println!(
            "{kind:>5}: {:>12.0} reports/s ({mb_per_s:.0} MB/s; {} files, {bytes} bytes; rounds {:.0}..{:.0})",
            median,
            files.len(),
            rates[0],
            rates[rates.len() - 1],
        );
        println!("rate {kind} {median:.0} {}", files.len());
    }
}

/// Reports per second of this thread's CPU time (wall time where that is not known):
/// passes over all files until `budget` of wall time is spent.
fn measure(files: &[(String, Vec<u8>)], parse: Parser, limits: &Limits, budget: Duration) -> f64 {
    let started = Instant::now();
    let cpu = cpu_time();
    let mut parsed = 0u64;
    while started.elapsed() < budget {
        for _ in 0..16 {
            for (_, bytes) in files {
                let report = parse(black_box(bytes), limits);
                black_box(&report);
                parsed += 1;
            }
        }
    }
    let spent = match (cpu, cpu_time()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => started.elapsed(),
    };
    parsed as f64 / spent.as_secs_f64()
}

/// The CPU time this thread has run (Linux), so that other work on the machine does not
/// count against the parser.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, bytes)
        })
        .collect();
    out.sort();
    out
}
