//! The upstream as the command line names it: `host:port`, where the host
//! is an IPv4 address, a bracketed IPv6 address or a host name, or
//! `unix:/path` for a Unix-domain socket, pooled by path like any target.
//!
//! A name is resolved by the pool's own resolver (its cache, Happy
//! Eyeballs, the request's connect timeout covering the lookup), so the
//! proxy follows the name's answers over its life. A numeric host is used
//! as is, with no lookup.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;

use keepalive::Host;

/// Where the proxy sends requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The host, as every request's pool key names it. A name is held as a
    /// `&'static str` (leaked once, when the command line is parsed) so
    /// that building a request per client request copies a pointer, not a
    /// string: the steady path allocates nothing.
    pub host: Host,
    /// The port.
    pub port: u16,
}

impl Upstream {
    /// Parses `host:port` (`127.0.0.1:80`, `[::1]:80`, `backend.local:8080`)
    /// or a Unix-domain socket as nginx writes it (`unix:/run/app.sock`;
    /// `unix:@name` for an abstract one).
    ///
    /// # Errors
    ///
    /// A missing or bad port, an empty host or path, with what was wrong.
    pub fn parse(text: &str) -> Result<Upstream, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Upstream::from(addr));
        }
        if text.starts_with("unix:") {
            return match Host::parse(text.to_owned()) {
                // Leaked once, like a name: a request's clone copies a
                // pointer.
                Host::Unix(path) if !path.as_os_str().is_empty() => Ok(Upstream {
                    host: Host::Unix(Cow::Borrowed(Box::leak(
                        path.into_owned().into_boxed_path(),
                    ))),
                    port: 0,
                }),
                _ => Err(format!("upstream {text:?}: expected unix:/path")),
            };
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("upstream {text:?}: expected host:port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("upstream {text:?}: bad port {port:?}"))?;
        if host.is_empty() || host.contains(':') || host.contains('/') {
            return Err(format!("upstream {text:?}: bad host {host:?}"));
        }
        let host = match Host::parse(host.to_owned()) {
            Host::Name(name) => {
                Host::Name(Cow::Borrowed(Box::leak(name.into_owned().into_boxed_str())))
            }
            other @ (Host::Addr(_) | Host::Unix(_)) => other,
        };
        Ok(Upstream { host, port })
    }
}

impl From<SocketAddr> for Upstream {
    fn from(addr: SocketAddr) -> Upstream {
        Upstream {
            host: Host::Addr(addr.ip()),
            port: addr.port(),
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Addr(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
            Host::Unix(_) => write!(f, "{}", self.host),
        }
    }
}
