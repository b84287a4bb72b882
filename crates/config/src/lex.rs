//! Preprocessor and tokenizer: keepalived's line-oriented syntax turned into tokens with spans.
//!
//! Per physical line, in keepalived's order: `@id` / `@^id` conditionals, `$NAME=value`
//! definitions (continued with a trailing `\`), `~SEQ` / `~LST` repetition, `$NAME` / `${NAME}`
//! substitution, then tokenizing (comments, quotes with escapes and concatenation, braces) and
//! `include`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::diag::{Class, Diagnostics};
use crate::loader::{Loader, expand_braces};
use crate::span::{FileId, SourceMap, Span};

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokKind {
    /// A word or quoted string (quotes removed, escapes applied).
    Word,
    /// `{`
    Open,
    /// `}`
    Close,
    /// End of a line.
    Eol,
}

/// One token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Kind.
    pub kind: TokKind,
    /// Text after unquoting (empty for braces and line ends).
    pub text: String,
    /// Where it came from.
    pub span: Span,
}

/// keepalived's whitespace is C `isspace` in the C locale.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

const MAX_INCLUDE_DEPTH: usize = 32;
/// Files one load may read through `include`, counting a file included twice twice: a file
/// that includes another twice, a few levels deep, would otherwise read it exponentially often.
pub const MAX_INCLUDED_FILES: usize = 4096;
/// Bytes one load may read through `include`, likewise.
pub const MAX_INCLUDED_BYTES: usize = 64 << 20;
/// Stand-ins for characters produced by substitution that must not be read as syntax
/// (`${_HASH}`, `${_BANG}`, the braces of an undefined `${NAME}`); mapped back in words.
const LIT_HASH: char = '\u{E023}';
const LIT_BANG: char = '\u{E021}';
const LIT_OPEN: char = '\u{E07B}';
const LIT_CLOSE: char = '\u{E07D}';

fn unliteral(c: char) -> char {
    match c {
        LIT_HASH => '#',
        LIT_BANG => '!',
        LIT_OPEN => '{',
        LIT_CLOSE => '}',
        c => c,
    }
}
const MAX_SUBST_DEPTH: usize = 16;
/// Longest line substitution may produce (keeps a self-multiplying definition from eating
/// memory).
const MAX_EXPANDED: usize = 1 << 20;
const MAX_REPEAT: i64 = 10_000;

/// Preprocessor state for one load.
pub struct Lexer<'a> {
    loader: &'a dyn Loader,
    map: &'a mut SourceMap,
    diags: &'a mut Diagnostics,
    config_id: String,
    defs: HashMap<String, String>,
    out: Vec<Token>,
    /// Names being substituted right now (a name inside its own value stays literal).
    expanding: Vec<String>,
    /// Whether the current line has already been reported for runaway substitution.
    reported: bool,
    /// Files and bytes read through `include` so far, and whether the limit was reported.
    included: (usize, usize, bool),
}

/// A line being built: text plus, for every byte, the source offset it came from.
struct Mapped {
    text: String,
    origin: Vec<u32>,
}

impl Mapped {
    fn from_source(text: &str, base: u32) -> Self {
        let origin = (0..text.len() as u32).map(|i| base + i).collect();
        Mapped {
            text: text.to_string(),
            origin,
        }
    }

    fn push_str(&mut self, s: &str, origin: u32) {
        self.text.push_str(s);
        self.origin.extend(std::iter::repeat_n(origin, s.len()));
    }

    fn span(&self, file: FileId, lo: usize, hi: usize, line_end: u32) -> Span {
        let o = |i: usize| self.origin.get(i).copied().unwrap_or(line_end);
        let start = o(lo);
        let end = if hi > lo { o(hi - 1) + 1 } else { start };
        Span {
            file,
            lo: start,
            hi: end.max(start),
        }
    }
}

impl<'a> Lexer<'a> {
    /// A lexer whose `@id` lines are judged against `config_id`.
    pub fn new(
        loader: &'a dyn Loader,
        map: &'a mut SourceMap,
        diags: &'a mut Diagnostics,
        config_id: &str,
    ) -> Self {
        Lexer {
            loader,
            map,
            diags,
            config_id: config_id.to_string(),
            defs: HashMap::new(),
            out: Vec::new(),
            expanding: Vec::new(),
            reported: false,
            included: (0, 0, false),
        }
    }

    /// Reads the top-level file; `false` if it cannot be read (a fatal diagnostic is recorded).
    pub fn run(mut self, path: &Path) -> (Vec<Token>, bool) {
        match self.loader.read(path) {
            Ok(text) => {
                let id = self.map.add(path.to_path_buf(), text, None);
                self.lex_file(id, 0);
                (self.out, true)
            }
            Err(e) => {
                self.diags.push(
                    Class::Fatal,
                    None,
                    format!(
                        "Configuration file '{}' cannot be read: {e}",
                        path.display()
                    ),
                );
                (self.out, false)
            }
        }
    }

    fn lex_file(&mut self, id: FileId, depth: usize) {
        let text = self.map.file(id).text.clone();
        let mut offset = 0usize;
        let mut lines = text.split_inclusive('\n').peekable();
        while let Some(raw) = lines.next() {
            let start = offset;
            offset += raw.len();
            let line = raw.trim_end_matches(['\n', '\r']);
            let trimmed_off = line.len() - line.trim_start_matches(is_space).len();
            let mut body = &line[trimmed_off..];
            let mut body_off = start + trimmed_off;
            let line_end = (start + line.len()) as u32;

            // Conditional line: `@id rest` or `@^id rest`.
            if let Some(rest) = body.strip_prefix('@') {
                let (negate, rest) = match rest.strip_prefix('^') {
                    Some(r) => (true, r),
                    None => (false, rest),
                };
                let id_len = rest.find(is_space).unwrap_or(rest.len());
                let matches = rest[..id_len] == self.config_id;
                if matches == negate {
                    continue;
                }
                let after = &rest[id_len..];
                let skipped = body.len() - after.len();
                let ws = after.len() - after.trim_start_matches(is_space).len();
                body_off += skipped + ws;
                body = &after[ws..];
            }

            // Definition: `$NAME=value`, continued by a trailing backslash.
            if let Some((name, value)) = parse_definition(body) {
                // As keepalived: each continued line is a line of its own when expanded; a
                // first line holding nothing but the backslash adds no empty line.
                let mut value = value.to_string();
                while value.ends_with('\\') {
                    value.pop();
                    let kept = value.trim_end_matches(is_space).len();
                    value.truncate(kept);
                    match lines.next() {
                        Some(next) => {
                            offset += next.len();
                            if !value.is_empty() {
                                value.push('\n');
                            }
                            value.push_str(
                                next.trim_end_matches(['\n', '\r'])
                                    .trim_start_matches(is_space),
                            );
                        }
                        None => break,
                    }
                }
                self.defs.insert(name.to_string(), value);
                continue;
            }

            let mapped = Mapped::from_source(body, body_off as u32);
            let span_all = Span {
                file: id,
                lo: body_off as u32,
                hi: line_end,
            };

            // Repetition: `~SEQ(var,start[,step],end) rest`, `~LST(var,v1,…) rest`.
            if body.starts_with("~SEQ") || body.starts_with("~LST") {
                self.repeat_line(id, &mapped, span_all, line_end, depth);
                continue;
            }
            self.finish_line(id, mapped, line_end, depth);
        }
    }

    fn repeat_line(
        &mut self,
        id: FileId,
        mapped: &Mapped,
        span: Span,
        line_end: u32,
        depth: usize,
    ) {
        let body = &mapped.text;
        let Some(open) = body.find('(') else {
            self.diags.invalid(span, "missing '(' in ~SEQ/~LST");
            return;
        };
        let head = body[..open].trim_end();
        // A ~LST's values end at the first ')' (none may hold one); so do a ~SEQ's numbers.
        let Some(close) = body[open..].find(')').map(|c| c + open) else {
            self.diags.invalid(span, "missing ')' in ~SEQ/~LST");
            return;
        };
        let inner = &body[open + 1..close];
        let rest_start = close + 1;
        let rest = Mapped {
            text: body[rest_start..].to_string(),
            origin: mapped.origin[rest_start..].to_vec(),
        };
        // Each repetition gives values to one or more variables.
        let (vars, sets): (Vec<String>, Vec<Vec<String>>) = match head {
            "~SEQ" | "~SEQx" => {
                let args: Vec<&str> = inner.split(',').map(str::trim).collect();
                let nums: Vec<i64> = match args[1..].iter().map(|a| a.parse::<i64>()).collect() {
                    Ok(n) => n,
                    Err(_) => {
                        self.diags
                            .invalid(span, format!("invalid {head} arguments"));
                        return;
                    }
                };
                let (start, step, end) = match nums.as_slice() {
                    [e] => (1, 1, *e),
                    [s, e] => (*s, if s <= e { 1 } else { -1 }, *e),
                    [s, st, e] => (*s, *st, *e),
                    _ => {
                        self.diags
                            .invalid(span, format!("invalid {head} arguments"));
                        return;
                    }
                };
                if step == 0
                    || (end - start) / step >= MAX_REPEAT
                    || (end - start).signum() * step.signum() < 0
                {
                    self.diags.invalid(span, format!("invalid {head} range"));
                    return;
                }
                let mut v = Vec::new();
                let mut i = start;
                while (step > 0 && i <= end) || (step < 0 && i >= end) {
                    v.push(vec![if head == "~SEQx" {
                        format!("{i:x}")
                    } else {
                        i.to_string()
                    }]);
                    i += step;
                }
                (vec![args[0].to_string()], v)
            }
            "~LST" => match lst(inner) {
                Ok(v) => v,
                Err(why) => {
                    self.diags.invalid(span, why);
                    return;
                }
            },
            _ => {
                self.diags
                    .invalid(span, format!("unknown repetition '{head}'"));
                return;
            }
        };
        let saved: Vec<Option<String>> = vars.iter().map(|v| self.defs.get(v).cloned()).collect();
        // What follows may be another repetition (`~SEQ(A,1,2) ~LST(B,x,y) …`): it repeats
        // inside this one.
        let lead = rest.text.len() - rest.text.trim_start_matches(is_space).len();
        let nested = rest.text[lead..].starts_with("~SEQ") || rest.text[lead..].starts_with("~LST");
        for set in sets {
            for (var, v) in vars.iter().zip(set) {
                self.defs.insert(var.clone(), v);
            }
            if nested {
                let m = Mapped {
                    text: rest.text[lead..].to_string(),
                    origin: rest.origin[lead..].to_vec(),
                };
                self.repeat_line(id, &m, span, line_end, depth);
            } else {
                let m = Mapped {
                    text: rest.text.clone(),
                    origin: rest.origin.clone(),
                };
                self.finish_line(id, m, line_end, depth);
            }
        }
        for (var, old) in vars.iter().zip(saved) {
            match old {
                Some(s) => self.defs.insert(var.clone(), s),
                None => self.defs.remove(var),
            };
        }
    }

    fn finish_line(&mut self, id: FileId, mapped: Mapped, line_end: u32, depth: usize) {
        let mapped = self.substitute(id, mapped, 0);
        // A definition continued over several lines (`$NAME=a \` …, the man page's style)
        // expands to as many lines: each is a statement of its own, as in keepalived.
        if mapped.text.contains('\n') {
            let mut from = 0;
            let text = mapped.text.clone();
            for part in text.split('\n') {
                let to = from + part.len();
                let piece = Mapped {
                    text: part.to_string(),
                    origin: mapped.origin[from..to].to_vec(),
                };
                self.finish_piece(id, piece, line_end, depth);
                from = to + 1;
            }
            return;
        }
        self.finish_piece(id, mapped, line_end, depth);
    }

    /// One substituted line: an `include`, or tokens and an end of line.
    fn finish_piece(&mut self, id: FileId, mapped: Mapped, line_end: u32, depth: usize) {
        if let Some(rest) = mapped
            .text
            .strip_prefix("include")
            .filter(|r| r.starts_with(is_space))
        {
            // Include patterns keep their braces and globs: split on whitespace only.
            let mut toks = vec![Token {
                kind: TokKind::Word,
                text: "include".into(),
                span: mapped.span(id, 0, 7, line_end),
            }];
            let base = mapped.text.len() - rest.len();
            let mut pos = 0;
            for part in rest.split(is_space) {
                let mut lo = base + pos;
                pos += part.len() + 1;
                let unquoted = part.trim_start_matches(['"', '\'']);
                lo += part.len() - unquoted.len();
                let part = unquoted.trim_end_matches(['"', '\'']);
                if part.is_empty() || part.starts_with(['#', '!']) {
                    if part.starts_with(['#', '!']) {
                        break;
                    }
                    continue;
                }
                toks.push(Token {
                    kind: TokKind::Word,
                    text: part.to_string(),
                    span: mapped.span(id, lo, lo + part.len(), line_end),
                });
            }
            self.include(id, &toks, depth);
            return;
        }
        let start = self.out.len();
        self.tokenize(id, &mapped, line_end);
        if self.out.len() > start {
            self.out.push(Token {
                kind: TokKind::Eol,
                text: String::new(),
                span: Span {
                    file: id,
                    lo: line_end,
                    hi: line_end,
                },
            });
        }
    }

    fn include(&mut self, id: FileId, toks: &[Token], depth: usize) {
        let line_span = toks[0].span.to(toks[toks.len() - 1].span);
        if toks.len() < 2 {
            self.diags.invalid(line_span, "include needs a file name");
            return;
        }
        if depth >= MAX_INCLUDE_DEPTH {
            self.diags
                .push(Class::Syntax, Some(line_span), "include nesting too deep");
            return;
        }
        let base = self
            .map
            .file(id)
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for tok in &toks[1..] {
            let mut found = false;
            let Some(patterns) = expand_braces(&tok.text) else {
                self.diags.invalid(
                    tok.span,
                    format!(
                        "include pattern expands to more than {} names",
                        crate::loader::MAX_BRACE_EXPANSIONS
                    ),
                );
                continue;
            };
            for pat in patterns {
                let full = normalize(&if Path::new(&pat).is_absolute() {
                    PathBuf::from(&pat)
                } else {
                    base.join(&pat)
                });
                let matches = self.loader.glob(&full.to_string_lossy());
                for path in matches {
                    found = true;
                    if self.map.in_chain(Some(tok.span), &path) {
                        self.diags.push(
                            Class::Syntax,
                            Some(tok.span),
                            format!("include cycle: '{}' is already being read", path.display()),
                        );
                        continue;
                    }
                    if self.included.0 >= MAX_INCLUDED_FILES
                        || self.included.1 >= MAX_INCLUDED_BYTES
                    {
                        if !self.included.2 {
                            self.included.2 = true;
                            self.diags.push(
                                Class::Syntax,
                                Some(tok.span),
                                format!(
                                    "includes read more than {MAX_INCLUDED_FILES} files or {} MiB in all (a file included repeatedly?) - '{}' and every later include ignored",
                                    MAX_INCLUDED_BYTES >> 20,
                                    path.display()
                                ),
                            );
                        }
                        return;
                    }
                    match self.loader.read(&path) {
                        Ok(text) => {
                            self.included.0 += 1;
                            self.included.1 += text.len();
                            let child = self.map.add(path, text, Some(tok.span));
                            self.lex_file(child, depth + 1);
                        }
                        Err(e) => self.diags.note(
                            tok.span,
                            format!("cannot read included file '{}': {e}", path.display()),
                        ),
                    }
                }
            }
            if !found {
                // keepalived: missing include files are silently ignored.
                self.diags.note(
                    tok.span,
                    format!(
                        "include '{}' matches no file (ignored, as keepalived does)",
                        tok.text
                    ),
                );
            }
        }
    }

    /// `$NAME` (followed by whitespace or end) and `${NAME}` / `${NAME args}` substitution,
    /// recursive; unknown names stay literal.
    fn substitute(&mut self, id: FileId, m: Mapped, depth: usize) -> Mapped {
        if depth == 0 {
            self.reported = false;
        }
        if !m.text.contains('$') || depth >= MAX_SUBST_DEPTH {
            return m;
        }
        let mut out = Mapped {
            text: String::with_capacity(m.text.len()),
            origin: Vec::with_capacity(m.origin.len()),
        };
        let t = &m.text;
        let b = t.as_bytes();
        let mut i = 0;
        let mut changed = false;
        while i < b.len() {
            if out.text.len() > MAX_EXPANDED {
                self.runaway(
                    id,
                    m.origin[0],
                    "substitution makes this line longer than 1 MiB - truncated",
                );
                break;
            }
            if b[i] == b'$' {
                let origin = m.origin[i];
                // `${NAME args}` or `$NAME` followed by whitespace or the end.
                let (name, consumed) = if b.get(i + 1) == Some(&b'{') {
                    match t[i + 2..].find('}') {
                        Some(rel) => (Some(&t[i + 2..i + 2 + rel]), 3 + rel),
                        None => (None, 0),
                    }
                } else {
                    let len = t[i + 1..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(t.len() - i - 1);
                    let after = t[i + 1 + len..].chars().next();
                    if len > 0
                        && after.is_none_or(is_space)
                        && self.defs.contains_key(&t[i + 1..i + 1 + len])
                    {
                        (Some(&t[i + 1..i + 1 + len]), 1 + len)
                    } else {
                        (None, 0)
                    }
                };
                if let Some(inner) = name {
                    let key = inner.split(is_space).next().unwrap_or("").to_string();
                    let braced = b.get(i + 1) == Some(&b'{');
                    let looping = self.expanding.contains(&key);
                    let val = if looping {
                        // A definition that uses itself stays literal instead of growing.
                        self.runaway(
                            id,
                            origin,
                            &format!("${key} is used inside its own definition - left unexpanded"),
                        );
                        None
                    } else {
                        self.lookup(id, inner)
                    };
                    let text = match val {
                        Some(val) => {
                            self.expanding.push(key);
                            let v = self
                                .substitute(
                                    id,
                                    Mapped {
                                        origin: vec![origin; val.len()],
                                        text: val,
                                    },
                                    depth + 1,
                                )
                                .text;
                            self.expanding.pop();
                            v
                        }
                        None if braced && looping => format!("${LIT_OPEN}{inner}{LIT_CLOSE}"),
                        // keepalived leaves undefined names literal, and then reads their
                        // braces as braces (a block opened, and closed).
                        None if braced => format!("${{{inner}}}"),
                        None => format!("${inner}"),
                    };
                    out.push_str(&text, origin);
                    i += consumed;
                    changed = true;
                    continue;
                }
            }
            let ch_len = t[i..].chars().next().map_or(1, char::len_utf8);
            out.text.push_str(&t[i..i + ch_len]);
            out.origin.extend_from_slice(&m.origin[i..i + ch_len]);
            i += ch_len;
        }
        if changed { out } else { m }
    }

    fn runaway(&mut self, id: FileId, at: u32, msg: &str) {
        if !self.reported {
            self.reported = true;
            self.diags.invalid(
                Span {
                    file: id,
                    lo: at,
                    hi: at + 1,
                },
                msg.to_string(),
            );
        }
    }

    fn lookup(&self, id: FileId, inner: &str) -> Option<String> {
        let mut parts = inner.split(is_space).filter(|s| !s.is_empty());
        let name = parts.next()?;
        match name {
            "_PWD" => Some(
                self.map
                    .file(id)
                    .path
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            "_ENV" => Some(
                parts
                    .next()
                    .and_then(|v| self.loader.env(v))
                    .unwrap_or_default(),
            ),
            "_HASH" => Some(LIT_HASH.into()),
            "_BANG" => Some(LIT_BANG.into()),
            _ => self.defs.get(name).cloned(),
        }
    }

    fn tokenize(&mut self, id: FileId, m: &Mapped, line_end: u32) {
        let t = &m.text;
        let mut chars = t.char_indices().peekable();
        let mut word: Option<(String, usize, usize)> = None;
        let flush = |word: &mut Option<(String, usize, usize)>, out: &mut Vec<Token>| {
            if let Some((text, lo, hi)) = word.take() {
                out.push(Token {
                    kind: TokKind::Word,
                    text,
                    span: m.span(id, lo, hi, line_end),
                });
            }
        };
        let mut nbsp_reported = false;
        while let Some((i, c)) = chars.next() {
            match c {
                c if is_space(c) => flush(&mut word, &mut self.out),
                '\u{a0}' => {
                    // keepalived: U+00A0 is not whitespace, so the line becomes an unknown
                    // keyword. Blog copy-paste puts it in indentation; holdfast reads it as a
                    // space so the configuration runs, and reports it as keepalived would fail.
                    if !nbsp_reported {
                        nbsp_reported = true;
                        self.diags.push(
                            Class::Invalid,
                            Some(m.span(id, i, i + c.len_utf8(), line_end)),
                            "non-breaking space (U+00A0) read as a space; keepalived reads it as part of the keyword and skips this line (Unknown keyword)",
                        );
                    }
                    flush(&mut word, &mut self.out);
                }
                '#' | '!' => break,
                '{' | '}' => {
                    flush(&mut word, &mut self.out);
                    let kind = if c == '{' {
                        TokKind::Open
                    } else {
                        TokKind::Close
                    };
                    self.out.push(Token {
                        kind,
                        text: String::new(),
                        span: m.span(id, i, i + 1, line_end),
                    });
                }
                '"' | '\'' => {
                    let w = word.get_or_insert_with(|| (String::new(), i, i));
                    let mut closed = false;
                    while let Some((j, d)) = chars.next() {
                        w.2 = j + d.len_utf8();
                        if d == c {
                            closed = true;
                            break;
                        }
                        if d == '\\' {
                            if let Some((k, e)) = chars.next() {
                                w.2 = k + e.len_utf8();
                                unescape(e, &mut chars, &mut w.0, &mut w.2);
                            }
                        } else {
                            w.0.push(unliteral(d));
                        }
                    }
                    if !closed {
                        self.diags.push(
                            Class::Syntax,
                            Some(m.span(id, i, i + 1, line_end)),
                            "missing closing quote",
                        );
                    }
                }
                c => {
                    let w = word.get_or_insert_with(|| (String::new(), i, i));
                    w.0.push(unliteral(c));
                    w.2 = i + c.len_utf8();
                }
            }
        }
        flush(&mut word, &mut self.out);
    }
}

/// `\a \b \E \f \n \r \t \v \nnn \xXX \cC \\ \"` after a backslash inside quotes.
fn unescape(
    e: char,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    out: &mut String,
    end: &mut usize,
) {
    let mut take_digits = |radix: u32, max: usize, first: Option<char>| {
        let mut s: String = first.into_iter().collect();
        while s.len() < max {
            match chars.peek() {
                Some(&(k, d)) if d.is_digit(radix) => {
                    s.push(d);
                    *end = k + 1;
                    chars.next();
                }
                _ => break,
            }
        }
        u32::from_str_radix(&s, radix).ok().and_then(char::from_u32)
    };
    let c = match e {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'E' => Some('\x1b'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        '0'..='7' => take_digits(8, 3, Some(e)),
        'x' => take_digits(16, 2, None),
        'c' => chars.next().map(|(k, d)| {
            *end = k + d.len_utf8();
            let d = unliteral(d);
            char::from_u32((d.to_ascii_uppercase() as u32) ^ 0x40).unwrap_or(d)
        }),
        // A stand-in escaped (`\}` closing an undefined `${NAME`) is still its character.
        other => Some(unliteral(other)),
    };
    if let Some(c) = c {
        out.push(c);
    }
}

/// The inside of keepalived's `~LST(…)`: `VAR, V1, V2…` or, for several variables at once,
/// `{A, B}, {1, 2}, {3, 4}…` (a set with fewer values leaves the others empty; one with more
/// is an error). Returns the variables and the sets of values.
fn lst(inner: &str) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let bad = || format!("Invalid ~LST specification '~LST({inner})'");
    // Splits `{x, y}, z, {…}` at the commas outside braces.
    let mut items = Vec::new();
    let (mut depth, mut from) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            ',' if depth == 0 => {
                items.push(inner[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(inner[from..].trim());
    let group = |item: &str| -> Vec<String> {
        match item.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            Some(inside) => inside.split(',').map(|v| v.trim().to_string()).collect(),
            None => vec![item.to_string()],
        }
    };
    let (first, values) = items.split_first().ok_or_else(bad)?;
    let vars = group(first);
    if vars.iter().any(String::is_empty) || values.is_empty() {
        return Err(bad());
    }
    let mut sets = Vec::new();
    for v in values {
        let mut set = group(v);
        if set.len() > vars.len() {
            return Err(format!(
                "~LST specification has too many values '~LST({inner})'"
            ));
        }
        set.resize(vars.len(), String::new());
        sets.push(set);
    }
    Ok((vars, sets))
}

/// Removes `.` and `..` components lexically, so include cycles are seen whatever the spelling.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn parse_definition(body: &str) -> Option<(&str, &str)> {
    let rest = body.strip_prefix('$')?;
    let eq = rest.find('=')?;
    let name = &rest[..eq];
    let valid = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then(|| (name, rest[eq + 1..].trim_matches(is_space)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::MemLoader;

    fn lex(loader: &MemLoader, id: &str) -> (Vec<String>, Diagnostics, SourceMap) {
        let mut map = SourceMap::default();
        let mut diags = Diagnostics::new(false);
        let (toks, ok) =
            Lexer::new(loader, &mut map, &mut diags, id).run(Path::new("/k/main.conf"));
        assert!(ok);
        let words = toks
            .iter()
            .map(|t| match t.kind {
                TokKind::Word => t.text.clone(),
                TokKind::Open => "{".into(),
                TokKind::Close => "}".into(),
                TokKind::Eol => "⏎".into(),
            })
            .collect();
        (words, diags, map)
    }

    fn words(text: &str) -> Vec<String> {
        lex(&MemLoader::single("/k/main.conf", text), "node1").0
    }

    #[test]
    fn an_escaped_brace_of_an_undefined_name_stays_a_brace() {
        // Found by fuzzing: `\}` inside quotes closing an undefined `${NAME` kept the
        // brace's internal stand-in character, so the printed configuration read back
        // differently.
        assert_eq!(words("x \"${NOPE\\}\"\n"), ["x", "${NOPE}", "⏎"]);
        assert_eq!(words("x \"${NOPE\\c}\"\n"), ["x", "${NOPE=", "⏎"]);
    }

    #[test]
    fn comments_braces_and_quotes() {
        assert_eq!(
            words("a b # c\n! x\nd{e}\n"),
            ["a", "b", "⏎", "d", "{", "e", "}", "⏎"]
        );
        assert_eq!(
            words("script \"pidof haproxy\"\n"),
            ["script", "pidof haproxy", "⏎"]
        );
        assert_eq!(words("x abcd\" efg \"h\n"), ["x", "abcd efg h", "⏎"]);
        assert_eq!(words("x \"a#b!c\"\n"), ["x", "a#b!c", "⏎"]);
        assert_eq!(words("x 'q\\tz\\x41\\101\\\"'\n"), ["x", "q\tzAA\"", "⏎"]);
    }

    #[test]
    fn nbsp_is_read_as_space_but_reported() {
        let l = MemLoader::single("/k/main.conf", "\u{a0}\u{a0}router_id x\n\u{a0}y\n");
        let (w, d, map) = lex(&l, "n");
        assert_eq!(w, ["router_id", "x", "⏎", "y", "⏎"]);
        let lines: Vec<_> = d
            .items()
            .iter()
            .filter_map(|d| d.span)
            .map(|s| map.line_of(s))
            .collect();
        assert_eq!(lines, [1, 2]);
        assert_eq!(d.items()[0].class, Class::Invalid);
    }

    #[test]
    fn definitions_and_substitution() {
        let w = words(
            "$IF=eth0\n$PRIO=${BASE}0\n$BASE=10\ninterface $IF\npriority ${PRIO}\nx $IFx ${NOPE} ${_HASH}\n",
        );
        assert_eq!(
            w,
            [
                "interface",
                "eth0",
                "⏎",
                "priority",
                "100",
                "⏎",
                "x",
                "$IFx",
                "$",
                "{",
                "NOPE",
                "}",
                "#",
                "⏎"
            ]
        );
        assert_eq!(words("a ${_BANG}x\n"), ["a", "!x", "⏎"]);
    }

    #[test]
    fn a_self_referencing_definition_stays_literal_and_is_reported() {
        let l = MemLoader::single("/k/main.conf", "$A=x ${A} ${A}\n$B=$A\na ${A}\nb $B\n");
        let (w, d, _) = lex(&l, "n");
        assert_eq!(
            w,
            ["a", "x", "${A}", "${A}", "⏎", "b", "x", "${A}", "${A}", "⏎"]
        );
        assert!(
            d.items()
                .iter()
                .any(|d| d.message.contains("used inside its own definition"))
        );
    }

    #[test]
    fn conditional_lines_follow_config_id() {
        let l = MemLoader::single(
            "/k/main.conf",
            "@node1 priority 200\n@node2 priority 100\n@^node1 x\n@^node2 y\n",
        );
        assert_eq!(lex(&l, "node1").0, ["priority", "200", "⏎", "y", "⏎"]);
        assert_eq!(lex(&l, "node2").0, ["priority", "100", "⏎", "x", "⏎"]);
    }

    #[test]
    fn seq_and_lst_repeat_lines() {
        assert_eq!(
            words("~SEQ(i,1,3) a$i\n"),
            ["a1", "⏎", "a2", "⏎", "a3", "⏎"]
        );
        assert_eq!(
            words("~SEQ(i,10,-5,0) ${i}\n"),
            ["10", "⏎", "5", "⏎", "0", "⏎"]
        );
        assert_eq!(
            words("~LST(n,x,y) v ${n}\n"),
            ["v", "x", "⏎", "v", "y", "⏎"]
        );
        // Tuples, and a missing value left empty.
        assert_eq!(
            words("~LST({A, B}, {1,2},{3}) v${A}.${B}\n"),
            ["v1.2", "⏎", "v3.", "⏎"]
        );
        // Several repetitions on one line nest, the first outermost.
        assert_eq!(
            words("~SEQ(N, 1, 2) ~LST(M, 5, 6) ${N}${M}\n"),
            ["15", "⏎", "16", "⏎", "25", "⏎", "26", "⏎"]
        );
        assert_eq!(
            lst("{A, B}, {1,2,3}").unwrap_err(),
            "~LST specification has too many values '~LST({A, B}, {1,2,3})'"
        );
    }

    #[test]
    fn env_and_pwd() {
        let mut l = MemLoader::single("/k/main.conf", "a ${_ENV HF} ${_PWD}\n");
        l.env.insert("HF".into(), "val".into());
        assert_eq!(lex(&l, "n").0, ["a", "val", "/k", "⏎"]);
    }

    #[test]
    fn a_definition_continued_over_lines_expands_to_as_many_lines() {
        let w = words("$B=a 1 \\\n  b 2 \\\n  c\nx {\n$B\n}\n");
        assert_eq!(
            w,
            [
                "x", "{", "⏎", "a", "1", "⏎", "b", "2", "⏎", "c", "⏎", "}", "⏎"
            ]
        );
    }

    #[test]
    fn a_file_included_exponentially_often_stops_at_the_limit() {
        // Each level includes the next twice: 2^20 inclusions unbounded.
        let mut loader = MemLoader::single("/k/main.conf", "include l1.conf\ninclude l1.conf\n");
        for level in 1..20 {
            loader = loader.with(
                &format!("/k/l{level}.conf"),
                &format!("include l{n}.conf\ninclude l{n}.conf\n", n = level + 1),
            );
        }
        loader = loader.with("/k/l20.conf", "x\n");
        let (words, d, map) = lex(&loader, "n");
        let limit: Vec<_> = d
            .items()
            .iter()
            .filter(|d| d.message.starts_with("includes read more than"))
            .collect();
        assert_eq!(limit.len(), 1, "{:?}", d.items());
        assert_eq!(limit[0].class, Class::Syntax);
        assert!(map.files().count() <= MAX_INCLUDED_FILES + 1);
        assert!(words.iter().filter(|w| *w == "x").count() > 0);
    }

    #[test]
    fn include_globs_braces_relative_and_cycles() {
        let l = MemLoader::single(
            "/k/main.conf",
            "include conf.d/*.conf\ninclude {x,y}.inc\nz\n",
        )
        .with("/k/conf.d/b.conf", "b\n")
        .with("/k/conf.d/a.conf", "a\ninclude ../main.conf\n")
        .with("/k/y.inc", "y\n");
        let (w, d, map) = lex(&l, "n");
        assert_eq!(w, ["a", "⏎", "b", "⏎", "y", "⏎", "z", "⏎"]);
        let cycle = d
            .items()
            .iter()
            .find(|d| d.message.contains("include cycle"))
            .map(|d| d.span);
        let span = cycle.flatten().map(|s| map.locate(s));
        assert_eq!(span.as_deref(), Some("/k/conf.d/a.conf:2:9"));
    }

    #[test]
    fn spans_point_into_the_original_line() {
        let l = MemLoader::single("/k/main.conf", "$P=5\n  priority $P\n");
        let mut map = SourceMap::default();
        let mut diags = Diagnostics::new(false);
        let (toks, _) = Lexer::new(&l, &mut map, &mut diags, "n").run(Path::new("/k/main.conf"));
        assert_eq!(map.locate(toks[0].span), "/k/main.conf:2:3");
        assert_eq!(map.locate(toks[1].span), "/k/main.conf:2:12");
    }

    #[test]
    fn missing_top_file_is_fatal() {
        let l = MemLoader::default();
        let mut map = SourceMap::default();
        let mut diags = Diagnostics::new(false);
        let (_, ok) = Lexer::new(&l, &mut map, &mut diags, "n").run(Path::new("/nope.conf"));
        assert!(!ok);
        assert!(diags.has_fatal());
    }
}
