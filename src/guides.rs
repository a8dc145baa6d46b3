//! Guides: how to use the crate well, one topic a page.
//!
//! Each page is a file in the repository's `docs/` directory, included
//! here so that docs.rs shows it and `cargo test --doc` compiles and runs
//! every Rust example in it: the guides cannot drift from the code. The
//! modules hold no items.
//!
//! | guide | what it covers |
//! | --- | --- |
//! | [`embedding`] | the tick contract, a checkout without a poll, the warm pool, busy polling, the reactor as your whole loop, threads, tokio, calloop, `poll(2)` |
//! | [`proxy`] | writing a proxy on the reactor: the example proxy, its options, what it guarantees against misbehaving clients, the soak |
//! | [`host_names`] | requests by name: the resolver, its cache, refresh while in use, Happy Eyeballs, the files it reads |
//! | [`tls`] | rustls inside the connect phase, trust, post-quantum key exchange, idle TLS connections |
//! | [`unix_sockets`] | Unix-domain targets, pooled by path with every guarantee of TCP |
//! | [`policies`] | every `Config` field, the pool's policies, close reasons, stats |
//! | [`guarantees`] | what always holds, what it costs, the fault suites and what they show, bad input |
//! | [`performance`] | how to run the benchmarks, every figure and its history |
//! | [`migrating_from_poe`] | POE::Component::Client::Keepalive's calls and parameters, and ours |
//! | [`architecture`] | how it is built, and each dependency and why |

// Each page starts with src/guides/links.md: rustdoc's targets for the
// guides' links to each other. The first definition of a label wins, so
// these override the pages' own (relative `.md` files, for GitHub).

#[doc = include_str!("guides/links.md")]
#[doc = include_str!("../docs/embedding.md")]
pub mod embedding {}

#[doc = include_str!("guides/links.md")]
#[doc = include_str!("../docs/proxy.md")]
pub mod proxy {}

#[doc = include_str!("guides/links.md")]
#[doc = include_str!("../docs/host-names.md")]
pub mod host_names {}

#[doc = include_str!("guides/links.md")]
#[doc = include_str!("../docs/tls.md")]
pub mod tls {}

#[doc = include_str!("guides/links.md")]
#[doc = include_str!("../docs/unix-sockets.md")]
pub mod unix_sockets {}

#[doc = include_str!("guides/links.md")]
#[doc = include_str!("../docs/policies.md")]
pub mod policies {}

#[doc = include_str!("guides/links.md")]
#[doc = include_str!("../docs/guarantees.md")]
pub mod guarantees {}

#[doc = include_str!("guides/links.md")]
#[doc = include_str!("../docs/performance.md")]
pub mod performance {}

#[doc = include_str!("guides/links.md")]
#[doc = include_str!("../docs/migrating-from-poe.md")]
pub mod migrating_from_poe {}

#[doc = include_str!("guides/links.md")]
#[doc = include_str!("../docs/architecture.md")]
pub mod architecture {}
