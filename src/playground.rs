//! The GraphQL playground: a GraphiQL page served entirely from this binary.
//!
//! The GraphiQL and React bundles are fetched from npm at build time (pinned by
//! `playground/package-lock.json`, staged by `build.rs`) and embedded here, so the page
//! loads nothing from any other origin and works offline. Mount [`page`] at the playground
//! URL and [`asset`] at [`ASSET_ROUTE`].

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Route pattern (axum 0.8 syntax) under which [`asset`] must be mounted; the page links
/// its scripts and styles below this path.
pub const ASSET_ROUTE: &str = "/playground/assets/{name}";

const ASSET_PREFIX: &str = "/playground/assets/";

/// GraphiQL injects `<style>` elements and inline style attributes at run time, hence
/// `'unsafe-inline'` for styles only; its fonts are inlined as `data:` URLs in the CSS.
/// Scripts stay locked to same-origin files, which is why the bootstrap lives in `init.js`.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const GRAPHIQL_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/playground/graphiql.min.js"));
const GRAPHIQL_CSS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/playground/graphiql.min.css"));
const REACT_JS: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/playground/react.production.min.js"
));
const REACT_DOM_JS: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/playground/react-dom.production.min.js"
));
const INIT_JS: &str = include_str!("../playground/init.js");

/// The playground page, with GraphiQL pointed at `endpoint` (e.g. `"/graphql"`).
pub fn page(endpoint: &str) -> Response {
    let endpoint = escape_attr(endpoint);
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Spanglish API — GraphQL playground</title>
<link rel="stylesheet" href="{ASSET_PREFIX}graphiql.min.css">
<style>html, body {{ height: 100%; margin: 0; }} #graphiql {{ height: 100vh; }}</style>
</head>
<body>
<div id="graphiql" data-endpoint="{endpoint}">Loading…</div>
<script src="{ASSET_PREFIX}react.production.min.js"></script>
<script src="{ASSET_PREFIX}react-dom.production.min.js"></script>
<script src="{ASSET_PREFIX}graphiql.min.js"></script>
<script src="{ASSET_PREFIX}init.js"></script>
</body>
</html>
"#
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The page is tiny and names the endpoint, so always revalidate it; the heavy
            // assets carry their own long cache lifetime.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

/// Serves one embedded playground asset by file name; anything else is a 404.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (content_type, body): (&str, &'static [u8]) = match name.as_str() {
        "graphiql.min.js" => (JS, GRAPHIQL_JS),
        "graphiql.min.css" => (CSS, GRAPHIQL_CSS),
        "react.production.min.js" => (JS, REACT_JS),
        "react-dom.production.min.js" => (JS, REACT_DOM_JS),
        "init.js" => (JS, INIT_JS.as_bytes()),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                [(header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
            )
                .into_response();
        }
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // A day rather than "immutable": the names carry no version, so a rebuilt binary
            // with newer assets must take over within a bounded time.
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// Escapes text for a double-quoted HTML attribute value.
fn escape_attr(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn body_text(resp: Response) -> String {
        let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// Every value of `attr="..."` in `html`.
    fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
        let needle = format!("{attr}=\"");
        html.match_indices(&needle)
            .map(|(i, _)| {
                let rest = &html[i + needle.len()..];
                &rest[..rest.find('"').unwrap()]
            })
            .collect()
    }

    #[tokio::test]
    async fn page_loads_only_same_origin_assets() {
        let resp = page("/graphql");
        assert_eq!(resp.status(), StatusCode::OK);
        let headers = resp.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self';"));
        assert!(!csp.contains("http"));

        let html = body_text(resp).await;
        assert!(html.contains("<title>Spanglish API — GraphQL playground</title>"));
        assert!(html.contains(r#"data-endpoint="/graphql""#));

        let srcs = attr_values(&html, "src");
        let hrefs = attr_values(&html, "href");
        assert_eq!(srcs.len(), 4);
        assert_eq!(hrefs.len(), 1);
        for url in srcs.iter().chain(&hrefs) {
            assert!(!url.contains("http"), "remote asset {url}");
            assert!(!url.starts_with("//"), "protocol-relative asset {url}");
            let name = url.strip_prefix(ASSET_PREFIX).unwrap();
            let served = asset(Path(name.to_owned())).await;
            assert_eq!(served.status(), StatusCode::OK, "{url} is not served");
        }
        // No inline script: the CSP would block it anyway.
        assert_eq!(html.matches("<script").count(), srcs.len());
    }

    #[tokio::test]
    async fn page_escapes_the_endpoint() {
        let html = body_text(page(r#"/gql"><script>alert('x')</script>&"#)).await;
        assert!(html.contains(
            r#"data-endpoint="/gql&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;""#
        ));
        assert!(!html.contains("alert('x')"));
    }

    #[tokio::test]
    async fn assets_have_types_and_cache_headers() {
        for (name, ty) in [
            ("graphiql.min.js", JS),
            ("graphiql.min.css", CSS),
            ("react.production.min.js", JS),
            ("react-dom.production.min.js", JS),
            ("init.js", JS),
        ] {
            let resp = asset(Path(name.to_owned())).await;
            assert_eq!(resp.status(), StatusCode::OK, "{name}");
            let headers = resp.headers();
            assert_eq!(headers[header::CONTENT_TYPE], ty, "{name}");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=86400");
            let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            assert!(!body.is_empty(), "{name} is empty");
        }
    }

    #[tokio::test]
    async fn unknown_assets_are_404() {
        for name in [
            "",
            "graphiql.js",
            "graphiql.min.js.map",
            "../Cargo.toml",
            "package.json",
            "INIT.JS",
        ] {
            let resp = asset(Path(name.to_owned())).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{name:?}");
        }
    }
}
