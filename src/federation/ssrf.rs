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
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
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
            IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
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
