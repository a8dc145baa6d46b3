//! The files' check on a fake clock: nothing read before the interval,
//! a change read at it, an unreadable file keeping the last good text.

use std::net::{IpAddr, Ipv4Addr};

use super::{CHECK_INTERVAL, ResolverFiles};
use crate::config::Config;
use crate::resolve::{Resolver, ResolverConfig};
use crate::time::Millis;

/// A fresh directory under the system's temporary one, removed on drop.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("keepalive-files-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `name` resolves to from the hosts table, if anything (a lookup
/// that would need DNS is cancelled).
fn from_hosts(r: &mut Resolver, name: &str, now: Millis) -> Option<IpAddr> {
    let id = r.lookup(name, now).unwrap();
    let answer = r.poll_answer();
    r.cancel(id);
    while r.poll_transmit().is_some() {}
    answer
        .and_then(|a| a.result.ok())
        .and_then(|a| a.interleaved().next())
}

fn setup(dir: &Dir, hosts: &str) -> (ResolverFiles, Resolver, std::path::PathBuf) {
    let path = dir.0.join("hosts");
    std::fs::write(&path, hosts).unwrap();
    let config = Config::default()
        .with_resolv_conf(dir.0.join("resolv.conf"))
        .with_hosts_file(&path);
    let (files, conf, hosts) = ResolverFiles::load(&config).unwrap();
    (
        files,
        Resolver::new(ResolverConfig::new(conf, hosts, 1)),
        path,
    )
}

const ONE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const TWO: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[test]
fn a_change_is_read_at_the_check_interval_and_not_before() {
    let dir = Dir::new("interval");
    let (mut files, mut r, path) = setup(&dir, "127.0.0.1 h.test\n");
    assert_eq!(from_hosts(&mut r, "h.test", 0), Some(ONE));
    std::fs::write(&path, "127.0.0.2 h.test # longer\n").unwrap();
    files.check(CHECK_INTERVAL - 1, &mut r);
    assert_eq!(from_hosts(&mut r, "h.test", CHECK_INTERVAL - 1), Some(ONE));
    files.check(CHECK_INTERVAL, &mut r);
    assert_eq!(from_hosts(&mut r, "h.test", CHECK_INTERVAL), Some(TWO));
    // The next check is an interval later.
    std::fs::write(&path, "127.0.0.1 h.test\n").unwrap();
    files.check(2 * CHECK_INTERVAL - 1, &mut r);
    assert_eq!(from_hosts(&mut r, "h.test", 0), Some(TWO));
    files.check(2 * CHECK_INTERVAL, &mut r);
    assert_eq!(from_hosts(&mut r, "h.test", 0), Some(ONE));
}

#[test]
fn an_unreadable_file_keeps_the_last_good_text_and_is_tried_again() {
    let dir = Dir::new("unreadable");
    let (mut files, mut r, path) = setup(&dir, "127.0.0.1 h.test\n");
    std::fs::remove_file(&path).unwrap();
    files.check(CHECK_INTERVAL, &mut r);
    assert_eq!(from_hosts(&mut r, "h.test", 0), Some(ONE), "gone: kept");
    std::fs::create_dir(&path).unwrap();
    files.check(2 * CHECK_INTERVAL, &mut r);
    assert_eq!(
        from_hosts(&mut r, "h.test", 0),
        Some(ONE),
        "a directory: kept"
    );
    std::fs::remove_dir(&path).unwrap();
    std::fs::write(&path, "127.0.0.2 h.test\n").unwrap();
    files.check(3 * CHECK_INTERVAL, &mut r);
    assert_eq!(from_hosts(&mut r, "h.test", 0), Some(TWO), "readable again");
}
