//! Flow: data as a whole — aggregations and windows over bounded and unbounded inputs —
//! where a [pipeline](crate::pipeline) handles messages one by one. Elixir's Flow, on
//! [`stage`](crate::stage)s.
//!
//! A [`Flow`] starts from sources (iterators, streams, a file's lines, running stages), runs
//! per-event operations on each lane (`map`, `filter`, `flat_map`, ...), crosses a
//! [`Partition`] boundary (events of one key meet in one stage), and reduces each partition's
//! [`Window`]s into accumulators that `on_trigger` turns into results.
//!
//! ```
//! use std::collections::HashMap;
//! use ferroway::flow::{Flow, Partition};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ferroway::flow::FlowError> {
//! let text = ["to be or not to be", "that is the question"];
//! let mut counts: Vec<(String, u64)> = Flow::from_iterable(text)
//!     .flat_map(|line| line.split(' ').map(String::from).collect::<Vec<_>>())
//!     .partition(Partition::hashed())
//!     .reduce(HashMap::new, |m: &mut HashMap<String, u64>, w: &String| *m.entry(w.clone()).or_default() += 1)
//!     .flat_map(|m| m)
//!     .collect()
//!     .await?;
//! counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
//! assert_eq!(counts[0], ("be".to_string(), 2));
//! # Ok(()) }
//! ```
//!
//! # Time
//!
//! Fixed and sliding windows run on event time: [`Window::event_time`] reads each event's
//! timestamp. Every input of a partition has a watermark — the latest time it delivered, less
//! the [out-of-orderness](Window::out_of_orderness) allowed — and the partition's watermark
//! is the minimum over its inputs (an input silent for [`Window::idle_timeout`] stops holding
//! it back). A window closes (fires [`Fired::Closed`]) when the watermark passes its end; it
//! takes events for the [allowed lateness](Window::allowed_lateness) after that, firing
//! [`Fired::Late`]; a later event is late: counted in `ferroway_flow_late_events_total` and
//! dropped, or handed to [`Window::on_late`]. With each input's order fixed, results and late
//! counts are the same in every run (idleness, a processing-time rule, aside).
//!
//! Session windows close per key once the key was silent for a gap (event time). Count
//! windows close every N events of a partition; periodic windows every period of
//! processing time; the global window when the input ends. [`Trigger`]s emit more often:
//! every N events, periodically, or after a punctuation event.
//!
//! # What a reduction emits
//!
//! `on_trigger` decides, each time a window fires: the state ([`Flow::reduce`] emits the
//! accumulator, kept), the events gathered in it (`reduce(..)` then `flat_map(|acc| acc)`, or
//! return them from `on_trigger`), or nothing (return an empty `Vec`: the reduction acts by
//! side effect). [`Accumulator::Reset`] after emitting gives Flow's `emit_and_reduce` pattern —
//! emit what a window gathered so far, then start it again; [`Accumulator::Keep`] emits running
//! totals.
//!
//! # Connector sources
//!
//! [`Flow::from_source`] reads any connector source (Kafka, Redis, files, ...) and
//! acknowledges each message once every window it went into was emitted and written, so a
//! crash replays and recomputes what was not finished: results are at least once, exact with
//! a sink keyed by window and key. [`Flow::stop_when`] stops one gracefully: what is on its way
//! is written and acknowledged, open windows are left for the next run, which emits them whole
//! — with event-time windows, no lateness and resetting triggers, every window is written
//! exactly once across the stop.
//!
//! # Memory
//!
//! Stages exchange batches of at most [`Flow::max_demand`] events with demand-driven
//! back-pressure, so a flow holds about `max_demand` events per stage and input, plus the
//! accumulators of the open windows — however large the input.

mod acks;
mod builder;
mod checkpoint;
mod error;
mod group;
mod join;
mod lane;
mod output;
mod panes;
mod partition;
mod reduce;
mod session;
mod sink;
mod source;
mod trigger;
mod window;

pub use builder::Flow;
pub use error::FlowError;
pub use join::{Join, Side};
pub use partition::Partition;
pub use trigger::{Accumulator, Fired, Trigger, TriggerInfo};
pub use window::{Bounds, Window};
