//! Configuration errors: each names the file, line, column and option path, and shows the
//! line as written (so a value from the environment — perhaps a password — is never shown).

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with a configuration file.
///
/// Its `Display` is `FILE:LINE:COLUMN: OPTION.PATH: MESSAGE`, e.g.
/// `orders.toml:14:14: sinks.out.batch_size: must be at least 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub position: Option<(usize, usize)>,
    /// The option, e.g. `sinks.out.batch_size` (empty for the file as a whole).
    pub path: String,
    /// What is wrong, and what would be right.
    pub message: String,
    /// The line as written, for the caret display.
    pub line_text: Option<String>,
}

impl ConfigError {
    /// An error at byte `offset` of `original` (the file as written).
    pub fn at(
        file: &Path,
        original: &str,
        offset: Option<usize>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let (position, line_text) = match offset {
            Some(o) => {
                let (line, col, text) = locate(original, o);
                (Some((line, col)), Some(text.to_owned()))
            }
            None => (None, None),
        };
        ConfigError {
            file: file.to_owned(),
            position,
            path: path.into(),
            message: message.into(),
            line_text,
        }
    }

    /// The error with the offending line and a caret under the column, as compilers show it.
    pub fn render(&self) -> String {
        let mut out = format!("error: {self}");
        if let (Some((line, col)), Some(text)) = (self.position, &self.line_text) {
            let gutter = line.to_string().len();
            let caret_pad: String = text
                .chars()
                .take(col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!(
                "\n{:gutter$} |\n{line} | {text}\n{:gutter$} | {caret_pad}^",
                "", ""
            ));
        }
        out
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found in one file (a file is checked as far as possible, not only to its first
/// error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// Every error with its caret display, then a count.
    pub fn render(&self) -> String {
        let mut out: Vec<String> = self.0.iter().map(ConfigError::render).collect();
        let n = self.0.len();
        out.push(format!("{n} error{} found", if n == 1 { "" } else { "s" }));
        out.join("\n\n")
    }
}

/// 1-based line and column (in characters) of byte `offset`, and the line's text.
fn locate(text: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(text.len());
    let offset = (0..=offset).rev().find(|&o| text.is_char_boundary(o)).unwrap_or(0);
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[..offset].matches('\n').count() + 1;
    let col = text[start..offset].chars().count() + 1;
    (line, col, text[start..end].trim_end_matches('\r'))
}

/// ` (did you mean `x`?)` for the candidate closest to `word`, if one is close enough.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Serde's "unknown field `x`, expected one of `a`, `b`" made helpful: the options a table
/// takes beside the connector's own (`extra`), and the closest one. Other messages pass.
pub fn explain_unknown_field(message: &str, extra: &[&str]) -> String {
    let Some(rest) = message.strip_prefix("unknown field ") else {
        return message.to_owned();
    };
    let quoted: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let Some((field, expected)) = quoted.split_first() else {
        return message.to_owned();
    };
    let mut options: Vec<&str> = extra.to_vec();
    options.extend(expected.iter().filter(|e| !extra.contains(e)));
    format!(
        "unknown option `{field}`{}; this table takes: {}",
        did_you_mean(field, options.iter().copied()),
        options.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns() {
        let text = "a = 1\nbé = 22\n";
        assert_eq!(locate(text, 0), (1, 1, "a = 1"));
        let at = text.find("22").unwrap();
        assert_eq!(locate(text, at), (2, 6, "bé = 22"));
    }

    #[test]
    fn unknown_fields_get_a_suggestion_and_the_full_list() {
        let m = explain_unknown_field(
            "unknown field `batch_sise`, expected one of `path`, `rotate_bytes`",
            &["type", "batch_size"],
        );
        assert_eq!(
            m,
            "unknown option `batch_sise` (did you mean `batch_size`?); this table takes: type, batch_size, path, rotate_bytes"
        );
        assert_eq!(
            explain_unknown_field("missing field `path`", &[]),
            "missing field `path`"
        );
    }

    #[test]
    fn renders_a_caret_under_the_column() {
        let e = ConfigError::at(
            Path::new("p.toml"),
            "x = 1\nbatch_size = 0\n",
            Some(19),
            "sinks.out.batch_size",
            "must be at least 1",
        );
        assert_eq!(
            e.render(),
            "error: p.toml:2:14: sinks.out.batch_size: must be at least 1\n  |\n2 | batch_size = 0\n  |              ^"
        );
    }
}
