//! `confidant doctor|drill|incident report`: the app finds; this prints, as
//! text or JSON (or CSV), and fails the command on what must fail it.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Result, bail};
use confidant_app::Console;
use confidant_app::doctor::{self, Severity};

use crate::progress::Stderr;

/// How `doctor` and `drill` print their report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// How `incident report` writes the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IncidentFormat {
    Json,
    Csv,
}

/// `confidant doctor`: exits non-zero on any high finding.
pub async fn doctor(console: &Console, dir: &Path, format: Format) -> Result<()> {
    let findings = doctor::run(console, dir).await?;
    let count = |s: Severity| findings.iter().filter(|f| f.severity == Some(s)).count();
    let (high, medium, low) = (count(Severity::High), count(Severity::Medium), count(Severity::Low));
    let passed = findings.iter().filter(|f| f.severity.is_none()).count();
    match format {
        Format::Json => {
            let report = serde_json::json!({
                "type": "confidant-doctor-report",
                "checked_at": confidant_fhir::instant(console.now()),
                "summary": {"high": high, "medium": medium, "low": low, "passed": passed},
                "checks": findings,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Format::Text => {
            println!("Confidant doctor: {}", dir.display());
            for f in &findings {
                let tag = match f.severity {
                    Some(Severity::High) => "HIGH",
                    Some(Severity::Medium) => "MEDIUM",
                    Some(Severity::Low) => "LOW",
                    None => "ok",
                };
                println!("  {tag:<7} {:<17} {}", f.check, f.title);
                println!("          evidence: {}", f.evidence);
                if !f.fix.is_empty() {
                    println!("          fix:      {}", f.fix);
                }
            }
            println!("{high} high, {medium} medium, {low} low; {passed} checks passed.");
        }
    }
    if high > 0 {
        bail!("{high} high findings: fix them (see above)");
    }
    Ok(())
}

/// `confidant drill`: exits non-zero if a step fails.
pub async fn drill(console: &Console, dir: &Path, format: Format) -> Result<()> {
    let report = confidant_app::drill::run(console, dir, &Stderr).await?;
    let failed = report.failed();
    let steps = &report.steps;
    match format {
        Format::Json => {
            let json = serde_json::json!({
                "type": "confidant-drill-report",
                "instance": report.instance_id,
                "ran_at": confidant_fhir::instant(report.ran_at),
                "summary": {"passed": steps.len() - failed, "failed": failed},
                "steps": steps,
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Format::Text => {
            println!("Confidant breach drill: {} (on a private copy; real data untouched)", dir.display());
            for s in steps {
                println!("  {:<5} {:<17} {}", if s.passed { "PASS" } else { "FAIL" }, s.step, s.title);
                println!("        {}", s.evidence);
            }
            println!("{} of {} steps passed.", steps.len() - failed, steps.len());
        }
    }
    if failed > 0 {
        bail!("{failed} drill steps failed: see above; `confidant doctor` says how to fix most");
    }
    Ok(())
}

/// `confidant incident report`: the list on stdout, a summary on stderr.
pub async fn incident(
    console: &Console,
    dir: &Path,
    window: confidant_app::incident::Window<'_>,
    format: IncidentFormat,
) -> Result<()> {
    let (report, instance_id) = confidant_app::incident::report(console, dir, window).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        IncidentFormat::Csv => out.write_all(report.to_csv().as_bytes())?,
        IncidentFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report.to_json(&instance_id))?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    eprintln!(
        "{} patients' records were disclosed ({} patients touched, {} audit entries read).",
        report.patients_disclosed(),
        report.by_patient.len(),
        report.entries_scanned
    );
    Ok(())
}

/// `confidant incident contain`.
pub async fn contain(console: &Console, dir: &Path, actor: &str) -> Result<()> {
    let (id, ended) = confidant_app::incident::contain(console, dir, actor).await?;
    println!("Contained user {id}: {ended} sessions and API tokens ended, the account is disabled.");
    println!("Next: `confidant incident report --dir {} --actor {id}` lists what it touched.", dir.display());
    println!("Re-enable only after review: confidant user enable --dir {} --user {id}", dir.display());
    Ok(())
}
