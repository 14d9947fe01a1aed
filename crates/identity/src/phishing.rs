//! Phishing drills: the drill mails (templates compiled in from
//! `phishing/templates/*.toml`), campaigns, the links' clicks and submits,
//! staff reports, and the results. Who may do what is
//! `confidant_policy::phishing`; every campaign, send, click, submit and
//! report is audited here, without a link id (an entry cannot replay a link).
//!
//! A recipient's link id is 256 random bits from the vault's RNG, made when
//! the mail is sent; the store keeps only its SHA-256. Nothing typed into the
//! look-alike page ever reaches this module: the web handler drops the body
//! unread and calls [`Identity::drill_link`] with the id alone.
//!
//! Where a click is recorded: [`Identity::record_click`], the one place (the
//! training module the template maps to is assigned there).

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use confidant_audit::{Action as AuditAction, Entry, Outcome};
use confidant_policy::phishing as rules;
use confidant_policy::{Principal, Role};
use confidant_store::{PhishCampaignRow, PhishEvent, PhishRecipientRow};
use serde::Deserialize;

use crate::{CONSOLE, Identity, IdentityError, Result, random_id};

/// The actor of what the drill sender does (no person sends drill mails).
pub const DRILL_ACTOR: &str = "phishing-drill";

/// The kind a staff member's e-mail address is sealed as (bound to the user id).
const EMAIL_KIND: &str = "StaffEmail";

/// A link id: 32 random bytes, URL-safe base64 without padding.
pub const LINK_ID_LEN: usize = 43;

/// A claimed but unsent mail may be taken over by another sweep after this
/// long (a crash between the claim and the send): longer than a send takes.
const CLAIM_MS: i64 = 10 * 60_000;

/// The longest spread a campaign may have: 30 days.
pub const MAX_SPREAD_MS: i64 = 30 * 24 * 3_600_000;

/// The most text a report may paste (a whole mail with its headers).
pub const MAX_REPORT_BYTES: usize = 100_000;

/// The drill mails, in the repository as `phishing/templates/*.toml`.
const TEMPLATE_FILES: &[&str] = &[
    include_str!("../../../phishing/templates/password-reset.toml"),
    include_str!("../../../phishing/templates/kanta-message.toml"),
    include_str!("../../../phishing/templates/invoice.toml"),
    include_str!("../../../phishing/templates/patient-complaint.toml"),
    include_str!("../../../phishing/templates/shared-document.toml"),
];

/// One language's text of a drill mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillText {
    /// What admins see it as ("Password expiry").
    pub name: String,
    /// The sender's display name in the mail's From.
    pub sender: String,
    pub subject: String,
    /// The mail's text, with `{link}` where the recipient's link goes.
    pub body: String,
    /// The lesson: the clues this mail had.
    pub clues: Vec<String>,
}

/// A drill mail: English and Finnish, and the training module it maps to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillTemplate {
    pub key: String,
    /// The key of the training module someone who clicked is given.
    pub module: String,
    pub en: DrillText,
    pub fi: DrillText,
}

impl DrillTemplate {
    /// The text in `language` (`fi`, else English).
    pub fn text(&self, language: &str) -> &DrillText {
        if language == "fi" { &self.fi } else { &self.en }
    }
}

/// Every drill mail this build ships (a file that does not parse is left out, and said).
pub fn templates() -> &'static [DrillTemplate] {
    static T: OnceLock<Vec<DrillTemplate>> = OnceLock::new();
    T.get_or_init(|| {
        TEMPLATE_FILES
            .iter()
            .filter_map(|f| match toml::from_str::<DrillTemplate>(f) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(error = %e, "a phishing drill template does not parse");
                    None
                }
            })
            .collect()
    })
}

/// The template `key`.
pub fn template(key: &str) -> Option<&'static DrillTemplate> {
    templates().iter().find(|t| t.key == key)
}

/// `[phishing]` as identity needs it.
#[derive(Debug, Clone)]
pub struct PhishingSettings {
    /// Results name people (`phishing.show_names`); aggregates only otherwise.
    pub show_names: bool,
    /// The mail language of staff who chose none: `fi` or `en`.
    pub default_language: String,
}

impl Default for PhishingSettings {
    fn default() -> Self {
        PhishingSettings { show_names: false, default_language: "fi".into() }
    }
}

/// A campaign to make.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    /// Template keys.
    pub templates: Vec<String>,
    /// Everyone (enabled, staff) in these roles...
    pub roles: Vec<Role>,
    /// ...and these users (usernames or ids).
    pub users: Vec<String>,
    /// Unix ms.
    pub starts_at: i64,
    pub spread_ms: i64,
}

/// What making a campaign did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignMade {
    pub id: String,
    pub recipients: usize,
    /// Targeted staff without an e-mail address (left out).
    pub without_address: usize,
}

/// A drill mail to send now: to whom, in which language, with which link.
pub struct DrillMail {
    pub recipient_id: String,
    pub user_id: String,
    pub to: String,
    pub language: String,
    pub template: &'static DrillTemplate,
    /// The link id (only here and in the mail; never stored).
    pub link_id: String,
    pub send_at: i64,
}

impl std::fmt::Debug for DrillMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DrillMail({}, {})", self.recipient_id, self.template.key)
    }
}

/// A visit to a drill link that exists.
#[derive(Debug, Clone)]
pub struct DrillVisit {
    pub template: &'static DrillTemplate,
    pub language: String,
    /// Whether this visit was the first of its kind (it counted).
    pub first: bool,
}

/// What a report found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// A drill mail sent to this user: counted (the first time), with the time it took.
    Drill { time_to_report_ms: Option<i64>, first: bool },
    /// Not a drill of theirs: a suspected phishing mail, raised as an alert to the admins.
    Suspected,
}

/// One campaign's results.
#[derive(Debug, Clone)]
pub struct CampaignResult {
    pub id: String,
    pub starts_at: i64,
    pub spread_ms: i64,
    pub templates: Vec<String>,
    pub recipients: usize,
    pub sent: usize,
    pub clicked: usize,
    pub submitted: usize,
    pub reported: usize,
    pub median_time_to_report_ms: Option<i64>,
    /// Per person: only with `phishing.show_names`.
    pub people: Option<Vec<PersonResult>>,
}

impl CampaignResult {
    /// Reported of sent, in percent (what is shown first).
    pub fn reporting_rate(&self) -> Option<u32> {
        (self.sent > 0).then(|| ((self.reported * 100 + self.sent / 2) / self.sent) as u32)
    }
}

/// One person's row of a campaign (shown only with `phishing.show_names`).
#[derive(Debug, Clone)]
pub struct PersonResult {
    pub username: String,
    pub role: Role,
    pub template: String,
    pub sent_at: Option<i64>,
    pub clicked_at: Option<i64>,
    pub submitted_at: Option<i64>,
    pub reported_at: Option<i64>,
}

/// A staff member's own drill mail and what they did.
#[derive(Debug, Clone)]
pub struct MyDrill {
    pub template: &'static DrillTemplate,
    pub language: String,
    pub sent_at: i64,
    pub clicked_at: Option<i64>,
    pub submitted_at: Option<i64>,
    pub reported_at: Option<i64>,
}

/// A link id as given: exactly 43 URL-safe base64 characters, else nothing is looked up.
pub fn well_formed_link(id: &str) -> bool {
    id.len() == LINK_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn link_hash(id: &str) -> Vec<u8> {
    confidant_vault::sha256(id.as_bytes()).to_vec()
}

/// Every run of link-id characters in `text` that is exactly a link id long
/// (a pasted link or mail holds its id so), at most `max`.
fn link_ids_in(text: &str, max: usize) -> Vec<&str> {
    let mut out: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| well_formed_link(w))
        .collect();
    // Ids right after `/p/` first: a pasted mail's other long words come after.
    out.sort_by_key(|id| !text.contains(&format!("/p/{id}")));
    let mut seen = std::collections::HashSet::new();
    out.retain(|id| seen.insert(*id));
    out.truncate(max);
    out
}

/// A uniformly random integer in `0..=max` from the vault's RNG.
fn random_upto(max: u64) -> Result<u64> {
    if max == 0 {
        return Ok(0);
    }
    let mut b = [0u8; 8];
    confidant_vault::random_bytes(&mut b)?;
    // A 64-bit value modulo a span of at most 2^32: the bias is below 2^-32.
    Ok(u64::from_le_bytes(b) % (max + 1))
}

fn median(mut v: Vec<i64>) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2 })
}

/// A plausible e-mail address: one `@`, something on both sides, a dot in the domain, no spaces.
fn plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    s.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && s.chars().all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"".contains(c))
}

impl Identity {
    /// Set the phishing settings (`[phishing]` of the configuration).
    pub fn with_phishing(mut self, settings: PhishingSettings) -> Identity {
        self.phishing = settings;
        self
    }

    /// The identity service's clock (the drill sender sends what is due by it).
    pub fn now_millis(&self) -> i64 {
        self.now()
    }

    pub fn phishing_settings(&self) -> &PhishingSettings {
        &self.phishing
    }

    /// An audit entry of a drill event by `actor` (a user id, [`CONSOLE`] or [`DRILL_ACTOR`]).
    async fn drill_entry(&self, action: AuditAction, actor: &str, target: String, source: Option<&str>) -> Result<()> {
        let mut e = Entry::new(self.now(), action, Outcome::Success);
        e.role = match actor {
            CONSOLE => Some(Role::Admin.as_str().to_owned()),
            DRILL_ACTOR => Some("system".to_owned()),
            id => self.store().user_by_id(id).await?.map(|u| u.role),
        };
        e.actor = Some(actor.to_owned());
        e.target = Some(target);
        e.source = source.map(str::to_owned);
        self.append_audit(e).await
    }

    /// Set a staff member's e-mail address for drill mails (sealed, bound to
    /// the user) and their mail language (`fi`, `en`, or `None`: the clinic's default).
    pub async fn set_staff_email(
        &self,
        by: &Principal,
        name_or_id: &str,
        email: &str,
        language: Option<&str>,
    ) -> Result<()> {
        rules::may_run_drills(by).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        let email = email.trim();
        if !plausible_email(email) {
            return Err(IdentityError::Invalid("not an e-mail address (name@example.fi)".into()));
        }
        let language = match language {
            None | Some("") => "",
            Some(l @ ("fi" | "en")) => l,
            Some(_) => return Err(IdentityError::Invalid("the language is fi or en".into())),
        };
        let u = self.find_user(name_or_id).await?;
        let role = Role::parse(&u.role).unwrap_or(Role::Patient);
        if !rules::may_receive_drills(role) {
            return Err(IdentityError::Invalid("drill mails go to staff accounts only".into()));
        }
        let sealed = self.seal_secret(EMAIL_KIND, &u.id, email.as_bytes()).await?;
        self.store().set_staff_contact(&u.id, &sealed, language, self.now()).await?;
        self.drill_entry(AuditAction::StaffEmail, &by.user_id, format!("user/{}", u.id), by.source.as_deref()).await
    }

    /// A staff member's e-mail address and mail language, if an address is set.
    async fn staff_contact(&self, user_id: &str) -> Result<Option<(String, String)>> {
        let Some((sealed, language)) = self.store().staff_contact(user_id).await? else { return Ok(None) };
        let email = self.open_secret(EMAIL_KIND, user_id, &sealed).await?;
        let language = if language.is_empty() { self.phishing.default_language.clone() } else { language };
        Ok(Some((String::from_utf8_lossy(&email).into_owned(), language)))
    }

    /// Make a campaign: each targeted staff member with an e-mail address gets
    /// one of the templates, at a random time in `[start, start + spread]`.
    pub async fn create_campaign(&self, by: &Principal, c: &NewCampaign) -> Result<CampaignMade> {
        rules::may_run_drills(by).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        let invalid = |m: &str| Err(IdentityError::Invalid(m.to_owned()));
        let mut keys: Vec<&str> = c.templates.iter().map(String::as_str).collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return invalid("choose at least one drill mail");
        }
        if keys.len() > templates().len() || keys.iter().any(|k| template(k).is_none()) {
            return invalid("no such drill mail");
        }
        if c.roles.is_empty() && c.users.is_empty() {
            return invalid("choose whom to send to: roles or people");
        }
        if c.roles.iter().any(|r| !rules::may_receive_drills(*r)) {
            return invalid("drill mails go to staff only");
        }
        if !(0..=MAX_SPREAD_MS).contains(&c.spread_ms) {
            return invalid("the spread is 0 to 720 hours");
        }
        let now = self.now();
        if c.starts_at < now - 24 * 3_600_000 || c.starts_at > now + 366 * 24 * 3_600_000 {
            return invalid("the start is within the next year");
        }
        let mut targets = Vec::new();
        for name in &c.users {
            let u = self.find_user(name).await?;
            let role = Role::parse(&u.role).unwrap_or(Role::Patient);
            if !rules::may_receive_drills(role) {
                return invalid("drill mails go to staff only");
            }
            if u.disabled_at.is_some() {
                return invalid("that account is disabled");
            }
            targets.push(u);
        }
        for u in self.store().users().await? {
            let role = Role::parse(&u.role).unwrap_or(Role::Patient);
            if c.roles.contains(&role) && rules::may_receive_drills(role) && u.disabled_at.is_none() {
                targets.push(u);
            }
        }
        targets.sort_by(|a, b| a.id.cmp(&b.id));
        targets.dedup_by(|a, b| a.id == b.id);
        let id = random_id()?;
        let mut recipients = Vec::new();
        let mut without_address = 0;
        for u in targets {
            let Some((_, language)) = self.staff_contact(&u.id).await? else {
                without_address += 1;
                continue;
            };
            let pick = random_upto(keys.len() as u64 - 1)? as usize;
            let key = keys.get(pick).copied().unwrap_or_default();
            let offset = random_upto(c.spread_ms as u64)? as i64;
            recipients.push(PhishRecipientRow {
                id: random_id()?,
                campaign_id: id.clone(),
                user_id: u.id.clone(),
                template: key.to_owned(),
                language,
                send_at: c.starts_at + offset,
                sent_at: None,
                clicked_at: None,
                submitted_at: None,
                reported_at: None,
            });
        }
        if recipients.is_empty() {
            return invalid("nobody targeted has an e-mail address: set them with `confidant phishing email`");
        }
        let row = PhishCampaignRow {
            id: id.clone(),
            templates: keys.join(","),
            starts_at: c.starts_at,
            spread_ms: c.spread_ms,
            created_at: now,
            created_by: by.user_id.clone(),
        };
        self.store().insert_phish_campaign(&row, &recipients).await?;
        let target = format!("phishing-campaign/{id} recipients={}", recipients.len());
        self.drill_entry(AuditAction::PhishingCampaign, &by.user_id, target, by.source.as_deref()).await?;
        Ok(CampaignMade { id, recipients: recipients.len(), without_address })
    }

    /// Drill mails due by `until` (Unix ms), claimed for this sweep, each with
    /// a new link id (its hash stored with the claim).
    pub async fn due_drill_mails(&self, until: i64, limit: usize) -> Result<Vec<DrillMail>> {
        let now = self.now();
        let mut out = Vec::new();
        for row in self.store().due_phish(until, now - CLAIM_MS, limit as i64).await? {
            let Some(template) = template(&row.template) else {
                tracing::warn!(recipient = %row.id, "a drill mail's template is not in this build");
                continue;
            };
            let Some((to, _)) = self.staff_contact(&row.user_id).await? else { continue };
            let mut b = [0u8; 32];
            confidant_vault::random_bytes(&mut b)?;
            let link_id = URL_SAFE_NO_PAD.encode(b);
            if !self.store().claim_phish(&row.id, &link_hash(&link_id), now, now - CLAIM_MS).await? {
                continue;
            }
            out.push(DrillMail {
                recipient_id: row.id,
                user_id: row.user_id,
                to,
                language: row.language,
                template,
                link_id,
                send_at: row.send_at,
            });
        }
        Ok(out)
    }

    /// A drill mail went out.
    pub async fn drill_mail_sent(&self, m: &DrillMail) -> Result<()> {
        self.store().phish_sent(&m.recipient_id, self.now()).await?;
        let target = format!("phishing-recipient/{} user/{}", m.recipient_id, m.user_id);
        self.drill_entry(AuditAction::PhishingSent, DRILL_ACTOR, target, None).await
    }

    /// A drill mail could not be sent: its claim and link are given up; the next sweep tries again.
    pub async fn drill_mail_failed(&self, m: &DrillMail) -> Result<()> {
        Ok(self.store().phish_unclaim(&m.recipient_id).await?)
    }

    /// A visit to drill link `link_id` (a click, or a submit of the look-alike
    /// page): recorded the first time, with its audit entry. `None` for an
    /// id that is malformed or unknown (nothing recorded; one answer for both).
    pub async fn drill_link(&self, link_id: &str, submitted: bool) -> Result<Option<DrillVisit>> {
        if !well_formed_link(link_id) {
            return Ok(None);
        }
        let Some(row) = self.store().phish_by_link(&link_hash(link_id)).await? else { return Ok(None) };
        let Some(template) = template(&row.template) else { return Ok(None) };
        // A submit is a click too (a form posted straight to the link).
        let clicked = self.record_click(&row, template).await?;
        let first = if submitted {
            let first = self.store().phish_event(&row.id, PhishEvent::Submitted, self.now()).await?;
            if first {
                let target = format!("phishing-campaign/{} recipient/{}", row.campaign_id, row.id);
                self.drill_entry(AuditAction::PhishingSubmitted, &row.user_id, target, None).await?;
            }
            first
        } else {
            clicked
        };
        Ok(Some(DrillVisit { template, language: row.language, first }))
    }

    /// THE place a click on a drill link is recorded (the first one counts):
    /// its mark, its audit entry, and the training module of the template
    /// (`template.module`) for whoever clicked. Whether this was the first.
    async fn record_click(&self, row: &PhishRecipientRow, template: &DrillTemplate) -> Result<bool> {
        if !self.store().phish_event(&row.id, PhishEvent::Clicked, self.now()).await? {
            return Ok(false);
        }
        let target = format!("phishing-campaign/{} recipient/{} module/{}", row.campaign_id, row.id, template.module);
        self.drill_entry(AuditAction::PhishingClicked, &row.user_id, target, None).await?;
        // Whoever clicked is asked to take the matching training module again
        // (the click is recorded whatever happens to the assignment).
        let reason = format!("phishing-drill/{}", row.campaign_id);
        if let Err(e) = self.assign_training(None, &row.user_id, &template.module, &reason).await {
            tracing::error!(error = %e, module = %template.module, "a drill click's training module could not be assigned");
        }
        Ok(true)
    }

    /// A staff member reports a mail (its link, or its whole text): a drill
    /// mail sent to them counts as reported, with the time it took; anything
    /// else is a suspected phishing mail, raised to the admins as an alert.
    /// The text is read for link ids only and then dropped: never stored or logged.
    pub async fn report_phishing(&self, p: &Principal, text: &str) -> Result<Reported> {
        rules::may_report_phishing(p).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        if text.len() > MAX_REPORT_BYTES {
            return Err(IdentityError::Invalid(
                "the pasted text is too long: paste the link, or the mail without attachments".into(),
            ));
        }
        if text.trim().is_empty() {
            return Err(IdentityError::Invalid("paste the link or the text of the mail".into()));
        }
        let now = self.now();
        for id in link_ids_in(text, 20) {
            let Some(row) = self.store().phish_by_link(&link_hash(id)).await? else { continue };
            if row.user_id != p.user_id {
                continue;
            }
            let first = self.store().phish_event(&row.id, PhishEvent::Reported, now).await?;
            let time_to_report_ms = row.sent_at.map(|s| (now - s).max(0));
            if first {
                let target = format!(
                    "phishing-campaign/{} recipient/{} after_ms={}",
                    row.campaign_id,
                    row.id,
                    time_to_report_ms.unwrap_or(0)
                );
                self.drill_entry(AuditAction::PhishingReported, &p.user_id, target, p.source.as_deref()).await?;
            }
            return Ok(Reported::Drill { time_to_report_ms, first });
        }
        // Not a drill of theirs: the detector's `suspected-phishing` rule raises the alert.
        self.drill_entry(AuditAction::PhishingSuspected, &p.user_id, "phishing-report".into(), p.source.as_deref())
            .await?;
        Ok(Reported::Suspected)
    }

    /// Every campaign's results, the latest first: aggregates, and per
    /// person only with `phishing.show_names`.
    pub async fn drill_results(&self, p: &Principal) -> Result<Vec<CampaignResult>> {
        rules::may_run_drills(p).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        let names = rules::drill_results_name_people(p, self.phishing.show_names);
        let users = if names { self.list_users().await? } else { Vec::new() };
        let mut out = Vec::new();
        for c in self.store().phish_campaigns().await? {
            let rows = self.store().phish_recipients(&c.id).await?;
            let sent: Vec<&PhishRecipientRow> = rows.iter().filter(|r| r.sent_at.is_some()).collect();
            let times = sent.iter().filter_map(|r| Some((r.reported_at? - r.sent_at?).max(0))).collect::<Vec<_>>();
            let people = names.then(|| {
                rows.iter()
                    .map(|r| {
                        let u = users.iter().find(|u| u.id == r.user_id);
                        PersonResult {
                            username: u.map(|u| u.username.clone()).unwrap_or_else(|| r.user_id.clone()),
                            role: u.map(|u| u.role).unwrap_or(Role::Patient),
                            template: r.template.clone(),
                            sent_at: r.sent_at,
                            clicked_at: r.clicked_at,
                            submitted_at: r.submitted_at,
                            reported_at: r.reported_at,
                        }
                    })
                    .collect()
            });
            out.push(CampaignResult {
                id: c.id.clone(),
                starts_at: c.starts_at,
                spread_ms: c.spread_ms,
                templates: c.templates.split(',').map(str::to_owned).collect(),
                recipients: rows.len(),
                sent: sent.len(),
                clicked: sent.iter().filter(|r| r.clicked_at.is_some()).count(),
                submitted: sent.iter().filter(|r| r.submitted_at.is_some()).count(),
                reported: sent.iter().filter(|r| r.reported_at.is_some()).count(),
                median_time_to_report_ms: median(times),
                people,
            });
        }
        Ok(out)
    }

    /// The signed-in staff member's own drill mails (sent ones), the latest first.
    pub async fn my_drills(&self, p: &Principal) -> Result<Vec<MyDrill>> {
        rules::may_report_phishing(p).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        let rows = self.store().phish_recipients_of_user(&p.user_id).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(MyDrill {
                    template: template(&r.template)?,
                    language: r.language,
                    sent_at: r.sent_at?,
                    clicked_at: r.clicked_at,
                    submitted_at: r.submitted_at,
                    reported_at: r.reported_at,
                })
            })
            .collect())
    }

    /// When the last drill mail went out (for `doctor`).
    pub async fn last_drill_sent(&self) -> Result<Option<i64>> {
        Ok(self.store().last_phish_sent().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_in_both_languages_with_a_link_and_clues() {
        assert_eq!(templates().len(), TEMPLATE_FILES.len(), "every template file parses");
        assert!(templates().len() >= 5);
        for t in templates() {
            assert!(!t.module.is_empty(), "{}", t.key);
            for text in [&t.en, &t.fi] {
                assert_eq!(text.body.matches("{link}").count(), 1, "{}: one link", t.key);
                assert!(text.clues.len() >= 3, "{}: clues", t.key);
                assert!(!text.sender.is_empty() && !text.subject.is_empty() && !text.name.is_empty());
            }
            assert_ne!(t.en.subject, t.fi.subject, "{}: Finnish differs", t.key);
        }
        let keys: Vec<_> = templates().iter().map(|t| t.key.as_str()).collect();
        for k in ["password-reset", "kanta-message", "invoice", "patient-complaint", "shared-document"] {
            assert!(keys.contains(&k), "{k}");
        }
    }

    #[test]
    fn link_ids_are_found_in_pasted_text_and_nothing_else_is() {
        let id = "A".repeat(43);
        let text = format!("From: x\n\nOpen https://clinic.example/p/{id} now, or {}", "b".repeat(44));
        assert_eq!(link_ids_in(&text, 20), vec![id.as_str()]);
        let other = "C".repeat(43);
        let text = format!("DKIM: {other}\n\nhttps://clinic.example/p/{id}");
        assert_eq!(link_ids_in(&text, 1), vec![id.as_str()], "the link's id first");
        assert!(link_ids_in("no links here", 20).is_empty());
        assert!(!well_formed_link(&"A".repeat(42)) && !well_formed_link(&format!("{}=", "A".repeat(42))));
        assert!(!well_formed_link(&format!("{}/", "A".repeat(42))));
    }

    #[test]
    fn medians_and_emails() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![5, 1, 3]), Some(3));
        assert_eq!(median(vec![4, 1, 3, 2]), Some(2));
        assert!(plausible_email("anna@clinic.fi"));
        for bad in ["anna", "@clinic.fi", "anna@clinic", "a b@c.fi", "<a@c.fi>", "a@c.fi\r\nBcc: x@y.fi"] {
            assert!(!plausible_email(bad), "{bad}");
        }
        for _ in 0..100 {
            assert!(random_upto(3).unwrap() <= 3);
        }
        assert_eq!(random_upto(0).unwrap(), 0);
    }
}
