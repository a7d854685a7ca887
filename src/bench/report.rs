//! Results of `fanlog bench`: a summary line, JSON, and an HTML report.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;

use hdrhistogram::Histogram;

use super::{BenchArgs, TransportArg, Workload};

/// One run's result. Serialised as the `--json` line and the `--save`
/// file, and read back by `--compare`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BenchResult {
    /// `--label`: the run's name in comparisons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When the run started (RFC 3339).
    #[serde(default)]
    pub started: String,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// `(seconds since start, units per second)` every 200 ms.
    #[serde(default)]
    pub timeline: Vec<(f64, f64)>,
    /// `(percentile, microseconds)` for the latency chart.
    #[serde(default)]
    pub percentiles: Vec<(f64, f64)>,
}

/// The broker's resident memory before and after opening idle connections.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
            label: args.label.clone(),
            // Set by the caller, who knows when the run started.
            started: String::new(),
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

/// Reads a run saved by `--save`, or the output of `--json` (its last line
/// that is a JSON object).
pub fn load(path: &Path) -> anyhow::Result<BenchResult> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the run in {}", path.display()))?;
    // A saved run is one (pretty) JSON document; `--json` output ends with
    // one JSON line after the progress and summary lines.
    let json = if text.trim_start().starts_with('{') {
        text.as_str()
    } else {
        text.lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .with_context(|| {
                format!(
                    "{} holds no run: give a file written by `fanlog bench --save` or `--json`",
                    path.display()
                )
            })?
    };
    let mut run: BenchResult = serde_json::from_str(json).with_context(|| {
        format!(
            "{} is not a run of `fanlog bench --save` or `--json`",
            path.display()
        )
    })?;
    if run.label.is_none() {
        run.label = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    }
    Ok(run)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Colours of the runs, in order (then repeated).
const COLOURS: [&str; 6] = [
    "#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989",
];

fn colour(i: usize) -> &'static str {
    COLOURS[i % COLOURS.len()]
}

/// A line chart as inline SVG, one line per series (`(name, points)` in
/// data units), axes labelled, a legend when there are several.
fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, &[(f64, f64)])],
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
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(x, y)| (fx(x), y)))
        .collect();
    if all.is_empty() {
        return format!("<h2>{}</h2><p>No data.</p>", esc(title));
    }
    let x0 = all.iter().map(|p| p.0).fold(f64::MAX, f64::min);
    let x1 = all.iter().map(|p| p.0).fold(f64::MIN, f64::max);
    let y1 = all.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    let px = |x: f64| pad + (x - x0) / (x1 - x0).max(1e-9) * (w - 2.0 * pad);
    let py = |y: f64| h - pad - y / y1 * (h - 2.0 * pad);
    let mut svg = format!(
        "<h2>{t}</h2><svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#444\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"#444\"/>\
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
    for (i, (name, points)) in series.iter().enumerate() {
        let mut path = String::new();
        for (j, &(x, y)) in points.iter().enumerate() {
            let _ = write!(
                path,
                "{}{:.1},{:.1}",
                if j == 0 { "M" } else { " L" },
                px(fx(x)),
                py(y)
            );
        }
        let _ = write!(
            svg,
            "<path d=\"{path}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"><title>{n}</title></path>",
            c = colour(i),
            n = esc(name)
        );
        if series.len() > 1 {
            let y = pad + 14.0 * i as f64;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{c}\"/>\
                 <text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"11\">{n}</text>",
                y - 9.0,
                w - pad - 136.0,
                x = w - pad - 150.0,
                c = colour(i),
                n = esc(name)
            );
        }
    }
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

/// Horizontal bars, one per run, each labelled with its value and its
/// ratio to the first (the baseline).
fn bar_chart(title: &str, unit: &str, bars: &[(&str, f64)]) -> String {
    let (w, row, left, right) = (640.0, 26.0, 150.0, 170.0);
    let h = row * bars.len() as f64 + 12.0;
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9);
    let base = bars.first().map_or(0.0, |b| b.1);
    let mut svg = format!(
        "<h2>{t}</h2><svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>",
        t = esc(title)
    );
    for (i, (name, v)) in bars.iter().enumerate() {
        let y = 6.0 + row * i as f64;
        let len = v / max * (w - left - right);
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{n}</text>\
             <rect x=\"{left}\" y=\"{y:.1}\" width=\"{len:.1}\" height=\"{:.1}\" fill=\"{c}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{v:.0} {unit} ({r})</text>",
            left - 8.0,
            y + 15.0,
            row - 8.0,
            left + len + 6.0,
            y + 15.0,
            n = esc(name),
            c = colour(i),
            unit = esc(unit),
            r = ratio(*v, base),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// `v` against the baseline `base`, as `1.23×`.
fn ratio(v: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}×", v / base)
    } else {
        "–".to_owned()
    }
}

/// A number as a table shows it.
fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "–".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_f64() => {
            format!("{:.2}", n.as_f64().unwrap_or_default())
        }
        other => other.to_string(),
    }
}

/// What a run was asked to do: the rows of the parameters table.
const PARAMETERS: [&str; 12] = [
    "workload",
    "transport",
    "size",
    "producers",
    "consumers",
    "batch",
    "inflight",
    "rate",
    "duration_s",
    "fsync",
    "target",
    "started",
];

/// What a run measured: the rows of the results table, and whether more
/// is better (then a ratio above 1 is an improvement); no ratio for counts
/// that the run was asked for.
const RESULTS: [(&str, Option<bool>); 10] = [
    ("msgs", None),
    ("deliveries", None),
    ("secs", None),
    ("msgs_per_s", Some(true)),
    ("mb_per_s", Some(true)),
    ("p50_us", Some(false)),
    ("p99_us", Some(false)),
    ("p999_us", Some(false)),
    ("max_us", Some(false)),
    ("bytes_per_connection", Some(false)),
];

/// A self-contained HTML report, no scripts and no external resources. One
/// run: its parameters, its numbers, throughput over time and the latency
/// distribution. Several runs (the first is the baseline): the parameters
/// side by side with the ones that differ marked, every figure with its
/// ratio to the baseline, msgs/s and p99 as bars, and the throughput and
/// latency curves overlaid.
pub fn html(runs: &[BenchResult]) -> String {
    let names: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| r.label.clone().unwrap_or_else(|| format!("run {}", i + 1)))
        .collect();
    let values: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let Some(m) = &r.memory {
                v["bytes_per_connection"] = serde_json::json!(m.bytes_per_connection);
            }
            v
        })
        .collect();
    let several = runs.len() > 1;
    let head: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let role = if several && i == 0 { " (baseline)" } else { "" };
            format!(
                "<th class=\"run\" style=\"border-top:3px solid {}\">{}{role}</th>",
                colour(i),
                esc(n)
            )
        })
        .collect();
    let mut params = String::new();
    for k in PARAMETERS {
        let cells: Vec<String> = values.iter().map(|v| shown(&v[k])).collect();
        if cells.iter().all(|c| c == "–") {
            continue;
        }
        // When a run started is no difference in what it was asked to do.
        let differs = k != "started" && cells.iter().any(|c| *c != cells[0]);
        let _ = write!(
            params,
            "<tr{}><th>{}</th>{}</tr>",
            if differs { " class=\"differs\"" } else { "" },
            esc(k),
            cells
                .iter()
                .map(|c| format!("<td>{}</td>", esc(c)))
                .collect::<String>()
        );
    }
    let mut results = String::new();
    for (k, more_is_better) in RESULTS {
        if values.iter().all(|v| v[k].is_null()) {
            continue;
        }
        let base = values[0][k].as_f64();
        let mut cells = String::new();
        for (i, v) in values.iter().enumerate() {
            let mut cell = esc(&shown(&v[k]));
            if let (true, Some(more_is_better), Some(b), Some(x)) =
                (several && i > 0, more_is_better, base, v[k].as_f64())
            {
                let r = ratio(x, b);
                let class = if r == "1.00×" {
                    "same"
                } else if (x > b) == more_is_better {
                    "better"
                } else {
                    "worse"
                };
                let _ = write!(cell, " <span class=\"{class}\">{r}</span>");
            }
            let _ = write!(cells, "<td>{cell}</td>");
        }
        let _ = write!(results, "<tr><th>{}</th>{cells}</tr>", esc(k));
    }
    let mut charts = String::new();
    if several {
        let bars: Vec<(&str, f64)> = names
            .iter()
            .zip(runs)
            .map(|(n, r)| (n.as_str(), r.msgs_per_s))
            .collect();
        charts.push_str(&bar_chart("Messages per second", "msgs/s", &bars));
        let p99: Vec<(&str, f64)> = names
            .iter()
            .zip(runs)
            .filter_map(|(n, r)| Some((n.as_str(), r.p99_us?)))
            .collect();
        if p99.len() == runs.len() {
            charts.push_str(&bar_chart("p99 latency (lower is better)", "us", &p99));
        }
    }
    let series = |f: fn(&BenchResult) -> &[(f64, f64)]| -> Vec<(&str, &[(f64, f64)])> {
        names
            .iter()
            .zip(runs)
            .map(|(n, r)| (n.as_str(), f(r)))
            .filter(|(_, p)| !p.is_empty())
            .collect()
    };
    charts.push_str(&line_chart(
        "Throughput over time",
        "seconds",
        "per second",
        &series(|r| &r.timeline),
        false,
    ));
    let latency = series(|r| &r.percentiles);
    if !latency.is_empty() {
        charts.push_str(&line_chart(
            "Latency distribution",
            "percentile",
            "microseconds",
            &latency,
            true,
        ));
    }
    let title = match runs {
        [one] => format!("{:?} over {:?}", one.workload, one.transport),
        _ => format!("{} runs compared", runs.len()),
    };
    let summaries: String = names
        .iter()
        .zip(runs)
        .map(|(n, r)| format!("<li><b>{}</b>: {}</li>", esc(n), esc(&r.summary())))
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fanlog bench: {title}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin-bottom:1em}}\
         th,td{{text-align:left;padding:2px 12px;border-bottom:1px solid #ddd}}svg{{border:1px solid #ddd;max-width:100%;height:auto}}\
         tr.differs{{background:#fff8c5}}.better{{color:#1a7f37}}.worse{{color:#d1242f}}</style></head>\
         <body><h1>fanlog bench: {title}</h1><ul>{summaries}</ul>\
         <h2>Parameters</h2><table><tr><th></th>{head}</tr>{params}</table>\
         <h2>Results</h2><table><tr><th></th>{head}</tr>{results}</table>{charts}</body></html>\n",
        title = esc(&title),
    )
}
