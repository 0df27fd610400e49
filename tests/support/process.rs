//! Running a tool the tests depend on (helm, checkov, actionlint, cargo) with a time limit.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a bounded run ended.
pub struct Run {
    pub ok: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with a time limit (a run past it is killed and fails the test). Output goes
/// through files in `scratch`, so that a large output (a rendered chart) cannot block the child
/// while we wait for it.
pub fn run_bounded(cmd: &mut Command, limit: Duration, scratch: &Path) -> Run {
    let id = super::random_suffix();
    let (out_path, err_path) = (
        scratch.join(format!("{id}.out")),
        scratch.join(format!("{id}.err")),
    );
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &PathBuf| {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        text
    };
    Run {
        ok: status.success(),
        status: status.to_string(),
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}
