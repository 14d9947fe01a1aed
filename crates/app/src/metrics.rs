//! What `/metrics` reads at each scrape from this layer: the audit appender,
//! the detector's counts, open alerts, the database pool and the key's age.
//! Every label comes from a closed set (actions, outcomes, rules, lock kinds);
//! nothing names a patient, a user, a record or an address.

use std::sync::Arc;

use confidant_server::metrics::{HistogramSample, MetricsSource, Sample};

/// The running instance's side of `/metrics`.
pub struct Source {
    pub records: Arc<confidant_records::Records>,
    pub detector: Arc<confidant_detect::Detector>,
}

fn sample(
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    labels: Vec<(&'static str, String)>,
    value: f64,
) -> Sample {
    Sample { name, kind, help, labels, value }
}

impl Source {
    async fn read(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        let counters = self.detector.counters();
        for ((action, outcome), n) in &counters.entries {
            out.push(sample(
                "confidant_audit_entries_total",
                "counter",
                "Audit entries committed by this process, by action (read, search-hit, login, login-failed, ...) and outcome.",
                vec![("action", (*action).to_owned()), ("outcome", (*outcome).to_owned())],
                *n as f64,
            ));
        }
        for (rule, n) in &counters.fired {
            out.push(sample(
                "confidant_alerts_raised_total",
                "counter",
                "Detection rules fired in this process (repeats of an open alert included), by rule.",
                vec![("rule", (*rule).to_owned())],
                *n as f64,
            ));
        }
        for (kind, n) in &counters.locks {
            out.push(sample(
                "confidant_detector_locks_total",
                "counter",
                "Sessions, tokens or accounts locked by the detector in this process, by kind.",
                vec![("kind", (*kind).to_owned())],
                *n as f64,
            ));
        }
        let store = self.records.store();
        match store.alerts(true, 10_000).await {
            Ok(open) => {
                let mut by_rule = std::collections::BTreeMap::<String, u64>::new();
                for a in open {
                    *by_rule.entry(a.rule).or_default() += 1;
                }
                for (rule, n) in by_rule {
                    out.push(sample(
                        "confidant_alerts_open",
                        "gauge",
                        "Alerts not yet acknowledged, by rule.",
                        vec![("rule", rule)],
                        n as f64,
                    ));
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot count open alerts"),
        }
        let a = self.records.auditor().stats();
        let audit: [(&'static str, &'static str, &'static str, f64); 4] = [
            (
                "confidant_audit_appends_total",
                "counter",
                "Appends of audit entries waited for (one per request that appended).",
                a.appends as f64,
            ),
            (
                "confidant_audit_group_commits_total",
                "counter",
                "Transactions of the group-commit audit appender.",
                a.group_commits as f64,
            ),
            (
                "confidant_audit_group_commit_rows_total",
                "counter",
                "Audit entries written by the group-commit appender.",
                a.group_commit_rows as f64,
            ),
            (
                "confidant_audit_entries_since_checkpoint",
                "gauge",
                "Audit entries appended by this process since its last signed checkpoint.",
                a.since_checkpoint as f64,
            ),
        ];
        for (name, kind, help, value) in audit {
            out.push(sample(name, kind, help, Vec::new(), value));
        }
        let (size, idle) = store.pool_usage();
        for (state, n) in [("idle", idle as f64), ("busy", f64::from(size) - idle as f64)] {
            out.push(sample(
                "confidant_db_connections",
                "gauge",
                "Database connections open, by state.",
                vec![("state", state.to_owned())],
                n.max(0.0),
            ));
        }
        let current = self.records.current_kek_version();
        let now = self.records.now_millis();
        match confidant_records::kek_made_at(store, current).await {
            Ok(made) => out.push(sample(
                "confidant_kek_age_days",
                "gauge",
                "Age of the current key-encryption key, in days (rotate at keys.rotate_after_days).",
                Vec::new(),
                ((now - made.unwrap_or(now)) as f64 / 86_400_000.0).floor(),
            )),
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the key's age"),
        }
        out
    }
}

impl MetricsSource for Source {
    fn samples(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Sample>> + Send + '_>> {
        Box::pin(self.read())
    }

    fn histograms(&self) -> Vec<HistogramSample> {
        let a = self.records.auditor().stats();
        vec![
            HistogramSample {
                name: "confidant_audit_append_duration_seconds",
                help: "Time a request waited for its audit entries to commit (the read is released only after).",
                bounds: &confidant_audit::LATENCY_BUCKETS,
                counts: a.append_buckets.to_vec(),
                sum: a.append_seconds,
            },
            HistogramSample {
                name: "confidant_audit_group_commit_duration_seconds",
                help: "Time of one transaction of the group-commit audit appender (one fsync for a batch of entries).",
                bounds: &confidant_audit::LATENCY_BUCKETS,
                counts: a.group_commit_buckets.to_vec(),
                sum: a.group_commit_seconds,
            },
        ]
    }
}
