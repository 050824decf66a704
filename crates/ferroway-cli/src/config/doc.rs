//! The parsed file with the place of every key and value: from an error's place to its option
//! path, and from an option path to its place.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The option path (`sinks.out.batch_size`, `steps[1].map`) of the deepest key or value of
/// `root` containing byte `offset`.
pub fn path_at(root: &DeTable<'_>, offset: usize) -> String {
    let mut path = String::new();
    descend_table(root, offset, &mut path);
    path
}

fn descend_table(table: &DeTable<'_>, offset: usize, path: &mut String) -> bool {
    for (k, v) in table.iter() {
        let len = path.len();
        push_key(path, k.get_ref());
        // Tables and arrays of tables made by `[headers]` lie outside their parent's span:
        // search inside them whatever their span says.
        if descend_value(v, offset, path) || k.span().contains(&offset) || v.span().contains(&offset) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn descend_value(v: &Spanned<DeValue<'_>>, offset: usize, path: &mut String) -> bool {
    match v.get_ref() {
        DeValue::Table(t) => descend_table(t, offset, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if descend_value(item, offset, path) || item.span().contains(&offset) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        _ => false,
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        path.push_str(key);
    } else {
        path.push_str(&format!("{key:?}"));
    }
}

/// The place of the value at `path` (segments: keys, or array indices), or of the deepest
/// part of it that exists.
pub fn span_of(root: &DeTable<'_>, path: &[Segment<'_>]) -> Option<Range<usize>> {
    let mut table = root;
    let mut found = None;
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for seg in path {
        let next = match (seg, value.map(Spanned::get_ref)) {
            (Segment::Key(k), None) => table.get(*k),
            (Segment::Key(k), Some(DeValue::Table(t))) => {
                table = t;
                t.get(*k)
            }
            (Segment::Index(i), Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        match next {
            Some(v) => {
                found = Some(v.span());
                value = Some(v);
                if let DeValue::Table(t) = v.get_ref() {
                    table = t;
                }
            }
            None => break,
        }
    }
    found
}

/// One step of an option path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// A table key.
    Key(&'a str),
    /// An array index.
    Index(usize),
}

/// `segments` as an option path (`tests[0].output.out`).
pub fn path_string(segments: &[Segment<'_>]) -> String {
    let mut s = String::new();
    for seg in segments {
        match seg {
            Segment::Key(k) => push_key(&mut s, k),
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name = \"p\"\n[sinks.out]\ntype = \"file\"\nbatch_size = 0\n[[steps]]\nmap = \".a\"\n[[steps]]\nfilter = \".b\"\n";

    #[test]
    fn finds_the_path_of_a_place_and_the_place_of_a_path() {
        let doc = DeTable::parse(DOC).unwrap();
        let at = DOC.find("0\n").unwrap();
        assert_eq!(path_at(doc.get_ref(), at), "sinks.out.batch_size");
        assert_eq!(path_at(doc.get_ref(), DOC.find("\".b\"").unwrap()), "steps[1].filter");
        assert_eq!(path_at(doc.get_ref(), 0), "name");
        let path = [Segment::Key("sinks"), Segment::Key("out"), Segment::Key("batch_size")];
        assert_eq!(span_of(doc.get_ref(), &path).map(|s| s.start), Some(at));
        let path = [Segment::Key("steps"), Segment::Index(1), Segment::Key("filter")];
        assert_eq!(span_of(doc.get_ref(), &path).map(|s| s.start), DOC.find("\".b\""));
        assert_eq!(path_string(&path), "steps[1].filter");
    }
}
