//! The processing of a CLI pipeline: its steps, then the route to a sink — the pipeline's
//! [`Handler`].
//!
//! A record's payload is parsed as JSON once, goes through every step, and is written back
//! once. A pipeline with no steps and no routes never parses it: records pass untouched.

use ferroway::BoxError;
use ferroway::connector::Record;
use ferroway::pipeline::{Handler, Message};

use crate::transform::{Program, Value, parse_json, to_json};

/// One processing step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Where it is in the file (`steps[1].map`), as failures name it.
    pub label: String,
    /// What it does.
    pub kind: StepKind,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// Keeps records for which the condition holds; drops (acknowledges) the others.
    Filter(Program),
    /// Replaces the record by the program's output; no output drops it; more than one is a
    /// failure (a step maps one record to at most one).
    Map(Program),
    /// Dead-letters records for which `when` holds, with `reason`.
    DeadLetter {
        /// The condition.
        when: Program,
        /// The reason.
        reason: String,
    },
}

/// Where a record goes after the steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// To the sink (batcher) `batcher`, with a new payload if the steps changed it.
    Sink {
        /// The batcher's name.
        batcher: &'static str,
        /// The new payload, if any.
        payload: Option<Vec<u8>>,
    },
    /// Dropped by a filter: acknowledged, written nowhere.
    Drop,
    /// Failed, with the reason: to the dead-letter sink.
    Fail(String),
}

/// The steps and routes of one pipeline.
#[derive(Debug)]
pub struct Process {
    steps: Vec<Step>,
    /// Each sink's batcher name and route, in file order.
    routes: Vec<(&'static str, Option<Program>)>,
    json: bool,
    /// [`DROPPED`], labelled with the pipeline.
    dropped: metrics::Counter,
}

/// Records dropped by a filter (or a map with no output) — acknowledged, written nowhere
/// (counter; label `pipeline`).
pub const DROPPED: &str = "ferroway_cli_dropped_total";

impl Process {
    /// The processing of pipeline `pipeline`: `steps`, then `routes` (each sink's batcher name
    /// and route, in file order).
    pub fn new(pipeline: &str, steps: Vec<Step>, routes: Vec<(&'static str, Option<Program>)>) -> Self {
        let json = !steps.is_empty() || routes.iter().any(|(_, r)| r.is_some());
        Process {
            steps,
            routes,
            json,
            dropped: metrics::counter!(DROPPED, "pipeline" => pipeline.to_owned()),
        }
    }

    /// Where `payload` goes.
    ///
    /// ```
    /// use ferroway_cli::steps::{Decision, Process, Step, StepKind};
    /// use ferroway_cli::transform::Program;
    ///
    /// let p = Process::new(
    ///     "orders",
    ///     vec![Step { label: "steps[0].map".into(), kind: StepKind::Map(Program::compile("{id}").unwrap()) }],
    ///     vec![("out", None)],
    /// );
    /// assert_eq!(
    ///     p.decide(br#"{"id":1,"x":2}"#),
    ///     Decision::Sink { batcher: "out", payload: Some(br#"{"id":1}"#.to_vec()) },
    /// );
    /// assert!(matches!(p.decide(b"not json"), Decision::Fail(r) if r.starts_with("payload is not JSON")));
    /// ```
    pub fn decide(&self, payload: &[u8]) -> Decision {
        if !self.json {
            return Decision::Sink {
                batcher: self.routes[0].0,
                payload: None,
            };
        }
        let mut value = match parse_json(payload) {
            Ok(v) => v,
            Err(e) => return Decision::Fail(format!("payload is not JSON ({e})")),
        };
        for step in &self.steps {
            match apply(step, value) {
                Ok(Some(v)) => value = v,
                Ok(None) => return Decision::Drop,
                Err(reason) => return Decision::Fail(reason),
            }
        }
        for (batcher, route) in &self.routes {
            let matches = match route {
                None => true,
                Some(r) => match r.test(&value) {
                    Ok(m) => m,
                    Err(e) => return Decision::Fail(format!("sinks.{batcher}.route: {}", e.0)),
                },
            };
            if matches {
                let payload = (!self.steps.is_empty()).then(|| to_json(&value));
                return Decision::Sink { batcher, payload };
            }
        }
        let names: Vec<&str> = self.routes.iter().map(|(n, _)| *n).collect();
        Decision::Fail(format!("no sink's route matched (sinks: {})", names.join(", ")))
    }
}

/// One step on `value`: the value to go on with, none (dropped), or why it failed.
fn apply(step: &Step, value: Value) -> Result<Option<Value>, String> {
    let failed = |e: crate::transform::RunError| format!("{}: {}", step.label, e.0);
    match &step.kind {
        StepKind::Filter(p) => Ok(p.test(&value).map_err(failed)?.then_some(value)),
        StepKind::Map(p) => {
            let mut out = p.run(value).map_err(failed)?;
            match out.len() {
                0 | 1 => Ok(out.pop()),
                n => Err(format!(
                    "{}: produced {n} records; a step maps a record to at most one (collect them in an array with `[…]`)",
                    step.label
                )),
            }
        }
        StepKind::DeadLetter { when, reason } => {
            if when.test(&value).map_err(failed)? {
                Err(reason.clone())
            } else {
                Ok(Some(value))
            }
        }
    }
}

impl Handler for Process {
    type Data = Record;

    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), BoxError> {
        match self.decide(&m.data().payload) {
            Decision::Sink { batcher, payload } => {
                if let Some(p) = payload {
                    m.data_mut().payload = p.into();
                }
                m.put_batcher(batcher);
            }
            Decision::Drop => {
                self.dropped.increment(1);
                m.discard();
            }
            Decision::Fail(reason) => m.fail(reason),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(label: &str, kind: StepKind) -> Step {
        Step {
            label: label.into(),
            kind,
        }
    }

    fn jq(code: &str) -> Program {
        Program::compile(code).unwrap()
    }

    #[test]
    fn filters_maps_dead_letters_and_routes_in_order() {
        let p = Process::new(
            "p",
            vec![
                step("steps[0].filter", StepKind::Filter(jq(".level != \"debug\""))),
                step("steps[1].map", StepKind::Map(jq("{level, total: (.qty * .price)}"))),
                step(
                    "steps[2].dead_letter",
                    StepKind::DeadLetter {
                        when: jq(".total < 0"),
                        reason: "negative total".into(),
                    },
                ),
            ],
            vec![("errors", Some(jq(".level == \"error\""))), ("rest", None)],
        );
        assert_eq!(p.decide(br#"{"level":"debug"}"#), Decision::Drop);
        assert_eq!(
            p.decide(br#"{"level":"error","qty":2,"price":3}"#),
            Decision::Sink {
                batcher: "errors",
                payload: Some(br#"{"level":"error","total":6}"#.to_vec())
            }
        );
        assert_eq!(
            p.decide(br#"{"level":"info","qty":1,"price":3}"#),
            Decision::Sink {
                batcher: "rest",
                payload: Some(br#"{"level":"info","total":3}"#.to_vec())
            }
        );
        assert_eq!(
            p.decide(br#"{"level":"info","qty":-1,"price":3}"#),
            Decision::Fail("negative total".into())
        );
        let d = p.decide(br#"{"level":"info","qty":[1],"price":3}"#);
        assert!(
            matches!(&d, Decision::Fail(r) if r.starts_with("steps[1].map: cannot")),
            "{d:?}"
        );
    }

    #[test]
    fn without_steps_or_routes_payloads_pass_unparsed() {
        let p = Process::new("p", Vec::new(), vec![("out", None)]);
        assert_eq!(
            p.decide(b"not json at all"),
            Decision::Sink {
                batcher: "out",
                payload: None
            }
        );
    }

    #[test]
    fn a_record_no_route_takes_fails_and_a_map_may_not_split() {
        let p = Process::new("p", Vec::new(), vec![("a", Some(jq(".a")))]);
        assert_eq!(
            p.decide(b"{}"),
            Decision::Fail("no sink's route matched (sinks: a)".into())
        );
        let p = Process::new(
            "p",
            vec![step("steps[0].map", StepKind::Map(jq(".[]")))],
            vec![("out", None)],
        );
        assert!(matches!(p.decide(b"[1,2]"), Decision::Fail(r) if r.contains("produced 2 records")));
    }
}
