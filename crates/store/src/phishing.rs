//! Phishing drills: campaigns, their recipients, and staff e-mail addresses
//! (see migration 12). A recipient's link id is never stored: only its
//! SHA-256 (`link_hash`), so a copy of the database cannot produce a link.
//! Staff e-mail addresses are sealed, bound to their user, like usernames.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::LIMIT_BOUND;
use crate::{Result, Store};

/// One drill campaign: which templates, when and over how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhishCampaignRow {
    pub id: String,
    /// Template keys, comma-separated.
    pub templates: String,
    /// Unix ms of the first possible send.
    pub starts_at: i64,
    /// Sends are spread over `[starts_at, starts_at + spread_ms]`.
    pub spread_ms: i64,
    pub created_at: i64,
    /// The user id (or `console`) that made it.
    pub created_by: String,
}

/// One staff member's drill mail: when it goes out, and what they did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhishRecipientRow {
    /// A random row id (not the link id).
    pub id: String,
    pub campaign_id: String,
    pub user_id: String,
    pub template: String,
    /// `en` or `fi`.
    pub language: String,
    pub send_at: i64,
    pub sent_at: Option<i64>,
    pub clicked_at: Option<i64>,
    pub submitted_at: Option<i64>,
    pub reported_at: Option<i64>,
}

const RECIPIENT_COLUMNS: &str =
    "id, campaign_id, user_id, template, language, send_at, sent_at, clicked_at, submitted_at, reported_at";

fn recipient_row(r: &AnyRow) -> Result<PhishRecipientRow> {
    Ok(PhishRecipientRow {
        id: r.try_get(0)?,
        campaign_id: r.try_get(1)?,
        user_id: r.try_get(2)?,
        template: r.try_get(3)?,
        language: r.try_get(4)?,
        send_at: r.try_get(5)?,
        sent_at: r.try_get(6)?,
        clicked_at: r.try_get(7)?,
        submitted_at: r.try_get(8)?,
        reported_at: r.try_get(9)?,
    })
}

/// Which moment of a drill mail to record (the first one counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhishEvent {
    Clicked,
    Submitted,
    Reported,
}

impl Store {
    /// Store a campaign with its recipients, in one transaction.
    pub async fn insert_phish_campaign(&self, c: &PhishCampaignRow, recipients: &[PhishRecipientRow]) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(self.sql(
            "INSERT INTO phishing_campaigns (id, templates, starts_at, spread_ms, created_at, created_by)
             VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .bind(&c.id)
        .bind(&c.templates)
        .bind(c.starts_at)
        .bind(c.spread_ms)
        .bind(c.created_at)
        .bind(&c.created_by)
        .execute(&mut *tx)
        .await?;
        for r in recipients {
            sqlx::query(self.sql(
                "INSERT INTO phishing_recipients (id, campaign_id, user_id, template, language, send_at)
                 VALUES (?, ?, ?, ?, ?, ?)",
            ))
            .bind(&r.id)
            .bind(&r.campaign_id)
            .bind(&r.user_id)
            .bind(&r.template)
            .bind(&r.language)
            .bind(r.send_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every campaign, the latest start first.
    pub async fn phish_campaigns(&self) -> Result<Vec<PhishCampaignRow>> {
        let rows = sqlx::query(self.sql(
            "SELECT id, templates, starts_at, spread_ms, created_at, created_by FROM phishing_campaigns
             ORDER BY starts_at DESC, id",
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PhishCampaignRow {
                    id: r.try_get(0)?,
                    templates: r.try_get(1)?,
                    starts_at: r.try_get(2)?,
                    spread_ms: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                    created_by: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The recipients of one campaign.
    pub async fn phish_recipients(&self, campaign_id: &str) -> Result<Vec<PhishRecipientRow>> {
        let rows = sqlx::query(self.sql(format!(
            "SELECT {RECIPIENT_COLUMNS} FROM phishing_recipients WHERE campaign_id = ? ORDER BY send_at, id"
        )))
        .bind(campaign_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recipient_row).collect()
    }

    /// One user's drill mails, the latest first.
    pub async fn phish_recipients_of_user(&self, user_id: &str) -> Result<Vec<PhishRecipientRow>> {
        let rows = sqlx::query(self.sql(format!(
            "SELECT {RECIPIENT_COLUMNS} FROM phishing_recipients WHERE user_id = ? ORDER BY send_at DESC, id"
        )))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recipient_row).collect()
    }

    /// Unsent drill mails due by `until`, not claimed since `stale_before`.
    pub async fn due_phish(&self, until: i64, stale_before: i64, limit: i64) -> Result<Vec<PhishRecipientRow>> {
        let rows = sqlx::query(self.sql(format!(
            "SELECT {RECIPIENT_COLUMNS} FROM phishing_recipients
             WHERE sent_at IS NULL AND send_at <= ? AND (claimed_at IS NULL OR claimed_at < ?)
             ORDER BY send_at, id LIMIT {LIMIT_BOUND}"
        )))
        .bind(until)
        .bind(stale_before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recipient_row).collect()
    }

    /// Claim an unsent mail for sending with the hash of its new link id;
    /// false if another sender holds it (or it was sent meanwhile).
    pub async fn claim_phish(&self, id: &str, link_hash: &[u8], now: i64, stale_before: i64) -> Result<bool> {
        let r = sqlx::query(self.sql(
            "UPDATE phishing_recipients SET claimed_at = ?, link_hash = ?
             WHERE id = ? AND sent_at IS NULL AND (claimed_at IS NULL OR claimed_at < ?)",
        ))
        .bind(now)
        .bind(link_hash)
        .bind(id)
        .bind(stale_before)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The mail went out.
    pub async fn phish_sent(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query(self.sql("UPDATE phishing_recipients SET sent_at = ? WHERE id = ? AND sent_at IS NULL"))
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The mail could not be sent: its claim and link are given up (the next sweep tries again).
    pub async fn phish_unclaim(&self, id: &str) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE phishing_recipients SET claimed_at = NULL, link_hash = NULL WHERE id = ? AND sent_at IS NULL",
        ))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The recipient whose link id hashes to `link_hash`.
    pub async fn phish_by_link(&self, link_hash: &[u8]) -> Result<Option<PhishRecipientRow>> {
        let row =
            sqlx::query(self.sql(format!("SELECT {RECIPIENT_COLUMNS} FROM phishing_recipients WHERE link_hash = ?")))
                .bind(link_hash)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(recipient_row).transpose()
    }

    /// Record `event` at `now` unless it was recorded before; whether this was the first.
    pub async fn phish_event(&self, id: &str, event: PhishEvent, now: i64) -> Result<bool> {
        let q = match event {
            PhishEvent::Clicked => "UPDATE phishing_recipients SET clicked_at = ? WHERE id = ? AND clicked_at IS NULL",
            PhishEvent::Submitted => {
                "UPDATE phishing_recipients SET submitted_at = ? WHERE id = ? AND submitted_at IS NULL"
            }
            PhishEvent::Reported => {
                "UPDATE phishing_recipients SET reported_at = ? WHERE id = ? AND reported_at IS NULL"
            }
        };
        let r = sqlx::query(self.sql(q)).bind(now).bind(id).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    /// When the last drill mail went out, if one ever did.
    pub async fn last_phish_sent(&self) -> Result<Option<i64>> {
        let row = sqlx::query(self.sql("SELECT MAX(sent_at) FROM phishing_recipients")).fetch_one(&self.pool).await?;
        Ok(row.try_get(0)?)
    }

    /// Set a staff member's e-mail address (sealed) and mail language.
    pub async fn set_staff_contact(&self, user_id: &str, email_sealed: &[u8], language: &str, now: i64) -> Result<()> {
        sqlx::query(self.sql(
            "INSERT INTO staff_contacts (user_id, email_sealed, language, set_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id) DO UPDATE SET email_sealed = excluded.email_sealed,
                 language = excluded.language, set_at = excluded.set_at",
        ))
        .bind(user_id)
        .bind(email_sealed)
        .bind(language)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A staff member's sealed e-mail address and language (empty: the clinic's default).
    pub async fn staff_contact(&self, user_id: &str) -> Result<Option<(Vec<u8>, String)>> {
        let row = sqlx::query(self.sql("SELECT email_sealed, language FROM staff_contacts WHERE user_id = ?"))
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }
}
