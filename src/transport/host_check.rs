//! Which `Host` names ua answers to. A DNS-rebinding page reaches ua under
//! the attacker's own name (`Host: evil.example`), so requests naming a host
//! ua does not know get 421. IP literals and loopback names cannot be
//! rebound by a page, so they always pass; ports are not compared.

/// The names allowed in `Host`, or any when `--allowed-hosts *`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Option<Vec<String>>,
}

impl AllowedHosts {
    /// The hosts of the public origins and the `--allowed-hosts` list
    /// (comma-separated names; `*` turns the check off).
    pub fn new(public_origins: &[String], configured: &str) -> AllowedHosts {
        let mut names = Vec::new();
        for item in configured
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if item == "*" {
                return AllowedHosts { names: None };
            }
            names.push(item.to_ascii_lowercase());
        }
        for origin in public_origins {
            let authority = origin.split_once("://").map_or(origin.as_str(), |(_, a)| a);
            names.push(host_name(authority).to_ascii_lowercase());
        }
        AllowedHosts { names: Some(names) }
    }

    /// Whether a request with this `Host` header (or none: not a browser) is
    /// answered.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let (Some(names), Some(host)) = (&self.names, host) else {
            return true;
        };
        let name = host_name(host.trim()).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        is_ip_literal(name) || is_loopback_name(name) || names.iter().any(|n| n == name)
    }
}

/// The name of `host[:port]`, `[v6]:port` or `[v6]`.
fn host_name(authority: &str) -> &str {
    let authority = authority.split('/').next().unwrap_or(authority);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => authority,
    }
}

fn is_ip_literal(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(configured: &str) -> AllowedHosts {
        AllowedHosts::new(&["https://ua.example.edu".to_string()], configured)
    }

    #[test]
    fn own_names_pass_and_others_do_not() {
        let allowed = hosts("");
        for ok in [
            "ua.example.edu",
            "UA.example.edu:443",
            "ua.example.edu.",
            "127.0.0.1:8000",
            "[::1]:8000",
            "10.1.2.3",
            "localhost:9000",
            "app.localhost",
        ] {
            assert!(allowed.allows(Some(ok)), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8000",
            "ua.example.edu.evil.example",
            "",
        ] {
            assert!(!allowed.allows(Some(refused)), "{refused}");
        }
        assert!(allowed.allows(None));
    }

    #[test]
    fn configured_names_add_and_a_star_allows_any() {
        assert!(hosts("ua-1.internal, ua-2.internal").allows(Some("ua-2.internal:8000")));
        assert!(!hosts("ua-1.internal").allows(Some("ua-3.internal")));
        assert!(hosts("*").allows(Some("anything.example")));
    }
}
