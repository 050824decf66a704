//! The SSE source against real HTTP servers on loopback, written here byte by byte so each
//! test controls exactly what goes over the wire: events through a pipeline, resumption
//! with `Last-Event-ID` after a break in the middle of an event, 503 waited out, refusals,
//! an unreachable server, and a slow pipeline holding the server's writes back.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
use ferroway_http::sse::{SseEvent, SseOptions, SseSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Reply = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Request {
    last_event_id: Option<String>,
    accept: Option<String>,
    authorization: Option<String>,
}

/// A server on 127.0.0.1: connection `n` (from 0) is answered by `reply(n, stream)`. Returns
/// the URL and the requests seen.
async fn serve(
    reply: impl Fn(usize, Request, TcpStream) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let reply = Arc::new(reply);
        for n in 0.. {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (reply, log) = (reply.clone(), log.clone());
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
                        .map(|(_, v)| v.trim().to_owned())
                };
                let request = Request {
                    last_event_id: header("last-event-id"),
                    accept: header("accept"),
                    authorization: header("authorization"),
                };
                log.lock().unwrap().push(request.clone());
                let _ = reply(n, request, stream).await;
            });
        }
    });
    (url, seen)
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn head(stream: &mut TcpStream, status: &str, content_type: &str) -> std::io::Result<()> {
    stream
        .write_all(format!("HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
}

fn events(from: u64, to: u64) -> String {
    (from..to)
        .map(|i| format!("id: {i}\nevent: tick\ndata: {i}\n\n"))
        .collect()
}

/// Collects what it handles; sleeps `delay` per event.
#[derive(Clone, Default)]
struct Collect {
    seen: Arc<Mutex<Vec<SseEvent>>>,
    delay: Duration,
}

impl Handler for Collect {
    type Data = SseEvent;
    async fn handle_message(&self, m: &mut Message<SseEvent>) -> Result<(), BoxError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.seen.lock().unwrap().push(m.data().clone());
        Ok(())
    }
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_test_writer()
        .try_init();
}

async fn run(opts: SseOptions, handler: Collect) -> Result<(), BoxError> {
    Pipeline::builder("sse-test", handler)
        .source(SseSource::factory(opts)?)
        .processors(Processors::new().concurrency(1))
        .start()
        .await?
        .join()
        .await?;
    Ok(())
}

fn numbers(seen: &[SseEvent]) -> Vec<u64> {
    seen.iter().map(|e| e.data.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_through_a_pipeline_and_a_204_ends_the_source() {
    logs();
    let (url, requests) = serve(|n, _, mut s| {
        Box::pin(async move {
            match n {
                // A busy server first: waited out.
                0 => head(&mut s, "503 Service Unavailable", "text/plain").await,
                1 => {
                    head(&mut s, "200 OK", "text/event-stream; charset=utf-8").await?;
                    s.write_all(b": hello\nretry: 20\n").await?;
                    s.write_all(events(0, 100).as_bytes()).await
                }
                _ => head(&mut s, "204 No Content", "text/plain").await,
            }
        })
    })
    .await;
    let c = Collect::default();
    run(
        SseOptions::new(&url).retry(Duration::from_millis(20)).bearer("t0k3n"),
        c.clone(),
    )
    .await
    .unwrap();
    let seen = c.seen.lock().unwrap().clone();
    assert_eq!(numbers(&seen), (0..100).collect::<Vec<_>>());
    assert!(seen.iter().all(|e| e.event == "tick" && e.id == e.data));
    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(requests[0].accept.as_deref(), Some("text/event-stream"));
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer t0k3n"));
    assert_eq!(requests[1].last_event_id, None);
    assert_eq!(requests[2].last_event_id.as_deref(), Some("99"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_in_the_middle_of_an_event_resumes_after_the_last_whole_one() {
    logs();
    let (url, requests) = serve(|n, request, mut s| {
        Box::pin(async move {
            let after: u64 = request.last_event_id.map_or(0, |id| id.parse::<u64>().unwrap() + 1);
            match n {
                // Each connection sends 40 events and half of the next, then drops.
                0..=2 => {
                    head(&mut s, "200 OK", "text/event-stream").await?;
                    s.write_all(b"retry: 10\r\n").await?;
                    s.write_all(events(after, after + 40).replace('\n', "\r\n").as_bytes())
                        .await?;
                    s.write_all(format!("id: {}\r\ndata: {}", after + 40, after + 40).as_bytes())
                        .await
                }
                3 => {
                    head(&mut s, "200 OK", "text/event-stream").await?;
                    s.write_all(events(after, 150).as_bytes()).await
                }
                _ => head(&mut s, "204 No Content", "text/plain").await,
            }
        })
    })
    .await;
    let c = Collect::default();
    run(SseOptions::new(&url), c.clone()).await.unwrap();
    let seen = c.seen.lock().unwrap().clone();
    assert_eq!(
        numbers(&seen),
        (0..150).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
    let ids: Vec<_> = requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.last_event_id.clone())
        .collect();
    assert_eq!(
        ids,
        [
            None,
            Some("39".into()),
            Some("79".into()),
            Some("119".into()),
            Some("149".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_connection_resumes_after_the_configured_id() {
    logs();
    let (url, requests) = serve(|n, _, mut s| {
        Box::pin(async move {
            match n {
                0 => {
                    head(&mut s, "200 OK", "text/event-stream").await?;
                    s.write_all(events(8, 10).as_bytes()).await
                }
                _ => head(&mut s, "204 No Content", "text/plain").await,
            }
        })
    })
    .await;
    let c = Collect::default();
    run(
        SseOptions::new(&url)
            .last_event_id("7")
            .retry(Duration::from_millis(10)),
        c.clone(),
    )
    .await
    .unwrap();
    assert_eq!(numbers(&c.seen.lock().unwrap()), [8, 9]);
    assert_eq!(requests.lock().unwrap()[0].last_event_id.as_deref(), Some("7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_or_another_content_type_is_refused_with_the_reason() {
    logs();
    for (status, content_type, expected) in [
        ("404 Not Found", "text/plain", "HTTP 404 Not Found"),
        ("200 OK", "application/json", "content type `application/json`"),
    ] {
        let (url, _) =
            serve(move |_, _, mut s| Box::pin(async move { head(&mut s, status, content_type).await })).await;
        let e = run(SseOptions::new(&url), Collect::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("the server at {url} refused: ")), "{e}");
        assert!(e.contains(expected), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_within_the_reach_timeout_without_its_password() {
    logs();
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = std::time::Instant::now();
    let e = run(
        SseOptions::new(format!("http://user:hunter2@127.0.0.1:{port}/events"))
            .reach_timeout(Duration::from_secs(1))
            .retry(Duration::from_millis(50)),
        Collect::default(),
    )
    .await
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!("no server answered at http://***:***@127.0.0.1:{port}/events")),
        "{text}"
    );
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed at all, in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_pipeline_holds_the_servers_writes_back() {
    logs();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let connections = Arc::new(AtomicUsize::new(0));
    let conns = connections.clone();
    let (url, _) = serve(move |_, _, mut s| {
        let (written, conns) = (counter.clone(), conns.clone());
        Box::pin(async move {
            conns.fetch_add(1, Ordering::Relaxed);
            head(&mut s, "200 OK", "text/event-stream").await?;
            let pad = "x".repeat(1000);
            // Without end, as fast as the socket takes it.
            for i in 0u64.. {
                let e = format!("id: {i}\ndata: {i} {pad}\n\n");
                s.write_all(e.as_bytes()).await?;
                written.fetch_add(e.len() as u64, Ordering::Relaxed);
            }
            Ok(())
        })
    })
    .await;
    let c = Collect {
        delay: Duration::from_millis(2),
        ..Collect::default()
    };
    let p = Pipeline::builder("sse-slow", c.clone())
        .source(SseSource::factory(SseOptions::new(&url)).unwrap())
        .processors(Processors::new().concurrency(1).max_demand(10))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let handled = c.seen.lock().unwrap().len() as u64;
    let sent = written.load(Ordering::Relaxed);
    p.stop().await.unwrap();
    eprintln!("server wrote {sent} bytes; the pipeline handled {handled} events");
    // At about 1 KB an event, a server not held back would have written gigabytes; held, it
    // is ahead of the pipeline by the sockets' buffers (a few MB on loopback) and one read.
    assert!(handled > 100, "the pipeline got events: {handled}");
    assert!(
        sent < handled * 1020 + 32 * 1024 * 1024,
        "the server wrote {sent} bytes for {handled} events handled"
    );
    assert_eq!(connections.load(Ordering::Relaxed), 1, "no reconnection");
    let seen = c.seen.lock().unwrap();
    assert!(seen.iter().enumerate().all(|(i, e)| e.id == i.to_string()), "in order");
}
