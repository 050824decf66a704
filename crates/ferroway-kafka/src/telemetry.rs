//! Names of the metrics the connector records (through the `metrics` facade).
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `ferroway_kafka_source_received_total` | counter | `group` | messages fetched from librdkafka |
//! | `ferroway_kafka_source_emitted_total` | counter | `group` | messages handed to the pipeline |
//! | `ferroway_kafka_source_commits_total` | counter | `group`, `outcome` (`ok`/`error`) | offset commits |
//! | `ferroway_kafka_source_failed_total` | counter | `group`, `action` (`committed`/`held`) | failed acknowledgements |
//! | `ferroway_kafka_source_acks_dropped_total` | counter | `group` | acknowledgements for partitions no longer owned |
//! | `ferroway_kafka_source_abandoned_total` | counter | `group` | in-flight messages of revoked partitions (redelivered elsewhere) |
//! | `ferroway_kafka_source_rebalances_total` | counter | `group`, `kind` (`assign`/`revoke`) | rebalance callbacks |
//! | `ferroway_kafka_source_errors_total` | counter | `group` | consumer errors librdkafka recovers from |
//! | `ferroway_kafka_source_pauses_total` | counter | `group` | times the partitions were paused for lack of demand |
//! | `ferroway_kafka_sink_sent_total` | counter | `topic` | records the broker acknowledged |
//! | `ferroway_kafka_sink_failed_total` | counter | `topic` | records Kafka refused (marked failed) |
//! | `ferroway_kafka_sink_unavailable_total` | counter | `topic` | records not delivered because Kafka could not take them (kept: the pipeline sends them again) |

/// Messages fetched from librdkafka.
pub const SOURCE_RECEIVED: &str = "ferroway_kafka_source_received_total";
/// Messages handed to the pipeline.
pub const SOURCE_EMITTED: &str = "ferroway_kafka_source_emitted_total";
/// Offset commits, by outcome.
pub const SOURCE_COMMITS: &str = "ferroway_kafka_source_commits_total";
/// Failed acknowledgements, by action taken.
pub const SOURCE_FAILED: &str = "ferroway_kafka_source_failed_total";
/// Acknowledgements dropped because their partition was revoked.
pub const SOURCE_ACKS_DROPPED: &str = "ferroway_kafka_source_acks_dropped_total";
/// In-flight messages abandoned on revoke.
pub const SOURCE_ABANDONED: &str = "ferroway_kafka_source_abandoned_total";
/// Rebalance callbacks, by kind.
pub const SOURCE_REBALANCES: &str = "ferroway_kafka_source_rebalances_total";
/// Recoverable consumer errors.
pub const SOURCE_ERRORS: &str = "ferroway_kafka_source_errors_total";
/// Pauses for lack of demand.
pub const SOURCE_PAUSES: &str = "ferroway_kafka_source_pauses_total";
/// Records delivered.
pub const SINK_SENT: &str = "ferroway_kafka_sink_sent_total";
/// Records Kafka refused.
pub const SINK_FAILED: &str = "ferroway_kafka_sink_failed_total";
/// Records not delivered because Kafka could not take them.
pub const SINK_UNAVAILABLE: &str = "ferroway_kafka_sink_unavailable_total";
