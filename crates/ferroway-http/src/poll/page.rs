//! A page: its records (slices of the body, never re-encoded) and where the next page is.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::options::Pagination;

/// What a page holds.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub(crate) records: Vec<Bytes>,
    /// The next page's URL (`NextField`, `LinkHeader`) or token (`Token`).
    pub(crate) next: Option<String>,
}

/// Reads a page of JSON (an array, or an object with the records under `records_field`)
/// or NDJSON (one record per line).
pub(crate) fn parse(
    body: Bytes,
    ndjson: bool,
    records_field: Option<&str>,
    pagination: &Pagination,
    link: Option<&str>,
) -> Result<Page, String> {
    let mut page = Page::default();
    if let Pagination::LinkHeader = pagination {
        page.next = link.and_then(next_link);
    }
    if ndjson {
        for (n, line) in body.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            serde_json::from_slice::<serde::de::IgnoredAny>(line)
                .map_err(|e| format!("line {}: not JSON: {e}", n + 1))?;
            page.records.push(body.slice_ref(line));
        }
        return Ok(page);
    }
    let field = match pagination {
        Pagination::NextField(f) | Pagination::Token { field: f, .. } => Some(f.as_str()),
        _ => None,
    };
    let items: Vec<&RawValue> = match records_field {
        None => serde_json::from_slice(&body).map_err(|e| format!("not a JSON array of records: {e}"))?,
        Some(records) => {
            let object: std::collections::HashMap<&str, &RawValue> =
                serde_json::from_slice(&body).map_err(|e| format!("not a JSON object: {e}"))?;
            if let Some(f) = field {
                page.next = object.get(f).and_then(|raw| match serde_json::from_str(raw.get()) {
                    Ok(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
                    Ok(serde_json::Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                });
            }
            match object.get(records) {
                Some(raw) => serde_json::from_str(raw.get())
                    .map_err(|e| format!("field `{records}` is not an array of records: {e}"))?,
                None => return Err(format!("no field `{records}` in the page")),
            }
        }
    };
    page.records = items.iter().map(|raw| body.slice_ref(raw.get().as_bytes())).collect();
    Ok(page)
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim();
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            })
            .then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        let h = r#"<https://api.example.com/x?page=3>; rel="next", <https://api.example.com/x?page=9>; rel="last""#;
        assert_eq!(next_link(h).as_deref(), Some("https://api.example.com/x?page=3"));
        assert_eq!(next_link(r#"<https://a/x?page=9>; rel="last""#), None);
    }

    #[test]
    fn records_are_slices_of_the_page_never_reencoded() {
        let body = Bytes::from_static(br#"{"data": [{"b": 1.50, "a": 2}, 7], "next": "t2"}"#);
        let p = Pagination::Token {
            field: "next".into(),
            param: "page".into(),
        };
        let page = parse(body, false, Some("data"), &p, None).unwrap();
        assert_eq!(
            page.records,
            [Bytes::from_static(br#"{"b": 1.50, "a": 2}"#), Bytes::from_static(b"7")]
        );
        assert_eq!(page.next.as_deref(), Some("t2"));
        let e = parse(
            Bytes::from_static(b"{\"items\": []}"),
            false,
            Some("data"),
            &Pagination::None,
            None,
        )
        .unwrap_err();
        assert_eq!(e, "no field `data` in the page");
    }
}
