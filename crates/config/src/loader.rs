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

/// csh-style brace expansion: `a{b,c}d` → `abd`, `acd`; nested braces work; an unmatched brace
/// is kept literally.
pub fn expand_braces(s: &str) -> Vec<String> {
    // Bounds recursion and output size; no real include pattern comes near.
    if s.matches('{').count() > 16 {
        return vec![s.to_string()];
    }
    let bytes = s.as_bytes();
    let Some(open) = s.find('{') else {
        return vec![s.to_string()];
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
                    let mut out = Vec::new();
                    for p in parts {
                        for tail in expand_braces(&format!("{p}{post}")) {
                            out.push(format!("{pre}{tail}"));
                        }
                    }
                    return out;
                }
            }
            b',' if depth == 1 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    vec![s.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_expand_like_csh() {
        assert_eq!(
            expand_braces("/etc/{a,b}.conf"),
            vec!["/etc/a.conf", "/etc/b.conf"]
        );
        assert_eq!(expand_braces("x{1,{2,3}}y"), vec!["x1y", "x2y", "x3y"]);
        assert_eq!(expand_braces("plain"), vec!["plain"]);
        assert_eq!(expand_braces("open{a,b"), vec!["open{a,b"]);
        let deep = format!("{}x{}", "{".repeat(5000), "}".repeat(5000));
        assert_eq!(expand_braces(&deep), vec![deep.clone()]);
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
