//! The SQS sink against a real SQS server (moto): an entry SQS cannot take fails alone, FIFO
//! group order and deduplication ids.

mod support;

use std::time::Duration;

use ferroway::connector::generator::Generator;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Forward, Message, Pipeline};
use ferroway_sqs::{Deduplication, SqsSink};
use support::{client, delete_queue, drain, queue, unique};
use tokio::sync::mpsc;

async fn send(records: Vec<Record>, sink: SqsSink) -> Vec<Message<Record>> {
    let (tx, mut dead) = mpsc::channel(100);
    let n = records.len() as u64;
    let records = Generator::new(n)
        .payload(|s| (s - 1).to_string())
        .map(move |i| records[i.parse::<usize>().unwrap()].clone());
    Pipeline::builder("sqs-sink", Forward::new())
        .source(records)
        .sink(
            sink,
            Batcher::new("sqs")
                .batch_size(50)
                .batch_timeout(Duration::from_millis(50)),
        )
        .dead_letter(tx)
        .start()
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    let mut letters = Vec::new();
    while let Ok(m) = dead.try_recv() {
        letters.push(m);
    }
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_sqs_cannot_take_fails_alone() {
    support::logs();
    let c = client().await;
    let url = queue(&c, &unique("sink-sizes"), &[("MaximumMessageSize", "1024")]).await;
    let mut records: Vec<Record> = (0..12).map(|i| Record::new(format!("ok-{i}"))).collect();
    records[3] = Record::new("x".repeat(2000));
    records[7] = Record::new(vec![0xff, 0xfe]);
    records[9] = Record::new("bad header").header("AWS.reserved", "v");
    let letters = send(records, SqsSink::new(support::sink(&url)).unwrap()).await;
    let mut reasons: Vec<String> = letters
        .iter()
        .map(|m| m.failure().unwrap_or_default().to_owned())
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("2000 bytes") && r.contains("MaximumMessageSize")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("not UTF-8")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("`AWS.reserved`")), "{reasons:?}");
    let mut bodies = drain(&c, &url).await;
    bodies.sort();
    let mut expected: Vec<String> = [0, 1, 2, 4, 5, 6, 8, 10, 11]
        .iter()
        .map(|i| format!("ok-{i}"))
        .collect();
    expected.sort();
    assert_eq!(bodies, expected, "the others are sent, once each");
    delete_queue(&c, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_sends_keep_group_order_and_deduplicate_by_header() {
    support::logs();
    let c = client().await;
    let url = queue(&c, &format!("{}.fifo", unique("sink-fifo")), &[]).await;
    let records: Vec<Record> = (0..40)
        .map(|i| {
            Record::new(format!("{}-{i}", i % 2))
                .key(format!("g{}", i % 2))
                .header("event-id", format!("e{i}"))
        })
        .collect();
    let sink =
        || SqsSink::new(support::sink(&url).deduplication(Deduplication::FromHeader("event-id".into()))).unwrap();
    assert!(send(records.clone(), sink()).await.is_empty());
    // The same events again: SQS drops them by their deduplication ids.
    assert!(send(records, sink()).await.is_empty());
    // No key: no group id.
    let letters = send(vec![Record::new("no-key").header("event-id", "e99")], sink()).await;
    assert!(
        letters[0].failure().unwrap().contains("no key"),
        "{:?}",
        letters[0].failure()
    );

    let mut per_group: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for body in drain(&c, &url).await {
        let (g, i) = body.split_once('-').unwrap();
        per_group.entry(g.to_owned()).or_default().push(i.parse().unwrap());
    }
    assert_eq!(per_group["0"], (0..40).step_by(2).collect::<Vec<_>>());
    assert_eq!(per_group["1"], (1..40).step_by(2).collect::<Vec<_>>());
    delete_queue(&c, &url).await;
}
