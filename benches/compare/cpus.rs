//! Where the proxy benchmark's processes run.
//!
//! A proxy's figure per core should measure the proxy, not the scheduler.
//! On a machine whose cores wrk and the backend share with the proxy, which
//! of the three waits for a core decides a round (±15% between rounds on
//! two cores, more than the proxies differ by). Given enough CPUs, every
//! proxy's workers get cores of their own and wrk and the backend the rest:
//! the benchmark's thread is moved to the rest first, so every process it
//! starts from then on (the proxies, wrk) inherits them, the running backend
//! is moved likewise, and each proxy's threads are then moved to the proxy's
//! cores once it runs. The same for
//! ours, nginx and HAProxy.
//!
//! Placed when the machine has at least one CPU more than the proxy has
//! workers; `BENCH_PIN=0` never places. With one CPU left, wrk and the
//! backend share it: if it ran out first, every proxy would measure the
//! same, so a ratio away from 1.0 is the proxies' own. The per-core set (one
//! worker) is placed on two CPUs; two workers need three.

use std::io;

/// The CPUs of the proxy under measurement and of everything else.
pub struct Placement {
    proxy: Vec<usize>,
    rest: Vec<usize>,
    /// The calling thread's CPUs before [`Placement::enter`], restored on
    /// drop.
    original: Vec<usize>,
}

impl Placement {
    /// A placement for a proxy of `workers` workers, or why there is none.
    pub fn for_workers(workers: usize) -> Result<Placement, String> {
        let allowed = affinity(0).map_err(|e| format!("sched_getaffinity: {e}"))?;
        if std::env::var("BENCH_PIN").is_ok_and(|v| v == "0") {
            return Err("BENCH_PIN=0".into());
        }
        if allowed.len() <= workers {
            return Err(format!(
                "{} CPUs leave none for wrk and the backend beside {workers} worker(s)",
                allowed.len()
            ));
        }
        let split = allowed.len() - workers;
        Ok(Placement {
            proxy: allowed[split..].to_vec(),
            rest: allowed[..split].to_vec(),
            original: allowed,
        })
    }

    /// Moves the calling thread (and so every process it starts from now
    /// on) and the already running `others` (the backend) to the CPUs that
    /// are not the proxy's.
    pub fn enter(&self, others: &[u32]) {
        set_affinity(0, &self.rest).expect("move the benchmark off the proxy's CPUs");
        for &pid in others {
            pin_tasks(pid, &self.rest);
        }
    }

    /// Moves every thread of `pids` (a proxy's processes) to the proxy's CPUs.
    pub fn pin_proxy(&self, pids: &[u32]) {
        for &pid in pids {
            pin_tasks(pid, &self.proxy);
        }
    }

    /// "proxy on CPU 3, wrk and the backend on CPU 0-2".
    pub fn describe(&self) -> String {
        format!(
            "proxy on CPU {}, wrk and the backend on CPU {}",
            list(&self.proxy),
            list(&self.rest)
        )
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        // Best effort: a later group runs where this process was allowed.
        let _ = set_affinity(0, &self.original);
    }
}

/// Every thread of process `pid` onto `cpus`. A thread that has exited
/// meanwhile is skipped.
fn pin_tasks(pid: u32, cpus: &[usize]) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("threads of {pid}: {e}"));
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        match set_affinity(tid, cpus) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => panic!("pin thread {tid} of {pid}: {e}"),
        }
    }
}

/// The CPUs thread `tid` (0: the calling one) may run on.
fn affinity(tid: libc::pid_t) -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(1024);
    // SAFETY: CPU_ISSET reads bit `cpu` < CPU_SETSIZE of a live set.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Restricts thread `tid` (0: the calling one) to `cpus`.
fn set_affinity(tid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET writes bit `cpu` of a live set; the CPUs come from
        // sched_getaffinity, so each is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// "0-2,5" for a sorted list of CPUs.
fn list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}
