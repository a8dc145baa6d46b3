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
