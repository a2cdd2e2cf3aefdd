//! The client's address. `X-Forwarded-For` is believed only when the peer is
//! a trusted proxy; otherwise anyone could pick the address their attempts
//! are counted against.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::accounts::auth::ClientIp;
use crate::app::AppState;

pub async fn middleware(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = resolve_client_ip(peer, request.headers(), &state.trusted_proxies);
    request.extensions_mut().insert(ClientIp(ip));
    next.run(request).await
}

/// Walks `X-Forwarded-For` from the right (the hop nearest us), skipping
/// trusted proxies; the first untrusted address is the client.
pub fn resolve_client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }

    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        client = *hop;
        if !is_trusted(hop) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn the_header_is_ignored_from_an_untrusted_peer() {
        let peer: IpAddr = "198.51.100.9".parse().unwrap();
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(resolve_client_ip(peer, &headers("1.2.3.4"), &trusted), peer);
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let client = resolve_client_ip(peer, &headers("6.6.6.6, 203.0.113.5, 10.0.0.3"), &trusted);
        assert_eq!(client, "203.0.113.5".parse::<IpAddr>().unwrap());
    }
}
