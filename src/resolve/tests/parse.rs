//! The text formats (hosts, resolv.conf), names and their search-list
//! expansion, the id source and the address set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::super::addresses::MAX_PER_FAMILY;
use super::super::conf::ResolvConf;
use super::super::hosts::Hosts;
use super::super::name::{HostName, candidates};
use super::super::rng::{IdSource, siphash24};
use super::super::{Addresses, ResolveError};

fn v4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

// ----- hosts -------------------------------------------------------------

#[test]
fn hosts_lines_comments_aliases_and_families() {
    let hosts = Hosts::parse(
        "# The usual\n\
         127.0.0.1\tlocalhost\n\
         ::1     localhost ip6-localhost ip6-loopback\n\
         \n\
         10.0.0.5  Web.Internal  web   # front end\n\
         10.0.0.6  web.internal\n\
         fe80::1%eth0 linklocal\n\
         not-an-ip  bogus\n\
         2001:db8::7 v6only.\n\
         #10.0.0.9 commented\n\
         10.0.0.10\n",
    );
    let localhost = hosts.get("localhost").unwrap();
    assert_eq!(localhost.v4(), &[Ipv4Addr::LOCALHOST]);
    assert_eq!(localhost.v6(), &[Ipv6Addr::LOCALHOST]);
    assert_eq!(
        hosts.get("IP6-LOCALHOST").unwrap().v6(),
        &[Ipv6Addr::LOCALHOST]
    );
    // A name on two lines has both addresses, in file order; any case.
    assert_eq!(
        hosts.get("WEB.internal").unwrap().v4(),
        &[v4(10, 0, 0, 5), v4(10, 0, 0, 6)]
    );
    assert_eq!(hosts.get("web").unwrap().v4(), &[v4(10, 0, 0, 5)]);
    assert!(hosts.get("web").unwrap().v6().is_empty());
    // A trailing dot in the file is dropped.
    assert_eq!(
        hosts.get("v6only").unwrap().v6(),
        &["2001:db8::7".parse::<Ipv6Addr>().unwrap()]
    );
    for skipped in ["linklocal", "bogus", "commented", "front", "end"] {
        assert!(hosts.get(skipped).is_none(), "{skipped}");
    }
    assert_eq!(hosts.len(), 6);
}

#[test]
fn hosts_keeps_at_most_max_per_family_and_no_duplicates() {
    let text: String = (1..=20)
        .map(|i| format!("10.0.0.{i} many\n10.0.0.1 many\n"))
        .collect();
    let hosts = Hosts::parse(&text);
    let many = hosts.get("many").unwrap();
    assert_eq!(many.v4().len(), MAX_PER_FAMILY);
    assert_eq!(many.v4()[0], v4(10, 0, 0, 1));
    assert_eq!(many.v4()[1], v4(10, 0, 0, 2));
}

#[test]
fn empty_hosts_file() {
    let hosts = Hosts::parse("");
    assert!(hosts.get("localhost").is_none());
    assert_eq!(hosts.len(), 0);
}

// ----- resolv.conf -------------------------------------------------------

#[test]
fn resolv_conf_defaults_are_glibcs() {
    let conf = ResolvConf::parse("");
    assert_eq!(conf.nameservers, vec!["127.0.0.1:53".parse().unwrap()]);
    assert!(conf.search.is_empty());
    assert_eq!(
        (conf.ndots, conf.timeout, conf.attempts, conf.rotate),
        (1, 5_000, 2, false)
    );
    assert_eq!(conf, ResolvConf::default());
}

#[test]
fn resolv_conf_servers_search_and_options() {
    let conf = ResolvConf::parse(
        "# generated\n\
         ; also a comment\n\
         nameserver 192.0.2.53\n\
         nameserver 2001:db8::53   # primary v6\n\
         nameserver bogus\n\
         nameserver fe80::1%eth0\n\
         domain corp.example\n\
         search Eng.Corp.Example. corp.example bad..name\n\
         options ndots:3 timeout:2\n\
         options attempts:4 rotate unknown-option edns0\n\
         sortlist 130.155.160.0/255.255.240.0\n",
    );
    let servers: Vec<SocketAddr> = vec![
        "192.0.2.53:53".parse().unwrap(),
        "[2001:db8::53]:53".parse().unwrap(),
    ];
    assert_eq!(conf.nameservers, servers);
    // The last search/domain line wins; lowercase, no trailing dot, bad
    // names dropped.
    assert_eq!(
        conf.search,
        vec!["eng.corp.example".into(), "corp.example".into()]
    );
    assert_eq!(
        (conf.ndots, conf.timeout, conf.attempts, conf.rotate),
        (3, 2_000, 4, true)
    );
}

#[test]
fn resolv_conf_limits_and_domain_line() {
    let conf = ResolvConf::parse(
        "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n\
         search a.example\ndomain b.example\n\
         options ndots:40 timeout:0 attempts:9\n",
    );
    assert_eq!(conf.nameservers.len(), 3, "glibc's MAXNS");
    assert_eq!(conf.search, vec!["b.example".into()]);
    assert_eq!((conf.ndots, conf.timeout, conf.attempts), (15, 1_000, 5));
    let conf = ResolvConf::parse("options timeout:99 attempts:0 ndots:x\n");
    assert_eq!((conf.ndots, conf.timeout, conf.attempts), (1, 30_000, 1));
}

#[test]
fn res_options_apply_over_the_file() {
    let mut conf = ResolvConf::parse("options ndots:3");
    conf.apply_options("ndots:0 rotate");
    assert_eq!((conf.ndots, conf.rotate), (0, true));
}

// ----- names -------------------------------------------------------------

#[test]
fn host_names_accepted_and_refused() {
    assert_eq!(
        HostName::parse("Www.Example.com."),
        Ok(HostName {
            text: "Www.Example.com",
            absolute: true
        })
    );
    for ok in [
        "a",
        "_srv._tcp.example",
        "xn--bcher-kva.example",
        "a-b.c",
        &"a".repeat(63),
    ] {
        assert!(HostName::parse(ok).is_ok(), "{ok:?}");
    }
    let max = [
        "a".repeat(63).as_str(),
        &"b".repeat(63),
        &"c".repeat(63),
        &"d".repeat(61),
    ]
    .join(".");
    assert_eq!(max.len(), 253);
    assert!(HostName::parse(&max).is_ok());
    assert!(HostName::parse(&format!("{max}.")).is_ok());
    assert!(HostName::parse(&format!("{max}e")).is_err());
    for bad in [
        "",
        ".",
        "..",
        "a..b",
        ".a",
        "a b",
        "a\tb",
        "bücher.de",
        "a/b",
        "a:b",
        "[::1]",
    ] {
        assert!(HostName::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_one_pass_check_agrees_with_the_parser() {
    use super::super::check_name;
    let long = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    let mut names: Vec<String> = [
        "",
        ".",
        "..",
        "a",
        "a.",
        "a..",
        "a..b",
        ".a",
        "a b",
        "a\tb",
        "bücher.de",
        "a/b",
        "a:b",
        "[::1]",
        "_srv._tcp.example",
        "xn--bcher-kva.example",
        "a-b.c",
        "-",
        "a.b.c.",
        "Www.Example.COM",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    names.extend([
        "a".repeat(63),
        "a".repeat(64),
        format!("{}.b", "a".repeat(64)),
        long.clone(),
        format!("{long}."),
        format!("{long}e"),
        format!("{long}.."),
    ]);
    for name in &names {
        let parsed = HostName::parse(name).map(drop).map_err(|e| match e {
            ResolveError::InvalidName { reason } => reason,
            _ => "other",
        });
        assert_eq!(check_name(name), parsed, "{name:?}");
    }
}

fn expand(name: &str, conf: &str) -> Vec<String> {
    let conf = ResolvConf::parse(conf);
    candidates(HostName::parse(name).unwrap(), &conf)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn search_and_ndots_expansion_order() {
    let conf = "search a.example b.example";
    // ndots 1 (default): a dotted name as given first.
    assert_eq!(
        expand("www", conf),
        ["www.a.example", "www.b.example", "www"]
    );
    assert_eq!(
        expand("www.x", conf),
        ["www.x", "www.x.a.example", "www.x.b.example"]
    );
    // ndots 2: one dot is not enough.
    let conf2 = "search a.example b.example\noptions ndots:2";
    assert_eq!(
        expand("www.x", conf2),
        ["www.x.a.example", "www.x.b.example", "www.x"]
    );
    assert_eq!(
        expand("w.x.y", conf2),
        ["w.x.y", "w.x.y.a.example", "w.x.y.b.example"]
    );
    // ndots 0: everything as given first.
    assert_eq!(
        expand("www", "search a.example\noptions ndots:0"),
        ["www", "www.a.example"]
    );
    // A trailing dot: as given only. Lowercase throughout.
    assert_eq!(expand("WWW.X.", conf), ["www.x"]);
    assert_eq!(
        expand("WWW", conf),
        ["www.a.example", "www.b.example", "www"]
    );
    // No search list.
    assert_eq!(expand("www", ""), ["www"]);
}

#[test]
fn candidates_too_long_are_skipped() {
    let long = [
        "a".repeat(63).as_str(),
        &"b".repeat(63),
        &"c".repeat(63),
        &"d".repeat(50),
    ]
    .join(".");
    assert_eq!(
        expand(&long, "search example.com"),
        std::slice::from_ref(&long)
    );
}

// ----- ids ---------------------------------------------------------------

#[test]
#[expect(
    deprecated,
    reason = "std's SipHasher is SipHash-2-4, the reference to check against"
)]
fn siphash_matches_std_siphash_2_4() {
    use std::hash::Hasher;
    let keys = [
        (0, 0),
        (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908),
        (u64::MAX, 1),
    ];
    for (k0, k1) in keys {
        for m in [0, 1, 0x0706_0504_0302_0100, u64::MAX, 0xdead_beef] {
            let mut reference = std::hash::SipHasher::new_with_keys(k0, k1);
            reference.write(&m.to_le_bytes());
            assert_eq!(
                siphash24(k0, k1, m),
                reference.finish(),
                "k=({k0:#x},{k1:#x}) m={m:#x}"
            );
        }
    }
    // The paper's vector for the 8-byte message 00..07 under key 00..0f.
    assert_eq!(
        siphash24(
            0x0706_0504_0302_0100,
            0x0f0e_0d0c_0b0a_0908,
            0x0706_0504_0302_0100
        ),
        0x93f5_f579_9a93_2462
    );
}

#[test]
fn ids_are_spread_and_seed_dependent() {
    let mut a = IdSource::new(1);
    let ids: std::collections::HashSet<u16> = (0..1_000).map(|_| a.next_id()).collect();
    assert!(ids.len() > 980, "{} distinct of 1000", ids.len());
    let mut b = IdSource::new(1);
    let mut c = IdSource::new(2);
    let (b8, c8): (Vec<u64>, Vec<u64>) = (0..8).map(|_| (b.next_u64(), c.next_u64())).unzip();
    assert_ne!(b8, c8);
}

// ----- addresses ---------------------------------------------------------

#[test]
fn addresses_interleave_families_v6_first() {
    let mut a = Addresses::EMPTY;
    assert!(a.is_empty());
    for ip in [
        "2001:db8::1",
        "192.0.2.1",
        "2001:db8::2",
        "2001:db8::3",
        "192.0.2.2",
        "192.0.2.1",
    ] {
        assert!(a.push(ip.parse().unwrap()));
    }
    let order: Vec<IpAddr> = a.interleaved().collect();
    let expect: Vec<IpAddr> = [
        "2001:db8::1",
        "192.0.2.1",
        "2001:db8::2",
        "192.0.2.2",
        "2001:db8::3",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    assert_eq!(order, expect);
    let mut full = Addresses::EMPTY;
    for i in 0..MAX_PER_FAMILY {
        assert!(full.push(IpAddr::V4(v4(10, 0, 0, u8::try_from(i).unwrap()))));
    }
    assert!(!full.push(IpAddr::V4(v4(10, 0, 1, 0))), "full");
    assert_eq!(
        std::mem::size_of::<Addresses>(),
        162,
        "the size the docs state"
    );
}
