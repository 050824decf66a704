//! A token bucket shared by all producers of a pipeline.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct RateLimiter {
    allowed: usize,
    interval: Duration,
    // (tokens left in this interval, when the next interval starts)
    state: Mutex<(usize, Instant)>,
}

impl RateLimiter {
    pub(crate) fn new(allowed: usize, interval: Duration) -> Self {
        RateLimiter {
            allowed,
            interval,
            state: Mutex::new((allowed, Instant::now() + interval)),
        }
    }

    /// Takes up to `want` tokens, waiting for the next interval when none are left.
    pub(crate) async fn acquire(&self, want: usize) -> usize {
        loop {
            let wait_until = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                if now >= st.1 {
                    // A new interval: consecutive ones stay on the grid, after a pause it restarts.
                    st.1 = if now - st.1 < self.interval {
                        st.1 + self.interval
                    } else {
                        now + self.interval
                    };
                    st.0 = self.allowed;
                }
                if st.0 > 0 {
                    let n = want.min(st.0);
                    st.0 -= n;
                    return n;
                }
                st.1
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// Gives back permits taken but not used (a poll that found less than it asked for).
    pub(crate) fn release(&self, unused: usize) {
        if unused > 0 {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.0 = (st.0 + unused).min(self.allowed);
        }
    }
}
