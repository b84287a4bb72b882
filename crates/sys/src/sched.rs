//! Process scheduling: the nice value keepalived's `vrrp_priority` / `checker_priority` set,
//! and the real-time round-robin scheduling `vrrp_rt_priority` / `checker_rt_priority` ask for,
//! bounded by `RLIMIT_RTTIME` (`*_rlimit_rttime`).

use std::io;

/// Gives every thread of this process nice value `n` (-20 to 19); threads started later
/// inherit it from the thread that starts them. Linux keeps a nice value per thread, so each
/// is set (one that ended meanwhile is skipped).
pub fn set_nice(n: i32) -> io::Result<()> {
    for tid in threads()? {
        match set_thread_nice(tid, n) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            r => r?,
        }
    }
    Ok(())
}

/// The nice value of thread `tid` of this process (0 for this thread).
pub fn nice_of(tid: u32) -> io::Result<i32> {
    let stat = thread_file(tid, "stat")?;
    // The fields after the command (in parentheses, which may hold spaces): the nice value
    // is the 19th field of the line, the 17th after the command.
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    after
        .split_whitespace()
        .nth(16)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no nice value in stat"))
}

/// File `name` of thread `tid` of this process in /proc (0: the calling thread).
fn thread_file(tid: u32, name: &str) -> io::Result<String> {
    std::fs::read_to_string(if tid == 0 {
        format!("/proc/thread-self/{name}")
    } else {
        format!("/proc/self/task/{tid}/{name}")
    })
}

fn threads() -> io::Result<Vec<u32>> {
    Ok(std::fs::read_dir("/proc/self/task")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

#[allow(unsafe_code)]
fn set_thread_nice(tid: u32, n: i32) -> io::Result<()> {
    // SAFETY: setpriority takes three integers and no pointer; PRIO_PROCESS with a thread id
    // sets that thread's nice value.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, n) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts the calling thread under `SCHED_RR` at `priority` (1 to 99), with
/// `SCHED_RESET_ON_FORK`: threads and processes it starts run normally unless given it too
/// (a script or an `nft` run must not inherit a real-time policy).
#[allow(unsafe_code)]
pub fn set_realtime(priority: u32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::try_from(priority).unwrap_or(99),
    };
    // SAFETY: `param` outlives the call; pid 0 is the calling thread.
    let rc =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel to give the calling thread, under the normal (fair) policy, a scheduler
/// slice of `slice_us` microseconds (100 to 100 000) instead of its default: on Linux 6.12 and
/// later (EEVDF), a thread with a short slice has an early deadline when it wakes, so its
/// wake-ups preempt CPU-bound work rather than wait for the running task's slice to end. The
/// thread keeps its nice value; threads and processes it starts inherit the slice as they
/// inherit the nice value (a short slice changes when a task runs, not how much CPU it gets).
/// Kernels before 6.12 accept the call and keep their default.
#[allow(unsafe_code)]
pub fn set_short_slice(slice_us: u64) -> io::Result<()> {
    let nice = nice_of(0)?;
    let attr = libc::sched_attr {
        size: u32::try_from(std::mem::size_of::<libc::sched_attr>()).unwrap_or(48),
        sched_policy: libc::SCHED_OTHER as u32,
        // Not SCHED_FLAG_RESET_ON_FORK, which would also take a negative nice value
        // (`vrrp_priority`) from the processes and threads it starts.
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: slice_us.clamp(100, 100_000) * 1_000,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a valid sched_attr of the size it states and outlives the call; pid 0
    // is the calling thread; flags 0.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Thread `tid`'s scheduler slice in microseconds (0: the calling thread), as `/proc` shows
/// it (`se.slice`).
pub fn slice_us_of(tid: u32) -> io::Result<u64> {
    let sched = thread_file(tid, "sched")?;
    sched
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "se.slice").then(|| v.trim().parse::<u64>().ok())?
        })
        .map(|ns| ns / 1_000)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no se.slice in sched"))
}

/// The calling thread's real-time priority, if it runs under `SCHED_RR` or `SCHED_FIFO` (a
/// thread it starts is given the same with [`set_realtime`]).
#[allow(unsafe_code)]
pub fn realtime() -> Option<u32> {
    // SAFETY: no pointer; pid 0 is the calling thread.
    let policy = unsafe { libc::sched_getscheduler(0) } & !libc::SCHED_RESET_ON_FORK;
    if policy != libc::SCHED_RR && policy != libc::SCHED_FIFO {
        return None;
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param the call fills in.
    let rc = unsafe { libc::sched_getparam(0, &mut param) };
    (rc == 0).then(|| u32::try_from(param.sched_priority).unwrap_or(0))
}

/// `RLIMIT_RTTIME`: a real-time thread that runs `limit_us` microseconds without blocking is
/// killed, and warned (`SIGXCPU`) at half of it, as keepalived sets it.
#[allow(unsafe_code)]
pub fn set_rttime_limit(limit_us: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: limit_us.max(2) / 2,
        rlim_max: limit_us.max(2),
    };
    // SAFETY: `limit` outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_RTTIME, &limit) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's release as (major, minor).
    fn kernel() -> (u32, u32) {
        let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut n = r
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|x| x.parse().ok());
        (n.next().unwrap_or(0), n.next().unwrap_or(0))
    }

    #[test]
    fn a_short_slice_is_the_threads_and_inherited_by_those_it_starts() {
        std::thread::spawn(|| {
            let default = slice_us_of(0).unwrap_or_else(|e| panic!("se.slice: {e}"));
            let nice = nice_of(0).ok();
            set_short_slice(250).unwrap_or_else(|e| panic!("sched_setattr: {e}"));
            assert_eq!(nice_of(0).ok(), nice, "the nice value is kept");
            if kernel() >= (6, 12) {
                assert_eq!(slice_us_of(0).ok(), Some(250));
                assert_ne!(default, 250);
            }
            if kernel() >= (6, 12) {
                let child = std::thread::spawn(|| slice_us_of(0).ok());
                let child = child.join().ok().flatten();
                assert_eq!(child, Some(250), "a thread it starts inherits the slice");
            }
        })
        .join()
        .unwrap_or_else(|_| panic!("the test's thread failed"));
    }

    #[test]
    fn every_thread_takes_the_nice_value_and_new_ones_inherit_it() {
        // Raising the nice value needs no privilege (lowering it below the current one does).
        let before = nice_of(0).unwrap_or(0);
        let want = (before + 3).min(19);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<u32>();
        let older = std::thread::spawn(move || {
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name()?.to_str()?.parse().ok())
                .unwrap_or(0);
            let _ = ready_tx.send(tid);
            let _ = rx.recv();
        });
        let older_tid = ready_rx.recv().unwrap_or(0);
        set_nice(want).unwrap_or_else(|e| panic!("setpriority: {e}"));
        assert_eq!(nice_of(0).ok(), Some(want));
        assert_eq!(
            nice_of(older_tid).ok(),
            Some(want),
            "a thread started before"
        );
        let newer = std::thread::spawn(|| nice_of(0).ok()).join().ok().flatten();
        assert_eq!(newer, Some(want), "a thread started after");
        let _ = tx.send(());
        let _ = older.join();
    }

    #[test]
    fn a_real_time_thread_is_seen_as_one_and_its_children_are_not() {
        let got = std::thread::spawn(|| {
            if let Err(e) = set_realtime(5) {
                // Without CAP_SYS_NICE (an unprivileged run) the kernel refuses.
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                return None;
            }
            let child = std::thread::spawn(realtime).join().ok().flatten();
            Some((realtime(), child))
        })
        .join()
        .ok()
        .flatten();
        if let Some((own, child)) = got {
            assert_eq!(own, Some(5));
            assert_eq!(
                child, None,
                "SCHED_RESET_ON_FORK: a new thread runs normally"
            );
        }
        assert_eq!(realtime(), None, "only the thread that asked");
    }
}
