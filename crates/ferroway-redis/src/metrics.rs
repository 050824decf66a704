//! Metric names of the Redis connector (recorded through the `metrics` facade).
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `ferroway_redis_read_total` | counter | `stream` | entries read (new, own pending, claimed) |
//! | `ferroway_redis_acked_total` | counter | `stream` | entries `XACK`ed |
//! | `ferroway_redis_left_pending_total` | counter | — | failed entries left pending |
//! | `ferroway_redis_claimed_total` | counter | `stream` | entries claimed from idle consumers |
//! | `ferroway_redis_written_total` | counter | `stream` | entries added by the sink |

/// Entries read (counter; label `stream`).
pub const READ: &str = "ferroway_redis_read_total";
/// Entries acknowledged (counter; label `stream`).
pub const ACKED: &str = "ferroway_redis_acked_total";
/// Failed entries left pending (counter).
pub const LEFT_PENDING: &str = "ferroway_redis_left_pending_total";
/// Entries claimed from idle consumers (counter; label `stream`).
pub const CLAIMED: &str = "ferroway_redis_claimed_total";
/// Entries added by a sink (counter; label `stream`).
pub const WRITTEN: &str = "ferroway_redis_written_total";
