//! The daemon process's own settings, made once at start: its nice value, real-time
//! scheduling, memory lock and open-file limit, with keepalived's lines when refused.

use crate::logging::Logger;

/// `vrrp_priority` / `checker_priority`: every thread of the process gets nice value `n`.
pub fn set_nice(n: i32, log: Logger) {
    if let Err(e) = holdfast_sys::sched::set_nice(n) {
        log.main(&format!("Unable to set process priority to {n} - {e}"));
    }
}

/// `vrrp_rt_priority` / `checker_rt_priority`: this thread under SCHED_RR at `priority`,
/// `RLIMIT_RTTIME` at `limit_us` (warned at half), with keepalived's lines when refused.
pub fn set_realtime(priority: u32, limit_us: u64, log: Logger) {
    if holdfast_sys::sched::set_realtime(priority).is_err() {
        log.main("child process: cannot raise priority");
    } else if holdfast_sys::sched::set_rttime_limit(limit_us).is_err() {
        log.main("child process cannot set realtime rlimit");
    }
}

/// The scheduler slice, in µs, the threads that send and read VRRP adverts ask for when they
/// run under the normal policy (no `vrrp_rt_priority`): about what one advert costs them, so
/// that on Linux 6.12 and later their wake-ups preempt CPU-bound work instead of waiting for
/// its slice (1–3 ms) to end, which at 10 ms adverts is what a BACKUP's patience is made of.
pub const VRRP_SLICE_US: u64 = 100;

/// The calling thread (one sending or reading adverts, under the normal policy) with a short
/// slice; a kernel that refuses is left as it is (nothing to tell: the default applies).
pub fn shorten_slice() {
    let _ = holdfast_sys::sched::set_short_slice(VRRP_SLICE_US);
}

/// `vrrp_no_swap` / `checker_no_swap`: the process's pages stay in memory. Locked as they
/// are touched (`MCL_ONFAULT`), so thread stacks and buffers are not filled in advance.
pub fn lock_in_memory(log: Logger) {
    use nix::sys::mman::{MlockAllFlags, mlockall};
    let flags = MlockAllFlags::MCL_CURRENT
        | MlockAllFlags::MCL_FUTURE
        | MlockAllFlags::from_bits_retain(nix::libc::MCL_ONFAULT);
    if let Err(e) = mlockall(flags) {
        log.main(&format!("Unable to lock process in memory - {e}"));
    }
}

/// Raises the soft limit on open files to the hard one: every checker probe in flight, proxied
/// connection and script pipe holds descriptors, and the usual soft limit (1 024) is reached
/// with a few hundred real servers checked at once — probes then fail with EMFILE and healthy
/// servers are removed. keepalived raises its limit too.
pub fn raise_file_limit(log: Logger) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) if log.detail => {
                log.main(&format!("Open file limit raised from {soft} to {hard}"))
            }
            Ok(()) => {}
            Err(e) => log.main(&format!(
                "WARNING - cannot raise the open file limit from {soft} to {hard}: {e}"
            )),
        },
        _ => {}
    }
}
