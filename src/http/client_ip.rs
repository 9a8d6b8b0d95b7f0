//! The client's address: the TCP peer, unless the peer is a trusted proxy
//! (`http.trusted_proxies`), in which case the chain in the one configured
//! header (`http.forwarded_header`: `X-Forwarded-For` or `Forwarded`) is
//! walked from the right and the first address not itself a trusted proxy
//! is the client. From any other peer the header is ignored: whoever sends
//! a request can write it. Only one header is read, because a proxy that
//! appends to one passes the other through as the client wrote it.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

use crate::config::{ForwardedHeader, HttpSettings};

pub fn client_ip(req: &HttpRequest, http: &HttpSettings) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    Some(resolve(
        peer,
        req.headers(),
        &http.trusted_proxies,
        http.forwarded_header,
    ))
}

fn resolve(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ForwardedHeader,
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    if !is_trusted(&peer) {
        return peer;
    }
    let chain = forwarded_chain(headers, header);
    let mut client = peer;
    for hop in chain.iter().rev() {
        // An entry that is not an address (`unknown`, an obfuscated name,
        // garbage) ends the walk at the last proxy we trust.
        let Some(ip) = hop else {
            return client;
        };
        client = *ip;
        if !is_trusted(ip) {
            return client;
        }
    }
    client
}

/// Addresses named by the proxies, left (original client) to right (the
/// proxy nearest us).
fn forwarded_chain(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .map(|v| v.to_str().unwrap_or("garbage").to_owned())
            .collect()
    };
    if header == ForwardedHeader::Forwarded {
        return values("forwarded")
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, node)| parse_node(node))
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(','))
        .map(parse_node)
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:8080`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let node = raw.trim().trim_matches('"');
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            resolve(ip("198.51.100.1"), &h, &[], ForwardedHeader::XForwardedFor),
            ip("198.51.100.1")
        );
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            resolve(
                ip("198.51.100.1"),
                &h,
                &trusted,
                ForwardedHeader::XForwardedFor
            ),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        // The client forged a first entry; our two proxies appended the rest.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4, 203.0.113.9"),
            ("x-forwarded-for", "10.0.0.7"),
        ]);
        assert_eq!(
            resolve(ip("10.0.0.2"), &h, &trusted, ForwardedHeader::XForwardedFor),
            ip("203.0.113.9")
        );
        // Only trusted hops: the left-most is as far as we can see.
        let h = headers(&[("x-forwarded-for", "10.0.0.9")]);
        assert_eq!(
            resolve(ip("10.0.0.2"), &h, &trusted, ForwardedHeader::XForwardedFor),
            ip("10.0.0.9")
        );
        // No header at all: the proxy itself.
        assert_eq!(
            resolve(
                ip("10.0.0.2"),
                &HeaderMap::new(),
                &trusted,
                ForwardedHeader::XForwardedFor
            ),
            ip("10.0.0.2")
        );
        // Garbage stops the walk at the last trusted hop.
        let h = headers(&[("x-forwarded-for", "203.0.113.9, nonsense, 10.0.0.7")]);
        assert_eq!(
            resolve(ip("10.0.0.2"), &h, &trusted, ForwardedHeader::XForwardedFor),
            ip("10.0.0.7")
        );
    }

    #[test]
    fn forwarded_header_with_ports_quotes_and_ipv6() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=https, For=\"[2001:db8:cafe::17]:4711\"",
            ),
            ("x-forwarded-for", "198.51.100.3"),
        ]);
        assert_eq!(
            resolve(ip("10.1.1.1"), &h, &trusted, ForwardedHeader::Forwarded),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[("forwarded", "for=192.0.2.43:8080")]);
        assert_eq!(
            resolve(ip("10.1.1.1"), &h, &trusted, ForwardedHeader::Forwarded),
            ip("192.0.2.43")
        );
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(
            resolve(ip("10.1.1.1"), &h, &trusted, ForwardedHeader::Forwarded),
            ip("10.1.1.1")
        );
        // Only the configured header is read: a client's own `Forwarded`
        // beside the proxy's `X-Forwarded-For` changes nothing.
        let h = headers(&[
            ("forwarded", "for=203.0.113.66"),
            ("x-forwarded-for", "198.51.100.3"),
        ]);
        assert_eq!(
            resolve(ip("10.1.1.1"), &h, &trusted, ForwardedHeader::XForwardedFor),
            ip("198.51.100.3")
        );
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(
            resolve(ip("10.1.1.1"), &h, &trusted, ForwardedHeader::Forwarded),
            ip("10.1.1.1")
        );
    }
}
