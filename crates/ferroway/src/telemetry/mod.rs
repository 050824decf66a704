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
//! | `ferroway_stage_demand` | gauge | `stage` | demand outstanding towards a processor's batchers |
//! | `ferroway_pipeline_messages_handled_total` | counter | `pipeline`, `stage` | messages through `handle_message` |
//! | `ferroway_pipeline_messages_acked_total` | counter | `pipeline`, `outcome` | acknowledged messages, `successful` or `failed` |
//! | `ferroway_pipeline_dead_lettered_total` | counter | `pipeline` | messages taken by the dead-letter sink |
//! | `ferroway_pipeline_unavailable_total` | counter | `pipeline` | attempts that found a destination unavailable (retried, never failed) |
//! | `ferroway_pipeline_in_flight` | gauge | `pipeline` | emitted, not yet acknowledged |
//! | `ferroway_pipeline_handler_seconds` | histogram | `pipeline`, `stage` | handler time per group (processor) or batch |
//! | `ferroway_pipeline_batch_size` | histogram | `pipeline`, `stage` | messages per batch |
//!
//! | `ferroway_connector_lines_read_total` | counter | `source` | lines read by a file or reader source |
//! | `ferroway_connector_bytes_read_total` | counter | `source` | bytes read by a file or reader source |
//! | `ferroway_connector_decode_failures_total` | counter | `source` | lines delivered as failed: not decodable |
//! | `ferroway_connector_failed_acks_total` | counter | `source`, `action` | failed acks, `skipped` or `held` |
//! | `ferroway_connector_checkpoints_total` | counter | `source` | checkpoint files written |
//! | `ferroway_connector_checkpoint_errors_total` | counter | `source` | checkpoint writes that failed |
//! | `ferroway_connector_file_switches_total` | counter | `source`, `reason` | followed files `rotated` or `truncated` |
//! | `ferroway_connector_bytes_written_total` | counter | `sink` | bytes appended by a file or writer sink |
//! | `ferroway_connector_fsyncs_total` | counter | `sink` | fsyncs of a file sink |
//! | `ferroway_connector_sink_rotations_total` | counter | `sink` | files rotated by a file sink |
//! | `ferroway_connector_generated_total` | counter | `source` | messages emitted by a generator |
//!
//! The resilience module's metrics are listed in [`resilience`](crate::resilience).
//!
//! Spans: `ferroway.processor` and `ferroway.batch_processor` (fields `pipeline`, `stage`)
//! around each group of messages and each batch.

mod redact;
mod throttle;

pub use redact::{redact_url, url_password};
pub use throttle::LogThrottle;

/// Events dropped by a full producer buffer (counter; label `stage`).
pub const STAGE_BUFFER_DROPPED: &str = "ferroway_stage_buffer_dropped_total";
/// Events a partition function sent nowhere (counter; label `stage`).
pub const STAGE_DISCARDED: &str = "ferroway_stage_discarded_total";
/// Consumer-supervisor tasks that failed or panicked (counter; label `stage`).
pub const STAGE_TASK_FAILURES: &str = "ferroway_stage_task_failures_total";
/// Demand outstanding towards a stage's consumers (gauge; label `stage`).
pub const STAGE_DEMAND: &str = "ferroway_stage_demand";
/// Messages handled by a pipeline stage (counter; labels `pipeline`, `stage`).
pub const PIPELINE_HANDLED: &str = "ferroway_pipeline_messages_handled_total";
/// Messages acknowledged (counter; labels `pipeline`, `outcome` = `successful` | `failed`).
pub const PIPELINE_ACKED: &str = "ferroway_pipeline_messages_acked_total";
/// Messages sent to the dead-letter sink (counter; label `pipeline`).
pub const PIPELINE_DEAD_LETTERED: &str = "ferroway_pipeline_dead_lettered_total";
/// Attempts of a handler or the dead-letter sink that found the destination unavailable;
/// each is retried after a backoff, never failed (counter; label `pipeline`).
pub const PIPELINE_UNAVAILABLE: &str = "ferroway_pipeline_unavailable_total";
/// Messages emitted and not yet acknowledged (gauge; label `pipeline`).
pub const PIPELINE_IN_FLIGHT: &str = "ferroway_pipeline_in_flight";
/// Time spent in the handler per group of messages or batch (histogram, seconds; labels
/// `pipeline`, `stage` = `processor` | `batch_processor`).
pub const PIPELINE_HANDLER_SECONDS: &str = "ferroway_pipeline_handler_seconds";
/// Size of each batch handled (histogram; labels `pipeline`, `stage`).
pub const PIPELINE_BATCH_SIZE: &str = "ferroway_pipeline_batch_size";
