//! Counters the broker exports at `GET /metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::fmt::Write;

use parking_lot::Mutex;

/// Requests refused, by interface (`binary`, `http`) and reason (the
/// protocol's error code, or the HTTP status).
#[derive(Debug, Default)]
pub struct Metrics {
    refusals: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Metrics {
    /// Counts one refusal.
    pub fn refused(&self, interface: &'static str, reason: impl Into<String>) {
        *self
            .refusals
            .lock()
            .entry((interface, reason.into()))
            .or_default() += 1;
    }

    /// The count of one kind of refusal.
    #[must_use]
    pub fn refusals(&self, interface: &str, reason: &str) -> u64 {
        self.refusals
            .lock()
            .iter()
            .find(|((i, r), _)| *i == interface && r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// The refusal counters in Prometheus text format.
    pub(crate) fn write_refusals(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP fanlog_refusals_total Requests refused, by interface and reason.\n# TYPE fanlog_refusals_total counter"
        );
        for ((interface, reason), n) in self.refusals.lock().iter() {
            let _ = writeln!(
                out,
                "fanlog_refusals_total{{interface=\"{interface}\",reason=\"{}\"}} {n}",
                escape(reason)
            );
        }
    }
}

/// A Prometheus label value.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
