//! The README's table of status reasons is exactly the set the controller can set: its own
//! reasons and its errors' categories. A new reason without a row, or a row for a reason that
//! is gone, fails here.

use std::collections::BTreeSet;

use mailsec_operator::controller::conditions::{Type, reason};
use mailsec_operator::controller::error::Error;

/// The first cell of each row of the reasons table under "## Reading the status".
fn readme_reasons() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Reading the status")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Reading the status section");
    section
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_lists_every_reason_the_controller_sets_and_no_other() {
    let code: BTreeSet<String> = reason::ALL
        .iter()
        .chain(Error::CATEGORIES.iter())
        .map(|r| (*r).to_owned())
        .collect();
    let readme = readme_reasons();
    let missing: Vec<_> = code.difference(&readme).collect();
    let stale: Vec<_> = readme.difference(&code).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README reasons table: missing {missing:?}, not set by the code {stale:?}"
    );
}

#[test]
fn the_readme_names_every_condition_type() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    for t in Type::ALL {
        assert!(
            readme.contains(&format!("`{}`", t.as_str())),
            "README does not mention the condition {}",
            t.as_str()
        );
    }
}
