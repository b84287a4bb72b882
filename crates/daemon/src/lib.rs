//! holdfast: library side of the `holdfast` binary.

pub mod announce;
pub mod bfd;
pub mod control;
pub mod dump;
pub mod fifo;
pub mod firewall;
pub mod guardian;
pub mod health;
pub mod host;
pub mod instance;
pub mod logging;
pub mod lvs;
pub mod mail;
pub mod mailbox;
pub mod metrics;
pub mod nlhub;
pub mod pidfile;
pub mod plan;
pub mod routing;
pub mod run;
pub mod script;
pub mod services;
pub mod systemd;
pub mod track;
pub mod tuning;
pub mod vmac;

/// The body of the `control_request` fuzz target (`fuzz/`), replayed by the tests over the kept
/// corpus.
pub mod fuzzing {
    use crate::control::{Request, render, render_lvs};

    /// Parses arbitrary bytes as a control request: an accepted request sent back as the client
    /// would send it parses to the same request, and a refusal is a one-line message. If the
    /// bytes are JSON, the client's two renderings of them as a status reply keep their shape.
    pub fn control_request(data: &[u8]) {
        match Request::parse(data) {
            Ok(req) => {
                let again = Request::parse(req.to_json().to_string().as_bytes());
                assert_eq!(again, Ok(req), "request did not round-trip");
            }
            Err(e) => assert!(!e.is_empty() && !e.contains('\n'), "bad error text {e:?}"),
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
            let lvs = render_lvs(&v);
            let services = v["services"].as_array().map_or(&[][..], Vec::as_slice);
            let dests: usize = services
                .iter()
                .map(|s| s["destinations"].as_array().map_or(0, Vec::len))
                .sum();
            // Three header lines, one per service and one per destination, unless a string
            // field carried its own line breaks.
            if !data.contains(&b'\\') {
                assert_eq!(lvs.lines().count(), 3 + services.len() + dests, "{lvs}");
            }
            let text = render(&v);
            assert!(text.starts_with("VRRP instances\n"));
        }
    }
}
