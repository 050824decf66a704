//! Metric names, emitted through the [`metrics`](https://docs.rs/metrics) facade (free unless
//! a recorder is installed).
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `ferroway_pubsub_received_total` | counter | `subscription` | messages received |
//! | `ferroway_pubsub_copies_total` | counter | `subscription` | copies delivered of a message still in the pipeline or just acknowledged (not handled again) |
//! | `ferroway_pubsub_acks_total` | counter | `subscription`, `kind` | `ack`, `retry` (deadline set for a failure; a nack at zero), `extend` (lease extended), `leave` (a failure left for its deadline to run out) |
//! | `ferroway_pubsub_ack_failures_total` | counter | `subscription`, `kind` | acknowledgements or deadline changes Pub/Sub refused or that failed past their attempts (the message comes back: at-least-once) |
//! | `ferroway_pubsub_published_total` | counter | `topic` | messages published by the sink |

/// Messages received (counter; label `subscription`).
pub const RECEIVED: &str = "ferroway_pubsub_received_total";
/// Copies delivered of messages in the pipeline or just acknowledged (counter; label `subscription`).
pub const COPIES: &str = "ferroway_pubsub_copies_total";
/// Acknowledgements made (counter; labels `subscription`, `kind`).
pub const ACKS: &str = "ferroway_pubsub_acks_total";
/// Acknowledgements that did not reach Pub/Sub (counter; labels `subscription`, `kind`).
pub const ACK_FAILURES: &str = "ferroway_pubsub_ack_failures_total";
/// Messages published (counter; label `topic`).
pub const PUBLISHED: &str = "ferroway_pubsub_published_total";
