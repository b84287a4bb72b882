//! Email alerts, as keepalived sends them: `notification_email` receives a short mail through
//! `smtp_server` when a VRRP instance or sync group changes state (with `smtp_alert`), when a
//! checker changes a real server's state (on by default once a server and a recipient are
//! configured, as in keepalived) and when a virtual server gains or loses its quorum (with
//! `smtp_alert`). The subject is keepalived's (`[router_id] VRRP Instance VI_1 - Entering
//! MASTER state`, `[router_id] Realserver [10.0.0.2]:tcp:80 of virtual server
//! [10.0.0.1]:tcp:80 - DOWN`), so filters written for keepalived's mail keep working; so is
//! the one-line body and the `X-Mailer: Keepalived` header. Each alert is its own SMTP
//! session in the background, every step bounded by `smtp_connect_timeout`; a failure is
//! logged and never delays the daemon.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::logging::Logger;

/// Where and to whom alerts go (`global_defs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailer {
    /// `smtp_server` host.
    pub server: String,
    /// `smtp_server` port (25).
    pub port: u16,
    /// `smtp_helo_name` (this host's name).
    pub helo: String,
    /// `notification_email_from` (`keepalived@` this host's name).
    pub from: String,
    /// `notification_email`.
    pub to: Vec<String>,
    /// `router_id` (this host's name), the subject's prefix.
    pub router_id: String,
    /// `smtp_connect_timeout` (30 s): the bound of each step of the session.
    pub timeout: Duration,
    /// `no_email_faults`: no mail for entering FAULT.
    pub no_faults: bool,
}

impl Mailer {
    /// The alerts `global` asks for: none without a server or a recipient (keepalived sends
    /// nothing then either).
    pub fn from_config(global: &holdfast_config::model::Global) -> Option<Mailer> {
        let server = global.smtp_server.clone()?;
        if global.notification_email.is_empty() {
            return None;
        }
        let host = crate::host::short_hostname();
        Some(Mailer {
            server,
            port: global.smtp_port.unwrap_or(25),
            helo: global
                .smtp_helo_name
                .clone()
                .unwrap_or_else(|| host.clone()),
            from: global
                .notification_email_from
                .clone()
                .unwrap_or_else(|| format!("keepalived@{host}")),
            to: global.notification_email.clone(),
            router_id: global.router_id.clone().unwrap_or(host),
            timeout: global
                .smtp_connect_timeout
                .unwrap_or(Duration::from_secs(30)),
            no_faults: global.no_email_faults,
        })
    }

    /// The server as keepalived's log lines show it.
    fn server_name(&self) -> String {
        match self.server.parse::<std::net::IpAddr>() {
            Ok(ip) => format!("[{ip}]:{}", self.port),
            Err(_) => format!("{}:{}", self.server, self.port),
        }
    }

    /// The envelope and text of the mail for `what` (the subject after `[router_id] `) with
    /// `body`: keepalived's headers (`Date`, `From`, `Subject`, `X-Mailer: Keepalived`, `To`)
    /// and its one-line body.
    pub fn message(&self, what: &str, body: &str) -> Result<(Envelope, String), String> {
        let address = |a: &str| {
            a.parse::<Address>()
                .map_err(|e| format!("invalid email address '{a}': {e}"))
        };
        let to = self
            .to
            .iter()
            .map(|t| address(t))
            .collect::<Result<Vec<_>, _>>()?;
        let envelope = Envelope::new(Some(address(&self.from)?), to).map_err(|e| e.to_string())?;
        // No line break may reach the headers from the configuration.
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        let text = format!(
            "Date: {}\r\nFrom: {}\r\nSubject: [{}] {}\r\nX-Mailer: Keepalived\r\nTo: {}\r\n\r\n{}\r\n",
            chrono::Local::now().to_rfc2822(),
            clean(&self.from),
            clean(&self.router_id),
            clean(what),
            clean(&self.to.join(", ")),
            body
        );
        Ok((envelope, text))
    }

    /// Sends one alert; the error is the line to log.
    pub async fn send(&self, what: &str, body: &str) -> Result<(), String> {
        let (envelope, text) = self
            .message(what, body)
            .map_err(|e| format!("SMTP alert: {e}"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.server)
            .port(self.port)
            .timeout(Some(self.timeout))
            .hello_name(ClientId::Domain(self.helo.clone()))
            .build();
        // A whole session is bounded too: a server trickling its answers cannot hold one.
        let session = tokio::time::timeout(
            self.timeout * 8,
            transport.send_raw(&envelope, text.as_bytes()),
        )
        .await;
        let server = self.server_name();
        match session {
            Ok(Ok(_)) => Ok(()),
            Err(_) => Err(format!(
                "Timeout reading data to remote SMTP server {server}."
            )),
            Ok(Err(e)) if e.is_timeout() => {
                Err(format!("Timeout connecting SMTP server {server}."))
            }
            Ok(Err(e)) => match e.status() {
                Some(code) => Err(format!(
                    "Error processing SMTP command on SMTP server {server}. SMTP status code = {code}"
                )),
                None => Err(format!("SMTP connection ERROR to {server}. ({e})")),
            },
        }
    }
}

/// Which of keepalived's processes an alert comes from (its log lines go there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// VRRP instances and sync groups.
    Vrrp,
    /// Virtual and real servers.
    Checker,
}

/// The alerts of the running configuration (replaced at reload), which VRRP instances, sync
/// groups and virtual servers send through.
#[derive(Default)]
pub struct Outbox {
    mailer: RwLock<Option<Arc<Mailer>>>,
}

impl Outbox {
    /// Makes `mailer` the one alerts go through (`None`: alerts off).
    pub fn configure(&self, mailer: Option<Mailer>) {
        if let Ok(mut m) = self.mailer.write() {
            *m = mailer.map(Arc::new);
        }
    }

    /// The alerts of the running configuration, if any.
    fn current(&self) -> Option<Arc<Mailer>> {
        self.mailer.read().ok().and_then(|m| m.clone())
    }

    /// Sends `[router_id] {what}` with `body` in the background, when alerts are configured.
    pub fn alert(&self, from: Source, what: String, body: String, log: Logger) {
        if let Some(m) = self.current() {
            send_in_background(m, from, what, body, log);
        }
    }

    /// Mails a VRRP instance's (`group`: a sync group's) new state, unless it is FAULT and
    /// `no_email_faults` is set.
    pub fn vrrp_alert(
        &self,
        name: &str,
        group: bool,
        state: holdfast_vrrp::router::State,
        log: Logger,
    ) {
        if let Some(m) = self.current()
            && mails_state(state, m.no_faults)
        {
            let (what, body) = vrrp_state(name, group, state);
            send_in_background(m, Source::Vrrp, what, body, log);
        }
    }
}

fn send_in_background(m: Arc<Mailer>, from: Source, what: String, body: String, log: Logger) {
    let say = move |line: &str| match from {
        Source::Vrrp => log.vrrp(line),
        Source::Checker => log.check(line),
    };
    tokio::spawn(async move {
        match m.send(&what, &body).await {
            Ok(()) if log.detail => say("SMTP alert successfully sent."),
            Ok(()) => {}
            Err(e) => say(&e),
        }
    });
}

/// Whether entering `state` is mailed (`no_faults`: `no_email_faults`).
fn mails_state(state: holdfast_vrrp::router::State, no_faults: bool) -> bool {
    !(no_faults && state == holdfast_vrrp::router::State::Fault)
}

/// The subject (after `[router_id] `) and body of a VRRP instance's (`group`: a sync
/// group's) new state, as keepalived writes them.
pub fn vrrp_state(
    name: &str,
    group: bool,
    state: holdfast_vrrp::router::State,
) -> (String, String) {
    use holdfast_vrrp::router::State;
    let (what, body) = match (state, group) {
        (State::Master, false) => (
            "Entering MASTER state",
            "=> VRRP Instance is now owning VRRP VIPs <=",
        ),
        (State::Backup, false) => (
            "Entering BACKUP state",
            "=> VRRP Instance is no longer owning VRRP VIPs <=",
        ),
        (State::Fault, false) => (
            "Entering FAULT state",
            "=> VRRP Instance is no longer owning VRRP VIPs <=",
        ),
        (State::Init, false) => ("Stopping", "=> VRRP Instance stopping <="),
        (State::Master, true) => (
            "Entering MASTER state",
            "=> All VRRP group instances are now in MASTER state <=",
        ),
        (State::Backup, true) => (
            "Entering BACKUP state",
            "=> All VRRP group instances are now in BACKUP state <=",
        ),
        (State::Fault, true) => (
            "Entering FAULT state",
            "=> All VRRP group instances are now in FAULT state <=",
        ),
        (State::Init, true) => (
            "Stopping",
            "=> All VRRP group instances are now stopping <=",
        ),
    };
    let kind = if group { "Group" } else { "Instance" };
    (format!("VRRP {kind} {name} - {what}"), body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailer() -> Mailer {
        Mailer {
            server: "10.10.0.1".into(),
            port: 25,
            helo: "lvs1".into(),
            from: "mail@example.com".into(),
            to: vec!["ops@example.com".into(), "dba@example.com".into()],
            router_id: "LVS_1".into(),
            timeout: Duration::from_secs(30),
            no_faults: false,
        }
    }

    #[test]
    fn the_mail_has_keepalived_subject_header_and_body() {
        let (what, body) = vrrp_state("VI_1", false, holdfast_vrrp::router::State::Master);
        let (env, text) = mailer().message(&what, &body).unwrap();
        assert!(
            text.contains("Subject: [LVS_1] VRRP Instance VI_1 - Entering MASTER state\r\n"),
            "{text}"
        );
        assert!(text.contains("X-Mailer: Keepalived\r\n"), "{text}");
        assert!(text.contains("From: mail@example.com\r\n"), "{text}");
        assert!(
            text.contains("To: ops@example.com, dba@example.com\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with("=> VRRP Instance is now owning VRRP VIPs <=\r\n"),
            "{text}"
        );
        assert_eq!(env.to().len(), 2);
        assert!(text.starts_with("Date: "), "{text}");
        // A line break in the configuration cannot add a header.
        let mut m = mailer();
        m.router_id = "X\r\nBcc: evil@example.com".into();
        let (_, text) = m.message(&what, &body).unwrap();
        assert!(!text.contains("\r\nBcc:"), "{text}");
    }

    #[test]
    fn no_email_faults_silences_fault_only() {
        use holdfast_vrrp::router::State;
        assert!(mails_state(State::Fault, false));
        assert!(!mails_state(State::Fault, true));
        for s in [State::Master, State::Backup, State::Init] {
            assert!(mails_state(s, true));
        }
        let g = holdfast_config::parse_str(
            "global_defs {\n smtp_server 10.0.0.1\n notification_email {\n  a@example.com\n }\n no_email_faults\n}\n",
        )
        .config
        .global;
        assert!(Mailer::from_config(&g).is_some_and(|m| m.no_faults));
    }

    #[test]
    fn a_bad_address_is_an_error_not_a_panic() {
        let mut m = mailer();
        m.to.push("not an address".into());
        let e = m.message("x", "y").unwrap_err();
        assert!(e.contains("not an address"), "{e}");
    }

    #[test]
    fn alerts_need_a_server_and_a_recipient() {
        let mut g = holdfast_config::parse_str("global_defs {\n smtp_server 10.10.0.1\n}\n")
            .config
            .global;
        assert_eq!(Mailer::from_config(&g), None);
        g.notification_email.push("ops@example.com".into());
        let m = Mailer::from_config(&g).unwrap();
        assert_eq!((m.port, m.timeout), (25, Duration::from_secs(30)));
        assert_eq!(m.server_name(), "[10.10.0.1]:25");
    }
}
