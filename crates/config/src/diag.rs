//! Diagnostics: what is wrong, where, and how `keepalived -t` would judge it.

use std::fmt::Write as _;

use crate::span::{SourceMap, Span};

/// How bad a diagnostic is for a human.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Printed as `warning`.
    Warning,
    /// Printed as `error`.
    Error,
}

/// Which of keepalived's outcomes a diagnostic corresponds to; decides the exit code of
/// `check-config` (keepalived 2.2.7 `-t`: 0 ok, 4 cannot run, 5 errors, 6 script security).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Braces, quotes, includes: keepalived logs and carries on (exit 5).
    Syntax,
    /// A keyword keepalived does not know (`Unknown keyword '%s'`): skipped, exit 5.
    Unknown,
    /// A keyword keepalived knows but holdfast does not implement yet. keepalived would accept
    /// it, so it does not change the exit code unless `--strict`.
    Unsupported,
    /// A bad or out-of-range value, a missing mandatory value, a deprecated form keepalived
    /// reports: exit 5.
    Invalid,
    /// Advice only; never changes the exit code.
    Note,
    /// Script security violation (exit 6).
    Security,
    /// The configuration cannot run at all (file not found): exit 4.
    Fatal,
    /// keepalived stops reading here and exits 2 (a keyword whose value its handler reads
    /// without checking it is there): nothing after it is read or checked.
    Stop,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// keepalived outcome class.
    pub class: Class,
    /// Where; `None` for whole-configuration findings.
    pub span: Option<Span>,
    /// The message, in keepalived's wording where keepalived has one.
    pub message: String,
    /// Whether `keepalived -t` prints a line number for this finding (it does not for
    /// whole-instance checks such as advert_int rounding); used by the parity tests.
    pub keepalived_lined: bool,
    /// Which of keepalived's reading passes reports it, when not the one its top-level block
    /// belongs to (a `bfd_instance`'s `weight` is read by the VRRP process, its unknown
    /// keywords by the checker's first): 0 global, 1 checker, 2 VRRP, 3 BFD.
    pub pass: Option<u8>,
}

/// Accumulates diagnostics while loading.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
    strict: bool,
}

impl Diagnostics {
    /// `strict` turns unknown and unsupported keywords into errors.
    pub fn new(strict: bool) -> Self {
        Diagnostics {
            items: Vec::new(),
            strict,
        }
    }

    /// Records a finding.
    pub fn push(&mut self, class: Class, span: Option<Span>, message: impl Into<String>) {
        let severity = match class {
            Class::Unknown | Class::Unsupported if self.strict => Severity::Error,
            Class::Unknown | Class::Unsupported | Class::Note => Severity::Warning,
            _ => Severity::Error,
        };
        self.items.push(Diagnostic {
            severity,
            class,
            span,
            message: message.into(),
            keepalived_lined: span.is_some(),
            pass: None,
        });
    }

    /// Records an error of class [`Class::Invalid`] at `span` that keepalived's reading pass
    /// `pass` reports (see [`Diagnostic::pass`]).
    pub fn invalid_in(&mut self, pass: u8, span: Span, message: impl Into<String>) {
        self.push(Class::Invalid, Some(span), message);
        if let Some(d) = self.items.last_mut() {
            d.pass = Some(pass);
        }
    }

    /// Says that the last finding is reported by keepalived's reading pass `pass`.
    pub fn in_pass(&mut self, pass: u8) {
        if let Some(d) = self.items.last_mut() {
            d.pass = Some(pass);
        }
    }

    /// Records a finding with a location that `keepalived -t` reports without a line number.
    pub fn push_unlined(&mut self, class: Class, span: Option<Span>, message: impl Into<String>) {
        self.push(class, span, message);
        if let Some(last) = self.items.last_mut() {
            last.keepalived_lined = false;
        }
    }

    /// Removes the most recent finding if it has this class and span.
    pub fn retract(&mut self, class: Class, span: Span) {
        if self
            .items
            .last()
            .is_some_and(|d| d.class == class && d.span == Some(span))
        {
            self.items.pop();
        }
    }

    /// Records an error of class [`Class::Invalid`] at `span`.
    pub fn invalid(&mut self, span: Span, message: impl Into<String>) {
        self.push(Class::Invalid, Some(span), message);
    }

    /// Records a warning of class [`Class::Note`] at `span`.
    pub fn note(&mut self, span: Span, message: impl Into<String>) {
        self.push(Class::Note, Some(span), message);
    }

    /// All findings so far, in the order they were found.
    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// Consumes the collector.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items
    }

    /// Whether something already made the configuration unable to run.
    pub fn has_fatal(&self) -> bool {
        self.items.iter().any(|d| d.class == Class::Fatal)
    }

    /// Drops the findings `drop` picks.
    pub fn drop_where(&mut self, drop: &dyn Fn(&Diagnostic) -> bool) {
        self.items.retain(|d| !drop(d));
    }

    /// Where keepalived stops reading, when it reads the configuration once per part in the
    /// order `pass` numbers them: the first stop of the first part that has one.
    pub fn stop_in_passes(&self, pass: &dyn Fn(Span) -> u8) -> Option<(Span, u8)> {
        self.items
            .iter()
            .filter(|d| d.class == Class::Stop)
            .filter_map(|d| {
                let s = d.span?;
                Some((s, d.pass.unwrap_or_else(|| pass(s))))
            })
            .min_by_key(|(s, p)| (*p, s.file, s.lo))
    }

    /// Keeps only what keepalived reports before it stops at `at`. keepalived -t reads the
    /// configuration once per part, in order (`pass` numbers them: global, checker, VRRP,
    /// BFD): the parts read before the stop's were read and checked in full, and of the stop's
    /// own part only the lines before it were read; nothing after is read or checked.
    pub fn truncate_at(&mut self, (at, stop_pass): (Span, u8), pass: &dyn Fn(Span) -> u8) {
        self.items.retain(|d| match d.span {
            Some(s) if d.class == Class::Stop => s == at,
            // What the stopping keyword is (unsupported) is still said of it.
            Some(s) if d.class == Class::Unsupported && s.file == at.file && s.lo == at.lo => true,
            Some(s) => {
                let p = d.pass.unwrap_or_else(|| pass(s));
                p < stop_pass
                    || (p == stop_pass && d.keepalived_lined && (s.file, s.lo) < (at.file, at.lo))
            }
            None => false,
        });
    }
}

/// The exit status `keepalived -t` (2.2.7) gives for these findings; `strict` also fails on
/// unknown and unsupported keywords.
///
/// keepalived keeps the most serious status it met, in the order of its `config_err_t`: a
/// script security violation over any error, an error over a file or interface it cannot use;
/// a stop ends it at once.
pub fn exit_code(diags: &[Diagnostic], strict: bool) -> u8 {
    if diags.iter().any(|d| d.class == Class::Stop) {
        2
    } else if diags.iter().any(|d| d.class == Class::Security) {
        6
    } else if diags.iter().any(|d| match d.class {
        Class::Syntax | Class::Unknown | Class::Invalid => true,
        Class::Unsupported => strict,
        Class::Note | Class::Security | Class::Fatal | Class::Stop => false,
    }) {
        5
    } else if diags.iter().any(|d| d.class == Class::Fatal) {
        4
    } else {
        0
    }
}

/// Renders one diagnostic: `path:line:col: error: message`, the source line, a caret under the
/// span, then one `included from` line per level of the include chain.
pub fn render(map: &SourceMap, d: &Diagnostic) -> String {
    let sev = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut out = String::new();
    let Some(span) = d.span else {
        let _ = writeln!(out, "{sev}: {}", d.message);
        return out;
    };
    let file = map.file(span.file);
    let (line, col) = file.line_col(span.lo);
    let _ = writeln!(
        out,
        "{}:{}:{}: {sev}: {}",
        file.path.display(),
        line,
        col,
        d.message
    );
    let text = file.line_text(line);
    let (_, end_col) = file.line_col(span.hi.max(span.lo));
    let (end_line, _) = file.line_col(span.hi.max(span.lo));
    let width = if end_line == line {
        end_col.saturating_sub(col).max(1)
    } else {
        1
    };
    let gutter = line.to_string().len();
    let _ = writeln!(out, "{:gutter$} |", "");
    let _ = writeln!(out, "{line} | {}", text.replace('\t', " "));
    let _ = writeln!(
        out,
        "{:gutter$} | {}{}",
        "",
        " ".repeat(col - 1),
        "^".repeat(width)
    );
    let mut from = file.included_from;
    while let Some(inc) = from {
        let _ = writeln!(out, "{:gutter$} = included from {}", "", map.locate(inc));
        from = map.file(inc.file).included_from;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_points_a_caret_at_the_span() {
        let mut map = SourceMap::default();
        let main = map.add("/etc/k.conf".into(), "include x.conf\n".into(), None);
        let inc = map.add(
            "/etc/x.conf".into(),
            "vrrp_instance A {\n  prioirty 5\n}\n".into(),
            Some(Span {
                file: main,
                lo: 0,
                hi: 14,
            }),
        );
        let mut d = Diagnostics::new(false);
        d.push(
            Class::Unknown,
            Some(Span {
                file: inc,
                lo: 20,
                hi: 28,
            }),
            "Unknown keyword 'prioirty'",
        );
        let text = render(&map, &d.items()[0]);
        assert_eq!(
            text,
            "/etc/x.conf:2:3: warning: Unknown keyword 'prioirty'\n  |\n2 |   prioirty 5\n  |   ^^^^^^^^\n  = included from /etc/k.conf:1:1\n"
        );
    }

    #[test]
    fn exit_codes_follow_keepalived_2_2_7() {
        let mk = |class| Diagnostic {
            severity: Severity::Error,
            class,
            span: None,
            message: String::new(),
            keepalived_lined: false,
            pass: None,
        };
        assert_eq!(exit_code(&[], false), 0);
        assert_eq!(exit_code(&[mk(Class::Note)], false), 0);
        assert_eq!(exit_code(&[mk(Class::Unsupported)], false), 0);
        assert_eq!(exit_code(&[mk(Class::Unsupported)], true), 5);
        assert_eq!(exit_code(&[mk(Class::Unknown)], false), 5);
        assert_eq!(
            exit_code(&[mk(Class::Invalid), mk(Class::Security)], false),
            6
        );
        // The most serious status wins, in keepalived's order.
        assert_eq!(
            exit_code(&[mk(Class::Security), mk(Class::Fatal)], false),
            6
        );
        assert_eq!(exit_code(&[mk(Class::Fatal), mk(Class::Invalid)], false), 5);
        assert_eq!(exit_code(&[mk(Class::Fatal)], false), 4);
        // A stop ends keepalived at once.
        assert_eq!(exit_code(&[mk(Class::Security), mk(Class::Stop)], false), 2);
    }

    #[test]
    fn strict_makes_unknown_keywords_errors() {
        let mut d = Diagnostics::new(true);
        d.push(Class::Unknown, None, "x");
        assert_eq!(d.items()[0].severity, Severity::Error);
        let mut d = Diagnostics::new(false);
        d.push(Class::Unknown, None, "x");
        assert_eq!(d.items()[0].severity, Severity::Warning);
    }
}
