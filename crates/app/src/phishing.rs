//! Phishing drills at the application level: the sender of drill mails (the
//! sweep: `confidant phishing send`, and every `[phishing] interval_seconds`
//! in `serve`), and the console's campaign and staff e-mail commands. The
//! campaigns, links and results are the identity service's
//! (`confidant_identity::phishing`).
//!
//! A drill mail goes through the SMTP server of `[alerts]`, from
//! `phishing.from` with the template's sender name; its link is
//! `[server] public_url` + `/p/` + the recipient's one-time id. Each mail is
//! claimed before the send and marked sent after it; a failed send gives its
//! claim (and link) back for the next sweep.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use confidant_detect::sinks::{self, SmtpTransport};
use confidant_identity::Identity;
use confidant_identity::phishing::{CampaignMade, DrillMail, NewCampaign};
use confidant_policy::Role;

use crate::config::Config;
use crate::console::Console;
use crate::instance::Instance;

/// How many drill mails one sweep sends at most (the next sweep sends the rest).
const PER_SWEEP: usize = 500;

/// Where drill mails go out.
pub struct Outbound {
    transport: SmtpTransport,
    /// The bare sender address (`phishing.from`).
    from: String,
    base_url: String,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Outbound({})", self.base_url)
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub sent: usize,
    /// Mails the SMTP server did not take (tried again by the next sweep).
    pub failed: usize,
}

impl Outbound {
    /// The sender `[phishing]` and `[alerts]` configure; errors say what to fix.
    pub fn new(config: &Config) -> Result<Outbound> {
        let Some(base_url) = config.server.public_url.as_deref() else {
            bail!("phishing drills need [server] public_url: the address the drill links point to");
        };
        let Some(from) = config.phishing.from.as_deref() else {
            bail!("phishing drills need phishing.from (the sender address of drill mails)");
        };
        if !sinks::is_mailbox(from) || from.contains('<') {
            bail!("phishing.from {from:?} is not a bare e-mail address (the template gives the display name)");
        }
        let transport = sinks::smtp_transport(&config.alerts)
            .map_err(|e| anyhow::anyhow!("{e} (in [alerts], which drill mails use)"))?
            .context("phishing drills need [alerts] smtp_host: drill mails go through the clinic's SMTP relay")?;
        config.phishing.settings()?;
        Ok(Outbound { transport, from: from.to_owned(), base_url: base_url.trim_end_matches('/').to_owned() })
    }

    /// The subject and text of one drill mail.
    pub fn message(&self, m: &DrillMail) -> (String, String) {
        let text = m.template.text(&m.language);
        let link = format!("{}/p/{}", self.base_url, m.link_id);
        (text.subject.clone(), text.body.trim_start().replace("{link}", &link))
    }

    async fn deliver(&self, m: &DrillMail) -> std::result::Result<(), String> {
        let (subject, body) = self.message(m);
        // The display name is the template's; quotes and angle brackets are not in any.
        let sender = m.template.text(&m.language).sender.replace(['"', '<', '>'], "");
        let from = format!("\"{sender}\" <{}>", self.from);
        sinks::send_mail(&self.transport, &from, &m.to, &subject, body).await
    }
}

/// An error text without anything that looks like an address (an SMTP server may echo the recipient).
fn without_addresses(e: &str) -> String {
    e.split_whitespace().filter(|w| !w.contains('@')).collect::<Vec<_>>().join(" ")
}

/// Send every drill mail due by `until` (Unix ms).
pub async fn sweep(identity: &Identity, out: &Outbound, until: i64) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    for m in identity.due_drill_mails(until, PER_SWEEP).await? {
        match out.deliver(&m).await {
            Ok(()) => {
                identity.drill_mail_sent(&m).await?;
                report.sent += 1;
            }
            Err(e) => {
                tracing::warn!(recipient = %m.recipient_id, error = %without_addresses(&e), "a drill mail failed");
                identity.drill_mail_failed(&m).await?;
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

/// `confidant phishing send`: send the drill mails due by `until` (default: now).
pub async fn send(console: &Console, dir: &Path, until: Option<i64>) -> Result<SweepReport> {
    let instance = Instance::open(console, dir).await?;
    let config = &instance.config;
    let result = async {
        if !config.phishing.enabled {
            bail!("phishing drills are off: set `enabled = true` in [phishing] of {}", Config::path(dir).display());
        }
        let out = Outbound::new(config).with_context(|| format!("in [phishing] of {}", Config::path(dir).display()))?;
        sweep(&instance.identity, &out, until.unwrap_or_else(|| console.now())).await
    }
    .await;
    instance.records.store().close().await;
    result
}

/// `serve`'s drill sender: a sweep every `every`, until aborted.
pub fn spawn(identity: Arc<Identity>, out: Outbound, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let now = identity.now_millis();
            match sweep(&identity, &out, now).await {
                Ok(r) if r.sent + r.failed > 0 => {
                    tracing::info!(sent = r.sent, failed = r.failed, "phishing drill mails")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the drill mail sweep failed; it runs again later"),
            }
        }
    })
}

/// `confidant phishing campaign`: make a campaign at the console.
pub async fn campaign(console: &Console, dir: &Path, c: &NewCampaign) -> Result<CampaignMade> {
    let instance = Instance::open(console, dir).await?;
    let made = instance.identity.create_campaign(&Console::principal(), c).await;
    instance.records.store().close().await;
    Ok(made?)
}

/// `confidant phishing email`: set a staff member's address for drill mails.
pub async fn set_email(console: &Console, dir: &Path, user: &str, email: &str, language: Option<&str>) -> Result<()> {
    let instance = Instance::open(console, dir).await?;
    let done = instance.identity.set_staff_email(&Console::principal(), user, email, language).await;
    instance.records.store().close().await;
    Ok(done?)
}

/// An RFC 3339 time as Unix ms.
pub fn parse_time(s: &str) -> Result<i64> {
    let t: jiff::Timestamp = s.trim().parse().with_context(|| format!("{s:?} is not an RFC 3339 time"))?;
    Ok(t.as_millisecond())
}

/// A campaign from the command line's arguments (`start`: RFC 3339 or `now`).
pub fn campaign_request(
    console: &Console,
    templates: &str,
    roles: &str,
    users: &str,
    start: &str,
    spread_hours: i64,
) -> Result<NewCampaign> {
    let list = |s: &str| s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    let starts_at = if start.trim() == "now" { console.now() } else { parse_time(start)? };
    if !(0..=confidant_identity::phishing::MAX_SPREAD_MS / 3_600_000).contains(&spread_hours) {
        bail!("--spread-hours is 0 to 720");
    }
    Ok(NewCampaign {
        templates: list(templates),
        roles: parse_roles(roles)?,
        users: list(users),
        starts_at,
        spread_ms: spread_hours * 3_600_000,
    })
}

/// Roles by name (`clinician,reception`), for the command line.
pub fn parse_roles(s: &str) -> Result<Vec<Role>> {
    s.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| Role::parse(r).with_context(|| format!("no such role {r:?}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_lose_their_addresses() {
        assert_eq!(without_addresses("550 <anna@example.fi> unknown user"), "550 unknown user");
    }
}
