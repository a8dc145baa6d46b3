//! Which cryptography rustls runs on, chosen at compile time.
//!
//! # Key exchange, and why the order of the groups matters
//!
//! A TLS 1.3 client names the groups it supports and sends key shares for
//! some of them in its ClientHello. A server that supports none of the shared
//! groups answers with a HelloRetryRequest: one more round trip before the
//! handshake can go on. rustls sends a share for the first group in the
//! provider's list and, when that group is a hybrid whose classical half is
//! also in the list, a share for that half too, at no extra cost.
//!
//! - **aws-lc-rs** (feature `aws-lc-rs`, the default): the groups are
//!   X25519MLKEM768, X25519, P-256, P-384. The ClientHello (about 1.5 KB)
//!   carries an X25519MLKEM768 share and an X25519 share, so a server that
//!   speaks ML-KEM (rustls, Cloudflare, Google, OpenSSL 3.5) negotiates the
//!   post-quantum hybrid, and one that does not (OpenSSL 3.0, Debian 12's
//!   nginx) answers X25519 directly, without a HelloRetryRequest.
//! - **ring** (feature `ring`): X25519, P-256, P-384; classical key
//!   exchange only (ring has no ML-KEM). rustls deprecated its own ring
//!   `default_provider()` for that reason, so this build assembles the same
//!   provider from rustls's public ring parts instead (`ring_parts`).
//!
//! The lists are written out here rather than taken from rustls's defaults,
//! whose order changes between releases: the order is what decides which
//! shares go out, so it is part of this crate's behaviour.
//!
//! With both features, aws-lc-rs is used (a dependency enabling `ring`
//! somewhere in a build must not silently take post-quantum key exchange
//! away); with neither, the crate does not compile.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!(
    "keepalive needs a TLS crypto provider: enable the `aws-lc-rs` feature (the default; \
     post-quantum key exchange) or the `ring` feature (classical key exchange only)"
);

/// The provider this build uses; see the [module docs](self).
#[cfg(feature = "aws-lc-rs")]
pub(crate) fn crypto_provider() -> CryptoProvider {
    aws_lc_rs_provider()
}

/// The provider this build uses; see the [module docs](self).
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
pub(crate) fn crypto_provider() -> CryptoProvider {
    ring_provider()
}

/// aws-lc-rs, X25519MLKEM768 first and X25519 second.
#[cfg(feature = "aws-lc-rs")]
pub(crate) fn aws_lc_rs_provider() -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::{self, kx_group};
    CryptoProvider {
        kx_groups: vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
        ],
        ..aws_lc_rs::default_provider()
    }
}

/// ring, X25519 first. With both features it is compiled only for the
/// benchmarks (`internals`), which compare the two.
#[cfg(all(
    feature = "ring",
    any(not(feature = "aws-lc-rs"), feature = "internals")
))]
#[must_use]
pub fn ring_provider() -> CryptoProvider {
    use rustls::crypto::ring::{DEFAULT_CIPHER_SUITES, kx_group};
    CryptoProvider {
        cipher_suites: DEFAULT_CIPHER_SUITES.to_vec(),
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        signature_verification_algorithms: super::ring_parts::SIGNATURE_ALGORITHMS,
        secure_random: &super::ring_parts::Ring,
        key_provider: &super::ring_parts::Ring,
    }
}

/// The provider for callers building their own `ClientConfig`, shared.
pub(crate) fn shared() -> Arc<CryptoProvider> {
    Arc::new(crypto_provider())
}
