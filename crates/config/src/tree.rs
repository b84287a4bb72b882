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

/// How keepalived reads a keyword in a block, which decides what a brace after it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// It opens a block of keywords: the next `{` (on its line or the next) opens it, and
    /// without one keepalived says so and reads on as if it were there.
    Block,
    /// It opens a block of values (addresses, names, routes): every line up to the `}` is a
    /// value, a `{` among them too.
    Values,
    /// It takes no block: a `{` after it is unexpected and ignored, and what follows is read
    /// at the same level — so the next `}` closes the enclosing block.
    Leaf,
    /// Not a block keepalived knows (holdfast's own checker blocks): a `{` after a statement
    /// opens its block.
    Lenient,
}

/// Builds the tree with keepalived's grammar; reports stray and missing braces in
/// keepalived's words.
pub fn parse(tokens: &[Token], diags: &mut Diagnostics) -> Vec<Node> {
    parse_with(tokens, diags, &crate::grammar::Keepalived)
}

/// How a reader treats braces: what a keyword opens in a block, and whether it knows the
/// block at all (one it does not know is read leniently).
pub trait Grammar {
    /// How `keyword` in the block at `path` (the keywords that opened it) reads braces.
    fn kind(&self, path: &[String], keyword: &str) -> Kind;
    /// Whether the block at `path` is one the reader knows.
    fn knows(&self, path: &[String]) -> bool;
}

/// Builds the tree with `grammar` saying, for a keyword in a block (the path of keywords that
/// opened it), how it reads braces.
pub fn parse_with(tokens: &[Token], diags: &mut Diagnostics, grammar: &dyn Grammar) -> Vec<Node> {
    let mut p = Parser {
        toks: tokens,
        pos: 0,
        diags,
        depth: 0,
        braces: 0,
        path: Vec::new(),
        grammar,
    };
    let lenient = p.lenient();
    p.seq(None, lenient).0
}

/// Deeper nesting than any real configuration; bounds the parser's recursion.
const MAX_DEPTH: usize = 32;

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    diags: &'a mut Diagnostics,
    depth: usize,
    /// keepalived's count of `{` less `}` read so far, over every line.
    braces: usize,
    /// The keywords of the blocks being read.
    path: Vec<String>,
    grammar: &'a dyn Grammar,
}

impl Parser<'_> {
    /// Statements until the `}` closing `open` (consumed) or the end of input. `lenient`:
    /// the block is not one keepalived knows.
    fn seq(&mut self, open: Option<Span>, lenient: bool) -> (Vec<Node>, Option<Span>) {
        if open.is_some() && self.depth >= MAX_DEPTH {
            return self.skip_block(open);
        }
        self.depth += 1;
        let r = self.seq_inner(open, lenient);
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

    /// Whether the block being read is one the grammar does not know (read leniently).
    fn lenient(&self) -> bool {
        !self.grammar.knows(&self.path)
    }

    /// Counts a `{` as keepalived's reader does.
    fn opened(&mut self) {
        self.braces += 1;
    }

    /// Counts a `}` as keepalived's reader does, which reports one too many wherever it is;
    /// returns whether it was one too many.
    fn closed(&mut self, span: Span) -> bool {
        if self.braces == 0 {
            self.diags
                .push(Class::Syntax, Some(span), "Extra '}' found");
            true
        } else {
            self.braces -= 1;
            false
        }
    }

    /// The words of one statement from the current position (a keepalived line: the words up
    /// to a brace or the line's end).
    fn statement(&mut self) -> Node {
        let tok = &self.toks[self.pos];
        let key = Word {
            text: tok.text.clone(),
            span: tok.span,
        };
        self.pos += 1;
        let mut args = Vec::new();
        while let Some(t) = self.toks.get(self.pos).filter(|t| t.kind == TokKind::Word) {
            args.push(Word {
                text: t.text.clone(),
                span: t.span,
            });
            self.pos += 1;
        }
        Node {
            key,
            args,
            block: None,
            close: None,
        }
    }

    /// The next token that is not a line end, without taking it.
    fn peek_statement(&self) -> Option<&Token> {
        self.toks[self.pos..]
            .iter()
            .find(|t| t.kind != TokKind::Eol)
    }

    fn skip_eols(&mut self) {
        while self
            .toks
            .get(self.pos)
            .is_some_and(|t| t.kind == TokKind::Eol)
        {
            self.pos += 1;
        }
    }

    /// Skips the block that follows, if one does, as keepalived skips a block it will not
    /// read: by its braces alone.
    fn skip_unread(&mut self) {
        if self.peek_statement().map(|t| t.kind) != Some(TokKind::Open) {
            return;
        }
        self.skip_eols();
        self.pos += 1;
        self.opened();
        let mut level = 1usize;
        while let Some(tok) = self.toks.get(self.pos) {
            self.pos += 1;
            match tok.kind {
                TokKind::Open => {
                    self.opened();
                    level += 1;
                }
                TokKind::Close => {
                    let _ = self.closed(tok.span);
                    level -= 1;
                    if level == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// A block of values after its keyword: a first `{` opens it, every statement up to the
    /// `}` is a value (a `{` too, as a value of its own).
    fn values(&mut self) -> (Vec<Node>, Option<Span>) {
        self.skip_eols();
        if self
            .toks
            .get(self.pos)
            .is_some_and(|t| t.kind == TokKind::Open)
        {
            self.pos += 1;
            self.opened();
        }
        let mut nodes = Vec::new();
        while let Some(tok) = self.toks.get(self.pos) {
            match tok.kind {
                TokKind::Eol => self.pos += 1,
                TokKind::Close => {
                    self.pos += 1;
                    let _ = self.closed(tok.span);
                    return (nodes, Some(tok.span));
                }
                TokKind::Open => {
                    self.pos += 1;
                    self.opened();
                    nodes.push(Node {
                        key: Word {
                            text: "{".into(),
                            span: tok.span,
                        },
                        args: Vec::new(),
                        block: None,
                        close: None,
                    });
                }
                TokKind::Word => {
                    let n = self.statement();
                    nodes.push(n);
                }
            }
        }
        (nodes, None)
    }

    fn seq_inner(&mut self, open: Option<Span>, lenient: bool) -> (Vec<Node>, Option<Span>) {
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
                    let extra = self.closed(tok.span);
                    if open.is_some() {
                        return (nodes, Some(tok.span));
                    }
                    if !extra && !lenient {
                        // keepalived: a `}` read at the top level is a keyword it does not
                        // know (when its reader has not already counted it one too many).
                        self.diags
                            .push(Class::Unknown, Some(tok.span), "Unknown keyword '}'");
                    }
                }
                TokKind::Open => {
                    self.pos += 1;
                    self.opened();
                    match nodes.last_mut() {
                        Some(last) if lenient && last.block.is_none() && last_ended_line => {
                            self.path.push(last.key.text.clone());
                            let (b, close) = self.seq(Some(tok.span), true);
                            self.path.pop();
                            last.block = Some(b);
                            last.close = close;
                        }
                        _ if lenient => {
                            self.diags.push(
                                Class::Syntax,
                                Some(tok.span),
                                "Unexpected '{' - ignoring",
                            );
                            // Keep the block's contents out of the current section.
                            let _ = self.seq(Some(tok.span), true);
                        }
                        _ => {
                            // keepalived ignores it and reads on at this level.
                            self.diags.push(
                                Class::Syntax,
                                Some(tok.span),
                                "Unexpected '{' - ignoring",
                            );
                        }
                    }
                    last_ended_line = false;
                }
                TokKind::Word => {
                    let mut node = self.statement();
                    if !lenient && crate::grammar::skipped(&self.path, &node, &nodes) {
                        // keepalived reports it (the lowering says what) and skips its block
                        // unread, counting its braces.
                        self.skip_unread();
                        nodes.push(node);
                        last_ended_line = false;
                        continue;
                    }
                    if !lenient && crate::grammar::ends_block(&self.path, &node, &nodes) {
                        // keepalived refuses a sync group's second list and skips its block
                        // the same way, and the skip's `}` ends the sync group too: what
                        // follows in it is read at the top level.
                        self.skip_unread();
                        nodes.push(node);
                        return (nodes, None);
                    }
                    let kind = if lenient {
                        Kind::Lenient
                    } else {
                        self.grammar.kind(&self.path, &node.key.text)
                    };
                    last_ended_line = true;
                    match kind {
                        Kind::Leaf => {}
                        Kind::Values => {
                            // keepalived's block reader takes no words after its keyword (a
                            // virtual_server_group's name is taken out before it reads).
                            let named = node.key.text == "virtual_server_group";
                            if let Some(extra) = node.args.get(usize::from(named)) {
                                self.diags.push(
                                    Class::Invalid,
                                    Some(node.line_span()),
                                    format!(
                                        "Block {} has extra parameters {} ...",
                                        node.key.text, extra.text
                                    ),
                                );
                            }
                            let (b, close) = self.values();
                            node.block = Some(b);
                            node.close = close;
                            last_ended_line = false;
                        }
                        Kind::Block => {
                            let at = self.peek_statement().map(|t| (t.kind, t.span));
                            let open_at = match at {
                                Some((TokKind::Open, span)) => {
                                    self.skip_eols();
                                    self.pos += 1;
                                    self.opened();
                                    Some(span)
                                }
                                Some((_, span)) => {
                                    // keepalived reads the block all the same.
                                    self.diags.push(
                                        Class::Syntax,
                                        Some(span),
                                        "Missing '{' at beginning of configuration block",
                                    );
                                    Some(node.key.span)
                                }
                                None => None,
                            };
                            if open_at.is_some() {
                                self.path.push(node.key.text.clone());
                                let lenient = self.lenient();
                                let (b, close) = self.seq(open_at, lenient);
                                self.path.pop();
                                node.block = Some(b);
                                node.close = close;
                            }
                            last_ended_line = false;
                        }
                        Kind::Lenient => match self.toks.get(self.pos).map(|t| (t.kind, t.span)) {
                            Some((TokKind::Open, span)) => {
                                self.pos += 1;
                                self.opened();
                                self.path.push(node.key.text.clone());
                                let (b, close) = self.seq(Some(span), true);
                                self.path.pop();
                                node.block = Some(b);
                                node.close = close;
                                last_ended_line = false;
                            }
                            Some((TokKind::Close, _)) => last_ended_line = false,
                            _ => {}
                        },
                    }
                    nodes.push(node);
                }
            }
        }
        // keepalived counts the `{`s it read: a block it entered without one (after saying
        // it was missing) is not one of them.
        if let Some(span) = open.filter(|_| self.braces > 0) {
            self.braces -= 1;
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
        (parse_with(&toks, &mut diags, &Lenient), diags)
    }

    /// A reader that knows no block.
    struct Lenient;

    impl Grammar for Lenient {
        fn kind(&self, _: &[String], _: &str) -> Kind {
            Kind::Lenient
        }
        fn knows(&self, _: &[String]) -> bool {
            false
        }
    }

    /// As keepalived reads it.
    fn keepalived(text: &str) -> (Vec<Node>, Diagnostics) {
        let l = MemLoader::single("/t.conf", text);
        let mut map = SourceMap::default();
        let mut diags = Diagnostics::new(false);
        let (toks, _) = Lexer::new(&l, &mut map, &mut diags, "n").run(Path::new("/t.conf"));
        (parse(&toks, &mut diags), diags)
    }

    #[test]
    fn a_brace_after_a_keyword_without_a_block_is_ignored_and_the_next_closes_its_block() {
        // `state ${STATE}` with STATE undefined: keepalived reads `state $`, an unexpected
        // `{`, a keyword `STATE`, and a `}` that ends the instance.
        let (n, d) = keepalived("vrrp_instance VI_1 {\n state $ { STATE }\n priority 100\n}\n");
        assert_eq!(
            shape(&n),
            "vrrp_instance VI_1 {state $; STATE}; priority 100"
        );
        let msgs: Vec<_> = d.items().iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs, ["Unexpected '{' - ignoring", "Unknown keyword '}'"],);
        // In a block of values a `{` is a value, and the first `}` ends the block.
        let (n, d) = keepalived(
            "vrrp_instance VI_1 {\n virtual_ipaddress {\n  $ { X }\n  10.0.0.1\n }\n}\n",
        );
        assert_eq!(
            shape(&n),
            "vrrp_instance VI_1 {virtual_ipaddress {$; {; X}; 10.0.0.1}"
        );
        let msgs: Vec<_> = d.items().iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs, ["Unknown keyword '}'"]);
    }

    #[test]
    fn a_block_keyword_without_its_brace_is_read_as_a_block() {
        let (n, d) = keepalived("global_defs\n router_id a\n}\nvrrp_script s {\n script x\n}\n");
        assert_eq!(
            shape(&n),
            "global_defs {router_id a}; vrrp_script s {script x}"
        );
        // keepalived's reader also counts the `}` one too many.
        let msgs: Vec<_> = d.items().iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "Missing '{' at beginning of configuration block",
                "Extra '}' found"
            ]
        );
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
