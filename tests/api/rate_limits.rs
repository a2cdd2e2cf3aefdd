//! Rate limits on authentication, per client address and per email.

use serde_json::{Value, json};

use crate::support::{Backend, TestApp, error_code, on_both_databases};

const LOGIN: &str = "mutation($email: String!, $password: String!) { login(email: $email, password: $password) { accessToken } }";

async fn login_rest(app: &TestApp, email: &str, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/auth/login"))
        .json(&json!({ "email": email, "password": "wrong password" }));
    if let Some(ip) = forwarded_for {
        request = request.header("x-forwarded-for", ip);
    }
    request.send().await.unwrap()
}

async fn attempts_per_address_are_limited_with_a_retry_time(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.rate_limit_auth_per_ip = 5).await;

    for i in 0..5 {
        let answer = app
            .gql(
                None,
                LOGIN,
                json!({ "email": format!("u{i}@example.org"), "password": "wrong password" }),
            )
            .await;
        assert_eq!(error_code(&answer), "UNAUTHENTICATED", "{answer}");
    }
    let answer = app
        .gql(
            None,
            LOGIN,
            json!({ "email": "u9@example.org", "password": "wrong password" }),
        )
        .await;
    assert_eq!(error_code(&answer), "RATE_LIMITED", "{answer}");
    let retry = answer["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap();
    assert!((1..=60).contains(&retry), "{answer}");

    // The REST mirror shares the budget and answers 429 with Retry-After.
    let response = login_rest(&app, "u1@example.org", None).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED");
}

async fn fifty_aliased_logins_are_fifty_attempts(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.rate_limit_login_per_email = 10).await;
    app.register("Ana", "ana@example.org").await;

    let fields: String = (0..50)
        .map(|i| format!("a{i}: login(email: \"ana@example.org\", password: \"guess {i}\") {{ accessToken }}\n"))
        .collect();
    let answer = app
        .gql(None, &format!("mutation {{ {fields} }}"), json!({}))
        .await;
    let codes: Vec<&str> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["extensions"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 50, "{answer}");
    assert_eq!(
        codes.iter().filter(|c| **c == "UNAUTHENTICATED").count(),
        10
    );
    assert_eq!(codes.iter().filter(|c| **c == "RATE_LIMITED").count(), 40);

    // The account is locked for now, even with the right password.
    let right = app
        .gql(
            None,
            LOGIN,
            json!({ "email": "ana@example.org", "password": "correct horse battery" }),
        )
        .await;
    assert_eq!(error_code(&right), "RATE_LIMITED");
}

async fn forwarded_for_counts_only_behind_a_trusted_proxy(backend: Backend) {
    let untrusted = TestApp::spawn_with(backend, |c| c.rate_limit_auth_per_ip = 2).await;
    for ip in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(
            login_rest(&untrusted, "x@example.org", Some(ip))
                .await
                .status(),
            401
        );
    }
    // A forged header does not buy a fresh budget.
    assert_eq!(
        login_rest(&untrusted, "x@example.org", Some("198.51.100.3"))
            .await
            .status(),
        429
    );

    let behind_proxy = TestApp::spawn_with(backend, |c| {
        c.rate_limit_auth_per_ip = 2;
        c.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            login_rest(&behind_proxy, "x@example.org", Some("198.51.100.1"))
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        login_rest(&behind_proxy, "x@example.org", Some("198.51.100.1"))
            .await
            .status(),
        429
    );
    assert_eq!(
        login_rest(&behind_proxy, "x@example.org", Some("198.51.100.2"))
            .await
            .status(),
        401,
        "another client behind the proxy"
    );
}

on_both_databases!(
    attempts_per_address_are_limited_with_a_retry_time,
    fifty_aliased_logins_are_fifty_attempts,
    forwarded_for_counts_only_behind_a_trusted_proxy,
);
