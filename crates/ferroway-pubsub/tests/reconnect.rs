//! The emulator killed and restarted under a running source: the source waits, opens its
//! stream again once the subscription is back, and consumes what is published after; and
//! under a sink: the write fails as an outage, no message marked, and publishes once back.
//! Each test runs an emulator of its own (on a free port), so the other tests' one stays up.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::{Record, Sink};
use ferroway::error::{Chain, is_unavailable};
use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
use ferroway_pubsub::{ClientOptions, PubSubMessage, PubSubOptions, PubSubSink, PubSubSource, SinkOptions};
use gcloud_gax::conn::Environment;
use gcloud_pubsub::client::{Client, ClientConfig};
use gcloud_pubsub::subscription::SubscriptionConfig;

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<BTreeSet<u64>>>);

impl Handler for Collect {
    type Data = PubSubMessage;
    async fn handle_message(&self, m: &mut Message<PubSubMessage>) -> Result<(), BoxError> {
        let n = std::str::from_utf8(&m.data().data)?.parse()?;
        self.0.lock().unwrap().insert(n);
        Ok(())
    }
}

/// An emulator process of the test's own.
struct Emulator {
    host: String,
    child: Option<Child>,
}

impl Emulator {
    fn path() -> String {
        let out = Command::new("dpkg")
            .args(["-L", "google-cloud-cli-pubsub-emulator"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.lines()
            .find(|l| l.ends_with("/bin/cloud-pubsub-emulator"))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                panic!(
                    "the Pub/Sub emulator is not installed (Debian package google-cloud-cli-pubsub-emulator); \
                     this test starts one of its own"
                )
            })
    }

    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut e = Emulator {
            host: format!("127.0.0.1:{port}"),
            child: None,
        };
        e.restart().await;
        e
    }

    async fn restart(&mut self) {
        let port = self.host.rsplit(':').next().unwrap().to_owned();
        let child = Command::new(Self::path())
            .args(["--host=127.0.0.1", &format!("--port={port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(c) = self.client().await
                && c.get_topics(None).await.is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the emulator did not start on {}",
                self.host
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn client(&self) -> Result<Client, gcloud_pubsub::client::Error> {
        Client::new(ClientConfig {
            project_id: Some(support::PROJECT.to_owned()),
            environment: Environment::Emulator(self.host.clone()),
            pool_size: 1,
            ..ClientConfig::default()
        })
        .await
    }

    /// The topic and subscription (an emulator keeps nothing across a restart).
    async fn create(&self, topic: &str, subscription: &str) {
        let c = self.client().await.unwrap();
        c.create_topic(topic, None, None).await.unwrap();
        let config = SubscriptionConfig {
            ack_deadline_seconds: 10,
            ..SubscriptionConfig::default()
        };
        c.create_subscription(subscription, topic, config, None).await.unwrap();
    }

    async fn publish(&self, topic: &str, from: u64, to: u64) {
        support::publish_range(&self.client().await.unwrap(), topic, from, to).await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_reconnects_after_the_emulator_restarts() {
    support::logs();
    let mut emulator = Emulator::start().await;
    let (topic, subscription) = ("reconnect-t", "reconnect-s");
    emulator.create(topic, subscription).await;
    emulator.publish(topic, 0, 100).await;

    let seen = Collect::default();
    let opts = PubSubOptions::new(
        ClientOptions::new(support::PROJECT).emulator_host(&emulator.host),
        subscription,
    )
    .ack_deadline(Duration::from_secs(10))
    // Room for the restart and the re-created subscription.
    .reach_timeout(Duration::from_secs(120));
    let p = Pipeline::builder("pubsub-reconnect", seen.clone())
        .source(PubSubSource::factory(opts).unwrap())
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .unwrap();
    until("the first 100", 30, || seen.0.lock().unwrap().len() >= 100).await;

    emulator.kill();
    // Down for a while: the stream fails, reconnects are refused, then the subscription is
    // missing until the test creates it again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    emulator.restart().await;
    emulator.create(topic, subscription).await;
    emulator.publish(topic, 100, 200).await;

    until("the 100 published after the restart", 90, || {
        seen.0.lock().unwrap().range(100..200).count() == 100
    })
    .await;
    p.stop().await.unwrap();
    let all = seen.0.lock().unwrap().clone();
    assert_eq!(all, (0..200).collect(), "every message, before and after the restart");
}

/// A destination that is down is not a bad message: the write fails as a whole with an
/// outage (which the pipeline keeps and retries, never dead-letters), no message marked
/// failed; once the emulator and the topic are back, the same sink publishes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_reports_an_outage_as_unavailable_and_publishes_once_back() {
    support::logs();
    let mut emulator = Emulator::start().await;
    let (topic, subscription) = ("outage-t", "outage-s");
    emulator.create(topic, subscription).await;
    let client = ClientOptions::new(support::PROJECT).emulator_host(&emulator.host);
    let sink = PubSubSink::new(SinkOptions::new(client, topic)).unwrap();
    let mut first = vec![Message::new(Record::new("1"))];
    Sink::write(&sink, &mut first).await.unwrap();
    assert!(!first[0].is_failed());

    emulator.kill();
    let mut during = vec![Message::new(Record::new("2")), Message::new(Record::new("3"))];
    let e = tokio::time::timeout(Duration::from_secs(60), Sink::write(&sink, &mut during))
        .await
        .expect("an outage is reported, not waited out for ever")
        .unwrap_err();
    assert!(is_unavailable(&*e), "{e}");
    assert!(
        during.iter().all(|m| !m.is_failed()),
        "an outage marks no message failed"
    );
    let shown = Chain(&*e).to_string();
    assert!(shown.contains(&emulator.host), "{shown}");

    emulator.restart().await;
    emulator.create(topic, subscription).await;
    Sink::write(&sink, &mut during).await.unwrap();
    assert!(during.iter().all(|m| !m.is_failed()));
    let mut got = support::drain(&emulator.client().await.unwrap(), subscription).await;
    got.sort();
    assert_eq!(got, ["2", "3"], "published once the emulator was back");
}
