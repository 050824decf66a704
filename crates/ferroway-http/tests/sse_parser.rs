//! The event-stream parser against the WHATWG standard's examples and rules, and property
//! tests: any bytes parse without a panic, and however the stream is cut into chunks the
//! events, the last event id and the retry delay are the same.

use std::time::Duration;

use ferroway_http::sse::{SseError, SseEvent, SseParser};
use proptest::prelude::*;

fn parse(stream: &[u8]) -> (Vec<SseEvent>, SseParser) {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    parser.feed(stream, &mut events).unwrap();
    (events, parser)
}

fn data(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

fn event(event: &str, data: &str, id: &str) -> SseEvent {
    SseEvent {
        event: event.into(),
        data: data.into(),
        id: id.into(),
    }
}

#[test]
fn spec_example_stock_ticker_joins_data_lines() {
    let (events, _) = parse(b"data: YHOO\ndata: +2\ndata: 10\n\n");
    assert_eq!(events, [event("message", "YHOO\n+2\n10", "")]);
}

#[test]
fn spec_example_comments_ids_and_the_one_space_after_the_colon() {
    let (events, parser) =
        parse(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n");
    assert_eq!(
        events,
        [
            event("message", "first event", "1"),
            // `id` with no value resets the last event id.
            event("message", "second event", ""),
            // Only the first space is dropped.
            event("message", " third event", ""),
        ]
    );
    assert_eq!(parser.last_event_id(), "");
}

#[test]
fn spec_example_empty_data_fields_and_an_unfinished_event() {
    // Two events, the first with empty data, the second with one newline; the last `data:`
    // has no blank line after it and is discarded.
    let (events, _) = parse(b"data\n\ndata\ndata\n\ndata:");
    assert_eq!(data(&events), ["", "\n"]);
}

#[test]
fn spec_example_the_space_after_the_colon_is_optional() {
    let (events, _) = parse(b"data:test\n\ndata: test\n\n");
    assert_eq!(data(&events), ["test", "test"]);
}

#[test]
fn cr_lf_and_crlf_all_end_lines() {
    let (events, _) = parse(b"data: a\rdata: b\ndata: c\r\n\rdata: d\r\n\r\n");
    assert_eq!(data(&events), ["a\nb\nc", "d"]);
}

#[test]
fn a_crlf_cut_between_chunks_is_one_line_end() {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    parser.feed(b"data: a\r", &mut events).unwrap();
    parser.feed(b"", &mut events).unwrap();
    parser.feed(b"\ndata: b\r", &mut events).unwrap();
    parser.feed(b"\n\r", &mut events).unwrap();
    parser.feed(b"\n", &mut events).unwrap();
    assert_eq!(data(&events), ["a\nb"]);
}

#[test]
fn one_leading_bom_is_dropped_even_when_cut() {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    parser.feed(b"\xEF\xBB", &mut events).unwrap();
    parser.feed(b"\xBFdata: x\n\n", &mut events).unwrap();
    assert_eq!(data(&events), ["x"]);
    // Only the stream's first: a second BOM makes a field named "\u{FEFF}data", ignored.
    let (events, _) = parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n");
    assert!(events.is_empty());
}

#[test]
fn event_types_reset_after_each_event() {
    let (events, _) = parse(b"event: add\ndata: 1\n\ndata: 2\n\nevent: remove\n\ndata: 3\n\n");
    assert_eq!(
        events,
        [
            event("add", "1", ""),
            event("message", "2", ""),
            // An event type without data dispatches nothing and does not carry over.
            event("message", "3", ""),
        ]
    );
}

#[test]
fn ids_persist_and_an_id_without_data_still_counts() {
    let (events, parser) = parse(b"id: 1\ndata: a\n\ndata: b\n\nid: 7\n\n");
    assert_eq!(events, [event("message", "a", "1"), event("message", "b", "1")]);
    assert_eq!(parser.last_event_id(), "7");
    // An id holding NUL is ignored.
    let (_, parser) = parse(b"id: 1\n\nid: a\0b\n\n");
    assert_eq!(parser.last_event_id(), "1");
}

#[test]
fn retry_takes_only_ascii_digits() {
    let (_, parser) = parse(b"retry: 1500\n");
    assert_eq!(parser.retry(), Some(Duration::from_millis(1500)));
    for ignored in [
        &b"retry: 15s\n"[..],
        b"retry: -1\n",
        b"retry: 1.5\n",
        b"retry:\n",
        b"retry: \n",
    ] {
        let (_, parser) = parse(ignored);
        assert_eq!(parser.retry(), None, "{:?}", String::from_utf8_lossy(ignored));
    }
    let (_, parser) = parse(b"retry: 99999999999999999999999\n");
    assert_eq!(parser.retry(), Some(Duration::from_millis(u64::MAX)));
}

#[test]
fn unknown_fields_and_field_names_with_spaces_are_ignored() {
    let (events, _) = parse(b"foo: bar\ndata : x\nData: y\ndata: z\n\n");
    assert_eq!(data(&events), ["z"]);
}

#[test]
fn colons_after_the_first_belong_to_the_value() {
    let (events, _) = parse(b"data: a: b:c\n\n");
    assert_eq!(data(&events), ["a: b:c"]);
}

#[test]
fn invalid_utf8_becomes_replacement_characters() {
    let (events, _) = parse(b"data: \xFF\xC3\n\n");
    assert_eq!(data(&events), ["\u{FFFD}\u{FFFD}"]);
}

#[test]
fn a_line_past_the_limit_is_an_error_with_its_place() {
    let mut parser = SseParser::new().max_event_bytes(1024);
    let mut events = Vec::new();
    parser.feed(b"data: ok\n\n", &mut events).unwrap();
    let mut fed = Err(None);
    for _ in 0..2048 {
        fed = parser.feed(&[b'x'; 64], &mut events).map_err(Some);
        if fed.is_err() {
            break;
        }
    }
    assert_eq!(
        fed,
        Err(Some(SseError::TooLarge {
            what: "line",
            limit: 1024,
            offset: 10 + 1025,
        }))
    );
    assert_eq!(data(&events), ["ok"]);
}

#[test]
fn an_event_past_the_limit_is_an_error() {
    let mut parser = SseParser::new().max_event_bytes(100);
    let line = format!("data: {}\n", "x".repeat(40));
    let mut events = Vec::new();
    let e = parser.feed(line.repeat(3).as_bytes(), &mut events).unwrap_err();
    assert!(matches!(e, SseError::TooLarge { what: "event", .. }), "{e}");
    // After the connection is dropped and made again, parsing goes on.
    parser.end_of_stream();
    parser.feed(b"data: small\n\n", &mut events).unwrap();
    assert_eq!(data(&events), ["small"]);
}

#[test]
fn end_of_stream_drops_the_unfinished_event_and_keeps_id_and_retry() {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    parser
        .feed(b"retry: 10\nid: 5\ndata: a\n\nid: 6\nevent: x\ndata: cut", &mut events)
        .unwrap();
    parser.end_of_stream();
    assert_eq!(parser.last_event_id(), "5");
    parser.feed(b"data: b\n\n", &mut events).unwrap();
    assert_eq!(events, [event("message", "a", "5"), event("message", "b", "5")]);
    assert_eq!(parser.retry(), Some(Duration::from_millis(10)));
}

/// Streams built from event-stream pieces, so the properties see many real events and not
/// only noise.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"id: ".to_vec()),
        Just(b"id".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b"retry: ".to_vec()),
        Just(b": ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\0".to_vec()),
        "[a-z0-9 :]{0,6}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

fn in_chunks(stream: &[u8], cuts: &[usize]) -> (Vec<SseEvent>, String, Option<Duration>) {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts.into_iter().chain([stream.len()]) {
        parser.feed(&stream[at..cut], &mut events).unwrap();
        at = cut;
    }
    (events, parser.last_event_id().to_owned(), parser.retry())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut parser = SseParser::new().max_event_bytes(64);
        let mut events = Vec::new();
        for chunk in bytes.chunks(7) {
            if parser.feed(chunk, &mut events).is_err() {
                parser.end_of_stream();
            }
        }
        for e in &events {
            prop_assert!(e.data.len() <= 64);
        }
    }

    #[test]
    fn chunking_never_changes_the_result(
        stream in stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = in_chunks(&stream, &[]);
        prop_assert_eq!(in_chunks(&stream, &cuts), whole.clone());
        // Byte by byte, the hardest cut of all.
        let every: Vec<usize> = (0..=stream.len()).collect();
        prop_assert_eq!(in_chunks(&stream, &every), whole);
    }
}
