//! Unix-domain socket targets are pooled like TCP ones: reuse, limits and
//! the FIFO wait, idle watching (peer close, stray data), validation at
//! delivery, keep-alive, policies, lifecycle events and stats; connect
//! errors keep the original's shape; bad paths are refused at allocate.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::unix::UnixServer;
use common::*;
use keepalive::{
    Change, CloseReason, Config, Error, Event, Events, FromCache, Function, Host, Request,
};

fn unix<C>(server: &UnixServer, context: C) -> Request<C> {
    Request::unix("http", server.path.clone(), context)
}

#[test]
fn a_unix_connection_is_reused_and_reports_no_ip_address() {
    let server = UnixServer::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, unix(&server, ()));
    assert_eq!(conn.from_cache(), None);
    assert!(conn.is_unix());
    assert!(conn.peer_addr().ip().is_unspecified());
    assert_eq!(
        conn.local_addr().unwrap_err().kind(),
        std::io::ErrorKind::Unsupported
    );
    let first = get(&mut ka, &mut events, &mut conn);
    assert!(first.starts_with("hello\n"), "{first:?}");
    ka.free(conn).unwrap();

    ka.allocate(unix(&server, ())).unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!(outcome.target.unix_path(), Some(server.path.as_path()));
    assert_eq!(outcome.target.port(), 0);
    let mut conn = outcome.result.unwrap();
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    assert_eq!(conn.uses(), 2);
    assert_eq!(
        get(&mut ka, &mut events, &mut conn),
        first,
        "same connection"
    );
    drop(conn);
    server.assert_accepted(1);
}

#[test]
fn unix_and_tcp_targets_never_share_and_host_parse_names_the_same_key() {
    let server = UnixServer::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, unix(&server, ()));
    ka.free(conn).unwrap();
    // `unix:` + the path, by `Request::host` (any port is dropped).
    let text = format!("unix:{}", server.path.display());
    let by_text = Request::host("http", text.clone(), 8080, ());
    assert_eq!(
        by_text.target().host(),
        &Host::Unix(server.path.clone().into())
    );
    assert_eq!(by_text.target().to_string(), format!("http://{text}"));
    let conn = connect(&mut ka, &mut events, by_text);
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    drop(conn);
    // Another scheme is another pool.
    let conn = connect(
        &mut ka,
        &mut events,
        Request::unix("other", server.path.clone(), ()),
    );
    assert_eq!(conn.from_cache(), None);
    server.assert_accepted(2);
}

#[test]
fn a_full_unix_key_makes_requests_wait_in_fifo_order() {
    let server = UnixServer::start();
    let mut ka = reactor(Config::default().with_max_per_host(1));
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, unix(&server, 0));
    let second = ka.allocate(unix(&server, 1)).unwrap();
    let third = ka.allocate(unix(&server, 2)).unwrap();
    poll_for(&mut ka, &mut events, Duration::from_millis(20));
    assert!(
        !events.iter().any(|e| matches!(e, Event::Outcome(_))),
        "a request over the limit must wait"
    );
    assert_eq!(ka.stats().total.waiting, 2);
    drop(conn);
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!((outcome.id, outcome.context), (second, 1));
    let conn = outcome.result.unwrap();
    assert_eq!(conn.from_cache(), Some(FromCache::Deferred));
    ka.free(conn).unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!((outcome.id, outcome.context), (third, 2));
    server.assert_accepted(1);
}

#[test]
fn an_idle_unix_connection_closed_by_the_server_is_not_reused() {
    let server = UnixServer::start();
    let mut ka = reactor(Config::default().with_lifecycle_events(true));
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, unix(&server, ()));
    server.close_all();
    let mut closed = None;
    poll_until(&mut ka, &mut events, "the idle socket to close", |k| {
        k.idle_count() == 0
    });
    for e in events.drain() {
        if let Event::Lifecycle(l) = e {
            if let Change::Closed(reason) = l.change {
                closed = Some(reason);
            }
        }
    }
    assert_eq!(closed, Some(CloseReason::PeerClosed));
    assert_eq!(ka.stats().counters.closes(CloseReason::PeerClosed), 1);
    let mut conn = connect(&mut ka, &mut events, unix(&server, ()));
    assert_eq!(conn.from_cache(), None);
    assert!(get(&mut ka, &mut events, &mut conn).starts_with("hello\n"));
}

#[test]
fn stray_data_on_an_idle_unix_connection_closes_it() {
    let server = UnixServer::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, unix(&server, ()));
    server.send_unsolicited();
    poll_until(&mut ka, &mut events, "the idle socket to close", |k| {
        k.idle_count() == 0
    });
    assert_eq!(ka.stats().counters.closes(CloseReason::StrayData), 1);
    let conn = connect(&mut ka, &mut events, unix(&server, ()));
    assert_eq!(conn.from_cache(), None);
}

#[test]
fn a_unix_close_that_arrives_unpolled_is_never_delivered() {
    let server = UnixServer::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, unix(&server, ()));
    server.close_all();
    wait_readable(ka.as_raw_fd());
    ka.allocate(unix(&server, ())).unwrap();
    let mut conn = wait_outcome(&mut ka, &mut events).result.unwrap();
    assert_eq!(conn.from_cache(), None, "the dead socket was replaced");
    assert!(get(&mut ka, &mut events, &mut conn).starts_with("hello\n"));
    server.assert_accepted(2);
}

#[test]
fn an_idle_unix_connection_expires_after_keep_alive_and_max_uses_retires_one() {
    let server = UnixServer::start();
    let mut ka = reactor(
        Config::default()
            .with_keep_alive(Duration::from_millis(30))
            .with_max_uses(2),
    );
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, unix(&server, ()));
    ka.free(conn).unwrap();
    poll_until(&mut ka, &mut events, "keep-alive expiry", |k| {
        k.idle_count() == 0
    });
    assert_eq!(ka.stats().counters.closes(CloseReason::KeepAliveExpired), 1);
    // Two uses, then it is closed on return.
    let conn = connect(&mut ka, &mut events, unix(&server, ()));
    ka.free(conn).unwrap();
    let conn = connect(&mut ka, &mut events, unix(&server, ()));
    assert_eq!(conn.uses(), 2);
    ka.free(conn).unwrap();
    assert_eq!(ka.idle_count(), 0);
    assert_eq!(ka.stats().counters.closes(CloseReason::Uses), 1);
}

#[test]
fn unix_key_stats_and_purge_name_the_path() {
    let server = UnixServer::start();
    let mut ka = reactor(Config::default().with_bind_address(LOCALHOST));
    let mut events = Events::new();
    let req = unix(&server, ());
    let target = req.target().clone();
    let conn = connect(&mut ka, &mut events, req);
    ka.free(conn).unwrap();
    let mut keys = Vec::new();
    ka.key_stats(&mut keys);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].target.unix_path(), Some(server.path.as_path()));
    assert_eq!(keys[0].target.bind_address(), None, "no IP bind for a path");
    assert_eq!(keys[0].counts.idle, 1);
    assert_eq!(ka.purge(&target), (1, 0));
    assert_eq!(ka.idle_count(), 0);
}

#[cfg(target_os = "linux")]
#[test]
fn an_abstract_name_connects_and_pools() {
    let server = UnixServer::start_abstract();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, unix(&server, ()));
    assert!(get(&mut ka, &mut events, &mut conn).starts_with("hello\n"));
    ka.free(conn).unwrap();
    let name = server.path.to_string_lossy()[1..].to_string();
    let req = Request::host("http", format!("unix:@{name}"), 0, ());
    assert_eq!(req.target().to_string(), format!("http://unix:@{name}"));
    let conn = connect(&mut ka, &mut events, req);
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    server.assert_accepted(1);
}

#[track_caller]
fn connect_failure(ka: &mut keepalive::Reactor<()>, path: PathBuf) -> keepalive::ConnectError {
    let mut events = Events::new();
    ka.allocate(Request::unix("http", path, ())).unwrap();
    match wait_outcome(ka, &mut events).result {
        Ok(_) => panic!("connected"),
        Err(e) => e,
    }
}

#[test]
fn a_missing_path_fails_with_connect_enoent() {
    let dir = TempDir::new("unix-missing");
    let mut ka = reactor(Config::default());
    let e = connect_failure(&mut ka, dir.path.join("nobody.sock"));
    assert_eq!(e.function(), Function::Connect);
    assert_eq!(e.errno(), Some(libc::ENOENT));
    assert!(!e.to_string().is_empty());
    assert_eq!(ka.stats().counters.failures(Function::Connect), 1);
    assert_eq!(ka.open_count(), 0);
}

#[test]
fn a_path_nobody_listens_on_fails_with_connect_econnrefused() {
    let server = UnixServer::start();
    server.stop_listening();
    let mut ka = reactor(Config::default());
    let e = connect_failure(&mut ka, server.path.clone());
    assert_eq!(e.function(), Function::Connect);
    assert_eq!(e.errno(), Some(libc::ECONNREFUSED));
}

#[test]
fn a_socket_without_permission_fails_with_connect_eacces() {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code, reason = "one libc call to ask who we are")]
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        eprintln!("skipped: root passes every permission check (EACCES needs another user)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let server = UnixServer::start();
    let dir = server.path.parent().unwrap().to_path_buf();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut ka = reactor(Config::default());
    let e = connect_failure(&mut ka, server.path.clone());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(e.function(), Function::Connect);
    assert_eq!(e.errno(), Some(libc::EACCES));
}

#[track_caller]
fn refusal(ka: &mut keepalive::Reactor<()>, req: Request<()>) -> &'static str {
    match ka.allocate(req) {
        Err(e) => match e.error {
            Error::InvalidRequest { reason } => reason,
            other => panic!("refused with {other:?}"),
        },
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn bad_unix_requests_are_refused_at_allocate_with_a_reason() {
    let mut ka = reactor(Config::default());
    let long = PathBuf::from(format!("/tmp/{}", "x".repeat(200)));
    let reason = refusal(&mut ka, Request::unix("http", long, ()));
    assert!(reason.contains("sun_path"), "{reason}");
    // 107 bytes fit (108 with the NUL terminator); 108 do not.
    let fits = PathBuf::from(format!("/{}", "x".repeat(106)));
    ka.allocate(Request::unix("http", fits, ())).unwrap();
    let over = PathBuf::from(format!("/{}", "x".repeat(107)));
    assert!(refusal(&mut ka, Request::unix("http", over, ())).contains("sun_path"));
    let reason = refusal(&mut ka, Request::unix("http", Path::new(""), ()));
    assert!(reason.contains("empty"), "{reason}");
    let reason = refusal(&mut ka, Request::unix("http", Path::new("/tmp/a\0b"), ()));
    assert!(reason.contains("NUL"), "{reason}");
    let bound = Request::unix("http", Path::new("/tmp/a.sock"), ()).bind_address(LOCALHOST);
    assert!(refusal(&mut ka, bound).contains("bind"));
    let reason = refusal(
        &mut ka,
        Request::unix("https", Path::new("/tmp/a.sock"), ()),
    );
    assert!(reason.contains("server_name"), "{reason}");
    #[cfg(target_os = "linux")]
    {
        let long = PathBuf::from(format!("\0{}", "x".repeat(108)));
        assert!(refusal(&mut ka, Request::unix("http", long, ())).contains("sun_path"));
        let fits = PathBuf::from(format!("\0{}", "x".repeat(107)));
        ka.allocate(Request::unix("http", fits, ())).unwrap();
    }
}
