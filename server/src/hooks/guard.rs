//! The SSRF guard for outgoing deliveries (webhooks, WebSub callbacks).
//!
//! A target's host is resolved by the guard itself, every address is
//! checked, and the connection goes to an address that passed: the HTTP
//! client's resolver *is* the guard, so a name cannot resolve to a public
//! address when checked and to a private one when connected (DNS
//! rebinding). Refused: loopback, private, shared, link-local, unique-local,
//! multicast, documentation, benchmarking, reserved and other special-purpose
//! ranges of IPv4 and IPv6 (IPv4-mapped, NAT64 and 6to4 addresses are judged
//! by the IPv4 address they carry). An explicit allow-list overrides.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Which addresses deliveries may go to.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: Arc<Vec<IpNet>>,
}

/// Special-purpose IPv4 ranges (IANA registry) that deliveries never reach.
const V4_DENY: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(192, 88, 99, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// Special-purpose IPv6 ranges; those that embed an IPv4 address are
/// handled before this list.
const V6_DENY: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::UNSPECIFIED, 128),
    (Ipv6Addr::LOCALHOST, 128),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

fn in_v4(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, (net, len): (Ipv6Addr, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// The IPv4 address an IPv6 one stands for: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`)
/// and 6to4 (`2002::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0; 6] && u128::from(ip) > 1 {
        return Some(low);
    }
    if in_v6(ip, (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96))
        || in_v6(ip, (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48))
    {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Whether `ip` is in a special-purpose range.
#[must_use]
pub fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => V4_DENY.iter().any(|r| in_v4(v4, *r)),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_special(IpAddr::V4(v4)),
            None => V6_DENY.iter().any(|r| in_v6(v6, *r)),
        },
    }
}

impl Guard {
    /// A guard that also permits the networks (`127.0.0.1`, `10.0.0.0/8`,
    /// `::1`) in `allow`.
    ///
    /// # Errors
    /// An entry that is neither an address nor a network.
    pub fn new(allow: &[String]) -> Result<Self, String> {
        let nets = allow
            .iter()
            .map(|a| {
                a.parse::<IpNet>()
                    .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{a:?} is not an IP address or network"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            allow: Arc::new(nets),
        })
    }

    /// Whether a delivery may connect to `ip`.
    #[must_use]
    pub fn permits(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.allow
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&canonical))
            || !is_special(ip)
    }

    /// Resolves `host` and keeps the addresses the guard permits.
    ///
    /// # Errors
    /// A host that does not resolve, or whose every address is refused.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let all: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .collect()
        };
        let ok: Vec<SocketAddr> = all
            .iter()
            .copied()
            .filter(|a| self.permits(a.ip()))
            .collect();
        if ok.is_empty() {
            let shown = all
                .first()
                .map_or_else(|| host.to_owned(), |a| a.ip().to_string());
            return Err(format!(
                "{host} is refused: {shown} is a loopback, private or special-purpose address; \
                 start the broker with --allow-hook-target {shown} (or a network around it, \
                 `allow_hook_targets` in the config file) to allow it"
            ));
        }
        Ok(ok)
    }

    /// Checks a target URL: http or https, and a host the guard permits.
    ///
    /// # Errors
    /// Why the URL is refused.
    pub async fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{url}: only http and https targets"));
        }
        let host = url.host_str().ok_or_else(|| format!("{url}: no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        self.resolve(host, port).await.map(drop)
    }
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let addrs = guard
                .resolve(name.as_str(), 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special(s: &str) -> bool {
        is_special(s.parse().unwrap())
    }

    #[test]
    fn special_ranges_are_refused() {
        for s in [
            "10.0.0.1",
            "169.254.169.254",
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(special(s), "{s} must be refused");
        }
        for s in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:0808:0808::",
        ] {
            assert!(!special(s), "{s} is public");
        }
    }

    #[test]
    fn the_allow_list_overrides() {
        let g = Guard::new(&["127.0.0.1".into(), "10.1.0.0/16".into()]).unwrap();
        assert!(g.permits("127.0.0.1".parse().unwrap()));
        assert!(g.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!g.permits("127.0.0.2".parse().unwrap()));
        assert!(g.permits("10.1.9.9".parse().unwrap()));
        assert!(!g.permits("10.2.0.1".parse().unwrap()));
        assert!(Guard::new(&["not an ip".into()]).is_err());
    }

    #[tokio::test]
    async fn names_and_urls_are_checked_after_resolution() {
        let g = Guard::default();
        assert!(g.resolve("localhost", 80).await.is_err());
        for u in [
            "http://10.0.0.1/x",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8080/",
            "http://localhost/",
            "ftp://93.184.216.34/",
        ] {
            let url = reqwest::Url::parse(u).unwrap();
            assert!(g.check_url(&url).await.is_err(), "{u}");
        }
        let allowed = Guard::new(&["127.0.0.1".into()]).unwrap();
        let url = reqwest::Url::parse("http://127.0.0.1:9/").unwrap();
        assert!(allowed.check_url(&url).await.is_ok());
    }
}
