//! Host names: what is accepted, how names compare (ASCII case-insensitive,
//! RFC 4343), and the search-list expansion of `res_search`.

use std::hash::{BuildHasher, Hasher};

use super::conf::ResolvConf;
use super::error::ResolveError;

/// Longest name in text form, without the trailing dot: 255 octets on the
/// wire (RFC 1035 §2.3.4) are 253 characters of labels and dots.
pub(crate) const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
pub(crate) const MAX_LABEL_LEN: usize = 63;

/// A checked name as the caller asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostName<'a> {
    /// The name without its trailing dot, case as given.
    pub(crate) text: &'a str,
    /// It had a trailing dot: fully qualified, the search list is skipped.
    pub(crate) absolute: bool,
}

impl<'a> HostName<'a> {
    /// Checks `name`: ASCII letters, digits, `-` and `_` in dot-separated
    /// labels of 1 to 63 characters, 253 in all, with an optional trailing
    /// dot. Internationalised names must be converted to their `xn--` form
    /// by the caller (IDNA); they are refused, not guessed at.
    pub(crate) fn parse(name: &'a str) -> Result<HostName<'a>, ResolveError> {
        let invalid = |reason| Err(ResolveError::InvalidName { reason });
        let (text, absolute) = match name.strip_suffix('.') {
            Some(t) => (t, true),
            None => (name, false),
        };
        if text.is_empty() {
            return invalid("the name is empty");
        }
        if text.len() > MAX_NAME_LEN {
            return invalid("the name is longer than 253 characters");
        }
        for label in text.split('.') {
            if label.is_empty() {
                return invalid(
                    "the name has an empty label (two dots in a row, or a leading dot)",
                );
            }
            if label.len() > MAX_LABEL_LEN {
                return invalid("a label is longer than 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return invalid(
                    "the name has a character other than ASCII letters, digits, '-', '_' and '.' \
                     (convert internationalised names to their xn-- form first)",
                );
            }
        }
        Ok(HostName { text, absolute })
    }

    /// Dots in the name, the count `ndots` is compared with.
    fn dots(self) -> usize {
        self.text.bytes().filter(|&b| b == b'.').count()
    }
}

/// The names to query for `name`, in order, as glibc's `res_search` tries
/// them: a name with at least `ndots` dots is tried as given first, then
/// with each search domain appended; a name with fewer dots tries the
/// search domains first and itself last. An absolute name (trailing dot)
/// is tried only as given. Candidates that would exceed 253 characters are
/// skipped; the name as given always fits, so the list is never empty.
/// All are lowercase and without a trailing dot.
///
/// glibc also falls back to the local host's domain when resolv.conf names
/// none; the resolver reads no host name, so the driver must put it in
/// `search` if that is wanted.
pub(crate) fn candidates(name: HostName<'_>, conf: &ResolvConf) -> Vec<Box<str>> {
    let as_given = || name.text.to_ascii_lowercase().into_boxed_str();
    if name.absolute {
        return vec![as_given()];
    }
    let mut out = Vec::with_capacity(conf.search.len() + 1);
    let first = name.dots() >= usize::from(conf.ndots);
    if first {
        out.push(as_given());
    }
    for domain in &conf.search {
        if name.text.len() + 1 + domain.len() > MAX_NAME_LEN {
            continue;
        }
        let mut c = String::with_capacity(name.text.len() + 1 + domain.len());
        c.push_str(name.text);
        c.make_ascii_lowercase();
        c.push('.');
        c.push_str(domain);
        out.push(c.into_boxed_str());
    }
    if !first {
        out.push(as_given());
    }
    out
}

/// Hash of `name` as lowercase, so that names differing only in case hash
/// alike. Names up to 256 bytes are lowered into a stack buffer and hashed
/// in one call: no allocation.
pub(crate) fn hash_name(state: &impl BuildHasher, name: &str) -> u64 {
    let mut buf = [0u8; 256];
    let mut h = state.build_hasher();
    match buf.get_mut(..name.len()) {
        Some(lower) => {
            lower.copy_from_slice(name.as_bytes());
            lower.make_ascii_lowercase();
            h.write(lower);
        }
        None => name
            .bytes()
            .for_each(|b| h.write_u8(b.to_ascii_lowercase())),
    }
    h.write_u8(0xff);
    h.finish()
}

/// Whether two names are the same name (ASCII case-insensitive).
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}
