//! Appointment reminders: the sweep (`confidant reminders send`, and every
//! `[reminders] interval_seconds` in `serve`) finds booked appointments due a
//! reminder through the records service, and sends each patient a message
//! with the clinic's name, the date and time in the clinic's zone and a
//! cancel link — nothing else: no clinician, no reason, no name. E-mail goes
//! through the SMTP server of `[alerts]`; text messages through a generic SMS
//! gateway webhook (`{"to", "text"}`, optionally signed like the alert webhook).
//!
//! At most once, but for a crash: the reminder's mark is claimed before the
//! send and marked sent after it (`confidant_records` `reminders.rs`); a
//! claim left by a crash is taken over once, after ten minutes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use confidant_detect::sinks::{self, SmtpTransport};
use confidant_records::{DueReminder, Records};
use confidant_server::ClinicSettings;
use serde_json::json;

use crate::config::Config;
use crate::console::Console;
use crate::instance::Instance;

/// How many reminders one sweep sends at most (the next sweep sends the rest).
const PER_SWEEP: usize = 500;

/// Where reminders go, and what they say.
pub struct Outbound {
    email: Option<(SmtpTransport, String)>,
    sms: Option<(reqwest::Client, String, Option<Vec<u8>>)>,
    base_url: String,
    clinic: ClinicSettings,
    lead_ms: i64,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Outbound(email: {}, sms: {})", self.email.is_some(), self.sms.is_some())
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Reminders sent (by at least one channel).
    pub sent: usize,
    /// Reminders no channel could deliver (tried again by the next sweep).
    pub failed: usize,
    /// Patients with neither an e-mail address nor a mobile phone (not tried again).
    pub unreachable: usize,
}

impl Outbound {
    /// The channels `[reminders]` configures; errors say what to fix. Cancel
    /// links start with `[server] public_url`, which patients must reach: required.
    pub fn new(config: &Config) -> Result<Outbound> {
        let r = &config.reminders;
        let Some(base_url) = config.server.public_url.as_deref() else {
            bail!(
                "reminders need [server] public_url: the address patients open the cancel links at \
                 (e.g. \"https://clinic.example\")"
            );
        };
        let email = if r.email {
            let transport = sinks::smtp_transport(&config.alerts)
                .map_err(|e| anyhow::anyhow!("{e} (in [alerts], which reminder e-mail uses)"))?;
            match (transport, &r.from) {
                (Some(t), Some(from)) => {
                    if !sinks::is_mailbox(from) {
                        bail!("reminders.from {from:?} is not an e-mail address");
                    }
                    Some((t, from.clone()))
                }
                (Some(_), None) => bail!("reminders.email needs reminders.from (the sender address)"),
                (None, _) => None,
            }
        } else {
            None
        };
        let sms = match &r.sms_webhook {
            Some(url) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    bail!("reminders.sms_webhook must be an http(s) URL");
                }
                let secret = match &r.sms_webhook_secret_file {
                    Some(path) => {
                        let s = sinks::read_secret(path, "SMS webhook secret").map_err(anyhow::Error::msg)?;
                        if s.len() < 32 {
                            bail!("the SMS webhook secret in {} must be at least 32 characters", path.display());
                        }
                        Some(s.into_bytes())
                    }
                    None => None,
                };
                Some((sinks::webhook_client().map_err(anyhow::Error::msg)?, url.clone(), secret))
            }
            None => None,
        };
        if email.is_none() && sms.is_none() {
            bail!(
                "[reminders] is enabled but has no channel: set [alerts] smtp_host and reminders.from for e-mail, \
                 or reminders.sms_webhook"
            );
        }
        Ok(Outbound {
            email,
            sms,
            base_url: base_url.trim_end_matches('/').to_owned(),
            clinic: config.clinic.settings()?,
            lead_ms: i64::from(r.lead_hours) * 3_600_000,
        })
    }
}

/// `<date> <time>` of `millis` in the clinic's zone, in `lang`, and the zone's abbreviation.
fn when(clinic: &ClinicSettings, millis: i64, finnish: bool) -> String {
    let Ok(t) = jiff::Timestamp::from_millisecond(millis) else { return String::new() };
    let z = t.to_zoned_datetime(clinic.time_zone.clone());
    let format = if finnish { "%-d.%-m.%Y klo %H.%M (%Z)" } else { "%Y-%m-%d at %H:%M (%Z)" };
    z.strftime(format).to_string()
}

/// The subject and text of a reminder: the clinic, the time, the link; in the
/// patient's language, else Finnish and English.
pub fn message(clinic: &ClinicSettings, start: i64, language: Option<&str>, link: &str) -> (String, String) {
    let fi = format!(
        "Muistutus vastaanottoajasta: {}, {}.\nJos et pääse, peru aika tästä: {link}\n",
        clinic.name,
        when(clinic, start, true)
    );
    let en = format!(
        "A reminder of your appointment at {}, {}.\nIf you cannot come, cancel it here: {link}\n",
        clinic.name,
        when(clinic, start, false)
    );
    match language {
        Some("fi") => ("Muistutus vastaanottoajasta".into(), fi),
        Some("en") => ("Appointment reminder".into(), en),
        _ => ("Muistutus vastaanottoajasta / Appointment reminder".into(), format!("{fi}\n{en}")),
    }
}

/// An error text without anything that looks like an address (an SMTP server may echo the recipient).
fn without_addresses(e: &str) -> String {
    e.split_whitespace().filter(|w| !w.contains('@')).collect::<Vec<_>>().join(" ")
}

impl Outbound {
    async fn deliver(&self, records: &Records, due: &DueReminder) -> Result<Vec<&'static str>> {
        let token = records.issue_cancel_link(&due.appointment_id).await?;
        let link = format!("{}/cancel/{token}", self.base_url);
        let (subject, text) = message(&self.clinic, due.start, due.language.as_deref(), &link);
        let mut channels = Vec::new();
        if let (Some((transport, from)), Some(to)) = (&self.email, &due.email) {
            match sinks::send_mail(transport, from, to, &subject, text.clone()).await {
                Ok(()) => channels.push("email"),
                Err(e) => {
                    tracing::warn!(appointment = %due.appointment_id, error = %without_addresses(&e), "a reminder e-mail failed")
                }
            }
        }
        if let (Some((http, url, secret)), Some(to)) = (&self.sms, &due.phone) {
            let body = serde_json::to_vec(&json!({"to": to, "text": text})).unwrap_or_default();
            match sinks::post_json(http, url, secret.as_deref(), body).await {
                Ok(()) => channels.push("sms"),
                Err(e) => {
                    tracing::warn!(appointment = %due.appointment_id, error = %e, "a reminder text message failed")
                }
            }
        }
        Ok(channels)
    }

    /// The channels a reminder to this patient would go by.
    fn channels(&self, due: &DueReminder) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.email.is_some() && due.email.is_some() {
            c.push("email");
        }
        if self.sms.is_some() && due.phone.is_some() {
            c.push("sms");
        }
        c
    }

    /// Whether this patient has a channel this clinic sends by.
    fn reaches(&self, due: &DueReminder) -> bool {
        (self.email.is_some() && due.email.is_some()) || (self.sms.is_some() && due.phone.is_some())
    }
}

/// Send every reminder due now.
pub async fn sweep(records: &Records, out: &Outbound) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let honey = records.honey_set();
    for due in records.due_reminders(out.lead_ms, PER_SWEEP).await? {
        // A honey record's reminder goes through every step but the send: its
        // made-up phone number may be someone's.
        if honey.contains(&due.patient_id) {
            let channels = out.channels(&due);
            if channels.is_empty() {
                records.reminder_unreachable(&due).await?;
            } else {
                records.issue_cancel_link(&due.appointment_id).await?;
                records.reminder_sent(&due, &channels.join(" ")).await?;
            }
            continue;
        }
        if !out.reaches(&due) {
            records.reminder_unreachable(&due).await?;
            report.unreachable += 1;
            continue;
        }
        let channels = match out.deliver(records, &due).await {
            Ok(c) => c,
            Err(e) => {
                records.reminder_failed(&due).await?;
                return Err(e);
            }
        };
        if channels.is_empty() {
            records.reminder_failed(&due).await?;
            report.failed += 1;
        } else {
            records.reminder_sent(&due, &channels.join(" ")).await?;
            report.sent += 1;
        }
    }
    Ok(report)
}

/// `confidant reminders send`: one sweep now (for cron, and tests).
pub async fn send(console: &Console, dir: &Path) -> Result<SweepReport> {
    let instance = Instance::open(console, dir).await?;
    let config = &instance.config;
    if !config.reminders.enabled {
        instance.records.store().close().await;
        bail!("reminders are off: set `enabled = true` in [reminders] of {}", Config::path(dir).display());
    }
    let out = Outbound::new(config).with_context(|| format!("in [reminders] of {}", Config::path(dir).display()));
    let report = match out {
        Ok(out) => sweep(&instance.records, &out).await,
        Err(e) => Err(e),
    };
    instance.records.store().close().await;
    report
}

/// `serve`'s reminder task: a sweep every `every`, until aborted.
pub fn spawn(records: Arc<Records>, out: Outbound, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            // The first sweep one interval after the start: a restart loop sends nothing extra.
            tokio::time::sleep(every).await;
            match sweep(&records, &out).await {
                Ok(r) if r.sent + r.failed + r.unreachable > 0 => {
                    tracing::info!(sent = r.sent, failed = r.failed, unreachable = r.unreachable, "reminders")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the reminder sweep failed; it runs again later"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reminder_says_the_clinic_and_the_time_in_its_zone() {
        let clinic = ClinicSettings {
            name: "Testiklinikka".into(),
            time_zone: jiff::tz::TimeZone::get("Europe/Helsinki").unwrap(),
            cancel_notice_hours: 24,
        };
        // 2026-12-03T13:00:00Z is 15.00 in Helsinki (EET, UTC+2).
        let start = 1_796_302_800_000;
        let (subject, text) = message(&clinic, start, Some("fi"), "https://c.example/cancel/x");
        assert_eq!(subject, "Muistutus vastaanottoajasta");
        assert!(text.contains("Testiklinikka, 3.12.2026 klo 15.00 (EET)"), "{text}");
        assert!(text.contains("https://c.example/cancel/x"));
        let (_, en) = message(&clinic, start, Some("en"), "L");
        assert!(en.contains("at Testiklinikka, 2026-12-03 at 15:00 (EET)"), "{en}");
        assert!(!en.contains("klo"));
        let (both_subject, both) = message(&clinic, start, None, "L");
        assert!(both_subject.contains('/') && both.contains("klo 15.00") && both.contains("at 15:00"), "{both}");
    }

    #[test]
    fn errors_lose_their_addresses() {
        assert_eq!(without_addresses("550 <anna@example.fi> unknown user"), "550 unknown user");
    }
}
