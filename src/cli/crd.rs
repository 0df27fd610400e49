//! `mailsec crd`: the CRDs as one multi-document YAML stream (what `crds/` holds).

use std::io::Write;
use std::process::ExitCode;

/// The YAML of every CRD, separated by `---`.
pub fn yaml() -> Result<String, serde_saphyr::ser_error::Error> {
    let docs = crate::api::crds()
        .iter()
        .map(serde_saphyr::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.iter().map(|d| format!("---\n{d}")).collect())
}

pub fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    std::io::stdout().write_all(yaml()?.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
