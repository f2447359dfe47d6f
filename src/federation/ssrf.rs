//! SSRF guard for outbound requests (REST tools and upstream gateways).
//! Cloud metadata addresses are always blocked; loopback and private ranges
//! are blocked unless allowed by `SSRF_ALLOW_LOCALHOST`,
//! `SSRF_ALLOW_PRIVATE_NETWORKS` or `SSRF_ALLOWED_NETWORKS`. The check runs on
//! resolved addresses inside the HTTP client's resolver, so the address
//! checked is the address connected to (no DNS rebinding between the two).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an outbound request was refused (or a setting is unusable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SsrfRefusal(pub String);

#[derive(Debug, Clone)]
pub struct SsrfPolicy {
    pub enabled: bool,
    pub allow_localhost: bool,
    pub allow_private: bool,
    pub allowed: Vec<IpNet>,
}

const ALWAYS_BLOCKED: &[&str] = &[
    "169.254.169.254/32",
    "169.254.169.123/32",
    "fd00::1/128",
    "169.254.0.0/16",
    "fe80::/10",
    "100.64.0.0/10",
];
const BLOCKED_HOSTS: &[&str] = &["metadata.google.internal", "metadata.internal"];

impl SsrfPolicy {
    /// Why `ip` may not be contacted, if it may not.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), SsrfRefusal> {
        if !self.enabled {
            return Ok(());
        }
        let ip = embedded_v4(ip);
        if let IpAddr::V6(v6) = ip
            && (v6.segments()[0] & 0xff00) == 0xff00
        {
            return Err(SsrfRefusal(format!("{ip} is a multicast address")));
        }
        if ALWAYS_BLOCKED
            .iter()
            .any(|n| n.parse::<IpNet>().expect("valid constant").contains(&ip))
        {
            return Err(SsrfRefusal(format!(
                "{ip} is a link-local or metadata address (always blocked)"
            )));
        }
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        let loopback = ip.is_loopback() || ip.is_unspecified();
        if loopback && !self.allow_localhost {
            return Err(SsrfRefusal(format!(
                "{ip} is a loopback address (set SSRF_ALLOW_LOCALHOST=true to allow)"
            )));
        }
        let private = match ip {
            IpAddr::V4(v4) => v4.is_private(),
            // Unique local (fc00::/7) and the old site-local (fec0::/10).
            IpAddr::V6(v6) => {
                (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfec0
            }
        };
        if private && !self.allow_private {
            return Err(SsrfRefusal(format!(
                "{ip} is a private address (set SSRF_ALLOW_PRIVATE_NETWORKS=true or list it in SSRF_ALLOWED_NETWORKS)"
            )));
        }
        Ok(())
    }

    /// Checks a URL before a request: blocked host names and literal IPs.
    /// Names are checked again, as addresses, by [`GuardedResolver`].
    pub fn check_url(&self, url: &str) -> Result<(), SsrfRefusal> {
        if !self.enabled {
            return Ok(());
        }
        let u = url::Url::parse(url).map_err(|e| SsrfRefusal(format!("invalid URL: {e}")))?;
        match u.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if BLOCKED_HOSTS.contains(&d.as_str()) {
                    return Err(SsrfRefusal(format!(
                        "{d} is a metadata host (always blocked)"
                    )));
                }
                if d == "localhost" || d.ends_with(".localhost") {
                    return self.check_ip(IpAddr::from([127, 0, 0, 1]));
                }
                Ok(())
            }
            None => Err(SsrfRefusal("URL has no host".into())),
        }
    }
}

/// The IPv4 address an IPv6 one carries, where it carries one that a
/// connection reaches: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`, `64:ff9b:1::/48`) and 6to4
/// (`2002:AABB:CCDD::`). Without this, `[::7f00:1]` passed as "not loopback".
pub fn embedded_v4(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let tail =
        std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6].iter().all(|x| *x == 0) && !(s[6] == 0 && s[7] <= 1);
    // 64:ff9b::/96 (well-known) and 64:ff9b:1::/48 (local use).
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && (s[2..6].iter().all(|x| *x == 0) || s[2] == 1);
    if compatible || nat64 {
        return IpAddr::V4(tail);
    }
    if s[0] == 0x2002 {
        return IpAddr::V4(std::net::Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    ip
}

/// The redirect policy of every outbound client: at most five hops, each to
/// the same origin (scheme, host, port) as the request it answers, and each
/// checked by the guard. Credentials an operator configured for one origin
/// (any header, not only `Authorization`) therefore never reach another,
/// and a redirect cannot lead to an address the guard refuses: literal
/// addresses in a `Location` are never resolved, so the resolver alone
/// would not see them.
pub fn redirect_policy(policy: Arc<SsrfPolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error(SsrfRefusal("more than 5 redirects".into()));
        }
        let from = attempt.previous().last().map(|u| u.origin());
        if from.as_ref() != Some(&attempt.url().origin()) {
            let to = attempt.url().origin().ascii_serialization();
            return attempt.error(SsrfRefusal(format!(
                "redirect to another origin ({to}) refused: credentials and requests stay with the configured upstream"
            )));
        }
        match policy.check_url(attempt.url().as_str()) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    })
}

/// A DNS resolver that refuses names resolving to forbidden addresses.
pub struct GuardedResolver {
    pub policy: Arc<SsrfPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(SsrfRefusal(format!("{host} does not resolve")).into());
            }
            for a in &addrs {
                policy.check_ip(a.ip()).map_err(
                    |e| -> Box<dyn std::error::Error + Send + Sync> {
                        Box::new(SsrfRefusal(format!("SSRF guard: {host} -> {e}")))
                    },
                )?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(localhost: bool, private: bool, allowed: &[&str]) -> SsrfPolicy {
        SsrfPolicy {
            enabled: true,
            allow_localhost: localhost,
            allow_private: private,
            allowed: crate::util::parse_networks(
                &allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap(),
        }
    }

    #[test]
    fn metadata_is_always_blocked() {
        let p = policy(true, true, &["169.254.0.0/16"]);
        assert!(p.check_ip("169.254.169.254".parse().unwrap()).is_err());
        assert!(
            p.check_url("http://169.254.169.254/latest/meta-data")
                .is_err()
        );
        assert!(p.check_url("http://metadata.google.internal/").is_err());
        assert!(
            p.check_ip("::ffff:169.254.169.254".parse().unwrap())
                .is_err()
        );
    }

    #[test]
    fn loopback_and_private_follow_the_settings() {
        let strict = policy(false, false, &[]);
        assert!(strict.check_url("http://127.0.0.1:8080/").is_err());
        assert!(strict.check_url("http://localhost/").is_err());
        assert!(strict.check_url("http://10.1.2.3/").is_err());
        assert!(strict.check_url("http://[::1]/").is_err());
        assert!(strict.check_url("https://93.184.216.34/").is_ok());
        assert!(
            policy(true, false, &[])
                .check_url("http://127.0.0.1/")
                .is_ok()
        );
        assert!(
            policy(false, true, &[])
                .check_url("http://192.168.1.1/")
                .is_ok()
        );
        assert!(
            policy(false, false, &["10.0.0.0/8"])
                .check_url("http://10.1.2.3/")
                .is_ok()
        );
    }

    #[test]
    fn addresses_hidden_in_ipv6_are_checked_as_what_they_reach() {
        let strict = policy(false, false, &[]);
        for hidden in [
            "http://[::7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b:1::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::]/",
            "http://[ff02::1]/",
            "http://0.0.0.0/",
        ] {
            assert!(strict.check_url(hidden).is_err(), "{hidden} passed");
        }
        assert!(strict.check_url("http://[2606:4700::6810:85e5]/").is_ok());
        assert!(
            strict.check_url("http://[64:ff9b::5db8:d822]/").is_ok(),
            "NAT64 of a public address"
        );
    }

    #[tokio::test]
    async fn resolver_refuses_names_of_forbidden_addresses() {
        let r = GuardedResolver {
            policy: Arc::new(policy(false, false, &[])),
        };
        let e = r
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("SSRF"), "{e}");
        let r = GuardedResolver {
            policy: Arc::new(policy(true, false, &[])),
        };
        assert!(r.resolve("localhost".parse().unwrap()).await.is_ok());
    }
}
