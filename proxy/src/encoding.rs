//! `Accept-Encoding` negotiation with q-values honoured: among the
//! encodings the client accepts (q > 0), prefer br, then zstd, then gzip.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Brotli,
    Zstd,
    Gzip,
    Identity,
}

impl Encoding {
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
            Encoding::Identity => "identity",
        }
    }
}

/// The encoding to answer with, given an `Accept-Encoding` header.
pub fn negotiate(header: Option<&str>) -> Encoding {
    let Some(header) = header else {
        return Encoding::Identity;
    };
    let q_of = |name: &str| -> Option<f32> {
        let mut found = None;
        let mut star = None;
        for part in header.split(',') {
            let mut it = part.split(';');
            let token = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0f32;
            for p in it {
                if let Some(v) = p
                    .trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
                {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
            if token == name {
                found = Some(q);
            } else if token == "*" {
                star = Some(q);
            }
        }
        found.or(star)
    };
    for (name, enc) in [
        ("br", Encoding::Brotli),
        ("zstd", Encoding::Zstd),
        ("gzip", Encoding::Gzip),
    ] {
        if q_of(name).is_some_and(|q| q > 0.0) {
            return enc;
        }
    }
    if q_of("x-gzip").is_some_and(|q| q > 0.0) {
        return Encoding::Gzip;
    }
    Encoding::Identity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_and_q_values() {
        assert_eq!(negotiate(None), Encoding::Identity);
        assert_eq!(negotiate(Some("")), Encoding::Identity);
        assert_eq!(negotiate(Some("gzip, br")), Encoding::Brotli);
        assert_eq!(
            negotiate(Some("gzip;q=1.0, br;q=0.1")),
            Encoding::Brotli,
            "preference among acceptable ones"
        );
        assert_eq!(
            negotiate(Some("br;q=0, gzip")),
            Encoding::Gzip,
            "q=0 excludes"
        );
        assert_eq!(negotiate(Some("zstd, gzip")), Encoding::Zstd);
        assert_eq!(negotiate(Some("*")), Encoding::Brotli);
        assert_eq!(negotiate(Some("*;q=0, gzip")), Encoding::Gzip);
        assert_eq!(
            negotiate(Some("br;q=0, zstd;q=0, gzip;q=0")),
            Encoding::Identity
        );
        assert_eq!(negotiate(Some("identity")), Encoding::Identity);
        assert_eq!(negotiate(Some("deflate")), Encoding::Identity);
        assert_eq!(negotiate(Some("GZIP;Q=0.5")), Encoding::Gzip);
        assert_eq!(negotiate(Some("*, br;q=0")), Encoding::Zstd);
    }
}
