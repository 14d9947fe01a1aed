//! Alert sinks besides the structured log: a webhook (a JSON body signed with
//! HMAC-SHA256) and e-mail over SMTP (`lettre`).
//!
//! The alerts table is their queue: an alert is stored before anything is
//! sent, each sink marks what it delivered, and a worker per sink delivers
//! the rest in order, retrying with exponential backoff while the endpoint is
//! down. Requests never wait for a sink: they only store the alert and wake
//! the workers. Undelivered alerts survive a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use confidant_audit::Clock;
use confidant_store::{AlertRow, Sink, Store};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

/// The header that carries the webhook body's signature: `sha256=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "x-confidant-signature";

/// `[alerts]` in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// POST each alert here as JSON.
    pub webhook_url: Option<String>,
    /// The secret that signs webhook bodies (at least 32 characters; keep it
    /// outside the instance directory, mode 0600). The receiver checks
    /// `X-Confidant-Signature: sha256=HMAC-SHA256(secret, body)`.
    pub webhook_secret_file: Option<PathBuf>,
    /// Send each alert by e-mail through this SMTP server.
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    /// `starttls` (default), `tls`, or `none` (only for a relay on this machine).
    pub smtp_security: String,
    pub smtp_username: Option<String>,
    /// The SMTP password, in a file of its own (mode 0600).
    pub smtp_password_file: Option<PathBuf>,
    pub email_from: Option<String>,
    pub email_to: Vec<String>,
    /// Retries back off exponentially from one second up to this.
    pub max_backoff_seconds: u64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhook_url: None,
            webhook_secret_file: None,
            smtp_host: None,
            smtp_port: None,
            smtp_security: "starttls".into(),
            smtp_username: None,
            smtp_password_file: None,
            email_from: None,
            email_to: Vec::new(),
            max_backoff_seconds: 300,
        }
    }
}

impl AlertSettings {
    /// The sinks these settings configure.
    pub fn sinks(&self) -> Vec<Sink> {
        let mut s = Vec::new();
        if self.webhook_url.is_some() {
            s.push(Sink::Webhook);
        }
        if self.smtp_host.is_some() && !self.email_to.is_empty() {
            s.push(Sink::Email);
        }
        s
    }
}

/// The JSON body the webhook receives for an alert.
pub fn webhook_body(instance_id: &str, a: &AlertRow) -> Vec<u8> {
    let body = json!({
        "type": "confidant-alert",
        "instance": instance_id,
        "id": a.id,
        "rule": a.rule,
        "severity": a.severity,
        "subject": a.subject,
        "summary": a.summary,
        "response": a.action_taken,
        "first_at": a.first_at,
        "last_at": a.last_at,
        "count": a.count,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The signature header's value for `body`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(confidant_vault::hmac_sha256(secret, body)))
}

/// A secret from a file of its own, refused if others may read it.
pub fn read_secret(path: &std::path::Path, what: &str) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "the {what} {} is readable by others; run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
    let s = std::fs::read_to_string(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
    Ok(s.trim().to_owned())
}

/// The SMTP server of `[alerts]` (host, port, security, credentials), if a
/// host is set. Appointment reminders are sent through the same server.
pub fn smtp_transport(settings: &AlertSettings) -> Result<Option<AsyncSmtpTransport<Tokio1Executor>>, String> {
    let Some(host) = &settings.smtp_host else { return Ok(None) };
    let builder = match settings.smtp_security.as_str() {
        "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| e.to_string())?,
        "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| e.to_string())?,
        other => return Err(format!("alerts.smtp_security must be starttls, tls or none, not {other:?}")),
    };
    let mut builder = builder.timeout(Some(Duration::from_secs(30)));
    if let Some(port) = settings.smtp_port {
        builder = builder.port(port);
    }
    if let Some(user) = &settings.smtp_username {
        let path =
            settings.smtp_password_file.as_ref().ok_or("alerts.smtp_username needs alerts.smtp_password_file")?;
        builder = builder.credentials(Credentials::new(user.clone(), read_secret(path, "SMTP password")?));
    }
    Ok(Some(builder.build()))
}

/// The HTTP client of webhooks: a timeout, and no redirects (a redirect would
/// turn the POST into a body-less GET that "succeeds").
pub fn webhook_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

/// POST a JSON `body` to `url`, signed (the [`SIGNATURE_HEADER`]) when a secret is given.
pub async fn post_json(http: &reqwest::Client, url: &str, secret: Option<&[u8]>, body: Vec<u8>) -> Result<(), String> {
    let mut req = http.post(url).header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(secret) = secret {
        req = req.header(SIGNATURE_HEADER, signature(secret, &body));
    }
    let resp = req.body(body).send().await.map_err(|e| e.without_url().to_string())?;
    if resp.status().is_success() { Ok(()) } else { Err(format!("the webhook answered {}", resp.status())) }
}

/// Send one plain-text e-mail through `transport`.
pub async fn send_mail(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &str,
    to: &str,
    subject: &str,
    text: String,
) -> Result<(), String> {
    let from: lettre::message::Mailbox = from.parse().map_err(|e| format!("from address: {e}"))?;
    let to: lettre::message::Mailbox = to.parse().map_err(|e| format!("to address: {e}"))?;
    let m = Message::builder().from(from).to(to).subject(subject).header(ContentType::TEXT_PLAIN);
    let m = m.body(text).map_err(|e| e.to_string())?;
    transport.send(m).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Is `s` an e-mail address (or `Name <address>`) that [`send_mail`] takes?
pub fn is_mailbox(s: &str) -> bool {
    s.parse::<lettre::message::Mailbox>().is_ok()
}

/// The SMTP transport type, for the layers that send through [`send_mail`].
pub type SmtpTransport = AsyncSmtpTransport<Tokio1Executor>;

struct Delivery {
    instance_id: String,
    http: reqwest::Client,
    webhook: Option<(String, Vec<u8>)>,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, lettre::message::Mailbox, Vec<lettre::message::Mailbox>)>,
}

impl Delivery {
    fn new(settings: &AlertSettings, instance_id: &str) -> Result<Delivery, String> {
        let webhook = match &settings.webhook_url {
            Some(url) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(format!("alerts.webhook_url must be an http(s) URL, not {url:?}"));
                }
                let path = settings
                    .webhook_secret_file
                    .as_ref()
                    .ok_or("alerts.webhook_url needs alerts.webhook_secret_file (the secret that signs the bodies)")?;
                let secret = read_secret(path, "webhook secret")?;
                if secret.len() < 32 {
                    return Err(format!("the webhook secret in {} must be at least 32 characters", path.display()));
                }
                Some((url.clone(), secret.into_bytes()))
            }
            None => None,
        };
        let smtp = match (smtp_transport(settings)?, settings.email_to.is_empty()) {
            (Some(transport), false) => {
                let from = settings.email_from.as_deref().ok_or("alerts.email_to needs alerts.email_from")?;
                let from = from.parse().map_err(|e| format!("alerts.email_from {from:?}: {e}"))?;
                let to = settings
                    .email_to
                    .iter()
                    .map(|t| t.parse().map_err(|e| format!("alerts.email_to {t:?}: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                Some((transport, from, to))
            }
            _ => None,
        };
        let http = webhook_client()?;
        Ok(Delivery { instance_id: instance_id.to_owned(), http, webhook, smtp })
    }

    async fn deliver(&self, sink: Sink, a: &AlertRow) -> Result<(), String> {
        match sink {
            Sink::Webhook => {
                let Some((url, secret)) = &self.webhook else { return Ok(()) };
                let body = webhook_body(&self.instance_id, a);
                post_json(&self.http, url, Some(secret), body).await
            }
            Sink::Email => {
                let Some((transport, from, to)) = &self.smtp else { return Ok(()) };
                let mut m = Message::builder()
                    .from(from.clone())
                    .subject(format!("[Confidant] {} alert: {}", a.severity, a.rule))
                    .header(ContentType::TEXT_PLAIN);
                for t in to {
                    m = m.to(t.clone());
                }
                let text = format!(
                    "Confidant instance {} raised a {} alert.\n\nRule:     {}\nWhat:     {}\nResponse: {}\nFirst:    {} (Unix ms)\nCount:    {}\nAlert id: {}\n\n\
                     Review it with `confidant incident report`, and acknowledge it in /api/v1/alerts.\n",
                    self.instance_id,
                    a.severity,
                    a.rule,
                    a.summary,
                    a.action_taken.as_deref().unwrap_or("alert only"),
                    a.first_at,
                    a.count,
                    a.id
                );
                let m = m.body(text).map_err(|e| e.to_string())?;
                transport.send(m).await.map(|_| ()).map_err(|e| e.to_string())
            }
        }
    }
}

/// Check the settings and start a worker per configured sink. Errors say
/// what is wrong in the configuration.
pub fn spawn(
    store: Store,
    settings: &AlertSettings,
    instance_id: &str,
    wake: Arc<Notify>,
    clock: Arc<dyn Clock>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let delivery = Arc::new(Delivery::new(settings, instance_id)?);
    let max_backoff = Duration::from_secs(settings.max_backoff_seconds.max(1));
    Ok(settings
        .sinks()
        .into_iter()
        .map(|sink| tokio::spawn(run(store.clone(), sink, delivery.clone(), wake.clone(), max_backoff, clock.clone())))
        .collect())
}

/// How long a node's claim on an alert lasts: longer than a send may take
/// (the webhook and SMTP clients give up well before).
const CLAIM_MS: i64 = 120_000;

async fn run(
    store: Store,
    sink: Sink,
    delivery: Arc<Delivery>,
    wake: Arc<Notify>,
    max_backoff: Duration,
    clock: Arc<dyn Clock>,
) {
    let name = match sink {
        Sink::Webhook => "webhook",
        Sink::Email => "e-mail",
    };
    let first = Duration::from_secs(1);
    let mut backoff = first;
    loop {
        let pending = match store.undelivered_alerts(sink, 20).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(sink = name, error = %e, "alerts could not be read for delivery");
                Vec::new()
            }
        };
        if pending.is_empty() {
            backoff = first;
            // Woken by a new alert; a periodic look catches other nodes' alerts.
            let _ = tokio::time::timeout(Duration::from_secs(30), wake.notified()).await;
            continue;
        }
        let mut failed = false;
        for a in &pending {
            // Another node may be sending this one: claim it first (a lease longer than a send takes).
            let now = clock.now_millis();
            match store.claim_alert(&a.id, sink, now, now + CLAIM_MS).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(sink = name, alert = %a.id, error = %e, "an alert could not be claimed for delivery");
                    failed = true;
                    break;
                }
            }
            match delivery.deliver(sink, a).await {
                Ok(()) => {
                    if let Err(e) = store.mark_alert_delivered(&a.id, sink, clock.now_millis()).await {
                        tracing::warn!(sink = name, alert = %a.id, error = %e, "a delivered alert could not be marked");
                    }
                    backoff = first;
                }
                Err(e) => {
                    tracing::warn!(
                        sink = name, alert = %a.id, error = %e, retry_in_s = backoff.as_secs(),
                        "alert delivery failed; it stays queued"
                    );
                    store.release_alert(&a.id, sink).await.ok();
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(max_backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2, as a receiver would compute it.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sinks_need_their_settings() {
        let none = AlertSettings::default();
        assert!(none.sinks().is_empty());
        let hook = AlertSettings { webhook_url: Some("https://x.example/h".into()), ..Default::default() };
        assert_eq!(hook.sinks(), vec![Sink::Webhook]);
        let err = Delivery::new(&hook, "i").err().unwrap_or_default();
        assert!(err.contains("webhook_secret_file"), "{err}");
        let bad = AlertSettings { webhook_url: Some("ftp://x".into()), ..Default::default() };
        assert!(Delivery::new(&bad, "i").err().unwrap_or_default().contains("http(s) URL"));
        let mail = AlertSettings {
            smtp_host: Some("localhost".into()),
            email_to: vec!["security@clinic.example".into()],
            ..Default::default()
        };
        assert!(Delivery::new(&mail, "i").err().unwrap_or_default().contains("email_from"));
    }
}
