//! `ferroway test`: the `[[tests]]` of a file, run through the file's own steps, routes and
//! batchers with its connectors swapped for memory — no server needed.
//!
//! Each test's inputs are emitted by one in-memory source; each sink records the payloads it
//! is given; failed records are caught as dead letters (with their reason) whether or not the
//! file has a `[dead_letter]`. One processor and one batch at a time, so outputs come in input
//! order. Payloads are compared as JSON values when both sides are JSON (key order and
//! spacing do not matter), else as text.

use std::sync::{Arc, Mutex};

use ferroway::BoxError;
use ferroway::connector::{BoxSource, Record, Sink, Source};
use ferroway::pipeline::{BoxFuture, DeadLetterInfo, Message};
use ferroway::stage::{Emit, Producer};

use crate::assemble::{self, Connectors};
use crate::config::PipelineConfig;
use crate::config::model::{InputRecord, TestSpec};
use crate::stats::PipelineStats;

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// Each difference from what the test expects; empty when it passed.
    pub mismatches: Vec<String>,
}

impl TestResult {
    /// Whether the outputs were as expected.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Runs every test of `config`, after making its processors and batchers sequential (one
/// at a time, so outputs come in input order).
///
/// ```
/// use std::path::Path;
/// use ferroway_cli::{config::parse, file_tests, registry::Registry};
///
/// let text = r#"
/// [sources.in]
/// type = "stdin"
///
/// [[steps]]
/// map = '{id, big: (.n > 10)}'
///
/// [sinks.out]
/// type = "stdout"
///
/// [[tests]]
/// name = "flags big numbers"
/// input = ['{"id":1,"n":5}', '{"id":2,"n":50}']
/// output = { out = ['{"id":1,"big":false}', '{"id":2,"big":true}'] }
/// "#;
/// let mut config = parse(Path::new("t.toml"), text, |_| None, &Registry::with_compiled_in()).unwrap();
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let results = file_tests::run(&mut config).await;
/// assert!(results[0].passed(), "{:?}", results[0].mismatches);
/// # });
/// ```
pub async fn run(config: &mut PipelineConfig) -> Vec<TestResult> {
    config.processors.concurrency = 1;
    for s in &mut config.sinks {
        s.concurrency = 1;
    }
    let mut results = Vec::new();
    for test in &config.tests {
        results.push(run_one(config, test).await);
    }
    results
}

async fn run_one(config: &PipelineConfig, test: &TestSpec) -> TestResult {
    let captures: Vec<Arc<Capture>> = config.sinks.iter().map(|_| Arc::default()).collect();
    let dead = Arc::new(Capture::default());
    let connectors = Connectors {
        sources: vec![BoxSource::new(Replay(test.input.clone()))],
        sinks: captures.iter().map(|c| c.clone() as Arc<dyn Sink<Record>>).collect(),
        dead_letter: Some(dead.clone()),
    };
    let stats = PipelineStats::default();
    let mut mismatches = Vec::new();
    let outcome = match assemble::pipeline(config, connectors, &stats).0.start().await {
        Ok(p) => p.join().await.map_err(|e| ferroway::error::Chain(&e).to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = outcome {
        mismatches.push(format!("the pipeline failed: {e}"));
    }
    for (spec, capture) in config.sinks.iter().zip(&captures) {
        let got = capture.payloads();
        let expected = test.output.get(&spec.name).cloned().unwrap_or_default();
        compare(&format!("sink `{}`", spec.name), &expected, &got, &mut mismatches);
    }
    let got_dead = dead.records();
    let expected_dead: Vec<String> = test.dead_letters.iter().map(|d| d.payload.clone()).collect();
    let got_payloads: Vec<String> = got_dead.iter().map(|(p, _)| p.clone()).collect();
    compare("dead letters", &expected_dead, &got_payloads, &mut mismatches);
    for (i, (want, (_, reason))) in test.dead_letters.iter().zip(&got_dead).enumerate() {
        if let Some(text) = &want.reason
            && !reason.contains(text.as_str())
        {
            mismatches.push(format!("dead letter {i}: reason `{reason}` does not contain `{text}`"));
        }
    }
    TestResult {
        name: test.name.clone(),
        mismatches,
    }
}

/// `what` received `got`; it should have received `expected`, in order.
fn compare(what: &str, expected: &[String], got: &[String], out: &mut Vec<String>) {
    if expected.len() != got.len() {
        out.push(format!(
            "{what}: expected {} record(s), got {}:\n      expected: {}\n      got:      {}",
            expected.len(),
            got.len(),
            list(expected),
            list(got)
        ));
        return;
    }
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        if !same(e, g) {
            out.push(format!("{what}, record {i}:\n      expected: {e}\n      got:      {g}"));
        }
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(" | ")
    }
}

/// Equal as JSON values when both are JSON, else as text.
fn same(expected: &str, got: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(expected),
        serde_json::from_str::<serde_json::Value>(got),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => expected == got,
    }
}

/// A source that emits the test's inputs, then finishes.
struct Replay(Vec<InputRecord>);

impl Source for Replay {
    type Data = Record;
    type Producer = ReplayProducer;

    fn producer(&self, _: usize) -> Result<ReplayProducer, BoxError> {
        let records = self
            .0
            .iter()
            .map(|r| {
                let mut rec = Record::new(r.payload.clone().into_bytes());
                rec.key = r.key.clone().map(|k| k.into_bytes().into());
                rec
            })
            .collect();
        Ok(ReplayProducer(records))
    }
}

/// Emits its records as demanded.
struct ReplayProducer(std::collections::VecDeque<Record>);

impl Producer for ReplayProducer {
    type Output = Message<Record>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Record>>, BoxError> {
        let n = demand.min(self.0.len());
        let out: Vec<_> = self.0.drain(..n).map(Message::new).collect();
        Ok(if self.0.is_empty() {
            Emit::Done(out)
        } else {
            Emit::Events(out)
        })
    }
}

/// A sink that keeps what it is given: payloads, and the reason of dead letters.
#[derive(Default)]
struct Capture(Mutex<Vec<(String, String)>>);

impl Capture {
    fn records(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn payloads(&self) -> Vec<String> {
        self.records().into_iter().map(|(p, _)| p).collect()
    }
}

impl Sink<Record> for Capture {
    fn write<'a>(&'a self, batch: &'a mut [Message<Record>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
            for m in batch.iter() {
                let payload = String::from_utf8_lossy(&m.data().payload).into_owned();
                let reason = m
                    .metadata::<DeadLetterInfo>()
                    .map(|i| i.reason.to_string())
                    .unwrap_or_default();
                kept.push((payload, reason));
            }
            Ok(())
        })
    }
}
