//! The resolver's files over a long life: `resolv.conf` and the hosts file
//! read at [`Reactor::new`](crate::Reactor::new), then read again when
//! they change, so a program whose DNS configuration is rewritten (a
//! container's, a laptop's moving between networks) needs no restart.
//!
//! # When a file is read again
//!
//! On a lookup (a new connection by name; never a pooled checkout), at
//! most once per [`CHECK_INTERVAL`], as glibc has done since 2.26: each
//! file's modification time, size and inode are compared with those of
//! the text in use, and a file that differs is read and parsed again.
//! `RES_OPTIONS` and [`Config::nameservers`] apply to the new text as to
//! the first. A file that cannot be read at that moment (gone in the
//! middle of a rewrite, a directory, no permission) keeps the last good
//! text; it is tried again at the next check.
//!
//! # Costs
//!
//! Two `stat(2)` per check (none between checks: one comparison of the
//! time); reading and parsing a file only when it changed. The answer
//! cache is kept: its entries were true answers and expire by their TTLs;
//! the hosts file is looked up before the cache, so its changes apply at
//! once.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::Error;
use crate::resolve::{Hosts, MAX_NAMESERVERS, ResolvConf, Resolver};
use crate::time::Millis;

/// Shortest time between two checks of the files, in milliseconds.
pub(in crate::reactor) const CHECK_INTERVAL: Millis = 1_000;

/// What tells one version of a file from another without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
    ino: u64,
}

/// One file: its path and the stamp of the text in use (`None`: missing
/// when last read).
struct Watched {
    path: PathBuf,
    field: &'static str,
    stamp: Option<Stamp>,
}

/// The resolver's two files, and what applies on top of them. See the
/// module docs.
pub(in crate::reactor) struct ResolverFiles {
    resolv_conf: Watched,
    hosts: Watched,
    /// `RES_OPTIONS`, read once at [`Reactor::new`](crate::Reactor::new).
    res_options: Option<String>,
    /// [`Config::nameservers`], instead of the file's.
    nameservers: Vec<SocketAddr>,
    /// The earliest time of the next check.
    next_check: Millis,
}

impl ResolverFiles {
    /// Reads both files as [`Reactor::new`](crate::Reactor::new) does: the
    /// configuration and the hosts table to start with.
    ///
    /// # Errors
    ///
    /// A file that exists but cannot be read is [`Error::InvalidConfig`]
    /// naming its field; a system out of descriptors or memory
    /// [`Error::Io`]. A missing file is its defaults.
    pub(in crate::reactor) fn load(
        config: &Config,
    ) -> Result<(ResolverFiles, ResolvConf, Hosts), Error> {
        let mut files = ResolverFiles {
            resolv_conf: Watched {
                path: config.resolv_conf.clone(),
                field: "resolv_conf",
                stamp: None,
            },
            hosts: Watched {
                path: config.hosts_file.clone(),
                field: "hosts_file",
                stamp: None,
            },
            res_options: std::env::var_os("RES_OPTIONS").map(|o| o.to_string_lossy().into_owned()),
            nameservers: config
                .nameservers
                .iter()
                .take(MAX_NAMESERVERS)
                .copied()
                .collect(),
            next_check: CHECK_INTERVAL,
        };
        let conf = read_first(&mut files.resolv_conf)?;
        let hosts = read_first(&mut files.hosts)?;
        let conf = files.conf_from(&conf);
        Ok((files, conf, Hosts::parse(&hosts)))
    }

    /// Before a lookup at `now`: reads again a file that changed since its
    /// text was read, at most once per [`CHECK_INTERVAL`], and gives the
    /// new contents to `resolver`.
    pub(in crate::reactor) fn check(&mut self, now: Millis, resolver: &mut Resolver) {
        if now < self.next_check {
            return;
        }
        self.next_check = now.saturating_add(CHECK_INTERVAL);
        if let Some(text) = read_if_changed(&mut self.resolv_conf) {
            resolver.set_conf(self.conf_from(&text));
        }
        if let Some(text) = read_if_changed(&mut self.hosts) {
            resolver.set_hosts(Hosts::parse(&text));
        }
    }

    /// resolv.conf's text, with `RES_OPTIONS` and the configured servers
    /// applied over it.
    fn conf_from(&self, text: &str) -> ResolvConf {
        let mut conf = ResolvConf::parse(text);
        if let Some(options) = &self.res_options {
            // As glibc: the environment's options override the file's.
            conf.apply_options(options);
        }
        if !self.nameservers.is_empty() {
            conf.nameservers.clone_from(&self.nameservers);
        }
        conf
    }
}

/// The stamp of the file at `path`, or the error that kept it from being
/// had.
fn stamp_of(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        size: m.size(),
        ino: m.ino(),
    })
}

/// The first read: the text (empty if the file is missing), its stamp
/// kept. See [`ResolverFiles::load`] for the errors.
fn read_first(file: &mut Watched) -> Result<String, Error> {
    let stamp = stamp_of(&file.path).ok();
    match std::fs::read(&file.path) {
        Ok(bytes) => {
            file.stamp = stamp;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        Err(e) => match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => Ok(String::new()),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS) => Err(Error::Io(e)),
            _ => Err(Error::InvalidConfig {
                field: file.field,
                reason: "names a file that exists but cannot be read",
            }),
        },
    }
}

/// The file's new text if its stamp changed and it could be read; `None`
/// if it is unchanged, or cannot be had now (the last good text stays,
/// and the next check tries again).
fn read_if_changed(file: &mut Watched) -> Option<String> {
    let stamp = stamp_of(&file.path).ok()?;
    if file.stamp == Some(stamp) {
        return None;
    }
    let bytes = std::fs::read(&file.path).ok()?;
    file.stamp = Some(stamp);
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests;
