//! Where a request came from. Behind a reverse proxy every connection comes
//! from the proxy; the client's address is in `X-Forwarded-For`, which anyone
//! can write. So the header is believed only when the connection comes from a
//! proxy the admin named (`server.trusted_proxies`), and only as far as the
//! trusted hops go: reading from the right, the first address that is not a
//! trusted proxy is the client. Throttling, the audit log and the detector all
//! use this one answer.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// The client's address, as worked out by [`client_address`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub IpAddr);

/// The client address of a connection from `peer` with these headers.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // An entry that is not an address ends what can be believed.
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip;
        if !trusted.contains(&ip) {
            break;
        }
    }
    client
}

/// Middleware: put the request's [`ClientAddr`] in its extensions.
pub(crate) async fn client_address(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let ip = client_ip(peer.ip(), req.headers(), &state.trusted_proxies);
        req.extensions_mut().insert(ClientAddr(ip));
    }
    next.run(req).await
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr::of(parts))
    }
}

impl ClientAddr {
    /// The address of a request (unspecified if the server was started without connection info).
    pub(crate) fn of(parts: &Parts) -> ClientAddr {
        parts.extensions.get::<ClientAddr>().copied().unwrap_or(ClientAddr(IpAddr::from([0, 0, 0, 0])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for value in v {
            h.append("x-forwarded-for", value.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy_and_only_as_far_as_trusted_hops() {
        let proxy = ip("10.0.0.2");
        let trusted = [proxy, ip("10.0.0.3")];
        // Not from a proxy: the header is the client's own say-so, ignored.
        assert_eq!(client_ip(ip("198.51.100.1"), &xff(&["203.0.113.7"]), &trusted), ip("198.51.100.1"));
        // From the proxy: the rightmost address that is not a proxy.
        assert_eq!(client_ip(proxy, &xff(&["203.0.113.7"]), &trusted), ip("203.0.113.7"));
        assert_eq!(client_ip(proxy, &xff(&["1.2.3.4, 203.0.113.7, 10.0.0.3"]), &trusted), ip("203.0.113.7"));
        assert_eq!(client_ip(proxy, &xff(&["1.2.3.4", "203.0.113.7"]), &trusted), ip("203.0.113.7"));
        // A forged entry left of the real client changes nothing; garbage ends the walk.
        assert_eq!(client_ip(proxy, &xff(&["evil, 203.0.113.7"]), &trusted), ip("203.0.113.7"));
        assert_eq!(client_ip(proxy, &xff(&["203.0.113.7, evil"]), &trusted), proxy);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(client_ip(proxy, &xff(&["2001:db8::1"]), &trusted), ip("2001:db8::1"));
        // Nothing trusted (the default): the connection's address, whatever the header says.
        assert_eq!(client_ip(proxy, &xff(&["203.0.113.7"]), &[]), proxy);
    }
}
