//! Test stages shared by the stage tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::stage::{Consumer, Emit, Producer};

/// Emits `next..end`, then finishes; optionally waits for a gate before its first events.
pub struct Range {
    pub next: u64,
    pub end: u64,
    pub gate: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Range {
    pub fn new(next: u64, end: u64) -> Self {
        Range { next, end, gate: None }
    }

    /// A range that emits nothing until the returned sender fires (so that several consumers
    /// can subscribe before the first events flow).
    pub fn gated(next: u64, end: u64) -> (Self, tokio::sync::oneshot::Sender<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            Range {
                next,
                end,
                gate: Some(rx),
            },
            tx,
        )
    }
}

impl Producer for Range {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<u64>, BoxError> {
        if let Some(gate) = self.gate.take() {
            let _ = gate.await;
        }
        let stop = (self.next + demand as u64).min(self.end);
        let events: Vec<u64> = (self.next..stop).collect();
        self.next = stop;
        Ok(if stop == self.end {
            Emit::Done(events)
        } else {
            Emit::Events(events)
        })
    }
}

/// Emits forever (never finishes).
pub struct Endless(pub u64);

impl Producer for Endless {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<u64>, BoxError> {
        let events: Vec<u64> = (self.0..self.0 + demand as u64).collect();
        self.0 += demand as u64;
        Ok(Emit::Events(events))
    }
}

/// Emits only through its emitter.
pub struct Silent;

impl Producer for Silent {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> Result<Emit<u64>, BoxError> {
        Ok(Emit::Events(Vec::new()))
    }
}

/// Collects every event it receives, optionally sleeping per batch.
#[derive(Clone, Default)]
pub struct Collect {
    pub seen: Arc<Mutex<Vec<u64>>>,
    pub batches: Arc<Mutex<Vec<usize>>>,
    pub delay: Duration,
}

impl Collect {
    pub fn seen(&self) -> Vec<u64> {
        self.seen.lock().unwrap().clone()
    }
}

impl Consumer for Collect {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> Result<(), BoxError> {
        self.batches.lock().unwrap().push(events.len());
        self.seen.lock().unwrap().extend(events);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        Ok(())
    }
}

/// Lets queued messages between stages be processed (on a current-thread runtime).
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}
