//! Results of `fanlog bench`: a summary line, JSON, and an HTML report.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::{BenchArgs, TransportArg, Workload};

/// One run's result. Serialised as the `--json` line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub workload: Workload,
    pub transport: TransportArg,
    pub size: usize,
    /// Messages (deliveries for `fanout`).
    pub msgs: u64,
    /// Records received by all subscribers (equal to `msgs` for `publish`).
    pub deliveries: u64,
    pub secs: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_us: Option<f64>,
    pub producers: usize,
    pub consumers: usize,
    pub batch: usize,
    /// Batches in flight per publisher.
    pub inflight: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// `--duration`, when the run was bounded by time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Where the broker ran: `in-process`, or the `--server` address.
    pub target: String,
    pub fsync: String,
    /// The broker's memory per idle connection (the idle workload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// `(seconds since start, units per second)` every 200 ms.
    #[serde(skip)]
    pub timeline: Vec<(f64, f64)>,
    /// `(percentile, microseconds)` for the latency chart.
    #[serde(skip)]
    pub percentiles: Vec<(f64, f64)>,
}

/// The broker's resident memory before and after opening idle connections.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Memory {
    /// Subscriptions open, each on its own connection.
    pub connections: usize,
    /// With the first connection open.
    pub rss_before_kb: u64,
    /// With all of them open and idle.
    pub rss_after_kb: u64,
    /// RSS delta over the connections opened after the first.
    pub bytes_per_connection: f64,
}

impl Memory {
    pub fn new(connections: usize, rss_before_kb: u64, rss_after_kb: u64) -> Self {
        let delta = rss_after_kb.saturating_sub(rss_before_kb) as f64 * 1024.0;
        Self {
            connections,
            rss_before_kb,
            rss_after_kb,
            bytes_per_connection: delta / connections.saturating_sub(1).max(1) as f64,
        }
    }
}

impl BenchResult {
    pub fn new(
        args: &BenchArgs,
        msgs: u64,
        deliveries: u64,
        secs: f64,
        hist: Option<&Histogram<u64>>,
        timeline: Vec<(f64, f64)>,
    ) -> Self {
        let hist = hist.filter(|h| !h.is_empty());
        let q = |p: f64| hist.map(|h| h.value_at_quantile(p) as f64);
        let percentiles = hist
            .map(|h| {
                [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0]
                    .iter()
                    .map(|p| (p * 100.0, h.value_at_quantile(*p) as f64))
                    .collect()
            })
            .unwrap_or_default();
        // Rates to a tenth: more digits are noise on a shared machine.
        let round1 = |x: f64| (x * 10.0).round() / 10.0;
        let msgs_per_s = round1(msgs as f64 / secs.max(1e-9));
        Self {
            workload: args.workload,
            transport: args.transport,
            size: args.size,
            msgs,
            deliveries,
            secs,
            msgs_per_s,
            mb_per_s: round1(msgs_per_s * args.size as f64 / 1e6),
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: hist.map(|h| h.max() as f64),
            producers: args.producers,
            consumers: args.consumers,
            batch: args.batch,
            inflight: args.inflight,
            rate: args.rate,
            duration_s: args.duration.map(|d| d.as_secs_f64()),
            target: args
                .server
                .clone()
                .unwrap_or_else(|| "in-process".to_owned()),
            fsync: args.fsync.to_string(),
            memory: None,
            timeline,
            percentiles,
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{:?} over {:?}: {} msgs of {} B in {:.2} s = {:.0} msgs/s, {:.1} MB/s",
            self.workload,
            self.transport,
            self.msgs,
            self.size,
            self.secs,
            self.msgs_per_s,
            self.mb_per_s
        );
        if self.workload == Workload::Idle {
            s = format!(
                "Idle over {:?}: {} connections; {} broadcasts of {} B, {} deliveries in {:.2} s",
                self.transport, self.consumers, self.msgs, self.size, self.deliveries, self.secs
            );
            if let Some(m) = &self.memory {
                let _ = write!(
                    s,
                    "; broker RSS {:.0} B per idle connection",
                    m.bytes_per_connection
                );
            }
        }
        if let (Some(p50), Some(p99), Some(p999), Some(max)) =
            (self.p50_us, self.p99_us, self.p999_us, self.max_us)
        {
            let _ = write!(
                s,
                "; latency p50 {p50:.0} us, p99 {p99:.0} us, p99.9 {p999:.0} us, max {max:.0} us"
            );
        }
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart as inline SVG: `points` in data units, axes labelled.
fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
    log_x: bool,
) -> String {
    let (w, h, pad) = (640.0, 260.0, 48.0);
    let fx = |x: f64| {
        if log_x {
            (1.0 / (1.0 - x / 100.0).max(1e-5)).log10()
        } else {
            x
        }
    };
    if points.is_empty() {
        return format!("<h2>{}</h2><p>No data.</p>", esc(title));
    }
    let xs: Vec<f64> = points.iter().map(|p| fx(p.0)).collect();
    let (x0, x1) = (
        xs.iter().cloned().fold(f64::MAX, f64::min),
        xs.iter().cloned().fold(f64::MIN, f64::max),
    );
    let y1 = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    let px = |x: f64| pad + (x - x0) / (x1 - x0).max(1e-9) * (w - 2.0 * pad);
    let py = |y: f64| h - pad - y / y1 * (h - 2.0 * pad);
    let mut path = String::new();
    for (i, (x, y)) in xs.iter().zip(points.iter().map(|p| p.1)).enumerate() {
        let _ = write!(
            path,
            "{}{:.1},{:.1}",
            if i == 0 { "M" } else { " L" },
            px(*x),
            py(y)
        );
    }
    let mut svg = format!(
        "<h2>{t}</h2><svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#444\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"#444\"/>\
         <path d=\"{path}\" fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"2\"/>\
         <text x=\"{cx}\" y=\"{h2}\" text-anchor=\"middle\" font-size=\"12\">{xl}</text>\
         <text x=\"12\" y=\"{cy}\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 12 {cy})\">{yl}</text>\
         <text x=\"{pad2}\" y=\"{yt}\" font-size=\"11\">{ymax:.0}</text>",
        t = esc(title),
        b = h - pad,
        r = w - pad,
        cx = w / 2.0,
        h2 = h - 10.0,
        cy = h / 2.0,
        xl = esc(x_label),
        yl = esc(y_label),
        pad2 = pad + 4.0,
        yt = pad + 4.0,
        ymax = y1 / 1.1,
    );
    if log_x {
        for (p, label) in [
            (50.0, "50%"),
            (90.0, "90%"),
            (99.0, "99%"),
            (99.9, "99.9%"),
            (99.99, "99.99%"),
        ] {
            let x = px(fx(p));
            let _ = write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{label}</text>",
                h - pad + 14.0
            );
        }
    } else {
        let _ = write!(
            svg,
            "<text x=\"{pad}\" y=\"{:.1}\" font-size=\"11\">{:.1}</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{:.1}</text>",
            h - pad + 14.0,
            x0,
            w - pad,
            h - pad + 14.0,
            x1
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A self-contained HTML report: the numbers, throughput over time, and the
/// latency distribution. No scripts, no external resources.
pub fn html(r: &BenchResult) -> String {
    let mut rows = String::new();
    let json = serde_json::to_value(r).unwrap_or_default();
    if let Some(obj) = json.as_object() {
        for (k, v) in obj {
            let shown = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) if n.is_f64() => {
                    format!("{:.2}", n.as_f64().unwrap_or_default())
                }
                other => other.to_string(),
            };
            let _ = write!(rows, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&shown));
        }
    }
    let throughput = line_chart(
        "Throughput over time",
        "seconds",
        "per second",
        &r.timeline,
        false,
    );
    let latency = if r.percentiles.is_empty() {
        String::new()
    } else {
        line_chart(
            "Latency distribution",
            "percentile",
            "microseconds",
            &r.percentiles,
            true,
        )
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fanlog bench: {title}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
         th,td{{text-align:left;padding:2px 12px;border-bottom:1px solid #ddd}}svg{{border:1px solid #ddd}}</style></head>\
         <body><h1>fanlog bench: {title}</h1><p>{summary}</p><table>{rows}</table>{throughput}{latency}</body></html>\n",
        title = esc(&format!("{:?} over {:?}", r.workload, r.transport)),
        summary = esc(&r.summary()),
    )
}
