//! `/metrics` in the Prometheus text format (version 0.0.4), on a listener of
//! its own (`metrics.listen`), optionally behind a bearer token of its own.
//!
//! What it may say is fixed here: counts, sums and gauges labelled by route
//! template, status, action, outcome, rule, lock kind or pool state. Never an
//! id of a patient, user, session or record, never an address or a query
//! string — the labels come only from the closed sets in this file and from
//! route templates (`/fhir/r4/{type}/{id}`), not from requests.
//!
//! The exposition format is a few lines of text; writing it needs no library.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Upper bounds of the request-latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative; summed when rendered), then +Inf.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

/// Requests, counted and timed as the request log sees them.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// (method, route template, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Route template → latency.
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl HttpMetrics {
    /// One request answered. `route` is the matched template, never the path.
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        // A client may send any method token: only the known ones become labels.
        const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
        let method = KNOWN.iter().find(|m| **m == method).copied().unwrap_or("other");
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        drop(requests);
        let seconds = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = latency.entry(route.to_owned()).or_default();
        let bucket = BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(BUCKETS.len());
        h.counts[bucket] += 1;
        h.sum += seconds;
    }

    fn render(&self, out: &mut String) {
        family(
            out,
            "confidant_http_requests_total",
            "counter",
            "Requests answered, by method, route template and status.",
        );
        for ((method, route, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "confidant_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        family(
            out,
            "confidant_http_request_duration_seconds",
            "histogram",
            "Time to answer a request, by route template.",
        );
        for (route, h) in self.latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let labels = format!("route=\"{}\"", escape(route));
            buckets(out, "confidant_http_request_duration_seconds", &labels, &BUCKETS, &h.counts, h.sum);
        }
    }
}

/// A histogram's series: cumulative `_bucket`s (one per bound, then `+Inf`),
/// `_sum` and `_count`. `counts` are per bucket, not cumulative; `labels` are
/// already escaped (`name="value",…`, or empty).
fn buckets(out: &mut String, name: &str, labels: &str, bounds: &[f64], counts: &[u64], sum: f64) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (i, bound) in bounds.iter().enumerate() {
        cumulative += counts.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
    }
    cumulative += counts.iter().skip(bounds.len()).sum::<u64>();
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}");
    let braced = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braced} {sum}");
    let _ = writeln!(out, "{name}_count{braced} {cumulative}");
}

/// A latency histogram the layer above reports at scrape time (no labels).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// The family's name (`confidant_…_seconds`).
    pub name: &'static str,
    pub help: &'static str,
    /// Upper bounds of the buckets, ascending, in seconds.
    pub bounds: &'static [f64],
    /// Observations per bucket, not cumulative: one per bound, then `+Inf`.
    pub counts: Vec<u64>,
    /// The sum of the observations, in seconds.
    pub sum: f64,
}

/// One value the layer above reports at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric's name (`confidant_…`).
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    pub help: &'static str,
    /// Label names and values: values from closed sets only (actions, rules, states).
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The values only the layer above knows (the audit log, the detector, the
/// keys, the database pool), read at each scrape.
pub trait MetricsSource: Send + Sync + 'static {
    fn samples(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Sample>> + Send + '_>>;
    /// Latency histograms (the audit appender's), read at each scrape.
    fn histograms(&self) -> Vec<HistogramSample> {
        Vec::new()
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The whole exposition: the HTTP families, the histograms, then the samples grouped by name.
pub fn render(http: &HttpMetrics, samples: &[Sample], histograms: &[HistogramSample]) -> String {
    let mut out = String::new();
    http.render(&mut out);
    for h in histograms {
        family(&mut out, h.name, "histogram", h.help);
        buckets(&mut out, h.name, "", h.bounds, &h.counts, h.sum);
    }
    let mut seen: Vec<&'static str> = Vec::new();
    for s in samples {
        if !seen.contains(&s.name) {
            seen.push(s.name);
            family(&mut out, s.name, s.kind, s.help);
            for t in samples.iter().filter(|t| t.name == s.name) {
                let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
                let _ = writeln!(out, "{}{labels} {}", t.name, t.value);
            }
        }
    }
    out
}

/// The metrics listener's router: `GET /metrics`, with `token` required as a
/// bearer token when given (compared in constant time).
pub fn router(http: Arc<HttpMetrics>, source: Arc<dyn MetricsSource>, token: Option<String>) -> Router {
    let scrape = move |headers: HeaderMap| {
        let (http, source, token) = (http.clone(), source.clone(), token.clone());
        async move {
            if let Some(token) = token {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                if !confidant_vault::secrets_equal(given.as_bytes(), token.as_bytes()) {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                    )
                        .into_response();
                }
            }
            let samples = source.samples().await;
            let body = render(&http, &samples, &source.histograms());
            let kind = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
            ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], body)
                .into_response()
        }
    };
    Router::new().route("/metrics", get(scrape)).fallback(|| async { StatusCode::NOT_FOUND.into_response() })
}

/// Serve the metrics router on its own listener until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

/// A sample for the tests of this module.
#[cfg(test)]
fn sample(name: &'static str, labels: Vec<(&'static str, String)>, value: f64) -> Sample {
    Sample { name, kind: "counter", help: "h", labels, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let m = HttpMetrics::default();
        m.observe("GET", "/fhir/r4/{type}/{id}", 200, Duration::from_millis(3));
        m.observe("GET", "/fhir/r4/{type}/{id}", 404, Duration::from_millis(30));
        m.observe("GET", "/fhir/r4/{type}/{id}", 200, Duration::from_secs(20));
        let audit = HistogramSample {
            name: "confidant_y_seconds",
            help: "h",
            bounds: &[0.5, 1.0],
            counts: vec![1, 0, 2],
            sum: 7.5,
        };
        let text = render(&m, &[sample("confidant_x_total", vec![("rule", "a\"b".into())], 2.0)], &[audit]);
        assert!(text.contains("# TYPE confidant_y_seconds histogram\n"), "{text}");
        for line in [
            r#"confidant_y_seconds_bucket{le="0.5"} 1"#,
            r#"confidant_y_seconds_bucket{le="1"} 1"#,
            r#"confidant_y_seconds_bucket{le="+Inf"} 3"#,
            "confidant_y_seconds_sum 7.5",
            "confidant_y_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert!(
            text.contains(r#"confidant_http_requests_total{method="GET",route="/fhir/r4/{type}/{id}",status="200"} 2"#)
        );
        assert!(
            text.contains(
                r#"confidant_http_request_duration_seconds_bucket{route="/fhir/r4/{type}/{id}",le="0.001"} 0"#
            )
        );
        assert!(
            text.contains(
                r#"confidant_http_request_duration_seconds_bucket{route="/fhir/r4/{type}/{id}",le="0.005"} 1"#
            )
        );
        assert!(
            text.contains(
                r#"confidant_http_request_duration_seconds_bucket{route="/fhir/r4/{type}/{id}",le="0.05"} 2"#
            )
        );
        assert!(
            text.contains(r#"confidant_http_request_duration_seconds_bucket{route="/fhir/r4/{type}/{id}",le="10"} 2"#)
        );
        assert!(
            text.contains(
                r#"confidant_http_request_duration_seconds_bucket{route="/fhir/r4/{type}/{id}",le="+Inf"} 3"#
            )
        );
        assert!(text.contains(r#"confidant_http_request_duration_seconds_count{route="/fhir/r4/{type}/{id}"} 3"#));
        assert!(text.contains("# TYPE confidant_x_total counter"));
        assert!(text.contains(r#"confidant_x_total{rule="a\"b"} 2"#));
    }
}
