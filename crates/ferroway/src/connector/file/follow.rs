//! Which files an input names (a file, a directory, or a `*`/`?` pattern on file names), and
//! how to tell them apart across renames.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::FileError;

/// What a file source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    File(PathBuf),
    /// Every regular, non-hidden file directly inside.
    Dir(PathBuf),
    /// Files directly inside `dir` whose name matches `pattern`.
    Glob {
        dir: PathBuf,
        pattern: Vec<char>,
    },
}

/// A file found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) path: PathBuf,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl Input {
    pub(crate) fn parse(input: &Path) -> Result<Input, FileError> {
        let wild = |s: &str| s.contains(['*', '?']);
        let name = input.file_name().map(|n| n.to_string_lossy().into_owned());
        let dir = input.parent().map(Path::to_path_buf).unwrap_or_default();
        if wild(&dir.to_string_lossy()) {
            return Err(FileError::Pattern {
                pattern: input.to_owned(),
                reason: "wildcards are allowed in the file name only".into(),
            });
        }
        match name {
            Some(n) if wild(&n) => {
                let dir = if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir
                };
                Ok(Input::Glob {
                    dir,
                    pattern: n.chars().collect(),
                })
            }
            _ if input.is_dir() => Ok(Input::Dir(input.to_owned())),
            _ => Ok(Input::File(input.to_owned())),
        }
    }

    /// The matching files, sorted by path. A missing file or directory is an empty result:
    /// a followed input may appear later.
    pub(crate) fn discover(&self) -> Result<Vec<Found>, FileError> {
        let mut found = Vec::new();
        match self {
            Input::File(p) => match fs::metadata(p) {
                Ok(m) if m.is_file() => found.push(Found {
                    path: p.clone(),
                    dev: m.dev(),
                    ino: m.ino(),
                }),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(FileError::io(p, "stat")(e)),
            },
            Input::Dir(dir) | Input::Glob { dir, .. } => {
                let entries = match fs::read_dir(dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
                    Err(e) => return Err(FileError::io(dir, "list directory")(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(FileError::io(dir, "list directory"))?;
                    let name: Vec<char> = entry.file_name().to_string_lossy().chars().collect();
                    let wanted = match self {
                        Input::Glob { pattern, .. } => glob_match(pattern, &name),
                        _ => name.first() != Some(&'.'),
                    };
                    if !wanted {
                        continue;
                    }
                    let path = entry.path();
                    match fs::metadata(&path) {
                        Ok(m) if m.is_file() => found.push(Found {
                            path,
                            dev: m.dev(),
                            ino: m.ino(),
                        }),
                        // Gone between listing and stat, or not a file: not ours.
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(FileError::io(&path, "stat")(e)),
                    }
                }
            }
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }
}

/// Shell-style matching of a file name: `*` any run of characters, `?` one character; a
/// leading `.` is only matched by a pattern that starts with one (hidden files).
pub(crate) fn glob_match(pattern: &[char], name: &[char]) -> bool {
    if name.first() == Some(&'.') && pattern.first() != Some(&'.') {
        return false;
    }
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and how much of the name it has taken so far.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            // Let the `*` take one more character and try again.
            star = Some((sp, sn + 1));
            p = sp + 1;
            n = sn + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        glob_match(&p.chars().collect::<Vec<_>>(), &n.chars().collect::<Vec<_>>())
    }

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(m("*.log", "app.log"));
        assert!(!m("*.log", ".log.log"));
        assert!(m(".*", ".hidden"));
        assert!(m("app-??.log", "app-01.log"));
        assert!(!m("app-??.log", "app-1.log"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(m("a*b*c", "abcbc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("*", "x"));
        assert!(m("x**", "x"));
        assert!(!m("*.log", "app.log.1"));
        assert!(m("*.log*", "app.log.1"));
        assert!(m("héllo?", "héllo!"));
    }

    #[test]
    fn parses_inputs() {
        assert_eq!(
            Input::parse(Path::new("/var/log/*.log")).unwrap(),
            Input::Glob {
                dir: "/var/log".into(),
                pattern: "*.log".chars().collect()
            }
        );
        assert!(matches!(Input::parse(Path::new("*.log")).unwrap(), Input::Glob { dir, .. } if dir == Path::new(".")));
        assert!(Input::parse(Path::new("/var/*/x.log")).is_err());
        assert_eq!(
            Input::parse(&std::env::temp_dir()).unwrap(),
            Input::Dir(std::env::temp_dir())
        );
        assert_eq!(
            Input::parse(Path::new("/no/such/file")).unwrap(),
            Input::File("/no/such/file".into())
        );
    }

    #[test]
    fn discovers_sorted_matching_regular_files() {
        let dir = std::env::temp_dir().join(format!(
            "ferroway-discover-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        fs::create_dir_all(dir.join("sub.log")).unwrap();
        for n in ["b.log", "a.log", ".c.log", "d.txt"] {
            fs::write(dir.join(n), "x\n").unwrap();
        }
        let names = |input: Input| -> Vec<String> {
            input
                .discover()
                .unwrap()
                .into_iter()
                .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(Input::parse(&dir.join("*.log")).unwrap()), ["a.log", "b.log"]);
        assert_eq!(names(Input::Dir(dir.clone())), ["a.log", "b.log", "d.txt"]);
        assert!(names(Input::File(dir.join("missing"))).is_empty());
        assert!(names(Input::Dir(dir.join("missing"))).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
