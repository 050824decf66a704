//! Names of every metric Ferroway records, in one place.
//!
//! Ferroway records through the [`metrics`] facade and ships no exporter: install the
//! recorder of your choice (Prometheus, StatsD, …) and these appear. Spans and events go
//! through [`tracing`].
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `ferroway_stage_buffer_dropped_total` | counter | `stage` | events dropped by a full producer buffer |
//! | `ferroway_stage_discarded_total` | counter | `stage` | events a partition function sent nowhere |
//! | `ferroway_stage_task_failures_total` | counter | `stage` | consumer-supervisor tasks that failed or panicked |

/// Events dropped by a full producer buffer (counter; label `stage`).
pub const STAGE_BUFFER_DROPPED: &str = "ferroway_stage_buffer_dropped_total";
/// Events a partition function sent nowhere (counter; label `stage`).
pub const STAGE_DISCARDED: &str = "ferroway_stage_discarded_total";
/// Consumer-supervisor tasks that failed or panicked (counter; label `stage`).
pub const STAGE_TASK_FAILURES: &str = "ferroway_stage_task_failures_total";
