//! The release path, checked without GitHub and without a container engine:
//!
//! - .github/workflows/*.yml pass actionlint (its Go module, scripts/tools.d/actionlint.sh),
//!   which checks the `run:` scripts with shellcheck too;
//! - the release workflow has the shape it promises: tags `v*` and by hand, minimal
//!   permissions, actions pinned, a multi-arch image with SBOM and provenance from the
//!   Dockerfile, the chart packaged with the release's version and pushed as an OCI artifact;
//! - the Dockerfile's `cargo build --locked` step: its build stage is read, the build context
//!   it sees is recreated (what it COPYs and .dockerignore lets through), and in it the cargo
//!   command's dependency resolution is run with `--locked --offline` and the same features,
//!   so a Cargo.lock out of step with Cargo.toml, or a crate that needs a file the image build
//!   does not copy, fails here rather than in the release.
//!
//! A missing tool skips a test loudly, or fails it with `CI=true`.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::process::Run;

use serde_json::Value;

const WORKFLOWS: &str = ".github/workflows";
const RELEASE: &str = ".github/workflows/release.yml";

fn scratch() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("release-tests");
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// [`support::process::run_bounded`] with this file's scratch directory.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Run {
    support::process::run_bounded(cmd, limit, &scratch())
}

/// Says that a test is skipped (on stderr, which libtest does not capture when written to
/// directly), or fails it with `CI=true`.
fn unavailable(what: &str, why: &str) {
    assert!(
        !support::in_ci(),
        "{what} unavailable and CI=true, failing instead of skipping: {why} (scripts/tools.sh installs it)"
    );
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let _ = writeln!(
        std::io::stderr().lock(),
        "## SKIPPED {test}: {why} (run scripts/tools.sh; with CI=true this fails)"
    );
}

/// A tool of the tools bin directory (`scripts/tools.sh bindir`).
fn tool(name: &str) -> Option<PathBuf> {
    let why = match Command::new("bash")
        .arg(support::repo_root().join("scripts/tools.sh"))
        .arg("bindir")
        .output()
    {
        Ok(out) if out.status.success() => {
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join(name);
            if path.is_file() {
                return Some(path);
            }
            format!("{} is missing", path.display())
        }
        Ok(out) => format!("scripts/tools.sh bindir failed: {}", out.status),
        Err(e) => format!("scripts/tools.sh bindir: {e}"),
    };
    unavailable(name, &why);
    None
}

/// A program on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        unavailable(name, &format!("{name} is not on PATH"));
    }
    found
}

fn workflow_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(support::repo_root().join(WORKFLOWS))
        .expect("read .github/workflows")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflow in {WORKFLOWS}");
    files
}

#[test]
fn the_workflows_pass_actionlint_with_shellcheck() {
    let (Some(actionlint), Some(shellcheck)) = (tool("actionlint"), on_path("shellcheck")) else {
        return;
    };
    let run = run_bounded(
        Command::new(&actionlint)
            .arg("-no-color")
            .arg(format!("-shellcheck={}", shellcheck.display()))
            // No Python in the workflows: pyflakes is not asked for.
            .arg("-pyflakes=")
            .args(workflow_files())
            .current_dir(support::repo_root()),
        Duration::from_secs(120),
    );
    assert!(
        run.ok,
        "actionlint ({}):\n{}{}",
        run.status, run.stdout, run.stderr
    );
}

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(support::repo_root().join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// Every step of every job, with its job's name.
fn steps(workflow: &Value) -> Vec<(String, &Value)> {
    workflow["jobs"]
        .as_object()
        .expect("jobs")
        .iter()
        .flat_map(|(job, spec)| {
            spec["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .map(move |s| (job.clone(), s))
        })
        .collect()
}

/// The one step that uses `action` (`owner/name`, any version).
fn step_using<'a>(workflow: &'a Value, action: &str) -> (String, &'a Value) {
    let found: Vec<(String, &Value)> = steps(workflow)
        .into_iter()
        .filter(|(_, s)| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.split('@').next() == Some(action))
        })
        .collect();
    assert_eq!(found.len(), 1, "{RELEASE}: one step uses {action}");
    found.into_iter().next().expect("one step")
}

#[test]
fn the_release_workflow_publishes_the_image_and_the_chart_with_least_privilege() {
    let wf = yaml_file(RELEASE);
    // Triggers: a v* tag, or by hand.
    let on = &wf["on"];
    assert_eq!(on["push"]["tags"], serde_json::json!(["v*"]), "{on}");
    assert!(
        on.as_object()
            .is_some_and(|o| o.contains_key("workflow_dispatch")),
        "{on}"
    );
    assert!(on["push"].get("branches").is_none(), "not on branch pushes");

    // Permissions: read-only by default; a job gets only these, and only these as write.
    assert_eq!(wf["permissions"], serde_json::json!({"contents": "read"}));
    let allowed = [
        ("contents", "read"),
        ("packages", "write"),
        ("id-token", "write"),
        ("attestations", "write"),
    ];
    for (job, spec) in wf["jobs"].as_object().expect("jobs") {
        let perms = spec["permissions"]
            .as_object()
            .unwrap_or_else(|| panic!("job {job}: permissions of its own, as a map"));
        for (scope, level) in perms {
            assert!(
                allowed
                    .iter()
                    .any(|(s, l)| s == scope && (level == l || level == "read" || level == "none")),
                "job {job}: {scope}: {level} is more than it needs"
            );
        }
        assert!(
            spec["timeout-minutes"].is_u64(),
            "job {job}: bounded in time"
        );
    }

    // Every action pinned: a major version at least (vN, vN.M, vN.M.P) or a commit.
    let mut used = BTreeSet::new();
    for (job, step) in steps(&wf) {
        let Some(uses) = step["uses"].as_str() else {
            continue;
        };
        let (action, version) = uses
            .split_once('@')
            .unwrap_or_else(|| panic!("job {job}: {uses} is not pinned"));
        let semver = version
            .strip_prefix('v')
            .is_some_and(|v| !v.is_empty() && v.split('.').all(|n| n.parse::<u32>().is_ok()));
        let commit = version.len() == 40 && version.chars().all(|c| c.is_ascii_hexdigit());
        assert!(
            semver || commit,
            "job {job}: {uses}: pin a version or a commit"
        );
        used.insert(action.to_owned());
    }
    for action in [
        "actions/checkout",
        "docker/setup-qemu-action",
        "docker/setup-buildx-action",
        "docker/login-action",
        "docker/metadata-action",
        "docker/build-push-action",
        "actions/attest-build-provenance",
    ] {
        assert!(used.contains(action), "{RELEASE} does not use {action}");
    }

    // The image: both architectures, from the Dockerfile, with SBOM and full provenance,
    // tagged by metadata-action, pushed to ghcr.io.
    let (image_job, build) = step_using(&wf, "docker/build-push-action");
    let with = &build["with"];
    let platforms: BTreeSet<&str> = with["platforms"]
        .as_str()
        .expect("platforms")
        .split(',')
        .map(str::trim)
        .collect();
    assert_eq!(platforms, BTreeSet::from(["linux/amd64", "linux/arm64"]));
    assert_eq!(with["file"], "Dockerfile");
    assert!(support::repo_root().join("Dockerfile").is_file());
    assert_eq!(with["push"], true);
    assert_eq!(with["sbom"], true);
    assert_eq!(with["provenance"], "mode=max");
    let (_, meta) = step_using(&wf, "docker/metadata-action");
    let meta_id = meta["id"].as_str().expect("the metadata step has an id");
    assert_eq!(
        with["tags"],
        format!("${{{{ steps.{meta_id}.outputs.tags }}}}"),
        "tags from docker/metadata-action"
    );
    let (login_job, login) = step_using_in(&wf, "docker/login-action", &image_job);
    assert_eq!(login["with"]["registry"], "ghcr.io", "job {login_job}");
    let qemu = step_index(&wf, &image_job, "docker/setup-qemu-action");
    let buildx = step_index(&wf, &image_job, "docker/setup-buildx-action");
    let build_at = step_index(&wf, &image_job, "docker/build-push-action");
    assert!(
        qemu < build_at && buildx < build_at,
        "QEMU and buildx first"
    );

    // The chart: packaged with the release's version, pushed to oci://ghcr.io/<owner>/charts,
    // after the image (whose digest it is pinned to).
    let chart_jobs: Vec<(&String, &Value)> = wf["jobs"]
        .as_object()
        .expect("jobs")
        .iter()
        .filter(|(_, spec)| run_text(spec).contains("helm push"))
        .collect();
    assert_eq!(chart_jobs.len(), 1, "one job pushes the chart");
    let (chart_job, spec) = chart_jobs[0];
    assert_eq!(
        spec["needs"], image_job,
        "job {chart_job} waits for the image"
    );
    let script = run_text(spec);
    for needle in [
        "helm lint --strict charts/mailsec-operator",
        "helm package charts/mailsec-operator --version \"$VERSION\"",
        "helm push ",
        "\"oci://ghcr.io/$owner/charts\"",
        "needs.image.outputs.digest",
    ] {
        let haystack = if needle.starts_with("needs.") {
            serde_json::to_string(spec).expect("json")
        } else {
            script.clone()
        };
        assert!(
            haystack.contains(needle),
            "job {chart_job} does not do `{needle}`"
        );
    }
}

/// The `run:` scripts of a job, joined.
fn run_text(job: &Value) -> String {
    job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn step_using_in<'a>(wf: &'a Value, action: &str, job: &str) -> (String, &'a Value) {
    steps(wf)
        .into_iter()
        .find(|(j, s)| {
            j == job
                && s["uses"]
                    .as_str()
                    .is_some_and(|u| u.split('@').next() == Some(action))
        })
        .unwrap_or_else(|| panic!("job {job} does not use {action}"))
}

fn step_index(wf: &Value, job: &str, action: &str) -> usize {
    wf["jobs"][job]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .position(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.split('@').next() == Some(action))
        })
        .unwrap_or_else(|| panic!("job {job} does not use {action}"))
}

/// The Dockerfile's instructions (continuation lines joined, comments dropped) as
/// `(INSTRUCTION, arguments)`.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((op.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

/// The build stage: what it copies from the context and its `cargo build` command's arguments.
struct BuildStage {
    base: String,
    copies: Vec<String>,
    cargo_build: Vec<String>,
    installs: String,
}

fn build_stage() -> BuildStage {
    let text =
        std::fs::read_to_string(support::repo_root().join("Dockerfile")).expect("read Dockerfile");
    let instructions = dockerfile_instructions(&text);
    // Stages start at FROM; the build stage is the one that runs `cargo build`.
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for (op, args) in instructions {
        if op == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Dockerfile starts with FROM")
            .push((op, args));
    }
    let stage = stages
        .iter()
        .find(|s| {
            s.iter()
                .any(|(op, a)| op == "RUN" && a.contains("cargo build"))
        })
        .expect("a stage of the Dockerfile runs `cargo build`");
    let base = stage[0]
        .1
        .split_whitespace()
        .next()
        .expect("FROM image")
        .to_owned();
    let mut copies = Vec::new();
    for (op, args) in stage {
        if op != "COPY" && op != "ADD" {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        assert!(
            !words.iter().any(|w| w.starts_with("--from")),
            "the build stage copies from another stage; extend this test"
        );
        assert!(!args.starts_with('['), "JSON-form COPY: extend this test");
        let sources = &words[..words.len() - 1];
        copies.extend(sources.iter().map(|s| s.trim_end_matches('/').to_owned()));
    }
    let run = stage
        .iter()
        .find(|(op, a)| op == "RUN" && a.contains("cargo build"))
        .map(|(_, a)| a.clone())
        .expect("RUN cargo build");
    let commands: Vec<&str> = run
        .split("&&")
        .flat_map(|c| c.split(';'))
        .map(str::trim)
        .collect();
    let cargo = commands
        .iter()
        .find(|c| c.starts_with("cargo build"))
        .expect("a command of the RUN starts with `cargo build`");
    assert!(
        !cargo.contains(['"', '\'', '$', '`']),
        "quoting or expansion in `{cargo}`: extend this test"
    );
    BuildStage {
        base,
        copies,
        cargo_build: cargo
            .split_whitespace()
            .skip(2)
            .map(str::to_owned)
            .collect(),
        installs: commands
            .iter()
            .filter(|c| !c.starts_with("cargo"))
            .copied()
            .collect::<Vec<_>>()
            .join(" && "),
    }
}

/// Whether .dockerignore lets `path` (a top-level name of the context) into the context.
/// Docker's rules: the last pattern that matches decides, `!` re-includes. Only the forms
/// this repository uses are understood (`*`, a plain name, with `!`); others fail the test.
fn docker_context_includes(path: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(support::repo_root().join(".dockerignore")) else {
        return true;
    };
    let mut included = true;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (negated, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p.trim()),
            None => (false, line),
        };
        let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
        assert!(
            pattern == "*" || !pattern.contains(['*', '?', '[', '\\']),
            ".dockerignore pattern {line}: extend this test"
        );
        let top = path.split('/').next().unwrap_or(path);
        if pattern == "*" || pattern == path || pattern == top {
            included = negated;
        }
    }
    included
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("create a directory of the context");
        for entry in std::fs::read_dir(from).expect("read a directory") {
            let entry = entry.expect("directory entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Nothing of this test's own build leaks into the nested cargo.
    for var in ["CARGO_TARGET_DIR", "CARGO_MANIFEST_DIR", "RUSTFLAGS"] {
        cmd.env_remove(var);
    }
    cmd
}

/// The Dockerfile's `cargo build --locked --release --bin ...`, exercised without a container
/// engine. Not as a build: a release build of the operator takes about ten minutes on CI's two
/// cores (and `cargo check` of it most of that, in a target directory of its own, as the one of
/// `cargo test` is locked while the tests run). What the image build adds to what the rest of
/// the suite compiles is its reduced context and `--locked`, and that is checked here: in a copy
/// of exactly the context the build stage sees, cargo resolves the command's dependency graph
/// (same features, host platform) with `--locked --offline`, which fails when Cargo.lock is out
/// of step with Cargo.toml or when the manifest needs a file the image build does not copy; and
/// the `--bin` it names is a target there.
#[test]
fn the_dockerfile_cargo_build_is_locked_and_resolves_in_its_build_context() {
    let stage = build_stage();
    let args = &stage.cargo_build;
    for flag in ["--locked", "--release"] {
        assert!(
            args.iter().any(|a| a == flag),
            "the Dockerfile's `cargo build` lacks {flag}: {args:?}"
        );
    }

    // The builder's Rust is at least the crate's rust-version.
    let manifest: toml_lite::Manifest = toml_lite::read(&support::repo_root().join("Cargo.toml"));
    let tag = stage
        .base
        .split_once(':')
        .map(|(_, t)| t)
        .expect("the build stage's image has a tag");
    let builder: Vec<u32> = tag
        .split('-')
        .next()
        .unwrap_or_default()
        .split('.')
        .map(|n| n.parse().expect("rust:<version> image"))
        .collect();
    let needed: Vec<u32> = manifest
        .rust_version
        .split('.')
        .map(|n| n.parse().expect("rust-version"))
        .collect();
    assert!(
        builder >= needed[..builder.len().min(needed.len())].to_vec(),
        "the build stage's {} is older than rust-version {}",
        stage.base,
        manifest.rust_version
    );

    // The command's arguments: features go to the resolution, the bin is looked up.
    let mut resolve_args: Vec<String> = Vec::new();
    let mut bins: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline.clone().unwrap_or_else(|| {
                i += 1;
                args.get(i)
                    .cloned()
                    .unwrap_or_else(|| panic!("{name} without a value"))
            })
        };
        match name {
            "--locked" | "--release" | "--frozen" => {}
            "--all-features" | "--no-default-features" => resolve_args.push(name.to_owned()),
            "--features" | "-F" => {
                let v = value();
                resolve_args.extend(["--features".to_owned(), v]);
            }
            "--target" => {
                let v = value();
                resolve_args.extend(["--target".to_owned(), v]);
            }
            "--bin" => bins.push(value()),
            "--profile" | "-j" | "--jobs" => {
                value();
            }
            other => panic!("the Dockerfile's cargo build passes {other}: extend this test"),
        }
        i += 1;
    }
    let bin = bins
        .first()
        .cloned()
        .unwrap_or_else(|| "mailsec".to_owned());
    assert!(
        stage.installs.contains(&format!("target/release/{bin}")),
        "the build stage installs target/release/{bin}: {}",
        stage.installs
    );

    // The build context the stage sees.
    let context = scratch().join(unique("docker-context"));
    let _ = std::fs::remove_dir_all(&context);
    std::fs::create_dir_all(&context).expect("create the context");
    assert!(!stage.copies.is_empty(), "the build stage copies nothing");
    for source in &stage.copies {
        assert!(
            docker_context_includes(source),
            "the build stage copies {source}, which .dockerignore leaves out of the context"
        );
        let from = support::repo_root().join(source);
        assert!(
            from.exists(),
            "the build stage copies {source}, which does not exist"
        );
        copy_tree(&from, &context.join(source));
    }

    let run = run_bounded(
        cargo()
            .args([
                "tree",
                "--locked",
                "--offline",
                "--edges",
                "normal,build",
                "--prefix",
                "none",
            ])
            .args(&resolve_args)
            .current_dir(&context),
        Duration::from_secs(300),
    );
    assert!(
        run.ok,
        "the Dockerfile's `cargo build {}` would fail in its build context: cargo tree --locked \
         ({}):\n{}",
        args.join(" "),
        run.status,
        run.stderr
    );
    assert!(run.stdout.lines().count() > 10, "{}", run.stdout);

    let run = run_bounded(
        cargo()
            .args([
                "metadata",
                "--locked",
                "--offline",
                "--no-deps",
                "--format-version",
                "1",
            ])
            .current_dir(&context),
        Duration::from_secs(120),
    );
    assert!(run.ok, "cargo metadata ({}):\n{}", run.status, run.stderr);
    let metadata: Value = serde_json::from_str(&run.stdout).expect("cargo metadata's JSON");
    let targets: Vec<&Value> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets").iter())
        .collect();
    assert!(
        targets.iter().any(|t| t["name"] == bin.as_str()
            && t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))),
        "--bin {bin} is no binary target in the build context"
    );
    let _ = std::fs::remove_dir_all(&context);
}

/// The one field of Cargo.toml this test needs, without a TOML parser among the dependencies.
mod toml_lite {
    use std::path::Path;

    pub struct Manifest {
        pub rust_version: String,
    }

    pub fn read(path: &Path) -> Manifest {
        let text = std::fs::read_to_string(path).expect("read Cargo.toml");
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_owned();
            } else if section == "[package]"
                && let Some(value) = line.strip_prefix("rust-version")
            {
                let value = value
                    .trim_start()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"');
                return Manifest {
                    rust_version: value.to_owned(),
                };
            }
        }
        panic!("Cargo.toml has no package.rust-version");
    }
}
