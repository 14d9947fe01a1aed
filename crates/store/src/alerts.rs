//! The detector's alerts: raised with their audit entry in one transaction,
//! counted up when the same rule fires again, acknowledged by a person, and
//! marked delivered by each sink (the table is the sinks' durable queue).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::LIMIT_BOUND;
use crate::{AuditRow, Result, Store};

/// One alert as stored. `summary` holds ids and counts, never content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub id: String,
    pub rule: String,
    pub severity: String,
    /// The user id or network address the rule counted.
    pub subject: Option<String>,
    pub summary: String,
    /// What the detector did besides alerting (`lock-session`, `lock-account`).
    pub action_taken: Option<String>,
    pub first_at: i64,
    pub last_at: i64,
    pub count: i64,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
}

/// A sink that delivers alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Webhook,
    Email,
}

impl Sink {
    fn column(self) -> &'static str {
        match self {
            Sink::Webhook => "webhook_done_at",
            Sink::Email => "email_done_at",
        }
    }

    fn claim_column(self) -> &'static str {
        match self {
            Sink::Webhook => "webhook_claimed_until",
            Sink::Email => "email_claimed_until",
        }
    }
}

const ALERT_COLUMNS: &str = "id, rule, severity, subject, summary, action_taken, first_at, last_at, count, \
     acknowledged_at, acknowledged_by";

fn alert_row(r: &AnyRow) -> Result<AlertRow> {
    Ok(AlertRow {
        id: r.try_get(0)?,
        rule: r.try_get(1)?,
        severity: r.try_get(2)?,
        subject: r.try_get(3)?,
        summary: r.try_get(4)?,
        action_taken: r.try_get(5)?,
        first_at: r.try_get(6)?,
        last_at: r.try_get(7)?,
        count: r.try_get(8)?,
        acknowledged_at: r.try_get(9)?,
        acknowledged_by: r.try_get(10)?,
    })
}

impl Store {
    /// Store a new alert and its audit entries in one transaction. Sinks in
    /// `skip` (not configured) are marked done at once.
    pub async fn insert_alert(&self, a: &AlertRow, audit: &[AuditRow], skip: &[Sink]) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(self.sql(format!("INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")))
            .bind(a.id.as_str())
            .bind(a.rule.as_str())
            .bind(a.severity.as_str())
            .bind(a.subject.as_deref())
            .bind(a.summary.as_str())
            .bind(a.action_taken.as_deref())
            .bind(a.first_at)
            .bind(a.last_at)
            .bind(a.count)
            .bind(a.acknowledged_at)
            .bind(a.acknowledged_by.as_deref())
            .execute(&mut *tx)
            .await?;
        for sink in skip {
            sqlx::query(self.sql(format!("UPDATE alerts SET {} = 0 WHERE id = ?", sink.column())))
                .bind(a.id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        self.commit_with_audit(tx, audit).await?;
        Ok(())
    }

    /// The same rule fired again for an alert nobody has acknowledged yet:
    /// count it, with the new summary. False if it is acknowledged (or gone).
    pub async fn repeat_alert(&self, id: &str, at: i64, summary: &str) -> Result<bool> {
        let n = sqlx::query(self.sql(
            "UPDATE alerts SET count = count + 1, last_at = ?, summary = ? WHERE id = ? AND acknowledged_at IS NULL",
        ))
        .bind(at)
        .bind(summary)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Alerts, newest first: all, or only those nobody has acknowledged.
    pub async fn alerts(&self, open_only: bool, limit: i64) -> Result<Vec<AlertRow>> {
        let filter = if open_only { "WHERE acknowledged_at IS NULL " } else { "" };
        let rows = sqlx::query(self.sql(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts {filter}ORDER BY first_at DESC, id DESC LIMIT {LIMIT_BOUND}"
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_row).collect()
    }

    pub async fn alert(&self, id: &str) -> Result<Option<AlertRow>> {
        let r = sqlx::query(self.sql(format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(alert_row).transpose()
    }

    /// Acknowledge an open alert, with its audit entries; false if there is
    /// no such open alert (nothing is recorded then).
    pub async fn acknowledge_alert(&self, id: &str, by: &str, at: i64, audit: &[AuditRow]) -> Result<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(self.sql(
            "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ? AND acknowledged_at IS NULL",
        ))
        .bind(at)
        .bind(by)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        self.commit_with_audit(tx, audit).await?;
        Ok(true)
    }

    /// Alerts a sink has not delivered yet, oldest first.
    pub async fn undelivered_alerts(&self, sink: Sink, limit: i64) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query(self.sql(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE {} IS NULL ORDER BY first_at, id LIMIT {LIMIT_BOUND}",
            sink.column()
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_row).collect()
    }

    /// Claim an undelivered alert for this node's delivery to `sink` until
    /// `until` (Unix ms); false if it is delivered or another node holds an
    /// unexpired claim. With several nodes on one database, each alert is
    /// sent once (again only if a node dies mid-send and its claim lapses).
    pub async fn claim_alert(&self, id: &str, sink: Sink, now: i64, until: i64) -> Result<bool> {
        let (done, claim) = (sink.column(), sink.claim_column());
        let r = sqlx::query(self.sql(format!(
            "UPDATE alerts SET {claim} = ? WHERE id = ? AND {done} IS NULL AND ({claim} IS NULL OR {claim} <= ?)"
        )))
        .bind(until)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Give a claim back after a failed send (another node may try at once).
    pub async fn release_alert(&self, id: &str, sink: Sink) -> Result<()> {
        sqlx::query(self.sql(format!("UPDATE alerts SET {} = NULL WHERE id = ?", sink.claim_column())))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn mark_alert_delivered(&self, id: &str, sink: Sink, at: i64) -> Result<()> {
        sqlx::query(self.sql(format!("UPDATE alerts SET {} = ? WHERE id = ?", sink.column())))
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
