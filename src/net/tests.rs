//! The socket calls against real loopback sockets.
use super::*;
use std::io::Write;

#[test]
fn connect_refused_is_reported_by_so_error_or_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    match connect(addr, None, true) {
        Err(e) => assert_eq!(e.errno(), Some(libc::ECONNREFUSED)),
        Ok(stream) => {
            // Completion comes later: poll until SO_ERROR says why.
            let mut err = None;
            for _ in 0..1000 {
                if let Some(e) = stream.take_error().unwrap() {
                    err = Some(e);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert_eq!(err.and_then(|e| e.raw_os_error()), Some(libc::ECONNREFUSED));
        }
    }
}

#[test]
fn bind_to_foreign_family_fails_with_bind() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let err = connect(addr, Some("::1".parse().unwrap()), true).unwrap_err();
    assert_eq!(err.function(), Function::Bind);
}

#[test]
fn peek_sees_empty_data_and_eof() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    assert!(matches!(peek(client.as_raw_fd()), Peek::Empty));
    server.write_all(b"x").unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut spins = 0;
    while matches!(peek(client.as_raw_fd()), Peek::Empty) && spins < 5000 {
        std::thread::sleep(std::time::Duration::from_millis(1));
        spins += 1;
    }
    assert!(matches!(peek(client.as_raw_fd()), Peek::Data));
    drop(server);
    let mut buf = [0u8; 8];
    use std::io::Read;
    assert_eq!((&client).read(&mut buf).unwrap(), 1);
    let mut spins = 0;
    while !matches!(peek(client.as_raw_fd()), Peek::Eof) && spins < 5000 {
        std::thread::sleep(std::time::Duration::from_millis(1));
        spins += 1;
    }
    assert!(matches!(peek(client.as_raw_fd()), Peek::Eof));
}

#[test]
fn random_seeds_differ() {
    let (a, b) = (random_seed(), random_seed());
    assert_ne!(a, b);
    assert_ne!(a, 0);
    assert_ne!(
        fallback_seed(),
        fallback_seed(),
        "the keyed hash differs per call"
    );
}

#[test]
fn huge_page_advice_skips_small_buffers_and_keeps_contents() {
    let small: Vec<u64> = Vec::with_capacity(1024);
    assert!(!advise_huge_pages(&small), "a small buffer is left alone");

    let mut big: Vec<u64> = (0..(1u64 << 20)).collect(); // 8 MiB
    let advised = advise_huge_pages(&big);
    // A kernel with transparent huge pages takes the advice whatever their
    // mode (`never` included); one built without them refuses it.
    if std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
        assert!(advised, "a kernel with transparent huge pages takes it");
    }
    assert!(big.iter().enumerate().all(|(i, &v)| v == i as u64));
    big.push(1);
    assert_eq!(big.len(), (1 << 20) + 1);
}

#[test]
fn unix_paths_are_checked_against_sun_path() {
    use std::path::Path;
    assert_eq!(SUN_PATH_LEN, 108);
    assert_eq!(unix_path_refusal(Path::new("/run/app.sock")), None);
    assert_eq!(unix_path_refusal(Path::new(&"x".repeat(107))), None);
    assert!(unix_path_refusal(Path::new(&"x".repeat(108))).is_some());
    assert!(unix_path_refusal(Path::new("")).is_some());
    assert!(unix_path_refusal(Path::new("a\0b")).is_some());
    let abstract_fits = format!("\0{}", "x".repeat(107));
    let abstract_over = format!("\0{}", "x".repeat(108));
    assert_eq!(
        unix_path_refusal(Path::new(&abstract_fits)).is_none(),
        cfg!(target_os = "linux")
    );
    assert!(unix_path_refusal(Path::new(&abstract_over)).is_some());
    // What passes the check, the kernel's address takes.
    assert!(unix_address(Path::new(&"x".repeat(107))).is_ok());
    #[cfg(target_os = "linux")]
    assert!(unix_address(Path::new(&abstract_fits)).is_ok());
}

#[test]
fn a_unix_connect_fails_at_once_with_connect_and_the_errno() {
    let dir = std::env::temp_dir().join(format!("keepalive-net-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    let e = connect_unix(&path).unwrap_err();
    assert_eq!(
        (e.function(), e.errno()),
        (Function::Connect, Some(libc::ENOENT))
    );
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    assert!(connect_unix(&path).is_ok());
    drop(listener);
    let e = connect_unix(&path).unwrap_err();
    assert_eq!(
        (e.function(), e.errno()),
        (Function::Connect, Some(libc::ECONNREFUSED))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn involuntary_switches_reads_a_count_that_never_falls() {
    let before = involuntary_switches().expect("getrusage(RUSAGE_THREAD)");
    for _ in 0..100 {
        std::thread::yield_now();
    }
    let after = involuntary_switches().expect("getrusage(RUSAGE_THREAD)");
    assert!(after >= before, "{before} → {after}");
}
