//! Syscalls per HTTP request, from `strace -c -f`, ours against hyper-util.
//!
//! Each side runs as a child process twice, for n₁ and n₂ requests; the
//! difference of the counts divided by n₂ − n₁ is the steady-state cost per
//! request, free of start-up and warm-up (runtime creation, first connects,
//! epoll_ctl registrations).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::{Figure, Settings, client, peers};

/// `--http-child ours|hyper conc requests port`: run exactly that many.
pub fn child(args: &[String]) {
    let conc: usize = args[1].parse().expect("conc");
    let n: u64 = args[2].parse().expect("requests");
    let port: u16 = args[3].parse().expect("port");
    let limit = Duration::from_secs(600);
    let run = match args[0].as_str() {
        "ours" => client::run(port, conc, limit, n),
        _ => peers::hyper_http(port, conc, limit, n),
    };
    assert_eq!(run.requests, n, "every request completed");
}

fn counts(kind: &str, conc: usize, n: u64, port: u16) -> Option<BTreeMap<String, u64>> {
    let exe = std::env::current_exe().ok()?;
    let out = std::env::temp_dir().join(format!(
        "keepalive-strace-{}-{kind}-{conc}-{n}",
        std::process::id()
    ));
    let status = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .arg(&exe)
        .args([
            "--http-child",
            kind,
            &conc.to_string(),
            &n.to_string(),
            &port.to_string(),
        ])
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    // Rows: % time, seconds, usecs/call, calls, [errors], syscall.
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 5 || cols[0].starts_with('%') || cols[0].starts_with('-') {
            continue;
        }
        let name = cols[cols.len() - 1];
        if name == "total" {
            continue;
        }
        if let Ok(calls) = cols[3].parse::<u64>() {
            map.insert(name.to_string(), calls);
        }
    }
    Some(map)
}

/// Per-request syscalls: total, and by name.
fn per_request(
    kind: &str,
    conc: usize,
    port: u16,
    smoke: bool,
) -> Option<(f64, BTreeMap<String, f64>)> {
    // Multiples of `conc`, so every lane runs the same number of requests.
    let (n1, n2) = if smoke {
        (conc as u64, 2 * conc as u64)
    } else {
        (200 * conc as u64, 1_200 * conc as u64)
    };
    let a = counts(kind, conc, n1, port)?;
    let b = counts(kind, conc, n2, port)?;
    let per: BTreeMap<String, f64> = b
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (*v as f64 - *a.get(k).unwrap_or(&0) as f64) / (n2 - n1) as f64,
            )
        })
        .filter(|(_, v)| v.abs() >= 0.005)
        .collect();
    Some((per.values().sum(), per))
}

pub fn figures(settings: Settings, port: u16) -> Vec<Figure> {
    if Command::new("strace").arg("-V").output().is_err() {
        println!("syscalls: skipped, strace not installed (apt-get install strace)");
        return Vec::new();
    }
    let mut out = Vec::new();
    for (figure, conc) in [("syscalls_c1", 1usize), ("syscalls_c64", 64)] {
        let (Some((ours, split)), Some((hyper, hyper_split))) = (
            per_request("ours", conc, port, settings.smoke),
            per_request("hyper", conc, port, settings.smoke),
        ) else {
            println!("{figure}: skipped, strace failed (ptrace not permitted?)");
            continue;
        };
        let show = |m: &BTreeMap<String, f64>| {
            let mut v: Vec<_> = m.iter().collect();
            v.sort_by(|a, b| b.1.total_cmp(a.1));
            v.iter()
                .map(|(k, c)| format!("{k} {c:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let epoll_ctl = split.get("epoll_ctl").copied().unwrap_or(0.0);
        out.push(
            Figure::new(figure, "calls/req", false, ours)
                .peer("hyper-util", hyper)
                .note(format!(
                    "ours: {} (epoll_ctl {epoll_ctl:.2}); hyper-util: {}",
                    show(&split),
                    show(&hyper_split)
                )),
        );
    }
    out
}
