//! Source files, byte spans and line/column lookup.
//!
//! Every token the preprocessor produces carries a [`Span`] into the file it came from; a file that
//! was pulled in by `include` remembers the span of the `include` line, so a diagnostic can print
//! the whole include chain.

use std::path::{Path, PathBuf};

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A byte range `lo..hi` inside one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// The file the bytes are in.
    pub file: FileId,
    /// First byte.
    pub lo: u32,
    /// One past the last byte (`lo == hi` for an empty span).
    pub hi: u32,
}

impl Span {
    /// A span covering `self` and `other` (same file assumed; otherwise `self`).
    pub fn to(self, other: Span) -> Span {
        if self.file != other.file {
            return self;
        }
        Span {
            file: self.file,
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
        }
    }
}

/// One loaded file.
#[derive(Debug)]
pub struct SourceFile {
    /// Path as it was opened.
    pub path: PathBuf,
    /// Whole text (invalid UTF-8 replaced).
    pub text: String,
    /// Byte offset of the start of every line.
    line_starts: Vec<u32>,
    /// The `include` line that pulled this file in.
    pub included_from: Option<Span>,
}

impl SourceFile {
    fn new(path: PathBuf, text: String, included_from: Option<Span>) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| (i + 1) as u32),
        );
        SourceFile {
            path,
            text,
            line_starts,
            included_from,
        }
    }

    /// 1-based line and 1-based column (in characters) of a byte offset.
    pub fn line_col(&self, offset: u32) -> (usize, usize) {
        let offset = offset.min(self.text.len() as u32);
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line] as usize;
        let upto = floor_char_boundary(&self.text, offset as usize);
        let col = self.text[start..upto.max(start)].chars().count() + 1;
        (line + 1, col)
    }

    /// Text of 1-based line `line`, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = self
            .line_starts
            .get(line)
            .map(|&e| e as usize)
            .unwrap_or(self.text.len());
        self.text[start as usize..end].trim_end_matches(['\n', '\r'])
    }

    /// Number of lines.
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// All files read while loading one configuration.
#[derive(Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// Adds a file and returns its id.
    pub fn add(&mut self, path: PathBuf, text: String, included_from: Option<Span>) -> FileId {
        self.files.push(SourceFile::new(path, text, included_from));
        FileId((self.files.len() - 1) as u32)
    }

    /// The file with this id.
    ///
    /// Ids only come from [`SourceMap::add`] on this map, so the lookup cannot fail for them.
    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// All files in load order.
    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }

    /// Whether `path` is already open somewhere up the include chain of `from` (cycle check).
    pub fn in_chain(&self, from: Option<Span>, path: &Path) -> bool {
        let mut cur = from;
        while let Some(span) = cur {
            let f = self.file(span.file);
            if f.path == path {
                return true;
            }
            cur = f.included_from;
        }
        false
    }

    /// `path:line:col` of a span's start.
    pub fn locate(&self, span: Span) -> String {
        let f = self.file(span.file);
        let (l, c) = f.line_col(span.lo);
        format!("{}:{}:{}", f.path.display(), l, c)
    }

    /// 1-based line of a span's start.
    pub fn line_of(&self, span: Span) -> usize {
        self.file(span.file).line_col(span.lo).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_not_bytes() {
        let mut m = SourceMap::default();
        let id = m.add("a.conf".into(), "ab\n\u{a0}\u{a0}x y\n".into(), None);
        let f = m.file(id);
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        // 'x' is after two 2-byte characters.
        assert_eq!(f.line_col(7), (2, 3));
        assert_eq!(f.line_text(2), "\u{a0}\u{a0}x y");
        assert_eq!(f.line_text(9), "");
    }

    #[test]
    fn include_chain_detects_cycles() {
        let mut m = SourceMap::default();
        let a = m.add("/a".into(), "include b\n".into(), None);
        let inc = Span {
            file: a,
            lo: 0,
            hi: 9,
        };
        let b = m.add("/b".into(), "".into(), Some(inc));
        assert!(m.in_chain(
            Some(Span {
                file: b,
                lo: 0,
                hi: 0
            }),
            Path::new("/a")
        ));
        assert!(!m.in_chain(
            Some(Span {
                file: b,
                lo: 0,
                hi: 0
            }),
            Path::new("/c")
        ));
    }
}
