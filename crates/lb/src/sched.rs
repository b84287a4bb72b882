//! IPVS's schedulers as pure functions of the pool and the flow, with their state explicit.
//! Each follows the Linux implementation's documented rule (net/netfilter/ipvs/ip_vs_*.c):
//! which servers are eligible (weight > 0, not overloaded), what "load" means (active
//! connections × 256 + inactive ones), and how ties are broken (the first server in order).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// One destination as a scheduler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dest {
    /// Address and port.
    pub addr: SocketAddr,
    /// Effective weight (0: takes no new connections).
    pub weight: u32,
    /// Established connections.
    pub active: u32,
    /// Other connections (closing, waiting).
    pub inactive: u32,
    /// Over its upper threshold (`uthreshold`).
    pub overloaded: bool,
}

impl Dest {
    /// A destination with this weight and no connections.
    pub fn new(addr: SocketAddr, weight: u32) -> Dest {
        Dest {
            addr,
            weight,
            active: 0,
            inactive: 0,
            overloaded: false,
        }
    }

    /// Eligible for a new connection.
    pub fn available(&self) -> bool {
        self.weight > 0 && !self.overloaded
    }

    /// IPVS's connection overhead: active × 256 + inactive.
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active) << 8) + u64::from(self.inactive)
    }
}

/// The connection being scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Client address and port.
    pub src: SocketAddr,
    /// Service address and port.
    pub dst: SocketAddr,
}

/// Scheduler names as keepalived and ipvsadm spell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection (keepalived's default).
    Wlc,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Maglev hashing.
    Mh,
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
}

impl Kind {
    /// Parses `lb_algo` / `lvs_sched`.
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "rr" => Kind::Rr,
            "wrr" => Kind::Wrr,
            "lc" => Kind::Lc,
            "wlc" => Kind::Wlc,
            "lblc" => Kind::Lblc,
            "lblcr" => Kind::Lblcr,
            "dh" => Kind::Dh,
            "sh" => Kind::Sh,
            "sed" => Kind::Sed,
            "nq" => Kind::Nq,
            "mh" => Kind::Mh,
            "fo" => Kind::Fo,
            "ovf" => Kind::Ovf,
            _ => return None,
        })
    }

    /// The name ipvsadm prints.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rr => "rr",
            Kind::Wrr => "wrr",
            Kind::Lc => "lc",
            Kind::Wlc => "wlc",
            Kind::Lblc => "lblc",
            Kind::Lblcr => "lblcr",
            Kind::Dh => "dh",
            Kind::Sh => "sh",
            Kind::Sed => "sed",
            Kind::Nq => "nq",
            Kind::Mh => "mh",
            Kind::Fo => "fo",
            Kind::Ovf => "ovf",
        }
    }
}

/// Flags of the hashing schedulers (`sh-port`, `sh-fallback`, `mh-port`, `mh-fallback`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashFlags {
    /// Hash the source port too.
    pub port: bool,
    /// When the hashed server is unavailable, try the next candidates.
    pub fallback: bool,
}

/// A scheduler with its state.
#[derive(Clone, Debug)]
pub struct Scheduler {
    kind: Kind,
    flags: HashFlags,
    /// rr/wrr: index of the last pick.
    last: Option<usize>,
    /// wrr: current weight.
    cw: u64,
    /// lblc: destination address → server; lblcr: → set of servers.
    local: HashMap<IpAddr, Vec<SocketAddr>>,
    /// mh: lookup table for the pool it was built for.
    mh: Option<MaglevTable>,
}

/// A maglev lookup table and the (server, weight) list it was built from.
#[derive(Clone, Debug)]
struct MaglevTable {
    built_for: Vec<(SocketAddr, u32)>,
    slots: Vec<Option<usize>>,
}

/// Buckets of the dh and sh tables (IPVS: 256).
pub const HASH_TABLE_SIZE: usize = 256;
/// Size of the maglev lookup table (IPVS's default with CONFIG_IP_VS_MH_TAB_INDEX=12, a prime).
pub const MH_TABLE_SIZE: usize = 4093;

impl Scheduler {
    /// A scheduler of this kind.
    pub fn new(kind: Kind, flags: HashFlags) -> Scheduler {
        Scheduler {
            kind,
            flags,
            last: None,
            cw: 0,
            local: HashMap::new(),
            mh: None,
        }
    }

    /// Which kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The server for a new connection, or `None` when no server may take it.
    pub fn pick(&mut self, pool: &[Dest], flow: &Flow) -> Option<usize> {
        match self.kind {
            Kind::Rr => self.rr(pool),
            Kind::Wrr => self.wrr(pool),
            Kind::Lc => least(pool, |d| d.overhead(), false),
            Kind::Wlc => least(pool, |d| d.overhead(), true),
            Kind::Sed => least(pool, |d| u64::from(d.active) + 1, true),
            Kind::Nq => pool
                .iter()
                .position(|d| d.available() && d.active == 0)
                .or_else(|| least(pool, |d| u64::from(d.active) + 1, true)),
            Kind::Fo => best_by_weight(pool, |d| d.available()),
            Kind::Ovf => best_by_weight(pool, |d| d.available() && d.active <= d.weight),
            Kind::Dh => dh(pool, flow.dst.ip()),
            Kind::Sh => sh(pool, flow, self.flags),
            Kind::Mh => self.mh(pool, flow),
            Kind::Lblc => self.lblc(pool, flow.dst.ip()),
            Kind::Lblcr => self.lblcr(pool, flow.dst.ip()),
        }
    }

    fn rr(&mut self, pool: &[Dest]) -> Option<usize> {
        let n = pool.len();
        let start = self.last.map_or(0, |l| l + 1);
        let i = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| pool[i].available())?;
        self.last = Some(i);
        Some(i)
    }

    /// Interleaved weighted round robin: the current weight steps down by the weights' gcd
    /// on each pass and a server is taken while its weight reaches it.
    fn wrr(&mut self, pool: &[Dest]) -> Option<usize> {
        let eligible = |d: &Dest| d.available();
        let max = pool
            .iter()
            .filter(|d| eligible(d))
            .map(|d| u64::from(d.weight))
            .max()?;
        let step = pool
            .iter()
            .filter(|d| eligible(d))
            .map(|d| u64::from(d.weight))
            .fold(0, gcd)
            .max(1);
        if self.cw == 0 || self.cw > max {
            self.cw = max;
            self.last = None;
        }
        let n = pool.len();
        // Bounded: every server is looked at once per pass, and after max/step passes the
        // current weight has gone round.
        let passes = usize::try_from(max / step)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        for _ in 0..=n.saturating_mul(passes) {
            let next = self.last.map_or(0, |l| l + 1);
            if next >= n {
                self.last = None;
                self.cw = self.cw.saturating_sub(step);
                if self.cw == 0 {
                    self.cw = max;
                }
                continue;
            }
            self.last = Some(next);
            if eligible(&pool[next]) && u64::from(pool[next].weight) >= self.cw {
                return Some(next);
            }
        }
        None
    }

    fn mh(&mut self, pool: &[Dest], flow: &Flow) -> Option<usize> {
        let key: Vec<(SocketAddr, u32)> = pool
            .iter()
            .map(|d| (d.addr, if d.weight > 0 { d.weight } else { 0 }))
            .collect();
        if self.mh.as_ref().is_none_or(|t| t.built_for != key) {
            self.mh = Some(MaglevTable {
                slots: maglev_table(&key),
                built_for: key,
            });
        }
        let table = &self.mh.as_ref()?.slots;
        let port = if self.flags.port { flow.src.port() } else { 0 };
        let h = mix(addr_bits(flow.src.ip()) ^ (u64::from(port) << 48));
        for attempt in 0..MH_TABLE_SIZE as u64 {
            let slot = (mix(h ^ attempt) % MH_TABLE_SIZE as u64) as usize;
            let i = table[slot]?;
            if pool[i].available() {
                return Some(i);
            }
            if !self.flags.fallback {
                return None;
            }
        }
        None
    }

    /// Locality-based least connection: a destination address keeps its server until that
    /// server is unavailable or overloaded while another is half idle; then wlc picks anew.
    fn lblc(&mut self, pool: &[Dest], dst: IpAddr) -> Option<usize> {
        let current = self
            .local
            .get(&dst)
            .and_then(|v| v.first())
            .and_then(|a| pool.iter().position(|d| d.addr == *a));
        if let Some(i) = current
            && pool[i].available()
            && !locality_overloaded(pool, i)
        {
            return Some(i);
        }
        let i = least(pool, |d| d.overhead(), true)?;
        self.local.insert(dst, vec![pool[i].addr]);
        Some(i)
    }

    /// With replication: a destination address has a set of servers; the least loaded of the
    /// set serves, and an overloaded set grows by the least loaded server of the pool.
    fn lblcr(&mut self, pool: &[Dest], dst: IpAddr) -> Option<usize> {
        let set = self.local.entry(dst).or_default();
        set.retain(|a| pool.iter().any(|d| d.addr == *a));
        let in_set: Vec<Dest> = pool
            .iter()
            .map(|d| {
                if set.contains(&d.addr) {
                    *d
                } else {
                    Dest { weight: 0, ..*d }
                }
            })
            .collect();
        if let Some(i) = least(&in_set, |d| d.overhead(), true)
            && !locality_overloaded(pool, i)
        {
            return Some(i);
        }
        let i = least(pool, |d| d.overhead(), true)?;
        if !set.contains(&pool[i].addr) {
            set.push(pool[i].addr);
        }
        Some(i)
    }
}

/// IPVS (lblc/lblcr): a server is overloaded when it has more active connections than its
/// weight and some other server has less than half its weight in use.
fn locality_overloaded(pool: &[Dest], i: usize) -> bool {
    pool[i].active > pool[i].weight
        && pool
            .iter()
            .any(|d| d.available() && u64::from(d.active) * 2 < u64::from(d.weight))
}

/// The available server with the least `load` (per weight when `weighted`); first on ties.
fn least(pool: &[Dest], load: impl Fn(&Dest) -> u64, weighted: bool) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, d) in pool.iter().enumerate().filter(|(_, d)| d.available()) {
        best = match best {
            None => Some(i),
            Some(b) => {
                let (lb, ld) = (u128::from(load(&pool[b])), u128::from(load(d)));
                let better = if weighted {
                    // load_d / w_d < load_b / w_b, without division.
                    ld * u128::from(pool[b].weight) < lb * u128::from(d.weight)
                } else {
                    ld < lb
                };
                Some(if better { i } else { b })
            }
        };
    }
    best
}

/// The highest-weight server passing `ok`; first on ties.
fn best_by_weight(pool: &[Dest], ok: impl Fn(&Dest) -> bool) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, d) in pool.iter().enumerate().filter(|(_, d)| ok(d)) {
        if best.is_none_or(|b| d.weight > pool[b].weight) {
            best = Some(i);
        }
    }
    best
}

/// Destination hashing: 256 buckets filled with the servers in turn (weights ignored, as in
/// IPVS); the bucket's server or nothing.
fn dh(pool: &[Dest], dst: IpAddr) -> Option<usize> {
    if pool.is_empty() {
        return None;
    }
    let bucket = hash_ip(dst) % HASH_TABLE_SIZE;
    let i = bucket % pool.len();
    pool[i].available().then_some(i)
}

/// Source hashing: buckets filled in turn, each server taking `weight` consecutive buckets
/// (at least one); with `fallback`, an unavailable server's clients go to the next bucket's.
fn sh(pool: &[Dest], flow: &Flow, flags: HashFlags) -> Option<usize> {
    if pool.is_empty() {
        return None;
    }
    let table = sh_table(pool);
    let port = if flags.port { flow.src.port() } else { 0 };
    let h = hash_ip(flow.src.ip()).wrapping_add(usize::from(port));
    let tries = if flags.fallback { HASH_TABLE_SIZE } else { 1 };
    (0..tries)
        .map(|k| table[(h.wrapping_add(k)) % HASH_TABLE_SIZE])
        .find(|&i| pool[i].available())
}

/// IPVS sh/dh's table of [`HASH_TABLE_SIZE`] buckets over `pool` (bucket → index in
/// `pool`): servers take turns, each filling `weight` buckets (at least one). For data planes
/// that express the hash themselves (nftables).
pub fn hash_buckets(pool: &[Dest]) -> Vec<usize> {
    if pool.is_empty() {
        return Vec::new();
    }
    sh_table(pool)
}

/// mh's Maglev lookup table of [`MH_TABLE_SIZE`] slots (slot → index in `servers`; `None`
/// when every weight is 0).
pub fn maglev_buckets(servers: &[(SocketAddr, u32)]) -> Vec<Option<usize>> {
    maglev_table(servers)
}

fn sh_table(pool: &[Dest]) -> Vec<usize> {
    let mut table = Vec::with_capacity(HASH_TABLE_SIZE);
    let (mut i, mut taken) = (0, 0u32);
    while table.len() < HASH_TABLE_SIZE {
        table.push(i);
        taken += 1;
        if taken >= pool[i].weight.max(1) {
            i = (i + 1) % pool.len();
            taken = 0;
        }
    }
    table
}

/// Maglev: every server fills the table along its own permutation, `weight / gcd` slots a
/// round, until the table is full; servers of weight 0 take none.
fn maglev_table(servers: &[(SocketAddr, u32)]) -> Vec<Option<usize>> {
    let m = MH_TABLE_SIZE as u64;
    let g = servers.iter().map(|(_, w)| u64::from(*w)).fold(0, gcd);
    let mut table = vec![None; MH_TABLE_SIZE];
    if g == 0 {
        return table;
    }
    let perm: Vec<(u64, u64)> = servers
        .iter()
        .map(|(a, _)| {
            let h = sock_bits(*a);
            (mix(h) % m, mix(h ^ 0x5bd1_e995) % (m - 1) + 1)
        })
        .collect();
    let mut next = vec![0u64; servers.len()];
    let mut filled = 0;
    while filled < MH_TABLE_SIZE {
        for (i, (_, w)) in servers.iter().enumerate() {
            for _ in 0..u64::from(*w) / g {
                if filled == MH_TABLE_SIZE {
                    break;
                }
                let (offset, skip) = perm[i];
                // The permutation visits every slot within m steps (m is prime).
                loop {
                    let slot = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if table[slot].is_none() {
                        table[slot] = Some(i);
                        filled += 1;
                        break;
                    }
                }
            }
        }
    }
    table
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn addr_bits(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (v as u64) ^ ((v >> 64) as u64)
        }
    }
}

fn sock_bits(a: SocketAddr) -> u64 {
    addr_bits(a.ip()) ^ (u64::from(a.port()) << 40)
}

/// IPVS's multiplicative hash of an address (folded to 32 bits for IPv6).
fn hash_ip(ip: IpAddr) -> usize {
    let folded = match ip {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let s = a.segments();
            let w = |i: usize| (u32::from(s[i]) << 16) | u32::from(s[i + 1]);
            w(0) ^ w(2) ^ w(4) ^ w(6)
        }
    };
    (folded.wrapping_mul(2_654_435_761) >> 24) as usize
}

/// SplitMix64's finaliser: a fixed, well-mixed hash.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(weights: &[u32]) -> Vec<Dest> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Dest::new(SocketAddr::from(([10, 0, 0, 1 + i as u8], 3306)), *w))
            .collect()
    }

    fn flow(src: [u8; 4]) -> Flow {
        Flow {
            src: SocketAddr::from((src, 40000)),
            dst: SocketAddr::from(([10, 0, 0, 100], 3306)),
        }
    }

    fn picks(k: Kind, p: &[Dest], n: usize) -> Vec<usize> {
        let mut s = Scheduler::new(k, HashFlags::default());
        (0..n)
            .filter_map(|_| s.pick(p, &flow([1, 2, 3, 4])))
            .collect()
    }

    #[test]
    fn rr_cycles_and_skips_weight_zero() {
        assert_eq!(picks(Kind::Rr, &pool(&[1, 0, 5]), 4), [0, 2, 0, 2]);
    }

    #[test]
    fn wrr_interleaves_by_weight() {
        // IPVS's example: weights 4, 3, 2 give a b c a b c a b a.
        assert_eq!(
            picks(Kind::Wrr, &pool(&[4, 3, 2]), 9),
            [0, 0, 1, 0, 1, 2, 0, 1, 2]
        );
    }

    #[test]
    fn wlc_weighs_active_connections() {
        let mut p = pool(&[1, 3]);
        p[0].active = 1;
        p[1].active = 2;
        // 256/1 vs 512/3: the second.
        assert_eq!(picks(Kind::Wlc, &p, 1), [1]);
        assert_eq!(picks(Kind::Lc, &p, 1), [0]);
    }

    #[test]
    fn nq_prefers_an_idle_server_then_sed() {
        let mut p = pool(&[1, 5, 1]);
        p[0].active = 3;
        p[1].active = 4;
        assert_eq!(picks(Kind::Nq, &p, 1), [2]);
        p[2].active = 1;
        // sed: (3+1)/1, (4+1)/5, (1+1)/1 → the second.
        assert_eq!(picks(Kind::Nq, &p, 1), [1]);
        assert_eq!(picks(Kind::Sed, &p, 1), [1]);
    }

    #[test]
    fn fo_and_ovf_take_the_heaviest_server() {
        let mut p = pool(&[2, 9, 9]);
        assert_eq!(picks(Kind::Fo, &p, 1), [1]);
        p[1].active = 10;
        assert_eq!(picks(Kind::Ovf, &p, 1), [2]);
        p[1].weight = 0;
        assert_eq!(picks(Kind::Fo, &p, 1), [2]);
    }

    #[test]
    fn sh_is_sticky_and_falls_back_only_when_asked() {
        let p = pool(&[1, 1, 1]);
        let f = flow([192, 168, 1, 7]);
        let mut s = Scheduler::new(Kind::Sh, HashFlags::default());
        let first = s.pick(&p, &f).unwrap();
        assert_eq!(s.pick(&p, &f), Some(first));
        let mut down = p.clone();
        down[first].weight = 0;
        assert_eq!(s.pick(&down, &f), None);
        let mut fb = Scheduler::new(
            Kind::Sh,
            HashFlags {
                port: false,
                fallback: true,
            },
        );
        assert!(fb.pick(&down, &f).is_some_and(|i| i != first));
    }

    #[test]
    fn lblc_keeps_a_destination_on_its_server() {
        let p = pool(&[1, 1]);
        let mut s = Scheduler::new(Kind::Lblc, HashFlags::default());
        let first = s.pick(&p, &flow([1, 1, 1, 1])).unwrap();
        let mut busier = p.clone();
        busier[first].active = 1;
        assert_eq!(s.pick(&busier, &flow([2, 2, 2, 2])), Some(first));
    }

    #[test]
    fn maglev_tables_follow_weights() {
        let servers: Vec<(SocketAddr, u32)> =
            pool(&[1, 3]).iter().map(|d| (d.addr, d.weight)).collect();
        let t = maglev_table(&servers);
        let second = t.iter().filter(|s| **s == Some(1)).count();
        assert!(t.iter().all(Option::is_some));
        assert!(
            (2900..=3240).contains(&second),
            "{second} of 4093 slots for weight 3 of 4"
        );
    }
}
