//! Metric names, emitted through the [`metrics`](https://docs.rs/metrics) facade (free unless
//! a recorder is installed).
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `ferroway_nats_received_total` | counter | `source` | messages received (`stream/consumer`, or the subjects) |
//! | `ferroway_nats_acks_total` | counter | `source`, `kind` | JetStream acknowledgements sent: `ack`, `nak`, `term`, `progress` |
//! | `ferroway_nats_dropped_total` | counter | | core messages dropped because a subscription's buffer was full |
//! | `ferroway_nats_published_total` | counter | `subject` | messages published (and, with JetStream, stored) |

/// Messages received (counter; label `source`).
pub const RECEIVED: &str = "ferroway_nats_received_total";
/// JetStream acknowledgements sent (counter; labels `source`, `kind`).
pub const ACKS: &str = "ferroway_nats_acks_total";
/// Core messages dropped by a full subscription buffer (counter).
pub const DROPPED: &str = "ferroway_nats_dropped_total";
/// Messages published (counter; label `subject`).
pub const PUBLISHED: &str = "ferroway_nats_published_total";
