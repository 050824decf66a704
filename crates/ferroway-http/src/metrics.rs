//! Metric names, emitted through the [`metrics`](https://docs.rs/metrics) facade (free unless
//! a recorder is installed).
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `ferroway_http_stream_items_total` | counter | `url`, `kind` | events (`sse`), lines (`ndjson`) or polled records (`poll`) handed to the pipeline |
//! | `ferroway_http_stream_reconnects_total` | counter | `url`, `kind` | streams lost and made again |
//! | `ferroway_http_ingest_records_total` | counter | `path` | records the ingest server queued for the pipeline |
//! | `ferroway_http_ingest_requests_total` | counter | `status` | ingest requests answered, by status code |
//! | `ferroway_http_sink_records_total` | counter | `url` | records the sink's server accepted |

/// Stream items handed to the pipeline (counter; labels `url`, without password, and `kind`).
pub const RECEIVED: &str = "ferroway_http_stream_items_total";
/// Streams lost (counter; labels `url`, `kind`).
pub const RECONNECTS: &str = "ferroway_http_stream_reconnects_total";
/// Records the ingest server queued (counter; label `path`).
pub const INGESTED: &str = "ferroway_http_ingest_records_total";
/// Ingest requests answered (counter; label `status`).
pub const INGEST_REQUESTS: &str = "ferroway_http_ingest_requests_total";
/// Records the sink's server accepted (counter; label `url`, without password).
pub const SENT: &str = "ferroway_http_sink_records_total";
