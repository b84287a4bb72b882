//! BFD (RFC 5880; single hop, RFC 5881) as keepalived 2.2.7's BFD process runs it: the control
//! packet and one session, sans IO. Time is a `Duration` since an epoch the driver picks;
//! randomness (the transmit jitter, discriminators) comes from a seed.
//!
//! A session starts Down, sending at its idle rate (`idle_tx`, at least the neighbour's
//! required receive interval) unless passive; it goes Init, then Up, with the neighbour's
//! state, as RFC 5880 §6.8.6 says; once Up it asks for the fast rates (`min_tx`/`min_rx`) with
//! a poll sequence; it goes Down when no packet came for the detection time (the neighbour's
//! multiplier times the agreed receive interval) or the neighbour says it is down, and its
//! state is reset a detection time later. Echo, demand mode (answered, never asked) and
//! authentication are not used, as in keepalived.

use std::collections::VecDeque;
use std::time::Duration;

/// UDP port of single-hop BFD control packets.
pub const PORT: u16 = 3784;
/// Length of a control packet without authentication.
pub const LEN: usize = 24;

/// A session state (RFC 5880 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// AdminDown.
    AdminDown = 0,
    /// Down.
    Down = 1,
    /// Init.
    Init = 2,
    /// Up.
    Up = 3,
}

impl State {
    fn from_bits(b: u8) -> State {
        match b & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    /// keepalived's word for it.
    pub fn word(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

/// keepalived's words for a diagnostic code.
pub fn diag_word(d: u8) -> &'static str {
    match d {
        0 => "No Diagnostic",
        1 => "Control Detection Time Expired",
        2 => "Echo Function Failed",
        3 => "Neighbor Signaled Session Down",
        4 => "Forwarding Plane Reset",
        5 => "Path Down",
        6 => "Concatenated Path Down",
        7 => "Administratively Down",
        8 => "Reverse Concatenated Path Down",
        _ => "Unknown",
    }
}

const DIAG_EXPIRED: u8 = 1;
const DIAG_NBR_DOWN: u8 = 3;

/// A control packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Diagnostic code.
    pub diag: u8,
    /// The sender's state.
    pub state: State,
    /// Poll.
    pub poll: bool,
    /// Final.
    pub fin: bool,
    /// Demand mode.
    pub demand: bool,
    /// Detection time multiplier.
    pub detect_mult: u8,
    /// My discriminator.
    pub my_discr: u32,
    /// Your discriminator.
    pub your_discr: u32,
    /// Desired minimum transmit interval, µs.
    pub min_tx: u32,
    /// Required minimum receive interval, µs.
    pub min_rx: u32,
}

/// Why a packet was discarded (keepalived's checks, in its order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bogus {
    /// Shorter than a header, or its length field is not the datagram's.
    Length,
    /// Not version 1.
    Version,
    /// Detection multiplier zero.
    Multiplier,
    /// Multipoint set.
    Multipoint,
    /// My discriminator zero.
    MyDiscr,
    /// Your discriminator zero while not Down or AdminDown.
    YourDiscr,
    /// Poll and final both set.
    PollFinal,
    /// Diagnostic code above 8.
    Diag,
    /// Authentication present (not used).
    Auth,
}

impl Packet {
    /// Reads and checks a datagram.
    pub fn parse(b: &[u8]) -> Result<Packet, Bogus> {
        if b.len() < LEN || usize::from(b[3]) != b.len() {
            return Err(Bogus::Length);
        }
        if b[0] >> 5 != 1 {
            return Err(Bogus::Version);
        }
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let p = Packet {
            diag: b[0] & 0x1f,
            state: State::from_bits(b[1] >> 6),
            poll: b[1] & 0x20 != 0,
            fin: b[1] & 0x10 != 0,
            demand: b[1] & 0x02 != 0,
            detect_mult: b[2],
            my_discr: word(4),
            your_discr: word(8),
            min_tx: word(12),
            min_rx: word(16),
        };
        if p.detect_mult == 0 {
            return Err(Bogus::Multiplier);
        }
        if b[1] & 0x01 != 0 {
            return Err(Bogus::Multipoint);
        }
        if p.my_discr == 0 {
            return Err(Bogus::MyDiscr);
        }
        if p.your_discr == 0 && !matches!(p.state, State::Down | State::AdminDown) {
            return Err(Bogus::YourDiscr);
        }
        if p.poll && p.fin {
            return Err(Bogus::PollFinal);
        }
        if p.diag > 8 {
            return Err(Bogus::Diag);
        }
        if b[1] & 0x04 != 0 {
            return Err(Bogus::Auth);
        }
        Ok(p)
    }

    /// The datagram.
    pub fn to_bytes(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (1 << 5) | (self.diag & 0x1f);
        b[1] = ((self.state as u8) << 6)
            | if self.poll { 0x20 } else { 0 }
            | if self.fin { 0x10 } else { 0 }
            | if self.demand { 0x02 } else { 0 };
        b[2] = self.detect_mult;
        b[3] = LEN as u8;
        b[4..8].copy_from_slice(&self.my_discr.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_discr.to_be_bytes());
        b[12..16].copy_from_slice(&self.min_tx.to_be_bytes());
        b[16..20].copy_from_slice(&self.min_rx.to_be_bytes());
        b
    }
}

/// A session's settings (`bfd_instance`), intervals in µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// `min_rx`.
    pub min_rx: u32,
    /// `min_tx`.
    pub min_tx: u32,
    /// `idle_tx`.
    pub idle_tx: u32,
    /// `multiplier`.
    pub multiplier: u8,
    /// `passive`.
    pub passive: bool,
}

/// What a session asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Send this packet to the neighbour.
    Send(Packet),
    /// The session came up (true) or went down from Up (false).
    Up(bool),
    /// A log line, in keepalived's words (without the instance name's parentheses where
    /// keepalived has none).
    Log(String),
}

/// One BFD session.
#[derive(Debug)]
pub struct Session {
    name: String,
    cfg: SessionConfig,
    state: State,
    remote_state: State,
    local_discr: u32,
    remote_discr: u32,
    local_diag: u8,
    remote_diag: u8,
    remote_min_rx: u32,
    remote_min_tx: u32,
    remote_mult: u8,
    remote_demand: bool,
    poll: bool,
    fin: bool,
    local_tx: u32,
    remote_tx: u32,
    detect_time: u64,
    last_seen: Duration,
    tx_at: Option<Duration>,
    expire_at: Option<Duration>,
    reset_at: Option<Duration>,
    rng: u64,
    out: VecDeque<Event>,
}

impl Session {
    /// A session named `name` (for its log lines) created at `now`, Down, its first packet
    /// due within its idle interval unless passive; `seed` drives its jitter and
    /// discriminators.
    pub fn new(name: &str, cfg: SessionConfig, now: Duration, seed: u64) -> Session {
        let mut s = Session {
            name: name.to_owned(),
            cfg,
            state: State::Down,
            remote_state: State::Down,
            local_discr: 0,
            remote_discr: 0,
            local_diag: 0,
            remote_diag: 0,
            remote_min_rx: 0,
            remote_min_tx: 0,
            remote_mult: 0,
            remote_demand: false,
            poll: false,
            fin: false,
            local_tx: cfg.idle_tx,
            remote_tx: 0,
            detect_time: 0,
            last_seen: now,
            tx_at: None,
            expire_at: None,
            reset_at: None,
            rng: seed | 1,
            out: VecDeque::new(),
        };
        s.local_discr = s.discriminator();
        if !cfg.passive {
            s.schedule_tx(now);
        }
        s
    }

    /// Its state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Its discriminator (the neighbour's packets carry it as "your discriminator").
    pub fn discriminator_value(&self) -> u32 {
        self.local_discr
    }

    /// The detection time the neighbour's packets gave, µs.
    pub fn detection_time(&self) -> u64 {
        self.detect_time
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn discriminator(&mut self) -> u32 {
        loop {
            let d = (self.next_random() >> 32) as u32;
            if d != 0 {
                return d;
            }
        }
    }

    /// The transmit interval less keepalived's jitter: 10 to 25 % of it.
    fn schedule_tx(&mut self, now: Duration) {
        let tx = u64::from(self.local_tx);
        let (lo, hi) = (tx / 10, tx / 4);
        let jitter = lo + self.next_random() % (hi - lo + 1);
        self.tx_at = Some(now + Duration::from_micros(tx - jitter));
    }

    fn detect(&self) -> Duration {
        Duration::from_micros(self.detect_time)
    }

    /// The next packet to send, as it stands.
    fn packet(&mut self) -> Packet {
        if self.poll && self.fin {
            self.poll = false;
        }
        Packet {
            diag: self.local_diag,
            state: self.state,
            poll: self.poll,
            fin: self.fin,
            demand: false,
            detect_mult: self.cfg.multiplier,
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            min_tx: if self.state == State::Up {
                self.cfg.min_tx
            } else {
                self.cfg.idle_tx
            },
            min_rx: self.cfg.min_rx,
        }
    }

    fn send_now(&mut self) {
        let p = self.packet();
        self.out.push_back(Event::Send(p));
        self.fin = false;
    }

    fn idle_tx(&mut self) {
        self.local_tx = self.cfg.idle_tx.max(self.remote_min_rx);
    }

    fn down(&mut self, now: Duration, diag: u8) {
        let was_up = self.state == State::Up;
        if was_up {
            self.local_discr = self.discriminator();
            self.out.push_back(Event::Log(format!(
                "({}) Entering Down state (Local diagnostic - {}, Remote diagnostic - {})",
                self.name,
                diag_word(diag),
                diag_word(self.remote_diag)
            )));
        }
        self.state = State::Down;
        self.local_diag = diag;
        self.reset_at = Some(now + self.detect());
        if self.cfg.passive {
            self.tx_at = None;
        }
        // RFC 5880: not Up, at least a second between packets.
        self.idle_tx();
        self.expire_at = None;
        if was_up && self.remote_state != State::AdminDown {
            self.out.push_back(Event::Up(false));
        }
    }

    fn rise(&mut self, now: Duration) {
        self.local_diag = 0;
        if self.state == State::Up {
            self.out.push_back(Event::Log(format!(
                "({}) Entering {} state",
                self.name,
                self.state.word()
            )));
        }
        self.reset_at = None;
        if self.expire_at.is_none() {
            self.expire_at = Some(now + self.detect());
        }
    }

    fn up(&mut self, now: Duration) {
        self.state = State::Up;
        self.rise(now);
        if self.cfg.idle_tx != self.cfg.min_tx && !self.fin {
            self.poll = true;
        }
        self.out.push_back(Event::Up(true));
    }

    fn init(&mut self, now: Duration) {
        self.state = State::Init;
        self.rise(now);
        if self.cfg.passive && self.tx_at.is_none() {
            self.schedule_tx(now);
        }
    }

    /// A valid packet from the neighbour, at `now`.
    pub fn on_packet(&mut self, now: Duration, p: &Packet) {
        let old_local_tx = self.local_tx;
        let old_detect = self.detect_time;
        self.remote_discr = p.my_discr;
        self.remote_state = p.state;
        self.remote_diag = p.diag;
        self.remote_min_rx = p.min_rx;
        self.remote_min_tx = p.min_tx;
        self.remote_demand = p.demand;
        self.remote_mult = p.detect_mult;
        if p.fin {
            self.poll = false;
        }
        if self.state != State::Up || p.poll || p.fin {
            if self.remote_state == State::Up && matches!(self.state, State::Init | State::Up) {
                self.local_tx = self.cfg.min_tx.max(self.remote_min_rx);
            } else {
                self.idle_tx();
            }
            self.remote_tx = self.cfg.min_rx.max(self.remote_min_tx);
        }
        self.detect_time = u64::from(self.remote_mult) * u64::from(self.remote_tx);
        if self.local_tx < old_local_tx && self.tx_at.is_some() {
            self.schedule_tx(now);
        }
        if self.detect_time != old_detect {
            self.out.push_back(Event::Log(format!(
                "{:width$} Detection time is {} us (was {} us)",
                "",
                self.detect_time,
                old_detect,
                width = self.name.len() + 2
            )));
        }
        if self.remote_state == State::AdminDown && self.state != State::Down {
            self.down(now, DIAG_NBR_DOWN);
        } else {
            match (self.state, self.remote_state) {
                (State::Down, State::Down) => self.init(now),
                (State::Down, State::Init) => self.up(now),
                (State::Init, State::Init | State::Up) => self.up(now),
                (State::Up, State::Down) => self.down(now, DIAG_NBR_DOWN),
                _ => {}
            }
        }
        let quiet = self.remote_demand && self.state == State::Up && self.remote_state == State::Up;
        if quiet {
            self.tx_at = None;
        } else if self.tx_at.is_none() {
            self.schedule_tx(now);
        }
        if p.poll {
            self.fin = true;
            self.send_now();
        }
        self.last_seen = now;
        if self.state == State::Up && self.expire_at.is_some() {
            self.expire_at = Some(now + self.detect());
        }
    }

    /// When [`Session::on_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        [self.tx_at, self.expire_at, self.reset_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs what is due at `now`: a packet, the detection timer, the reset after Down.
    pub fn on_timeout(&mut self, now: Duration) {
        if self.expire_at.is_some_and(|t| t <= now) {
            self.expire_at = None;
            if matches!(self.state, State::Up | State::Init) {
                let dead = now.saturating_sub(self.last_seen);
                if self.state == State::Up {
                    let overdue = u64::try_from(dead.as_micros())
                        .unwrap_or(u64::MAX)
                        .saturating_sub(self.detect_time);
                    self.out.push_back(Event::Log(format!(
                        "({}) Expired after {} ms ({overdue} usec overdue)",
                        self.name,
                        dead.as_millis()
                    )));
                }
                self.remote_discr = 0;
                self.down(now, DIAG_EXPIRED);
            }
        }
        if self.reset_at.is_some_and(|t| t <= now) {
            self.reset_at = None;
            self.remote_state = State::Down;
            self.remote_discr = 0;
            self.remote_diag = 0;
            self.remote_demand = false;
            self.poll = false;
            self.fin = false;
            self.idle_tx();
        }
        if self.tx_at.is_some_and(|t| t <= now) {
            self.send_now();
            self.schedule_tx(now);
        }
    }

    /// The next thing to do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> SessionConfig {
        SessionConfig {
            min_rx: 10_000,
            min_tx: 10_000,
            idle_tx: 1_000_000,
            multiplier: 5,
            passive: false,
        }
    }

    fn sends(s: &mut Session) -> Vec<Packet> {
        let mut v = Vec::new();
        while let Some(e) = s.poll_event() {
            if let Event::Send(p) = e {
                v.push(p);
            }
        }
        v
    }

    /// Runs two sessions wired to each other for `d`, in 1 ms steps.
    fn run(a: &mut Session, b: &mut Session, from: Duration, d: Duration) -> Duration {
        let mut now = from;
        while now < from + d {
            now += MS;
            for turn in 0..2 {
                let (x, y) = if turn == 0 {
                    (&mut *a, &mut *b)
                } else {
                    (&mut *b, &mut *a)
                };
                if x.poll_timeout().is_some_and(|t| t <= now) {
                    x.on_timeout(now);
                }
                for p in sends(x) {
                    let p = Packet::parse(&p.to_bytes()).expect("valid");
                    y.on_packet(now, &p);
                }
            }
        }
        now
    }

    #[test]
    fn a_packet_reads_back_as_it_was_written_and_bogus_ones_are_refused() {
        let p = Packet {
            diag: 3,
            state: State::Init,
            poll: true,
            fin: false,
            demand: false,
            detect_mult: 5,
            my_discr: 7,
            your_discr: 9,
            min_tx: 1_000_000,
            min_rx: 10_000,
        };
        let b = p.to_bytes();
        assert_eq!(b[0], 0x23);
        assert_eq!(b[1], 0xa0);
        assert_eq!(Packet::parse(&b), Ok(p));
        let bad = |f: &dyn Fn(&mut [u8; LEN])| {
            let mut x = b;
            f(&mut x);
            Packet::parse(&x)
        };
        assert_eq!(Packet::parse(&b[..20]), Err(Bogus::Length));
        assert_eq!(bad(&|x| x[0] = 0x43), Err(Bogus::Version));
        assert_eq!(bad(&|x| x[2] = 0), Err(Bogus::Multiplier));
        assert_eq!(bad(&|x| x[1] |= 1), Err(Bogus::Multipoint));
        assert_eq!(bad(&|x| x[4..8].fill(0)), Err(Bogus::MyDiscr));
        assert_eq!(bad(&|x| x[8..12].fill(0)), Err(Bogus::YourDiscr));
        assert_eq!(bad(&|x| x[1] |= 0x10), Err(Bogus::PollFinal));
        assert_eq!(bad(&|x| x[0] = 0x29), Err(Bogus::Diag));
        assert_eq!(bad(&|x| x[1] |= 0x04), Err(Bogus::Auth));
    }

    #[test]
    fn two_sessions_come_up_speed_up_and_detect_a_silent_neighbour() {
        let mut a = Session::new("A", cfg(), Duration::ZERO, 1);
        let mut b = Session::new("B", cfg(), Duration::ZERO, 2);
        let now = run(&mut a, &mut b, Duration::ZERO, 3000 * MS);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
        // The poll sequence moved both to 10 ms: 5 × 10 ms to detect.
        assert_eq!(a.detection_time(), 50_000);
        // Silence: Down within the detection time (and a little), with keepalived's lines.
        let mut now2 = now;
        let mut went_down = None;
        let mut lines = Vec::new();
        while now2 < now + 200 * MS {
            now2 += MS;
            if a.poll_timeout().is_some_and(|t| t <= now2) {
                a.on_timeout(now2);
            }
            while let Some(e) = a.poll_event() {
                match e {
                    Event::Up(false) => went_down = Some(now2),
                    Event::Log(l) => lines.push(l),
                    _ => {}
                }
            }
        }
        let at = went_down.expect("went down");
        assert!(at - now <= 60 * MS, "{:?}", at - now);
        assert!(
            lines.iter().any(|l| l.starts_with("(A) Expired after ")),
            "{lines:?}"
        );
        assert!(lines.contains(
            &"(A) Entering Down state (Local diagnostic - Control Detection Time Expired, Remote diagnostic - No Diagnostic)".to_string()
        ), "{lines:?}");
        assert_eq!(a.state(), State::Down);
        // The neighbour speaks again: both come back up.
        run(&mut a, &mut b, now2, 3000 * MS);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    }

    #[test]
    fn a_passive_session_waits_for_its_neighbour_and_down_is_signalled() {
        let mut a = Session::new(
            "A",
            SessionConfig {
                passive: true,
                ..cfg()
            },
            Duration::ZERO,
            1,
        );
        assert_eq!(a.poll_timeout(), None, "passive: nothing sent");
        let mut b = Session::new("B", cfg(), Duration::ZERO, 2);
        let now = run(&mut a, &mut b, Duration::ZERO, 3000 * MS);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
        // B says Down: A goes Down at once (neighbour signalled).
        let p = Packet {
            diag: 7,
            state: State::Down,
            poll: false,
            fin: false,
            demand: false,
            detect_mult: 5,
            my_discr: b.discriminator_value(),
            your_discr: a.discriminator_value(),
            min_tx: 1_000_000,
            min_rx: 10_000,
        };
        while a.poll_event().is_some() {}
        a.on_packet(now, &p);
        assert_eq!(a.state(), State::Down);
        let mut evs = Vec::new();
        while let Some(e) = a.poll_event() {
            evs.push(e);
        }
        assert!(evs.contains(&Event::Up(false)), "{evs:?}");
    }

    #[test]
    fn the_jitter_keeps_packets_between_75_and_90_percent_of_the_interval() {
        let mut s = Session::new("A", cfg(), Duration::ZERO, 42);
        for _ in 0..1000 {
            let t = s.poll_timeout().expect("scheduled");
            assert!(t >= Duration::from_micros(750_000) && t <= Duration::from_micros(900_000));
            s.schedule_tx(Duration::ZERO);
        }
    }
}
