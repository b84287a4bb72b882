//! Tokens → a tree of `keyword args… [{ children }]` nodes, with keepalived's brace rules.

use crate::diag::{Class, Diagnostics};
use crate::lex::{TokKind, Token};
use crate::span::Span;

/// A word with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// Text after unquoting.
    pub text: String,
    /// Location.
    pub span: Span,
}

/// One statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The keyword (first word of the statement).
    pub key: Word,
    /// The remaining words.
    pub args: Vec<Word>,
    /// The `{ … }` block, if the statement has one.
    pub block: Option<Vec<Node>>,
    /// The closing `}` of the block (keepalived reports end-of-block findings there).
    pub close: Option<Span>,
}

impl Node {
    /// Span of the keyword.
    pub fn span(&self) -> Span {
        self.key.span
    }

    /// Span from the keyword to the last argument.
    pub fn line_span(&self) -> Span {
        self.args
            .last()
            .map_or(self.key.span, |a| self.key.span.to(a.span))
    }
}

/// Builds the tree; reports stray and missing braces in keepalived's words.
pub fn parse(tokens: &[Token], diags: &mut Diagnostics) -> Vec<Node> {
    let mut p = Parser {
        toks: tokens,
        pos: 0,
        diags,
        depth: 0,
    };
    p.seq(None).0
}

/// Deeper nesting than any real configuration; bounds the parser's recursion.
const MAX_DEPTH: usize = 32;

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    diags: &'a mut Diagnostics,
    depth: usize,
}

impl Parser<'_> {
    /// Statements until the `}` closing `open` (consumed) or the end of input.
    fn seq(&mut self, open: Option<Span>) -> (Vec<Node>, Option<Span>) {
        if open.is_some() && self.depth >= MAX_DEPTH {
            return self.skip_block(open);
        }
        self.depth += 1;
        let r = self.seq_inner(open);
        self.depth -= 1;
        r
    }

    /// Skips a too-deep block without recursing, reporting it once.
    fn skip_block(&mut self, open: Option<Span>) -> (Vec<Node>, Option<Span>) {
        if let Some(span) = open {
            self.diags.push(
                Class::Syntax,
                Some(span),
                format!("blocks nested deeper than {MAX_DEPTH} levels - skipping this block"),
            );
        }
        let mut level = 1usize;
        while let Some(tok) = self.toks.get(self.pos) {
            self.pos += 1;
            match tok.kind {
                TokKind::Open => level += 1,
                TokKind::Close => {
                    level -= 1;
                    if level == 0 {
                        return (Vec::new(), Some(tok.span));
                    }
                }
                _ => {}
            }
        }
        (Vec::new(), None)
    }

    fn seq_inner(&mut self, open: Option<Span>) -> (Vec<Node>, Option<Span>) {
        let mut nodes: Vec<Node> = Vec::new();
        // Whether the last statement ended at a line end (so a `{` on the next line opens it).
        let mut last_ended_line = false;
        while let Some(tok) = self.toks.get(self.pos) {
            match tok.kind {
                TokKind::Eol => {
                    self.pos += 1;
                }
                TokKind::Close => {
                    self.pos += 1;
                    if open.is_some() {
                        return (nodes, Some(tok.span));
                    }
                    self.diags
                        .push(Class::Syntax, Some(tok.span), "Extra '}' found");
                }
                TokKind::Open => {
                    self.pos += 1;
                    match nodes.last_mut() {
                        Some(last) if last.block.is_none() && last_ended_line => {
                            let (b, close) = self.seq(Some(tok.span));
                            last.block = Some(b);
                            last.close = close;
                        }
                        _ => {
                            self.diags.push(
                                Class::Syntax,
                                Some(tok.span),
                                "Unexpected '{' - ignoring",
                            );
                            // Keep the block's contents out of the current section.
                            let _ = self.seq(Some(tok.span));
                        }
                    }
                    last_ended_line = false;
                }
                TokKind::Word => {
                    let key = Word {
                        text: tok.text.clone(),
                        span: tok.span,
                    };
                    self.pos += 1;
                    let mut args = Vec::new();
                    while let Some(t) = self.toks.get(self.pos).filter(|t| t.kind == TokKind::Word)
                    {
                        args.push(Word {
                            text: t.text.clone(),
                            span: t.span,
                        });
                        self.pos += 1;
                    }
                    let mut node = Node {
                        key,
                        args,
                        block: None,
                        close: None,
                    };
                    last_ended_line = true;
                    match self.toks.get(self.pos).map(|t| (t.kind, t.span)) {
                        Some((TokKind::Open, span)) => {
                            self.pos += 1;
                            let (b, close) = self.seq(Some(span));
                            node.block = Some(b);
                            node.close = close;
                            last_ended_line = false;
                        }
                        Some((TokKind::Close, _)) => last_ended_line = false,
                        _ => {}
                    }
                    nodes.push(node);
                }
            }
        }
        if let Some(span) = open {
            self.diags.push(
                Class::Syntax,
                Some(span),
                "There are 1 missing '}'s or extra '{'s (block opened here is never closed)",
            );
        }
        (nodes, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::Lexer;
    use crate::loader::MemLoader;
    use crate::span::SourceMap;
    use std::path::Path;

    fn tree(text: &str) -> (Vec<Node>, Diagnostics) {
        let l = MemLoader::single("/t.conf", text);
        let mut map = SourceMap::default();
        let mut diags = Diagnostics::new(false);
        let (toks, _) = Lexer::new(&l, &mut map, &mut diags, "n").run(Path::new("/t.conf"));
        (parse(&toks, &mut diags), diags)
    }

    fn shape(nodes: &[Node]) -> String {
        nodes
            .iter()
            .map(|n| {
                let mut s = n.key.text.clone();
                for a in &n.args {
                    s.push(' ');
                    s.push_str(&a.text);
                }
                if let Some(b) = &n.block {
                    s.push_str(&format!(" {{{}}}", shape(b)));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn blocks_on_one_line_and_on_the_next() {
        let (n, d) = tree("a {\n b 1\n c\n {\n d\n }\n}\ne { f g }\n");
        assert_eq!(shape(&n), "a {b 1; c {d}}; e {f g}");
        assert!(d.items().is_empty());
    }

    #[test]
    fn stray_braces_are_reported() {
        let (n, d) = tree("a\n}\nb {\n");
        assert_eq!(shape(&n), "a; b {}");
        let msgs: Vec<_> = d.items().iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].starts_with("Extra '}'"));
        assert!(msgs[1].starts_with("There are 1 missing"));
    }

    #[test]
    fn deep_nesting_is_bounded_not_a_stack_overflow() {
        let text = format!("a {}\nb\n", "{".repeat(200_000));
        let (n, d) = tree(&text);
        assert_eq!(
            n.len(),
            1,
            "everything after the too-deep block is inside it"
        );
        assert!(
            d.items()
                .iter()
                .any(|d| d.message.starts_with("blocks nested deeper"))
        );
    }

    #[test]
    fn unexpected_open_is_ignored_with_its_block() {
        let (n, d) = tree("a { b }\n{ c }\nd\n");
        assert_eq!(shape(&n), "a {b}; d");
        assert_eq!(d.items()[0].message, "Unexpected '{' - ignoring");
    }
}
