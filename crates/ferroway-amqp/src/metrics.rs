//! Metric names, emitted through the [`metrics`](https://docs.rs/metrics) facade (free unless
//! a recorder is installed).
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `ferroway_amqp_received_total` | counter | `queue` | deliveries received |
//! | `ferroway_amqp_ack_frames_total` | counter | `queue` | `basic.ack` frames sent (one `multiple` ack settles many) |
//! | `ferroway_amqp_rejected_total` | counter | `queue`, `requeue` | failed messages rejected (`requeue` = `true` / `false`) |
//! | `ferroway_amqp_stale_outcomes_total` | counter | `queue` | outcomes of a lost channel, dropped: the broker redelivers those messages |
//! | `ferroway_amqp_reconnects_total` | counter | `queue` | consuming connections lost and reopened |
//! | `ferroway_amqp_published_total` | counter | `exchange` | messages the broker confirmed |
//! | `ferroway_amqp_publish_failed_total` | counter | `exchange` | messages refused: returned unroutable (mandatory) or nacked |

/// Deliveries received (counter; label `queue`).
pub const RECEIVED: &str = "ferroway_amqp_received_total";
/// `basic.ack` frames sent (counter; label `queue`).
pub const ACK_FRAMES: &str = "ferroway_amqp_ack_frames_total";
/// Failed messages rejected (counter; labels `queue`, `requeue`).
pub const REJECTED: &str = "ferroway_amqp_rejected_total";
/// Outcomes of a lost channel, dropped (counter; label `queue`).
pub const STALE: &str = "ferroway_amqp_stale_outcomes_total";
/// Consuming connections lost and reopened (counter; label `queue`).
pub const RECONNECTS: &str = "ferroway_amqp_reconnects_total";
/// Messages the broker confirmed (counter; label `exchange`).
pub const PUBLISHED: &str = "ferroway_amqp_published_total";
/// Messages refused by the broker (counter; label `exchange`).
pub const PUBLISH_FAILED: &str = "ferroway_amqp_publish_failed_total";
