//! Metric names, emitted through the [`metrics`](https://docs.rs/metrics) facade (free unless
//! a recorder is installed).
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `ferroway_sqs_received_total` | counter | `queue` | messages received |
//! | `ferroway_sqs_copies_total` | counter | `queue` | copies received of a message still in the pipeline or just handled (not handled again) |
//! | `ferroway_sqs_acks_total` | counter | `queue`, `kind` | `delete`, `retry` (visibility changed for a failure), `extend` (visibility extended), `leave` (a failure left to reappear after its visibility timeout) |
//! | `ferroway_sqs_ack_failures_total` | counter | `queue`, `kind` | deletes or visibility changes SQS refused or that failed past their attempts (the message comes back: at-least-once) |
//! | `ferroway_sqs_sent_total` | counter | `queue` | messages sent by the sink |

/// Messages received (counter; label `queue`).
pub const RECEIVED: &str = "ferroway_sqs_received_total";
/// Copies received of messages in the pipeline or just handled (counter; label `queue`).
pub const COPIES: &str = "ferroway_sqs_copies_total";
/// Acknowledgements made (counter; labels `queue`, `kind`).
pub const ACKS: &str = "ferroway_sqs_acks_total";
/// Acknowledgements that did not reach SQS (counter; labels `queue`, `kind`).
pub const ACK_FAILURES: &str = "ferroway_sqs_ack_failures_total";
/// Messages sent (counter; label `queue`).
pub const SENT: &str = "ferroway_sqs_sent_total";
