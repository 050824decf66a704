//! A flow's results into any connector [`Sink`]: batches as demand allows, an outage waited
//! out, a refused result an error.

use std::time::Duration;

use futures_util::StreamExt;

use super::acks::Acked;
use super::{Flow, FlowError};
use crate::connector::Sink;
use crate::pipeline::Message;
use crate::resilience::Backoff;

impl<T: Send + 'static> Flow<T> {
    /// Runs the flow and writes its results to `sink`, in batches of up to `batch_size`
    /// (whatever is ready, without waiting to fill one). While the sink reports its
    /// destination unavailable ([`is_unavailable`](crate::is_unavailable)) the batch is
    /// written again after a backoff (up to 5 s), and the flow waits — back-pressure, not
    /// loss. A result the sink refuses ([`Message::fail`]) or any other error stops the flow
    /// with [`FlowError::Sink`]. Returns how many results were written.
    ///
    /// ```
    /// use ferroway::connector::file::{FileSink, FileSinkOptions};
    /// use ferroway::flow::Flow;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let path = std::env::temp_dir().join(format!("ferroway-flow-sink-{}.txt", std::process::id()));
    /// let sink = FileSink::open(&path, FileSinkOptions::new()).await?;
    /// let n = Flow::from_iterable(1..=3).map(|x: u32| (x * x).to_string()).into_sink(sink, 100).await?;
    /// assert_eq!(n, 3);
    /// assert_eq!(std::fs::read_to_string(&path)?, "1\n4\n9\n");
    /// # std::fs::remove_file(&path)?;
    /// # Ok(()) }
    /// ```
    pub async fn into_sink<S: Sink<T>>(self, sink: S, batch_size: usize) -> Result<u64, FlowError> {
        let batch_size = batch_size.max(1);
        if let Some(Acked::Reduced(plan)) = &self.acked {
            // Over a connector source the last stage writes, so that it knows which
            // partition's results are written and the acknowledgements can follow.
            let plan = plan.clone();
            let sink = std::sync::Arc::new(sink);
            let mut outcome = std::pin::pin!(super::output::stream(self, Some((sink.clone(), batch_size))));
            let mut failed = None;
            while let Some(r) = outcome.next().await {
                failed = failed.or(r.err());
            }
            let closed = sink.close().await;
            if let Some(e) = failed {
                return Err(e);
            }
            closed.map_err(FlowError::Sink)?;
            return Ok(plan.started().map_or(0, |t| t.total_written()));
        }
        let results = self.into_stream().ready_chunks(batch_size);
        let mut results = std::pin::pin!(results);
        let mut written = 0u64;
        while let Some(chunk) = results.next().await {
            let mut batch = Vec::with_capacity(chunk.len());
            for r in chunk {
                batch.push(Message::new(r?));
            }
            if let Err(e) = write_batch(&sink, &mut batch).await {
                let _ = sink.close().await;
                return Err(e);
            }
            written += batch.len() as u64;
        }
        sink.close().await.map_err(FlowError::Sink)?;
        Ok(written)
    }
}

/// Writes `batch`, waiting out outages; a result the sink refuses is an error.
pub(crate) async fn write_batch<T, S: Sink<T> + ?Sized>(sink: &S, batch: &mut [Message<T>]) -> Result<(), FlowError> {
    write(sink, batch).await?;
    if let Some(refused) = batch.iter().find_map(|m| m.failure()) {
        let failed = batch.iter().filter(|m| m.is_failed()).count();
        return Err(FlowError::Sink(
            format!("the sink refused {failed} result(s), e.g.: {refused}").into(),
        ));
    }
    Ok(())
}

async fn write<T, S: Sink<T> + ?Sized>(sink: &S, batch: &mut [Message<T>]) -> Result<(), FlowError> {
    // Never gives up: an outage is waited out, however long.
    let mut delays = Backoff::exponential(Duration::from_millis(100))
        .cap(Duration::from_secs(5))
        .delays();
    loop {
        match sink.write(batch).await {
            Ok(()) => return Ok(()),
            Err(e) if crate::is_unavailable(&*e) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(error = %e, retry_in = ?delay, "flow sink unavailable; the flow waits");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(FlowError::Sink(e)),
        }
    }
}
