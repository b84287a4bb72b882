//! holdfast-config: reads the `keepalived.conf` files keepalived users already have.
//!
//! Pipeline: [`lex`] (preprocessor and tokenizer, with spans through includes) → [`tree`]
//! (keyword/argument/block nodes) → [`lower`] (the typed [`model::Config`] with keepalived 2.2's
//! defaults) → [`validate`] (cross references, host checks, script security). [`print`] writes
//! a configuration back out.
//!
//! This crate is pure: no sockets, no clock, no randomness. The file system is reached through
//! [`loader::Loader`] and the host (interfaces, users, file modes) through [`validate::Host`].

pub mod diag;
mod grammar;
pub mod lex;
pub mod loader;
pub mod lower;
pub mod model;
pub mod print;
pub mod reference;
pub mod span;
pub mod tree;
pub mod validate;

use std::path::Path;

pub use diag::{Class, Diagnostic, Severity};
pub use model::Config;
pub use span::SourceMap;

/// How to load.
#[derive(Clone, Debug)]
pub struct Options {
    /// The config-id for `@id` lines (keepalived: `-i`, default the short hostname).
    pub config_id: String,
    /// Unknown and unsupported keywords are errors.
    pub strict: bool,
}

/// The result of loading: the model, everything found on the way, and the sources to render
/// diagnostics against.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration (best effort even when there are errors, as keepalived runs on).
    pub config: Config,
    /// Findings in order.
    pub diagnostics: Vec<Diagnostic>,
    /// Files read.
    pub sources: SourceMap,
    /// Whether the top-level file could be read.
    pub readable: bool,
    /// `vrrp_script`s keepalived would disable at start (not found, or insecure).
    pub disabled_scripts: Vec<String>,
}

impl Loaded {
    /// keepalived 2.2.7 `-t` exit status for these findings.
    pub fn exit_code(&self, strict: bool) -> u8 {
        diag::exit_code(&self.diagnostics, strict)
    }

    /// All diagnostics rendered with source lines and carets.
    pub fn render(&self) -> String {
        self.diagnostics
            .iter()
            .map(|d| diag::render(&self.sources, d))
            .collect()
    }
}

/// Loads `path` through `loader`; with a `host`, also makes keepalived's host checks
/// (interfaces, script security).
pub fn load(
    path: &Path,
    loader: &dyn loader::Loader,
    host: Option<&dyn validate::Host>,
    opts: &Options,
) -> Loaded {
    let mut sources = SourceMap::default();
    let mut diags = diag::Diagnostics::new(opts.strict);
    let (tokens, readable) =
        lex::Lexer::new(loader, &mut sources, &mut diags, &opts.config_id).run(path);
    let nodes = tree::parse(&tokens, &mut diags);
    let mut config = lower::lower(&nodes, host, &mut diags);
    validate::references(&mut config, &mut diags);
    validate::file_check_order(&mut config, &mut diags);
    validate::sync_group_tracking(&mut config, host, &mut diags);
    let mut disabled_scripts = Vec::new();
    // keepalived reports a missing interface on the line that names it, while reading.
    let missing = host.is_some_and(|h| validate::interfaces(&mut config, h, &mut diags));
    if missing {
        // keepalived's VRRP process stops after reading when an interface is missing: the
        // checks it makes on the instances and groups once read (reported without a line)
        // are not made.
        diags.drop_where(&|d| {
            !d.keepalived_lined
                && matches!(d.class, diag::Class::Invalid | diag::Class::Note)
                && d.span.is_some_and(|s| pass_of(&nodes, s) == 2)
        });
    }
    // Where keepalived stops reading (exit 2) it checks nothing else: what it would have said
    // later is dropped, and the scripts are not checked (the configuration does not run).
    let stop = diags.stop_in_passes(&|s| pass_of(&nodes, s));
    if let Some(at) = stop {
        diags.truncate_at(at, &|s| pass_of(&nodes, s));
    }
    if let Some(host) = host.filter(|_| stop.is_none() && readable) {
        // keepalived's checker reads and checks its scripts before its VRRP process looks at
        // the interfaces: a missing interface does not spare the checker's scripts.
        disabled_scripts = validate::script_security(&mut config, host, &mut diags, !missing);
    }
    Loaded {
        config,
        diagnostics: diags.into_vec(),
        sources,
        readable,
        disabled_scripts,
    }
}

/// Which of keepalived's reading passes finds what is at `at`: 0 the global one, 1 the
/// checker's, 2 VRRP's, 3 BFD's — by the top-level block it is in (the last one starting
/// before it in its file; VRRP's when none does, as in an included file).
fn pass_of(nodes: &[tree::Node], at: span::Span) -> u8 {
    let top = nodes
        .iter()
        .rfind(|n| n.key.span.file == at.file && n.key.span.lo <= at.lo);
    match top.map(|n| n.key.text.as_str()) {
        Some(
            "global_defs"
            | "net_namespace"
            | "net_namespace_ipvs"
            | "instance"
            | "use_pid_dir"
            | "child_wait_time"
            | "linkbeat_use_polling"
            | "namespace_with_ipsets",
        ) => 0,
        Some("virtual_server" | "virtual_server_group" | "SSL") => 1,
        Some("bfd_instance") => 3,
        _ => 2,
    }
}

/// Parses configuration text held in memory (no includes resolved outside it, no host checks).
pub fn parse_str(text: &str) -> Loaded {
    let loader = loader::MemLoader::single("/keepalived.conf", text);
    load(
        Path::new("/keepalived.conf"),
        &loader,
        None,
        &Options {
            config_id: String::new(),
            strict: false,
        },
    )
}

/// Bodies of the fuzz targets, callable from ordinary tests (corpus replay, property tests).
pub mod fuzzing {
    /// Parses arbitrary bytes as a configuration and checks the invariants: no panic, every
    /// span inside its file and on a character boundary, and printing then parsing again
    /// gives the same model.
    pub fn config_parse(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let loaded = crate::parse_str(&text);
        for d in &loaded.diagnostics {
            if let Some(s) = d.span {
                let f = loaded.sources.file(s.file);
                assert!(
                    s.lo <= s.hi && (s.hi as usize) <= f.text.len(),
                    "span {s:?} outside its file"
                );
                assert!(
                    f.text.is_char_boundary(s.lo as usize)
                        && f.text.is_char_boundary(s.hi as usize),
                    "span {s:?} splits a character"
                );
                let _ = crate::diag::render(&loaded.sources, d);
            }
        }
        let printed = crate::print::print(&loaded.config);
        let again = crate::parse_str(&printed);
        assert_eq!(
            again.config, loaded.config,
            "print/parse round trip changed the model:\n{printed}"
        );
    }
}
