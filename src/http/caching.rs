//! HTTP caching of GraphQL answers. Only an anonymous GET of a query that
//! answered without errors may be stored, by browsers briefly and by a CDN
//! for `GRAPHQL_CACHE_MAX_AGE`; everything else says `no-store`, so nothing
//! that depends on who asked is ever kept by anyone.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Browsers keep an answer at most this long: a browser cache cannot be
/// purged, and the ETag makes revalidation cheap.
const BROWSER_MAX_AGE_SECONDS: u64 = 5;

/// A shared cache must keep anonymous and authenticated answers apart even
/// when it keys on the URL alone; CORS adds `Origin` to this list itself.
const VARY: &str = "Authorization, Accept-Encoding";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Anyone may store it, a CDN for `shared_max_age` seconds.
    Public {
        shared_max_age: u64,
    },
    /// The caller sent credentials (or a cookie): personal, never stored.
    Private,
    NoStore,
}

impl Policy {
    /// `succeeded`: the request was a single query and its answer carries no
    /// error. `cache_max_age` is `GRAPHQL_CACHE_MAX_AGE`; 0 turns public
    /// caching off.
    pub fn decide(
        method: &Method,
        headers: &HeaderMap,
        succeeded: bool,
        cache_max_age: u64,
    ) -> Self {
        if !anonymous(headers) {
            return Policy::Private;
        }
        if method == Method::GET && succeeded && cache_max_age > 0 {
            return Policy::Public {
                shared_max_age: cache_max_age,
            };
        }
        Policy::NoStore
    }

    fn header(self) -> HeaderValue {
        match self {
            Policy::Public { shared_max_age } => {
                let browser = shared_max_age.min(BROWSER_MAX_AGE_SECONDS);
                let value = format!("public, max-age={browser}, s-maxage={shared_max_age}");
                HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("no-store"))
            }
            Policy::Private => HeaderValue::from_static("private, no-store"),
            Policy::NoStore => HeaderValue::from_static("no-store"),
        }
    }
}

/// No credentials of any kind: the answer cannot depend on who asked.
pub fn anonymous(headers: &HeaderMap) -> bool {
    !headers.contains_key(header::AUTHORIZATION) && !headers.contains_key(header::COOKIE)
}

/// A GraphQL answer with its caching headers. A public answer carries a
/// strong ETag of its bytes, and a request that already holds those bytes
/// (`If-None-Match`) gets 304 without a body.
pub fn respond(
    policy: Policy,
    request_headers: &HeaderMap,
    status: StatusCode,
    body: Bytes,
) -> Response {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/graphql-response+json"),
    );
    headers.insert(header::CACHE_CONTROL, policy.header());
    headers.insert(header::VARY, HeaderValue::from_static(VARY));

    if matches!(policy, Policy::Public { .. }) {
        let etag = etag(&body);
        let held = request_headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| matches_any(tags, &etag));
        if let Ok(value) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, value);
        }
        if held {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            return response;
        }
    }

    *response.status_mut() = status;
    *response.body_mut() = Body::from(body);
    response
}

/// The same bytes always give the same tag, on every replica.
fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    format!("\"{tag}\"")
}

/// `If-None-Match` compares weakly (RFC 9110, 13.1.2): `W/"x"` matches `"x"`.
fn matches_any(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[test]
    fn only_an_anonymous_successful_get_is_public() {
        let none = HeaderMap::new();
        let public = Policy::Public { shared_max_age: 30 };
        assert_eq!(Policy::decide(&Method::GET, &none, true, 30), public);
        assert_eq!(
            Policy::decide(&Method::GET, &none, false, 30),
            Policy::NoStore
        );
        assert_eq!(
            Policy::decide(&Method::POST, &none, true, 30),
            Policy::NoStore
        );
        assert_eq!(
            Policy::decide(&Method::GET, &none, true, 0),
            Policy::NoStore
        );

        let bearer = headers(&[(header::AUTHORIZATION, "Bearer x")]);
        assert_eq!(
            Policy::decide(&Method::GET, &bearer, true, 30),
            Policy::Private
        );
        let cookie = headers(&[(header::COOKIE, "session=1")]);
        assert_eq!(
            Policy::decide(&Method::GET, &cookie, true, 30),
            Policy::Private
        );
    }

    #[test]
    fn browsers_keep_an_answer_briefly_and_the_cdn_as_configured() {
        let header = Policy::Public {
            shared_max_age: 120,
        }
        .header();
        assert_eq!(header, "public, max-age=5, s-maxage=120");
        let header = Policy::Public { shared_max_age: 2 }.header();
        assert_eq!(header, "public, max-age=2, s-maxage=2");
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_the_wildcard() {
        let tag = etag(b"{}");
        assert!(matches_any(&tag, &tag));
        assert!(matches_any(&format!("\"other\", W/{tag}"), &tag));
        assert!(matches_any("*", &tag));
        assert!(!matches_any("\"other\"", &tag));
    }
}
