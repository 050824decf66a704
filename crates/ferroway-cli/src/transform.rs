//! The transform language: jq, through [jaq](https://github.com/01mf02/jaq) (`jaq-core`,
//! `jaq-std`, `jaq-json`).
//!
//! # Why jq (jaq) and not Vector's VRL
//!
//! Both were measured on this project's machine (2 cores), each in a scratch crate with its
//! own target directory, on 1,000,000 records `{"seq":N,"name":"user-…","value":…}` mapped by
//! one field (`.id = .seq`), parse + transform + serialize on one core:
//!
//! | | clean release build | crates | binary | records/s, one core |
//! |---|---|---|---|---|
//! | jaq 3.1 (`jaq-core` + `jaq-std` + `jaq-json`) | 85 s (76 s over a serde_json-only crate) | 33 | 20 MB | 0.22–0.25 M |
//! | VRL 0.38 (`compiler` + `stdlib-base`) | 408 s (400 s over serde_json) | 276 | 64 MB | 1.09 M |
//!
//! VRL transforms about 4x faster, but jaq was chosen:
//! - build cost: VRL adds about 5.5 minutes and 240 crates to every clean build (and CI builds
//!   from clean on 2 cores), against about 1.3 minutes for jaq;
//! - fidelity: jaq keeps a record's keys in their order and its numbers as written
//!   (`0.00` stays `0.00`); VRL sorts keys and rewrites numbers, so a one-field mapping
//!   changes the text of every other field;
//! - jq is what people already write for JSON, and its model fits a pipeline step directly:
//!   no output drops the record, `error("why")` dead-letters it with that reason;
//! - VRL 0.38 needs Rust 1.95, above this workspace's `rust-version` (1.88).
//!
//! Throughput is not the bottleneck it looks: processors run transforms in parallel, one per
//! core by default. `ferroway-bench cli-transform` reports the end-to-end figure.

use std::sync::Arc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, Vars, data};
use jaq_json::Val;

/// A JSON value as jq programs see it.
pub type Value = Val;

type Filter = jaq_core::compile::Filter<Native<data::JustLut<Val>>>;

/// A compiled jq program, shared by every processor.
#[derive(Clone)]
pub struct Program {
    filter: Arc<Filter>,
    code: Arc<str>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Program({:?})", self.code)
    }
}

/// A jq program that does not compile: where (a byte offset in its code) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// Byte offset in the program's code.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// A run of a program that failed: the reason a record is dead-lettered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError(pub String);

impl Program {
    /// Compiles `code` with jq's standard library.
    ///
    /// ```
    /// use ferroway_cli::transform::{Program, parse_json, to_json};
    /// let p = Program::compile(".total = .qty * .price").unwrap();
    /// let out = p.run(parse_json(br#"{"qty":2,"price":5}"#).unwrap()).unwrap();
    /// assert_eq!(to_json(&out[0]), br#"{"qty":2,"price":5,"total":10}"#);
    /// assert!(Program::compile(".a |").is_err());
    /// ```
    ///
    /// # Errors
    /// Every lexing, parsing and undefined-name error, each at its offset in `code`.
    pub fn compile(code: &str) -> Result<Program, Vec<CompileError>> {
        let at = |s: &str| {
            (s.as_ptr() as usize)
                .saturating_sub(code.as_ptr() as usize)
                .min(code.len())
        };
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
        let arena = Arena::default();
        let loader = Loader::new(defs);
        let modules = loader.load(&arena, File { code, path: () }).map_err(|errs| {
            errs.into_iter()
                .flat_map(|(_, e)| match e {
                    jaq_core::load::Error::Io(v) => v
                        .into_iter()
                        .map(|(s, m)| CompileError {
                            offset: at(s),
                            message: m,
                        })
                        .collect::<Vec<_>>(),
                    jaq_core::load::Error::Lex(v) => v
                        .into_iter()
                        .map(|(expect, s)| CompileError {
                            offset: at(s),
                            message: format!("expected {}", expect.as_str()),
                        })
                        .collect(),
                    jaq_core::load::Error::Parse(v) => v
                        .into_iter()
                        .map(|(expect, s)| CompileError {
                            offset: at(s),
                            message: format!("expected {}, found {}", expect.as_str(), found(s)),
                        })
                        .collect(),
                })
                .collect::<Vec<_>>()
        })?;
        let filter = Compiler::default().with_funs(funs).compile(modules).map_err(|errs| {
            errs.into_iter()
                .flat_map(|(_, e)| e)
                .map(|(name, undefined)| CompileError {
                    offset: at(name),
                    message: match undefined {
                        jaq_core::compile::Undefined::Filter(arity) => {
                            format!("undefined filter `{name}/{arity}`")
                        }
                        other => format!("undefined {} `{name}`", other.as_str()),
                    },
                })
                .collect::<Vec<_>>()
        })?;
        Ok(Program {
            filter: Arc::new(filter),
            code: code.into(),
        })
    }

    /// The program's code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Runs the program on `input`: every output, or the first error (`error("why")` gives
    /// `why`; `halt` is an error too — it never ends the process).
    ///
    /// # Errors
    /// The program's first runtime error.
    pub fn run(&self, input: Value) -> Result<Vec<Value>, RunError> {
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        self.filter
            .id
            .run((ctx, input))
            .map(|r| {
                r.map_err(|exn| match exn.get_err() {
                    Ok(e) => RunError(match e.into_val() {
                        Val::TStr(s) => String::from_utf8_lossy(&s).into_owned(),
                        v => v.to_string(),
                    }),
                    Err(exn) => RunError(match exn.get_halt() {
                        Ok(code) => format!("the program called halt (exit code {code})"),
                        Err(_) => "the program broke out of a label it did not define".to_owned(),
                    }),
                })
            })
            .collect()
    }

    /// True if the program's first output is neither `false` nor `null` (no output: false).
    ///
    /// # Errors
    /// The program's first runtime error.
    pub fn test(&self, input: &Value) -> Result<bool, RunError> {
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        match self.filter.id.run((ctx, input.clone())).next() {
            None => Ok(false),
            Some(Ok(v)) => Ok(!matches!(v, Val::Null | Val::Bool(false))),
            Some(Err(exn)) => Err(RunError(match exn.get_err() {
                Ok(e) => e.to_string(),
                Err(_) => "the program called halt".to_owned(),
            })),
        }
    }
}

/// What a parse error found: the next few characters, or the end.
fn found(rest: &str) -> String {
    let token: String = rest.chars().take_while(|c| !c.is_whitespace()).take(12).collect();
    if token.is_empty() {
        "the end of the program".to_owned()
    } else {
        format!("`{token}`")
    }
}

/// Parses one JSON value (the whole payload).
///
/// # Errors
/// Not JSON, with the byte offset where it stops being JSON.
pub fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    jaq_json::read::parse_single(bytes).map_err(|e| e.to_string())
}

/// A value as compact JSON text (numbers as they were written).
pub fn to_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_json(value, &mut out);
    out
}

/// Appends `value` as compact JSON to `out`.
pub fn write_json(value: &Value, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = jaq_json::write::write(out, &jaq_json::write::Pp::default(), 0, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: &str, input: &str) -> Result<Vec<String>, RunError> {
        let out = Program::compile(code)
            .unwrap()
            .run(parse_json(input.as_bytes()).unwrap())?;
        Ok(out.iter().map(|v| String::from_utf8(to_json(v)).unwrap()).collect())
    }

    #[test]
    fn maps_filters_and_keeps_keys_and_numbers_as_written() {
        assert_eq!(
            run(".id = .seq", r#"{"seq":1,"v":0.50}"#).unwrap(),
            [r#"{"seq":1,"v":0.50,"id":1}"#]
        );
        assert_eq!(run("select(.seq > 1)", r#"{"seq":1}"#).unwrap(), Vec::<String>::new());
        assert_eq!(run(".[]", "[1,2]").unwrap(), ["1", "2"]);
    }

    #[test]
    fn errors_carry_the_reason_and_halt_does_not_exit() {
        assert_eq!(run(r#"error("negative total")"#, "{}").unwrap_err().0, "negative total");
        assert!(
            run(".a + 1", r#"{"a":"x"}"#)
                .unwrap_err()
                .0
                .contains("cannot calculate")
        );
        assert!(run("halt", "{}").unwrap_err().0.contains("halt"));
    }

    #[test]
    fn compile_errors_point_into_the_code() {
        let e = Program::compile(".a | upcase").unwrap_err();
        assert_eq!(
            e[0],
            CompileError {
                offset: 5,
                message: "undefined filter `upcase/0`".into()
            }
        );
        let e = Program::compile("{a: }").unwrap_err();
        assert!(e[0].message.starts_with("expected "), "{e:?}");
    }

    #[test]
    fn tests_are_truthy_like_jq() {
        let p = Program::compile(".level == \"error\"").unwrap();
        assert!(p.test(&parse_json(br#"{"level":"error"}"#).unwrap()).unwrap());
        assert!(!p.test(&parse_json(br#"{"level":"info"}"#).unwrap()).unwrap());
        assert!(!Program::compile("empty").unwrap().test(&Val::Null).unwrap());
    }

    #[test]
    fn not_json_is_an_error_naming_the_offset() {
        assert!(parse_json(b"hello").unwrap_err().contains("byte offset 0"));
    }

    #[test]
    fn programs_are_shared_by_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Program>();
    }
}
