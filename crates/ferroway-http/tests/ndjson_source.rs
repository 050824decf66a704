//! The NDJSON source against HTTP servers on loopback written byte by byte: lines as
//! records, a break in the middle of a line resumed by the cursor with nothing lost or
//! repeated, the cursor file kept after acknowledgement and used by the next process, and
//! an HTML answer refused.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
use ferroway_http::ndjson::{NdjsonOptions, NdjsonSource, SourceError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Reply = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// A server on 127.0.0.1: connection `n` (from 0), whose request target was `target`, is
/// answered by `reply(n, target, stream)`. Returns the URL and the targets requested.
async fn serve(
    reply: impl Fn(usize, String, TcpStream) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/changes", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let reply = Arc::new(reply);
        for n in 0.. {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (reply, log) = (reply.clone(), log.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                log.lock().unwrap().push(target.clone());
                let _ = reply(n, target, stream).await;
            });
        }
    });
    (url, seen)
}

async fn answer(stream: &mut TcpStream, content_type: &str, body: &str) -> std::io::Result<()> {
    stream
        .write_all(
            format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n{body}").as_bytes(),
        )
        .await?;
    stream.shutdown().await
}

/// Lines `{"offset":i,...}` for `from..to`.
fn lines(from: u64, to: u64) -> String {
    (from..to)
        .map(|i| format!("{{\"offset\":{i},\"v\":\"x{i}\"}}\r\n"))
        .collect()
}

/// The offsets it handled.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<u64>>>);

impl Handler for Collect {
    type Data = Record;
    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), BoxError> {
        let v: serde_json::Value = serde_json::from_slice(&m.data().payload)?;
        self.0.lock().unwrap().push(v["offset"].as_u64().ok_or("no offset")?);
        Ok(())
    }
}

fn opts(url: &str) -> NdjsonOptions {
    NdjsonOptions::new(url)
        .cursor("offset", "after")
        .retry(Duration::from_millis(20))
}

/// The `after` parameter the server was asked for, if any.
fn after(target: &str) -> Option<u64> {
    target.split_once("after=").map(|(_, v)| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_mid_line_resumes_after_the_last_whole_line() {
    // Lines 0..50 then half of line 50, cut; then from `after` + 1 to 100 and 204 (end).
    let (url, seen) = serve(|n, target, mut s| {
        Box::pin(async move {
            match (n, after(&target)) {
                (0, None) => {
                    let cut = format!("{}\n\n{{\"offset\":50,\"v\"", lines(0, 50));
                    answer(&mut s, "application/x-ndjson", &cut).await
                }
                (_, Some(a)) if a < 99 => answer(&mut s, "application/x-ndjson", &lines(a + 1, 100)).await,
                _ => {
                    s.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await
                }
            }
        })
    })
    .await;
    let handler = Collect::default();
    Pipeline::builder("ndjson-test", handler.clone())
        .source(NdjsonSource::factory(opts(&url)).unwrap())
        .processors(Processors::new().concurrency(1))
        .start()
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    assert_eq!(*handler.0.lock().unwrap(), (0..100).collect::<Vec<_>>());
    let seen = seen.lock().unwrap();
    assert_eq!(after(&seen[0]), None);
    assert_eq!(after(&seen[1]), Some(49), "resumed after the last whole line: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_file_holds_the_last_finished_record_and_the_next_run_starts_after_it() {
    let dir = std::env::temp_dir().join(format!("ferroway-ndjson-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("changes.cursor");
    let _ = std::fs::remove_file(&file);
    let (url, seen) = serve(|_, target, mut s| {
        Box::pin(async move {
            let from = after(&target).map_or(0, |a| a + 1);
            if from >= 40 {
                return s
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            }
            // Twenty lines per connection.
            answer(&mut s, "application/jsonl", &lines(from, from + 20)).await
        })
    })
    .await;
    let mut cursor = 0;
    for run in 0..2 {
        let handler = Collect::default();
        let requests_before = seen.lock().unwrap().len();
        let source = NdjsonSource::factory(opts(&url).cursor_file(&file)).unwrap();
        let pipeline = Pipeline::builder("ndjson-cursor", handler.clone())
            .source(source)
            .processors(Processors::new().concurrency(1))
            .start()
            .await
            .unwrap();
        if run == 0 {
            // Stopped once it handled 20 lines: the file holds the last one finished.
            while handler.0.lock().unwrap().len() < 20 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            pipeline.stop().await.unwrap();
            cursor = std::fs::read_to_string(&file).unwrap().trim().parse().unwrap();
            assert_eq!(cursor, *handler.0.lock().unwrap().last().unwrap());
        } else {
            // The next process asks for what follows it, and runs to the end.
            pipeline.join().await.unwrap();
            assert_eq!(after(&seen.lock().unwrap()[requests_before]), Some(cursor));
            let handled = handler.0.lock().unwrap().clone();
            assert_eq!(handled, (cursor + 1..40).collect::<Vec<_>>());
        }
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "39");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_answer_is_refused() {
    let (url, _) =
        serve(|_, _, mut s| Box::pin(async move { answer(&mut s, "text/html", "<html>login</html>").await })).await;
    let source = NdjsonSource::factory(opts(&url)).unwrap();
    let mut producer = source.producer(0).unwrap();
    let e = ferroway::stage::Producer::handle_demand(&mut producer, 10)
        .await
        .unwrap_err();
    let e = e.downcast::<SourceError>().unwrap();
    assert!(matches!(*e, SourceError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("text/html"), "{e}");
}
