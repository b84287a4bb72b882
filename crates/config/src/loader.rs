//! File access for the preprocessor, behind a trait so tests run on an in-memory tree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where configuration text, include globs and `${_ENV …}` values come from.
pub trait Loader {
    /// Reads a whole file.
    fn read(&self, path: &Path) -> std::io::Result<String>;
    /// Paths matching a glob pattern (already brace-expanded), sorted.
    fn glob(&self, pattern: &str) -> Vec<PathBuf>;
    /// An environment variable, for `${_ENV NAME}`.
    fn env(&self, name: &str) -> Option<String>;
}

/// The real file system and process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsLoader;

impl Loader for FsLoader {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        let bytes = std::fs::read(path)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        let Ok(paths) = glob::glob(pattern) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// An in-memory file tree for tests and fuzzing.
#[derive(Debug, Default, Clone)]
pub struct MemLoader {
    /// Files by absolute path.
    pub files: BTreeMap<PathBuf, String>,
    /// Environment for `${_ENV …}`.
    pub env: BTreeMap<String, String>,
}

impl MemLoader {
    /// A tree holding one file.
    pub fn single(path: &str, text: &str) -> Self {
        let mut m = MemLoader::default();
        m.files.insert(path.into(), text.into());
        m
    }

    /// Adds a file.
    pub fn with(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.into(), text.into());
        self
    }
}

impl Loader for MemLoader {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::ErrorKind::NotFound.into())
    }

    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        let Ok(p) = glob::Pattern::new(pattern) else {
            return Vec::new();
        };
        self.files
            .keys()
            .filter(|k| p.matches_path(k))
            .cloned()
            .collect()
    }

    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
}

/// Most names one include pattern may expand to; each is a glob, and nested alternatives
/// multiply (sixteen braces of ten alternatives each would be 10^16 names).
pub const MAX_BRACE_EXPANSIONS: usize = 1024;

/// csh-style brace expansion: `a{b,c}d` → `abd`, `acd`; nested braces work; an unmatched brace
/// is kept literally. `None` when the pattern expands to more than [`MAX_BRACE_EXPANSIONS`]
/// names.
pub fn expand_braces(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    expand_into(s, "", &mut out).then_some(out)
}

/// Appends `prefix` + each expansion of `s` to `out`; false once `out` would pass the limit.
fn expand_into(s: &str, prefix: &str, out: &mut Vec<String>) -> bool {
    // Bounds recursion; no real include pattern comes near.
    if s.matches('{').count() > 16 {
        out.push(format!("{prefix}{s}"));
        return out.len() <= MAX_BRACE_EXPANSIONS;
    }
    let bytes = s.as_bytes();
    let Some(open) = s.find('{') else {
        out.push(format!("{prefix}{s}"));
        return out.len() <= MAX_BRACE_EXPANSIONS;
    };
    let mut depth = 0usize;
    let mut parts = Vec::new();
    let mut start = open + 1;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    parts.push(&s[start..i]);
                    let (pre, post) = (&s[..open], &s[i + 1..]);
                    let prefix = format!("{prefix}{pre}");
                    return parts
                        .into_iter()
                        .all(|p| expand_into(&format!("{p}{post}"), &prefix, out));
                }
            }
            b',' if depth == 1 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(format!("{prefix}{s}"));
    out.len() <= MAX_BRACE_EXPANSIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_expand_like_csh() {
        assert_eq!(
            expand_braces("/etc/{a,b}.conf"),
            Some(vec!["/etc/a.conf".to_string(), "/etc/b.conf".to_string()])
        );
        assert_eq!(
            expand_braces("x{1,{2,3}}y"),
            Some(vec!["x1y".into(), "x2y".into(), "x3y".into()])
        );
        assert_eq!(
            expand_braces("a{1,2}b{3,4}"),
            Some(vec![
                "a1b3".into(),
                "a1b4".into(),
                "a2b3".into(),
                "a2b4".into()
            ])
        );
        assert_eq!(expand_braces("plain"), Some(vec!["plain".into()]));
        assert_eq!(expand_braces("open{a,b"), Some(vec!["open{a,b".into()]));
        let deep = format!("{}x{}", "{".repeat(5000), "}".repeat(5000));
        assert_eq!(expand_braces(&deep), Some(vec![deep.clone()]));
    }

    #[test]
    fn brace_expansion_stops_at_its_limit() {
        // 4^5 = 1024 names: the limit itself is allowed.
        let at = "{a,b,c,d}".repeat(5);
        assert_eq!(
            expand_braces(&at).map(|v| v.len()),
            Some(MAX_BRACE_EXPANSIONS)
        );
        // Sixteen braces of ten alternatives (10^16 names, found by fuzzing as an
        // out-of-memory) are refused at once.
        let huge = "{0,1,2,3,4,5,6,7,8,9}".repeat(16);
        assert_eq!(expand_braces(&huge), None);
        assert_eq!(expand_braces(&"{a,b,c,d}".repeat(6)), None);
    }

    #[test]
    fn mem_loader_globs_sorted() {
        let m = MemLoader::single("/c/b.conf", "")
            .with("/c/a.conf", "")
            .with("/d/x.conf", "");
        assert_eq!(
            m.glob("/c/*.conf"),
            vec![PathBuf::from("/c/a.conf"), PathBuf::from("/c/b.conf")]
        );
    }
}
