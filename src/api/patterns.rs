//! Regular expressions used by the CRDs' CEL rules (RE2 syntax, written for a single-quoted CEL
//! string, so every regex backslash is doubled). They catch typos at admission; the full rules
//! (IDNA, label lengths, RFC grammars) run in the controller's validation step.

/// One label: letters (any script), digits, inner hyphens; at most 63 characters.
macro_rules! label {
    () => {
        "[\\\\p{L}\\\\p{N}]([\\\\p{L}\\\\p{M}\\\\p{N}-]{0,61}[\\\\p{L}\\\\p{M}\\\\p{N}])?"
    };
}

/// A host name of two or more labels, no trailing dot.
pub const HOST: &str = concat!("^(", label!(), "[.])+", label!(), "$");

/// An MTA-STS mx pattern: a host name, optionally behind `*.`.
pub const MX_PATTERN: &str = concat!("^([*][.])?(", label!(), "[.])+", label!(), "$");

/// A DKIM or BIMI selector: one or more ASCII LDH labels.
pub const SELECTOR: &str = "^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?([.][a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$";
