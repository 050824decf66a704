//! One measured result, printed as a JSON line.

use serde_json::{Map, Value, json};

pub struct Report {
    pub workload: &'static str,
    pub unit: &'static str,
    pub count: u64,
    pub seconds: f64,
    pub baseline_per_sec: Option<f64>,
    pub checksum_ok: Option<bool>,
    pub extra: Map<String, Value>,
}

impl Report {
    pub fn new(workload: &'static str, unit: &'static str, count: u64, seconds: f64) -> Self {
        Report {
            workload,
            unit,
            count,
            seconds,
            baseline_per_sec: None,
            checksum_ok: None,
            extra: Map::new(),
        }
    }

    pub fn per_sec(&self) -> f64 {
        self.count as f64 / self.seconds
    }

    pub fn to_json(&self) -> String {
        let mut o = Map::new();
        o.insert("workload".into(), json!(self.workload));
        o.insert(self.unit.into(), json!(self.count));
        o.insert("seconds".into(), json!(self.seconds));
        o.insert("per_sec".into(), json!(self.per_sec().round() as u64));
        o.insert("peak_rss_bytes".into(), json!(peak_rss_bytes()));
        if let Some(b) = self.baseline_per_sec {
            o.insert("baseline_per_sec".into(), json!(b.round() as u64));
            o.insert("ratio".into(), json!((self.per_sec() / b * 1000.0).round() / 1000.0));
        }
        if let Some(c) = self.checksum_ok {
            o.insert("checksum_ok".into(), json!(c));
        }
        o.extend(self.extra.clone());
        Value::Object(o).to_string()
    }
}

/// The process's peak resident set (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
