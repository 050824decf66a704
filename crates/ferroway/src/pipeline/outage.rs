//! Waiting out an outage: a destination that is down is not a bad message.
//!
//! When a handler or the dead-letter sink fails with an error for which
//! [`is_unavailable`](crate::error::is_unavailable) holds, the stage keeps the messages and
//! tries again after a backoff. The stage stops taking input meanwhile, so back-pressure
//! reaches the producers and the source pauses; nothing is failed, dead-lettered or
//! acknowledged because of the outage. A drain still ends within the shutdown timeout, and
//! what is left unacknowledged then is delivered again by the source.

use std::time::Duration;

use tracing::{info, warn};

use super::handler::Handler;
use super::shared::Shared;
use crate::resilience::backoff::Delays;

/// One stage's wait through one outage.
pub(crate) struct Outage<'a, H: Handler> {
    shared: &'a Shared<H>,
    stage: &'static str,
    /// Made on the first failed attempt: most calls never need it.
    delays: Option<Delays>,
    last: Duration,
    attempts: u32,
}

impl<'a, H: Handler> Outage<'a, H> {
    pub(crate) fn new(shared: &'a Shared<H>, stage: &'static str) -> Self {
        Outage {
            delays: None,
            last: Duration::ZERO,
            shared,
            stage,
            attempts: 0,
        }
    }

    /// Logs (rate-limited) and counts the failed attempt; the sleep to await before the next.
    pub(crate) fn wait(&mut self, error: &(dyn std::error::Error + 'static), messages: usize) -> tokio::time::Sleep {
        self.attempts += 1;
        // A policy that runs out keeps its last delay: an outage is waited out, however long.
        let delays = self.delays.get_or_insert_with(|| self.shared.outage_backoff.delays());
        self.last = delays.next().unwrap_or(self.last).max(Duration::from_millis(1));
        self.shared.unavailable.increment(1);
        if let Some(suppressed) = self.shared.outage_log.allow() {
            warn!(
                pipeline = %self.shared.name,
                stage = self.stage,
                error = %crate::error::Chain(error),
                messages,
                attempt = self.attempts,
                retry_in = ?self.last,
                suppressed,
                "destination unavailable; keeping the messages and retrying"
            );
        }
        tokio::time::sleep(self.last)
    }

    /// The attempt after an outage went through.
    pub(crate) fn recovered(self) {
        if self.attempts > 0 {
            info!(pipeline = %self.shared.name, stage = self.stage, attempts = self.attempts, "destination available again");
            self.shared.outage_log.reset();
        }
    }
}
