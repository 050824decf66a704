//! `${VAR}` and `${VAR:-default}` in a configuration file, expanded in its text before it is
//! parsed — so a variable can stand for any value (`batch_size = ${BATCH}`, `password =
//! "${KAFKA_PASSWORD}"`). `$${` is a literal `${`. Comments are left alone, so a commented
//! example naming an unset variable is no error.
//!
//! The expansion remembers where each substitution went, so an error found in the expanded
//! text is reported at its place in the file as written, and the values that came from the
//! environment can be masked in messages (they may be passwords).

/// The file's text after expansion, with what is needed to map positions back.
#[derive(Debug, Clone, Default)]
pub struct Expanded {
    /// The expanded text.
    pub text: String,
    edits: Vec<Edit>,
}

/// One substitution: `original` bytes of the file became `expanded` bytes of the text.
#[derive(Debug, Clone)]
struct Edit {
    original: std::ops::Range<usize>,
    expanded: std::ops::Range<usize>,
    name: String,
    value: String,
}

/// A `${…}` that could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    /// Byte offset of its `$` in the file.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl Expanded {
    /// The offset in the file as written of `offset` in the expanded text. Inside a
    /// substituted value, the start of its `${`.
    pub fn original_offset(&self, offset: usize) -> usize {
        let mut shift: isize = 0;
        for e in &self.edits {
            if offset < e.expanded.start {
                break;
            }
            if offset < e.expanded.end {
                return e.original.start;
            }
            shift = e.original.end as isize - e.expanded.end as isize;
        }
        (offset as isize + shift).max(0) as usize
    }

    /// `message` with every value that came from the environment replaced by its `${NAME}`,
    /// so that an error quoting a value never shows a password.
    pub fn mask(&self, message: &str) -> String {
        let mut out = message.to_owned();
        for e in self.edits.iter().filter(|e| !e.value.is_empty()) {
            out = out.replace(&e.value, &format!("${{{}}}", e.name));
        }
        out
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    Normal,
    Comment,
    Basic,
    Literal,
    MultiBasic,
    MultiLiteral,
}

/// Expands `text`, looking variables up with `lookup` (the process environment in the CLI).
///
/// # Errors
/// Every unset variable without a default and every malformed `${`, each with its offset.
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Expanded, Vec<EnvError>> {
    let bytes = text.as_bytes();
    let mut out = Expanded {
        text: String::with_capacity(text.len()),
        edits: Vec::new(),
    };
    let mut errors = Vec::new();
    let mut lex = Lex::Normal;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        match (lex, bytes[i]) {
            (Lex::Comment, b'\n') => lex = Lex::Normal,
            (Lex::Comment, _) => {}
            (Lex::Normal, b'#') => lex = Lex::Comment,
            (Lex::Normal, b'"') if rest.starts_with(b"\"\"\"") => {
                lex = Lex::MultiBasic;
                i += 3;
                continue;
            }
            (Lex::Normal, b'\'') if rest.starts_with(b"'''") => {
                lex = Lex::MultiLiteral;
                i += 3;
                continue;
            }
            (Lex::Normal, b'"') => lex = Lex::Basic,
            (Lex::Normal, b'\'') => lex = Lex::Literal,
            (Lex::Basic | Lex::MultiBasic, b'\\') => i += 1,
            (Lex::Basic, b'"') | (Lex::Literal, b'\'') => lex = Lex::Normal,
            (Lex::Basic | Lex::Literal, b'\n') => lex = Lex::Normal,
            (Lex::MultiBasic, b'"') if rest.starts_with(b"\"\"\"") => {
                lex = Lex::Normal;
                i += 3;
                continue;
            }
            (Lex::MultiLiteral, b'\'') if rest.starts_with(b"'''") => {
                lex = Lex::Normal;
                i += 3;
                continue;
            }
            (_, b'$') if rest.starts_with(b"$${") => {
                // `$${` is a literal `${`: drop one `$`.
                out.text.push_str(&text[copied..i]);
                out.edits.push(Edit {
                    original: i..i + 1,
                    expanded: out.text.len()..out.text.len(),
                    name: String::new(),
                    value: String::new(),
                });
                copied = i + 1;
                i += 3;
                continue;
            }
            (_, b'$') if rest.starts_with(b"${") => match reference(&text[i..]) {
                Ok((len, name, default)) => {
                    let value = match (lookup(name), default) {
                        (Some(v), _) => Some(v),
                        (None, Some(d)) => Some(d.to_owned()),
                        (None, None) => {
                            errors.push(EnvError {
                                    offset: i,
                                    message: format!(
                                        "environment variable `{name}` is not set (set it, or write `${{{name}:-default}}` for a default)"
                                    ),
                                });
                            None
                        }
                    };
                    if let Some(value) = value {
                        out.text.push_str(&text[copied..i]);
                        let start = out.text.len();
                        out.text.push_str(&value);
                        out.edits.push(Edit {
                            original: i..i + len,
                            expanded: start..out.text.len(),
                            name: name.to_owned(),
                            value,
                        });
                        copied = i + len;
                    }
                    i += len;
                    continue;
                }
                Err(message) => errors.push(EnvError { offset: i, message }),
            },
            _ => {}
        }
        i += 1;
    }
    out.text.push_str(&text[copied.min(text.len())..]);
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Reads `${NAME}` or `${NAME:-default}` at the start of `s`: its length, name and default.
fn reference(s: &str) -> Result<(usize, &str, Option<&str>), String> {
    let bad = || {
        let shown: String = s.chars().take_while(|c| *c != '\n').take(30).collect();
        format!(
            "`{shown}`: expected `${{NAME}}` or `${{NAME:-default}}` with NAME made of letters, digits and `_` (write `$${{` for a literal `${{`)"
        )
    };
    let body = &s[2..];
    let end = body
        .find(['}', '\n'])
        .filter(|&e| body.as_bytes()[e] == b'}')
        .ok_or_else(bad)?;
    let inner = &body[..end];
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(bad());
    }
    Ok((end + 3, name, default))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("kafka.local".into()),
            "PASSWORD" => Some("hunter22".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_values_defaults_and_escapes_but_not_comments() {
        let text = "a = \"${HOST}:9092\"\nb = ${PORT:-7}\n# ${UNSET} in a comment\nc = '$${HOST}'\n";
        let e = expand(text, env).unwrap();
        assert_eq!(
            e.text,
            "a = \"kafka.local:9092\"\nb = 7\n# ${UNSET} in a comment\nc = '${HOST}'\n"
        );
        // `b` is at the same place; the `7` maps back to its `${`.
        let b = e.text.find("b =").unwrap();
        assert_eq!(e.original_offset(b), text.find("b =").unwrap());
        assert_eq!(e.original_offset(b + 4), text.find("${PORT").unwrap());
        let c = e.text.find("c =").unwrap();
        assert_eq!(e.original_offset(c), text.find("c =").unwrap());
    }

    #[test]
    fn unset_variables_and_bad_references_are_errors_at_their_place() {
        let text = "x = \"${NOPE}\"\ny = \"${1BAD}\"\nz = \"${OPEN\"\n";
        let errors = expand(text, env).unwrap_err();
        assert_eq!(errors.len(), 3);
        assert_eq!(errors[0].offset, 5);
        assert!(errors[0].message.contains("`NOPE` is not set"), "{}", errors[0].message);
        assert!(
            errors[1].message.contains("expected `${NAME}`"),
            "{}",
            errors[1].message
        );
        assert!(
            errors[2].message.contains("expected `${NAME}`"),
            "{}",
            errors[2].message
        );
    }

    #[test]
    fn masks_values_from_the_environment() {
        let e = expand("p = \"${PASSWORD}\"", env).unwrap();
        assert_eq!(
            e.mask("invalid type: string \"hunter22\""),
            "invalid type: string \"${PASSWORD}\""
        );
    }
}
