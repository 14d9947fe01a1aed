//! `confidant <cmd> --help` is the admin's manual: a snapshot of the help of
//! the top-level command and of every subcommand and sub-subcommand, and of
//! the errors an admin meets (an unknown subcommand, a missing argument, a bad
//! `--format`) with their exit codes. One case per file in `tests/cmd/`
//! (`NAME.toml`: the arguments and exit code; `NAME.stdout`, `NAME.stderr`:
//! what is printed).
//!
//! After a deliberate change to the help text, regenerate the snapshots with
//! `TRYCMD=overwrite cargo test -p confidant --test help` and review the diff.
//! A new subcommand needs a new `tests/cmd/<cmd>-<sub>-help.toml`:
//! `every_subcommand_has_a_help_case` says which are missing.

use std::collections::BTreeSet;
use std::process::Command;

#[test]
fn cli_cases() {
    trycmd::TestCases::new()
        .register_bin("confidant", std::path::PathBuf::from(env!("CARGO_BIN_EXE_confidant")))
        // Help is wrapped to the terminal's width: fix it, whatever the caller's terminal.
        .env("COLUMNS", "100")
        .case("tests/cmd/*.toml");
}

/// The subcommands `confidant ARGS --help` lists (without `help`).
fn subcommands(args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_confidant")).args(args).arg("--help").env("COLUMNS", "100").output();
    let out = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let mut in_commands = false;
    let mut names = Vec::new();
    for line in out.lines() {
        if line == "Commands:" {
            in_commands = true;
        } else if !line.starts_with(' ') {
            in_commands = false;
        } else if in_commands
            && let Some(name) = line.strip_prefix("  ").and_then(|l| l.split_whitespace().next())
            && !line.starts_with("   ")
            && name != "help"
        {
            names.push(name.to_owned());
        }
    }
    names
}

#[test]
fn every_subcommand_has_a_help_case() {
    let mut expected = BTreeSet::from(["help".to_owned()]);
    for top in subcommands(&[]) {
        expected.insert(format!("{top}-help"));
        for sub in subcommands(&[&top]) {
            expected.insert(format!("{top}-{sub}-help"));
            for subsub in subcommands(&[&top, &sub]) {
                expected.insert(format!("{top}-{sub}-{subsub}-help"));
            }
        }
    }
    assert!(expected.len() > 30, "the command tree was not read: {expected:?}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd");
    let cases: BTreeSet<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".toml").map(str::to_owned))
        .filter(|n| n.ends_with("-help") || n == "help")
        .collect();
    let missing: Vec<_> = expected.difference(&cases).collect();
    let stale: Vec<_> = cases.difference(&expected).collect();
    assert!(missing.is_empty() && stale.is_empty(), "help cases missing: {missing:?}; for no command: {stale:?}");
}
