//! File source tests, on the real filesystem.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::connector::Bytes;
use crate::error::BoxError;
use crate::pipeline::{Acknowledger, Acks, FailedAck, Handler, Message, OnFailure, Pipeline, Processors};
use crate::stage::{Emit, Producer};

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("ferroway-{tag}-{}-{}", std::process::id(), fastrand::u64(..)));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub(crate) fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Calls `handle_demand` until `n` messages came or the source finished.
async fn pull<P: Producer<Output = Message<T>>, T>(p: &mut P, n: usize) -> (Vec<Message<T>>, bool) {
    let mut got = Vec::new();
    while got.len() < n {
        match p.handle_demand(n - got.len()).await.unwrap() {
            Emit::Events(v) => got.extend(v),
            Emit::Done(v) => {
                got.extend(v);
                return (got, true);
            }
        }
    }
    (got, false)
}

fn ack<F>(source: &FileSource<F>, messages: &[&Message<impl Sized>]) {
    source.checkpoints.ack(Acks {
        successful: messages.iter().map(|m| m.ack_token()).collect(),
        failed: Vec::new(),
    });
}

fn texts(messages: &[Message<String>]) -> Vec<&str> {
    messages.iter().map(|m| m.data().as_str()).collect()
}

#[tokio::test]
async fn resumes_exactly_after_the_last_contiguously_acknowledged_line() {
    let dir = TempDir::new("resume");
    let input = dir.join("in.log");
    fs::write(&input, "l1\nl2\nl3\nl4\nl5\nl6\n").unwrap();
    let open = || {
        FileSource::builder(&input)
            .checkpoint_dir(dir.join("ck"))
            .open()
            .unwrap()
    };

    let source = open();
    let mut p = source.producer();
    let (m, done) = pull(&mut p, 5).await;
    assert!(!done);
    assert_eq!(texts(&m), ["l1", "l2", "l3", "l4", "l5"]);
    let md = m[2].metadata::<FileMetadata>().unwrap();
    assert_eq!((md.line, md.offset, &*md.path), (3, 6, input.as_path()));
    // Out of order, with a gap at l3: the checkpoint may only cover l1..l2.
    ack(&source, &[&m[4], &m[1], &m[0], &m[3]]);
    source.commit().await.unwrap();
    assert_eq!(source.positions()[0].acked_line, 2);
    drop((p, source));

    let source = open();
    let mut p = source.producer();
    let (m, done) = pull(&mut p, 10).await;
    assert!(done);
    assert_eq!(texts(&m), ["l3", "l4", "l5", "l6"], "l3 was never acknowledged");
    ack(&source, &m.iter().collect::<Vec<_>>());
    source.commit().await.unwrap();
    assert_eq!(
        (source.positions()[0].acked_line, source.positions()[0].acked_offset),
        (6, 18)
    );
    drop((p, source));

    append(&input, "l7\nl8");
    let source = open();
    let (m, done) = pull(&mut source.producer(), 10).await;
    assert!(done);
    assert_eq!(
        texts(&m),
        ["l7", "l8"],
        "an unterminated last line is a line at the end"
    );
}

#[tokio::test]
async fn the_final_checkpoint_is_written_when_the_last_handle_goes() {
    let dir = TempDir::new("drop");
    let input = dir.join("in.log");
    fs::write(&input, "a\nb\n").unwrap();
    let open = || {
        FileSource::builder(&input)
            .checkpoint_dir(dir.join("ck"))
            .open()
            .unwrap()
    };
    let source = open();
    let mut p = source.producer();
    let (m, _) = pull(&mut p, 2).await;
    ack(&source, &[&m[0]]);
    drop((p, m, source));
    let (m, _) = pull(&mut open().producer(), 10).await;
    assert_eq!(texts(&m), ["b"]);
}

struct Collect(Arc<Mutex<Vec<String>>>);

impl Handler for Collect {
    type Data = String;
    async fn handle_message(&self, m: &mut Message<String>) -> Result<(), BoxError> {
        let md = m.metadata::<FileMetadata>().ok_or("no metadata")?;
        let name = md.path.file_name().unwrap().to_string_lossy().into_owned();
        self.0.lock().unwrap().push(format!("{name}:{}", m.data()));
        Ok(())
    }
}

#[tokio::test]
async fn a_pipeline_reads_a_pattern_in_path_order_and_a_rerun_reads_only_what_is_new() {
    let dir = TempDir::new("glob");
    fs::create_dir_all(dir.join("in")).unwrap();
    fs::write(dir.join("in/b.log"), "b1\nb2\n").unwrap();
    fs::write(dir.join("in/a.log"), "a1\n").unwrap();
    fs::write(dir.join("in/c.txt"), "ignored\n").unwrap();
    let run = || async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let source = FileSource::builder(dir.join("in/*.log"))
            .checkpoint_dir(dir.join("ck"))
            .open()
            .unwrap();
        let factory = source.clone();
        let pipeline = Pipeline::builder("glob", Collect(seen.clone()))
            .producer(move || factory.producer())
            .processors(Processors::new().concurrency(1))
            .start()
            .await
            .unwrap();
        pipeline.join().await.unwrap();
        source.commit().await.unwrap();
        let mut v = seen.lock().unwrap().clone();
        v.sort();
        v
    };
    assert_eq!(run().await, ["a.log:a1", "b.log:b1", "b.log:b2"]);
    assert!(run().await.is_empty());
    append(&dir.join("in/a.log"), "a2\n");
    fs::write(dir.join("in/d.log"), "d1\n").unwrap();
    assert_eq!(run().await, ["a.log:a2", "d.log:d1"]);
}

#[tokio::test]
async fn a_directory_input_reads_its_regular_non_hidden_files() {
    let dir = TempDir::new("dir");
    fs::create_dir_all(dir.join("in/sub")).unwrap();
    fs::write(dir.join("in/x"), "x\n").unwrap();
    fs::write(dir.join("in/.hidden"), "h\n").unwrap();
    fs::write(dir.join("in/sub/y"), "y\n").unwrap();
    let source = FileSource::builder(dir.join("in")).open().unwrap();
    let (m, done) = pull(&mut source.producer(), 10).await;
    assert!(done);
    assert_eq!(texts(&m), ["x"]);
}

#[cfg(feature = "json")]
#[tokio::test]
async fn malformed_json_lines_are_failed_messages_naming_their_line() {
    let dir = TempDir::new("ndjson");
    let input = dir.join("in.ndjson");
    fs::write(&input, "{\"n\":1}\n\n{\"n\":\n{\"n\":3}\n").unwrap();
    for policy in [OnFailed::Skip, OnFailed::Hold] {
        let source = FileSource::builder(&input).ndjson().on_failed(policy).open().unwrap();
        let (m, done) = pull(&mut source.producer(), 10).await;
        assert!(done);
        assert_eq!(m.len(), 3, "the blank line is skipped");
        assert_eq!(m[0].data()["n"], 1);
        assert!(
            m[1].failure().unwrap().starts_with("line 3: invalid JSON:"),
            "{:?}",
            m[1].failure()
        );
        assert_eq!(m[1].data(), &serde_json::Value::String("{\"n\":".into()));
        assert_eq!(m[2].data()["n"], 3);
        source.checkpoints.ack(Acks {
            successful: vec![m[0].ack_token(), m[2].ack_token()],
            failed: vec![FailedAck {
                token: m[1].ack_token(),
                reason: "line 3: invalid JSON".into(),
                on_failure: OnFailure::Default,
            }],
        });
        let acked = source.positions()[0].acked_line;
        match policy {
            OnFailed::Skip => assert_eq!(acked, 4),
            _ => assert_eq!(acked, 2, "held before the failed line"),
        }
    }
}

#[tokio::test]
async fn a_file_replaced_or_truncated_while_down_is_read_from_its_start() {
    let dir = TempDir::new("replace");
    let input = dir.join("in.log");
    fs::write(&input, "old-1\nold-2\n").unwrap();
    let open = || {
        FileSource::builder(&input)
            .checkpoint_dir(dir.join("ck"))
            .open()
            .unwrap()
    };
    let consume_all = |source: FileSource<Text>| async move {
        let (m, _) = pull(&mut source.producer(), 100).await;
        ack(&source, &m.iter().collect::<Vec<_>>());
        source.commit().await.unwrap();
        m.into_iter().map(Message::into_data).collect::<Vec<_>>()
    };
    assert_eq!(consume_all(open()).await, ["old-1", "old-2"]);
    // A new file at the same name (rotation while down); the old one is kept aside so its
    // inode cannot be reused.
    fs::rename(&input, dir.join("in.log.1")).unwrap();
    fs::write(&input, "new-1\nnew-2\nnew-3\n").unwrap();
    assert_eq!(consume_all(open()).await, ["new-1", "new-2", "new-3"]);
    // Truncated in place and rewritten shorter: same inode, fewer bytes than the checkpoint.
    fs::write(&input, "t\n").unwrap();
    assert_eq!(consume_all(open()).await, ["t"]);
    // Rewritten in place, longer, with other first bytes: the fingerprint tells.
    fs::write(&input, "rewritten-1\nrewritten-2\n").unwrap();
    assert_eq!(consume_all(open()).await, ["rewritten-1", "rewritten-2"]);
}

#[tokio::test]
async fn errors_name_the_path() {
    let dir = TempDir::new("errors");
    let missing = dir.join("missing.log");
    let err = FileSource::builder(&missing).open().unwrap_err().to_string();
    assert!(err.contains("missing.log: open:"), "{err}");
    let err = FileSource::builder(dir.join("*/x.log")).open().unwrap_err().to_string();
    assert!(err.contains("wildcards are allowed in the file name only"), "{err}");
    fs::create_dir_all(dir.join("ck")).unwrap();
    fs::write(dir.join("ck/file.checkpoint"), "something else\n").unwrap();
    fs::write(dir.join("x.log"), "x\n").unwrap();
    let err = FileSource::builder(dir.join("x.log"))
        .checkpoint_dir(dir.join("ck"))
        .open()
        .unwrap_err()
        .to_string();
    assert!(err.contains("file.checkpoint:1: corrupt checkpoint"), "{err}");
    // Following, a missing input is not an error: it may appear.
    assert!(FileSource::builder(&missing).follow(true).open().is_ok());
}

#[tokio::test(start_paused = true)]
async fn max_pending_lines_waits_for_a_durable_checkpoint() {
    let dir = TempDir::new("pending");
    let input = dir.join("in.log");
    fs::write(&input, (1..=10).map(|i| format!("{i}\n")).collect::<String>()).unwrap();
    let source = FileSource::builder(&input)
        .format(Bytes)
        .checkpoint_dir(dir.join("ck"))
        .checkpoint_interval(Duration::from_secs(3600))
        .max_pending_lines(4)
        .open()
        .unwrap();
    let mut p = source.producer();
    let Emit::Events(m) = p.handle_demand(100).await.unwrap() else {
        panic!("more to come")
    };
    assert_eq!(m.len(), 4, "no more than 4 lines beyond the checkpoint");
    // Nothing acknowledged: the source waits, whatever the (paused) clock does.
    assert!(
        tokio::time::timeout(Duration::from_secs(60), p.handle_demand(100))
            .await
            .is_err()
    );
    ack(&source, &[&m[0], &m[1]]);
    // The waiting producer asks for a checkpoint at once, not after the hour-long interval.
    let Emit::Events(more) = tokio::time::timeout(Duration::from_secs(60), p.handle_demand(100))
        .await
        .expect("resumes once l1..l2 are durable")
        .unwrap()
    else {
        panic!("more to come")
    };
    assert_eq!(more.len(), 2);
    assert_eq!(source.positions()[0].durable_line, 2);
    let on_disk = fs::read_to_string(dir.join("ck/file.checkpoint")).unwrap();
    assert!(on_disk.lines().nth(1).unwrap().contains(" 2 4 "), "{on_disk}");
}

#[tokio::test]
async fn following_picks_up_appends_rotation_and_truncation() {
    let dir = TempDir::new("follow");
    let input = dir.join("app.log");
    fs::write(&input, "a1\n").unwrap();
    let source = FileSource::builder(&input)
        .follow(true)
        .poll_interval(Duration::from_millis(5))
        .checkpoint_dir(dir.join("ck"))
        .open()
        .unwrap();
    let mut p = source.producer();
    let mut next = async |n: usize| {
        let got = tokio::time::timeout(Duration::from_secs(20), pull(&mut p, n))
            .await
            .expect("lines arrive");
        assert!(!got.1, "a followed source never finishes");
        got.0.into_iter().map(Message::into_data).collect::<Vec<_>>()
    };
    assert_eq!(next(1).await, ["a1"]);
    // An append, written in two parts: half a line is not a line.
    append(&input, "a2\na");
    assert_eq!(next(1).await, ["a2"]);
    append(&input, "3\n");
    assert_eq!(next(1).await, ["a3"]);
    // Rotation by rename: the old file is finished (even its unterminated last line) before
    // the new one at the same path is read.
    append(&input, "a4\na5");
    fs::rename(&input, dir.join("app.log.1")).unwrap();
    fs::write(&input, "b1\nb2\n").unwrap();
    assert_eq!(next(4).await, ["a4", "a5", "b1", "b2"]);
    // Truncation in place: read again from the start.
    fs::write(&input, "c1\n").unwrap();
    assert_eq!(next(1).await, ["c1"]);
    let positions = source.positions();
    assert_eq!(positions.len(), 1, "the rotated file was retired: {positions:?}");
    assert_eq!(positions[0].emitted_line, 1);
}

#[tokio::test]
async fn a_followed_file_rewritten_in_place_past_the_old_offset_is_read_from_its_start() {
    let dir = TempDir::new("rewrite");
    let input = dir.join("app.log");
    let lines = |tag: &str, n: usize| (0..n).map(|i| format!("{tag}-{i:05}\n")).collect::<String>();
    fs::write(&input, lines("old", 1000)).unwrap();
    let source = FileSource::builder(&input)
        .follow(true)
        .poll_interval(Duration::from_millis(5))
        .checkpoint_dir(dir.join("ck"))
        .open()
        .unwrap();
    let mut p = source.producer();
    let (first, _) = pull(&mut p, 10).await;
    assert_eq!(texts(&first)[9], "old-00009");
    // Rewritten in place (same inode), longer than what was read, while lines remain unread:
    // the reader is never idle, so only a check before reading sees it.
    fs::write(&input, lines("new", 3000)).unwrap();
    let (next, _) = pull(&mut p, 20).await;
    let want: Vec<String> = (0..20).map(|i| format!("new-{i:05}")).collect();
    assert_eq!(texts(&next), want, "no torn line, no tail of the new content first");
}

#[tokio::test]
async fn a_restarted_producer_re_reads_from_the_acknowledged_watermark() {
    let dir = TempDir::new("restart");
    let input = dir.join("in.log");
    fs::write(&input, "1\n2\n3\n4\n").unwrap();
    let source = FileSource::builder(&input).open().unwrap();
    let (m, _) = pull(&mut source.producer(), 3).await;
    ack(&source, &[&m[0]]);
    // The first producer crashed with 2 and 3 in flight; its successor starts after 1.
    let (m2, done) = pull(&mut source.producer(), 10).await;
    assert!(done);
    assert_eq!(texts(&m2), ["2", "3", "4"]);
    // A late ack from the crashed producer's messages still counts.
    ack(&source, &[&m[2], &m[1]]);
    assert_eq!(source.positions()[0].acked_line, 3);
}
