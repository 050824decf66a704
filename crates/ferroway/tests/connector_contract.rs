//! The connector contract: a source and sinks wired with no hand-written handler, sinks that
//! refuse single messages, a dead-letter sink that refuses one, a source that cannot start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::file::{FileSink, FileSinkOptions, FileSource};
use ferroway::connector::generator::Generator;
use ferroway::connector::{AsRecord, Record, Sink, Source};
use ferroway::error::Unavailable;
use ferroway::pipeline::{Batcher, BoxFuture, DeadLetterInfo, Forward, Message, Pipeline};
use tokio::sync::mpsc;
use tokio::time::Instant;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ferroway-contract-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn a_file_source_to_a_file_sink_in_five_lines_commits_its_checkpoint_at_stop() {
    let dir = temp_dir("copy");
    let lines: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.join("in.txt"), &lines).unwrap();
    let source = FileSource::builder(dir.join("in.txt"))
        .checkpoint_dir(dir.join("state"))
        .open()
        .unwrap();
    let positions = source.clone();

    let pipeline = Pipeline::builder("copy", Forward::new())
        .source(source)
        .sink(
            FileSink::open(dir.join("out.txt"), FileSinkOptions::new())
                .await
                .unwrap(),
            Batcher::new("out"),
        )
        .start()
        .await
        .unwrap();
    pipeline.join().await.unwrap();

    assert_eq!(std::fs::read_to_string(dir.join("out.txt")).unwrap(), lines);
    assert_eq!(
        positions.positions()[0].durable_line,
        1000,
        "the source's close wrote the checkpoint"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Keeps payloads; refuses those that start with `bad`; unavailable until `up_at`.
struct Picky {
    up_at: Instant,
    kept: Mutex<Vec<String>>,
    closed: Mutex<bool>,
}

impl<T: AsRecord + Send + Sync + 'static> Sink<T> for Picky {
    fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            if Instant::now() < self.up_at {
                return Err(Unavailable::new("picky", "connection refused").into());
            }
            let mut kept = self.kept.lock().unwrap();
            for m in batch.iter_mut() {
                let text = String::from_utf8_lossy(m.data().payload()).into_owned();
                if text.starts_with("bad") {
                    m.fail(format_args!("`{text}` refused"));
                } else {
                    kept.push(text);
                }
            }
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        *self.closed.lock().unwrap() = true;
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test(start_paused = true)]
async fn a_sink_that_refuses_single_messages_sends_only_those_to_the_dead_letters_and_waits_out_an_outage() {
    let picky = Arc::new(Picky {
        up_at: Instant::now() + Duration::from_secs(5),
        kept: Mutex::default(),
        closed: Mutex::default(),
    });
    let (dlq, mut dead) = mpsc::channel::<Message<String>>(100);
    // "bad" payloads: every tenth message.
    let source = Generator::new(100).payload(|i| {
        if i % 10 == 0 {
            format!("bad-{i}")
        } else {
            format!("ok-{i}")
        }
    });
    let stats = source.clone();
    let pipeline = Pipeline::builder("picky", Forward::new())
        .source(source)
        .sink(
            picky.clone(),
            Batcher::new("out")
                .batch_size(7)
                .batch_timeout(Duration::from_millis(5)),
        )
        .dead_letter(dlq)
        .start()
        .await
        .unwrap();
    pipeline.join().await.unwrap();

    assert_eq!(
        picky.kept.lock().unwrap().len(),
        90,
        "every good message written once, after the outage"
    );
    let mut letters = Vec::new();
    while let Ok(m) = dead.try_recv() {
        let info = m.metadata::<DeadLetterInfo>().cloned().unwrap();
        assert_eq!(info.stage, "batch_processor");
        assert_eq!(&*info.reason, format!("`{}` refused", m.data()));
        letters.push(m.into_data());
    }
    letters.sort();
    assert_eq!(letters.len(), 10, "{letters:?}");
    assert!(letters.iter().all(|l| l.starts_with("bad")));
    let s = stats.stats();
    assert_eq!((s.acked, s.failed), (100, 0), "dead letters count as done");
    assert!(*picky.closed.lock().unwrap(), "the sink was closed at the stop");
}

/// A dead-letter store that refuses letters about one message.
struct RefusingStore(Mutex<Vec<u64>>);

impl Sink<u64> for RefusingStore {
    fn write<'a>(&'a self, batch: &'a mut [Message<u64>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            for m in batch.iter_mut() {
                if *m.data() == 13 {
                    m.fail("too unlucky to store");
                } else {
                    self.0.lock().unwrap().push(*m.data());
                }
            }
            Ok(())
        })
    }
}

struct FailOdd;

impl ferroway::pipeline::Handler for FailOdd {
    type Data = u64;
    async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
        if m.data() % 2 == 1 {
            return Err(format!("{} is odd", m.data()).into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_dead_letter_the_store_refuses_is_acknowledged_as_failed_with_both_reasons() {
    use ferroway::pipeline::testing::{Outcome, TestProducer};
    let store = Arc::new(RefusingStore(Mutex::default()));
    let p = Pipeline::builder("refusing-dlq", FailOdd)
        .producer(TestProducer::new)
        .dead_letter(store.clone())
        .start()
        .await
        .unwrap();
    let outcomes = p.push_messages([11, 12, 13]).outcomes().await;
    p.stop().await.unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::Successful,
            Outcome::Successful,
            Outcome::Failed("13 is odd (and the dead-letter sink refused it: too unlucky to store)".into())
        ]
    );
    assert_eq!(*store.0.lock().unwrap(), [11]);
}

/// A source whose producers cannot be made.
struct Unstartable;

impl Source for Unstartable {
    type Data = Record;
    type Producer = ferroway::pipeline::testing::TestProducer<Record>;
    fn producer(&self, _: usize) -> Result<Self::Producer, BoxError> {
        Err("bootstrap.servers: no such host `kafak`".into())
    }
}

#[tokio::test(start_paused = true)]
async fn a_source_that_cannot_make_a_producer_fails_the_pipeline_with_its_error() {
    let err = Pipeline::builder("unstartable", Forward::<Record>::new())
        .source(Unstartable)
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no such host `kafak`"), "{err}");
}

#[tokio::test]
async fn a_mapped_source_keeps_acknowledgements() {
    let dir = temp_dir("map");
    std::fs::write(dir.join("in.txt"), "a\nbb\nccc\n").unwrap();
    let source = FileSource::builder(dir.join("in.txt"))
        .checkpoint_dir(dir.join("state"))
        .open()
        .unwrap();
    let positions = source.clone();
    let (out, mut rx) = mpsc::channel::<Message<Record>>(10);
    let pipeline = Pipeline::builder("map", Forward::new())
        .source(source.map(|line: String| Record::new(line.len().to_string()).key(line)))
        .sink(out, Batcher::new("out"))
        .start()
        .await
        .unwrap();
    pipeline.join().await.unwrap();
    let mut got = Vec::new();
    while let Ok(m) = rx.try_recv() {
        got.push((m.data().key.clone().unwrap(), m.data().payload.clone()));
    }
    assert_eq!(got.len(), 3);
    assert_eq!(positions.positions()[0].durable_line, 3, "acknowledged through the map");
    std::fs::remove_dir_all(&dir).unwrap();
}
