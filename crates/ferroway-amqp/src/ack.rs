//! Acknowledgement: the pipeline's outcomes turned into `basic.ack` / `basic.nack` /
//! `basic.reject` commands for the session that owns the channel (delivery tags belong to
//! one channel, so only its owner may settle them).

use ferroway::pipeline::{AckToken, Acknowledger, Acks, BoxFuture, OnFailure};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::options::OnFailed;

pub(crate) enum Cmd {
    /// Settle deliveries of channel `generation` (a channel opened since no longer has them:
    /// the broker requeued them when the old one closed).
    Settle {
        generation: u64,
        acks: Vec<u64>,
        /// `(delivery tag, requeue)`.
        rejects: Vec<(u64, bool)>,
    },
    /// Answered once every earlier command is sent.
    Flush(oneshot::Sender<()>),
    /// Stop consuming (`basic.cancel`); the deliveries already received are handed over
    /// before the answer.
    Cancel(oneshot::Sender<()>),
    /// The pipeline has stopped: settle what came before, close channel and connection.
    Close(oneshot::Sender<()>),
}

/// A message's token: `((generation << 1) | redelivered, delivery tag)`.
pub(crate) fn token(generation: u64, redelivered: bool, tag: u64) -> AckToken {
    AckToken((generation << 1) | u64::from(redelivered), tag)
}

pub(crate) struct SessionAcker {
    pub(crate) tx: mpsc::UnboundedSender<Cmd>,
    pub(crate) on_failed: OnFailed,
}

impl SessionAcker {
    fn requeue(&self, on_failure: OnFailure, redelivered: bool) -> Option<bool> {
        match on_failure {
            OnFailure::Ack => None,
            OnFailure::Requeue => Some(true),
            OnFailure::Reject => Some(false),
            _ => Some(match self.on_failed {
                OnFailed::Reject => false,
                OnFailed::Requeue => true,
                OnFailed::RequeueOnce => !redelivered,
            }),
        }
    }
}

impl Acknowledger for SessionAcker {
    fn ack(&self, acks: Acks) {
        // Usually one generation; a reconnection in between makes two.
        /// `(generation, acks, rejects)`.
        type Group = (u64, Vec<u64>, Vec<(u64, bool)>);
        let mut by_generation: Vec<Group> = Vec::with_capacity(1);
        fn slot(by_generation: &mut Vec<Group>, generation: u64) -> usize {
            match by_generation.iter().position(|g| g.0 == generation) {
                Some(i) => i,
                None => {
                    by_generation.push((generation, Vec::new(), Vec::new()));
                    by_generation.len() - 1
                }
            }
        }
        for t in &acks.successful {
            let i = slot(&mut by_generation, t.0 >> 1);
            by_generation[i].1.push(t.1);
        }
        for f in &acks.failed {
            let i = slot(&mut by_generation, f.token.0 >> 1);
            match self.requeue(f.on_failure, f.token.0 & 1 == 1) {
                None => by_generation[i].1.push(f.token.1),
                Some(requeue) => by_generation[i].2.push((f.token.1, requeue)),
            }
        }
        for (generation, acks, rejects) in by_generation {
            if self
                .tx
                .send(Cmd::Settle {
                    generation,
                    acks,
                    rejects,
                })
                .is_err()
            {
                warn!("RabbitMQ session closed before these acknowledgements: the broker redelivers the messages");
                return;
            }
        }
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.send(Cmd::Flush(tx)).is_ok();
        Box::pin(async move {
            if sent {
                let _ = rx.await;
            }
        })
    }
}

/// The frames that settle `acks` and `rejects` given the deliveries still unsettled
/// (`outstanding`, updated): rejects one by one, then acks — one `multiple` ack for every
/// acked tag below the lowest tag still unsettled, single acks above it.
pub(crate) fn frames(
    outstanding: &mut std::collections::BTreeSet<u64>,
    mut acks: Vec<u64>,
    rejects: Vec<(u64, bool)>,
) -> (Vec<(u64, bool)>, Option<u64>, Vec<u64>) {
    let rejects: Vec<(u64, bool)> = rejects.into_iter().filter(|(t, _)| outstanding.remove(t)).collect();
    acks.retain(|t| outstanding.remove(t));
    acks.sort_unstable();
    let low = outstanding.first().copied().unwrap_or(u64::MAX);
    let split = acks.partition_point(|&t| t < low);
    let multiple = split.checked_sub(1).map(|i| acks[i]);
    (rejects, multiple, acks.split_off(split))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn in_order_acks_become_one_multiple_ack() {
        let mut out: BTreeSet<u64> = (1..=10).collect();
        let (rejects, multiple, singles) = frames(&mut out, vec![3, 1, 2, 5], vec![(4, false)]);
        assert_eq!(rejects, vec![(4, false)]);
        // 1..=5 are settled (4 rejected first), 6 is the lowest left.
        assert_eq!(multiple, Some(5));
        assert!(singles.is_empty());
        assert_eq!(out, (6..=10).collect());
    }

    #[test]
    fn acks_above_a_gap_go_one_by_one() {
        let mut out: BTreeSet<u64> = (1..=5).collect();
        let (_, multiple, singles) = frames(&mut out, vec![1, 3, 5], vec![]);
        assert_eq!(multiple, Some(1));
        assert_eq!(singles, vec![3, 5]);
        assert_eq!(out, [2, 4].into());
    }

    #[test]
    fn unknown_tags_are_ignored() {
        let mut out: BTreeSet<u64> = [7].into();
        let (rejects, multiple, singles) = frames(&mut out, vec![1], vec![(2, true)]);
        assert!(rejects.is_empty() && multiple.is_none() && singles.is_empty());
    }

    #[test]
    fn tokens_keep_generation_and_redelivery() {
        let t = token(5, true, 42);
        assert_eq!((t.0 >> 1, t.0 & 1, t.1), (5, 1, 42));
    }
}
