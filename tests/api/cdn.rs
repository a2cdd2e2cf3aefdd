//! Public reads a CDN can cache: queries over GET, automatic persisted
//! queries, and caching headers that never let a personal answer be stored.

use reqwest::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, ETAG, IF_NONE_MATCH, VARY,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use spanglish::accounts::Role;
use spanglish::clock::Clock;

use crate::events::{create_event, event_input};
use crate::support::{Backend, TestApp, error_code, on_both_databases};

const EVENTS: &str = "{ events(first: 10) { totalCount edges { node { id title } } } }";
const PUBLIC: &str = "public, max-age=5, s-maxage=30";

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: reqwest::header::HeaderName) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

/// `GET /graphql` with the given parameters and request headers.
async fn get(app: &TestApp, params: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
    let url = reqwest::Url::parse_with_params(&app.url("/graphql"), params).unwrap();
    let mut request = app.client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn post(app: &TestApp, body: Value, token: Option<&str>) -> Answer {
    let mut request = app.client.post(app.url("/graphql")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.json().await.unwrap(),
    }
}

fn sha256(query: &str) -> String {
    hex::encode(Sha256::digest(query.as_bytes()))
}

fn persisted(hash: &str) -> String {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } }).to_string()
}

async fn published_event(app: &TestApp, title: &str) -> String {
    let organizer = app.user_with_role(Role::Organizer).await;
    let starts = app.clock.now() + chrono::Duration::days(1);
    let mut input = event_input(title);
    input["startsAt"] = json!(starts.to_rfc3339());
    input["endsAt"] = json!((starts + chrono::Duration::hours(3)).to_rfc3339());
    input["status"] = json!("PUBLISHED");
    create_event(app, &organizer.token, input).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn a_persisted_query_is_sent_once_and_then_served_by_its_hash_over_get(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    published_event(&app, "Intercambio").await;
    let hash = sha256(EVENTS);
    let extensions = persisted(&hash);

    let miss = get(&app, &[("extensions", &extensions)], &[]).await;
    assert_eq!(miss.status, 200);
    assert_eq!(
        error_code(&miss.body),
        "PERSISTED_QUERY_NOT_FOUND",
        "{}",
        miss.body
    );
    assert_eq!(miss.body["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(miss.header(CACHE_CONTROL), "no-store");

    let registered = post(
        &app,
        json!({ "query": EVENTS, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } }),
        None,
    )
    .await;
    assert_eq!(
        registered.body["data"]["events"]["totalCount"], 1,
        "{}",
        registered.body
    );

    let hit = get(&app, &[("extensions", &extensions)], &[]).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.body["data"], registered.body["data"], "{}", hit.body);
    assert_eq!(hit.header(CACHE_CONTROL), PUBLIC);
    assert!(!hit.header(ETAG).is_empty());
}

async fn a_document_sent_under_another_documents_hash_is_refused_and_never_served(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let popular = sha256(EVENTS);
    let harmful = "{ me { id email } }";

    let poisoned = post(
        &app,
        json!({ "query": harmful, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": popular } } }),
        None,
    )
    .await;
    assert_eq!(
        error_code(&poisoned.body),
        "GRAPHQL_VALIDATION_FAILED",
        "{}",
        poisoned.body
    );
    assert!(poisoned.body["data"].is_null(), "{}", poisoned.body);

    let later = get(&app, &[("extensions", &persisted(&popular))], &[]).await;
    assert_eq!(
        error_code(&later.body),
        "PERSISTED_QUERY_NOT_FOUND",
        "{}",
        later.body
    );
}

async fn an_anonymous_get_of_the_event_list_is_cacheable_and_revalidates_with_its_etag(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let event = published_event(&app, "Intercambio").await;

    let first = get(&app, &[("query", EVENTS)], &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body["data"]["events"]["edges"][0]["node"]["id"],
        event.as_str()
    );
    assert_eq!(first.header(CACHE_CONTROL), PUBLIC);
    assert!(
        first.header(VARY).contains("Authorization"),
        "{:?}",
        first.headers
    );
    assert!(first.header(CONTENT_TYPE).contains("json"));
    let etag = first.header(ETAG).to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong tag: {etag}"
    );

    let again = get(
        &app,
        &[("query", EVENTS)],
        &[(IF_NONE_MATCH.as_str(), &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_null(), "no body: {}", again.body);
    assert_eq!(again.header(ETAG), etag);
    assert_eq!(again.header(CACHE_CONTROL), PUBLIC);

    // Another event changes the answer, so the old tag no longer matches.
    published_event(&app, "Otra noche").await;
    let changed = get(
        &app,
        &[("query", EVENTS)],
        &[(IF_NONE_MATCH.as_str(), &etag)],
    )
    .await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body["data"]["events"]["totalCount"], 2);
    assert_ne!(changed.header(ETAG), etag);
}

async fn get_takes_variables_and_picks_the_named_operation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    published_event(&app, "Uno").await;
    published_event(&app, "Dos").await;
    let document = "query Count { events { totalCount } } query Page($n: Int) { events(first: $n) { edges { node { title } } } }";

    let page = get(
        &app,
        &[
            ("query", document),
            ("operationName", "Page"),
            ("variables", r#"{"n": 1}"#),
        ],
        &[],
    )
    .await;
    assert_eq!(page.status, 200);
    let edges = page.body["data"]["events"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{}", page.body);

    let bad = get(&app, &[("query", EVENTS), ("variables", "not json")], &[]).await;
    assert_eq!(bad.status, 400);
    assert_eq!(error_code(&bad.body), "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(bad.header(CACHE_CONTROL), "no-store");
}

async fn the_same_get_with_a_token_answers_for_the_viewer_and_is_never_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let member = app.user_with_role(Role::Member).await;
    let query = "{ me { email } events { totalCount } }";

    let anonymous = get(&app, &[("query", query)], &[]).await;
    assert!(anonymous.body["data"]["me"].is_null(), "{}", anonymous.body);
    assert_eq!(anonymous.header(CACHE_CONTROL), PUBLIC);

    let bearer = format!("Bearer {}", member.token);
    let signed_in = get(
        &app,
        &[("query", query)],
        &[(AUTHORIZATION.as_str(), &bearer)],
    )
    .await;
    assert_eq!(signed_in.status, 200);
    assert_eq!(signed_in.body["data"]["me"]["email"], member.email.as_str());
    assert_eq!(signed_in.header(CACHE_CONTROL), "private, no-store");
    assert!(signed_in.header(ETAG).is_empty());
    assert!(signed_in.header(VARY).contains("Authorization"));

    // A revalidation from someone signed in never gets the anonymous 304.
    let etag = anonymous.header(ETAG).to_string();
    let revalidated = get(
        &app,
        &[("query", query)],
        &[
            (AUTHORIZATION.as_str(), &bearer),
            (IF_NONE_MATCH.as_str(), &etag),
        ],
    )
    .await;
    assert_eq!(revalidated.status, 200);

    let with_cookie = get(
        &app,
        &[("query", query)],
        &[(COOKIE.as_str(), "session=abc")],
    )
    .await;
    assert_eq!(with_cookie.header(CACHE_CONTROL), "private, no-store");
}

async fn a_personal_field_asked_anonymously_over_get_is_refused_and_not_cached(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let event = published_event(&app, "Intercambio").await;
    let member = app.user_with_role(Role::Member).await;
    let booked = app
        .gql(
            Some(&member.token),
            "mutation($e: ID!) { bookTicket(eventId: $e) { id } }",
            json!({ "e": event }),
        )
        .await;
    assert!(booked["errors"].is_null(), "{booked}");

    let users = get(
        &app,
        &[("query", "{ users { edges { node { email phone } } } }")],
        &[],
    )
    .await;
    assert_eq!(error_code(&users.body), "UNAUTHENTICATED", "{}", users.body);
    assert!(!users.body.to_string().contains(&member.email));
    assert_eq!(users.header(CACHE_CONTROL), "no-store");
    assert!(users.header(ETAG).is_empty());

    let attendees = format!(
        "{{ event(id: \"{event}\") {{ title tickets {{ edges {{ node {{ user {{ email }} }} }} }} }} }}"
    );
    let answer = get(&app, &[("query", &attendees)], &[]).await;
    assert!(!answer.body["errors"].is_null(), "{}", answer.body);
    assert!(!answer.body.to_string().contains(&member.email));
    assert_eq!(answer.header(CACHE_CONTROL), "no-store");
}

async fn a_mutation_over_get_is_refused_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let register = "mutation { register(input: { name: \"Ana\", email: \"ana@example.org\", password: \"correct horse battery\" }) { accessToken } }";

    let refused = get(&app, &[("query", register)], &[]).await;
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header(ALLOW), "POST");
    assert_eq!(error_code(&refused.body), "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(refused.header(CACHE_CONTROL), "no-store");

    // Named among queries, or by its persisted hash: refused all the same.
    let mixed = format!(
        "query Count {{ events {{ totalCount }} }} {}",
        register.replacen("mutation", "mutation Join", 1)
    );
    let named = get(&app, &[("query", &mixed), ("operationName", "Join")], &[]).await;
    assert_eq!(named.status, 405);
    let unnamed = get(&app, &[("query", &mixed)], &[]).await;
    assert_eq!(unnamed.status, 405);

    let logout = "mutation { logout(refreshToken: \"not-a-token\") }";
    let hash = sha256(logout);
    post(
        &app,
        json!({ "query": logout, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } }),
        None,
    )
    .await;
    let by_hash = get(&app, &[("extensions", &persisted(&hash))], &[]).await;
    assert_eq!(by_hash.status, 405);

    let login = app
        .gql(
            None,
            "mutation { login(email: \"ana@example.org\", password: \"correct horse battery\") { accessToken } }",
            json!({}),
        )
        .await;
    assert_eq!(
        error_code(&login),
        "UNAUTHENTICATED",
        "no account was made: {login}"
    );
}

async fn posts_errors_and_oversized_gets_are_never_cacheable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    published_event(&app, "Intercambio").await;

    let posted = post(&app, json!({ "query": EVENTS }), None).await;
    assert!(posted.body["errors"].is_null(), "{}", posted.body);
    assert_eq!(posted.header(CACHE_CONTROL), "no-store");
    assert!(posted.header(ETAG).is_empty());

    let member = app.user_with_role(Role::Member).await;
    let signed_in = post(&app, json!({ "query": EVENTS }), Some(&member.token)).await;
    assert_eq!(signed_in.header(CACHE_CONTROL), "private, no-store");

    let invalid = get(&app, &[("query", "{ events { nope } }")], &[]).await;
    assert_eq!(error_code(&invalid.body), "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(invalid.header(CACHE_CONTROL), "no-store");

    let bad_argument = get(
        &app,
        &[("query", "{ events(first: 500) { totalCount } }")],
        &[],
    )
    .await;
    assert_eq!(
        error_code(&bad_argument.body),
        "BAD_USER_INPUT",
        "{}",
        bad_argument.body
    );
    assert_eq!(bad_argument.header(CACHE_CONTROL), "no-store");

    let padding = " ".repeat(33 * 1024);
    let oversized = format!("{{ events {{ totalCount }} }} #{padding}");
    let too_big = get(&app, &[("query", &oversized)], &[]).await;
    assert_eq!(
        error_code(&too_big.body),
        "GRAPHQL_VALIDATION_FAILED",
        "{}",
        too_big.body
    );
    assert_eq!(too_big.header(CACHE_CONTROL), "no-store");
}

async fn a_zero_max_age_turns_public_caching_off(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.graphql_cache_max_age = 0).await;
    let answer = get(&app, &[("query", EVENTS)], &[]).await;
    assert!(answer.body["errors"].is_null(), "{}", answer.body);
    assert_eq!(answer.header(CACHE_CONTROL), "no-store");
    assert!(answer.header(ETAG).is_empty());
}

async fn a_browser_get_without_a_query_still_opens_the_playground(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    let page = get(&app, &[], &[("accept", browser)]).await;
    assert_eq!(page.status, 200);
    assert!(page.header(CONTENT_TYPE).starts_with("text/html"));
    assert!(page.body.as_str().unwrap().contains("graphiql"));

    let client = get(&app, &[], &[("accept", "application/json")]).await;
    assert_eq!(client.status, 400);
    assert_eq!(error_code(&client.body), "GRAPHQL_VALIDATION_FAILED");

    let production = TestApp::spawn_with(backend, |c| {
        c.app_env = spanglish::config::AppEnv::Production;
        c.public_url = Some("https://api.example.org".into());
    })
    .await;
    let hidden = get(&production, &[], &[("accept", browser)]).await;
    assert_eq!(hidden.status, 400);
    let query = get(&production, &[("query", EVENTS)], &[("accept", browser)]).await;
    assert_eq!(query.status, 200);
    assert_eq!(query.header(CACHE_CONTROL), PUBLIC);
}

/// The shared answers: an anonymous query's answer is reused for a moment
/// (here, a minute), whoever asks; a write through the server drops it at
/// once; a caller with a token is always answered for themself.
async fn anonymous_answers_are_shared_until_a_write_and_never_with_a_token(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.graphql_answer_cache_ms = 60_000).await;
    published_event(&app, "Intercambio").await;
    let query = json!({ "query": EVENTS });
    let titles = |answer: &Answer| -> Vec<String> {
        answer.body["data"]["events"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| edge["node"]["title"].as_str().unwrap().to_string())
            .collect()
    };

    let first = post(&app, query.clone(), None).await;
    assert_eq!(titles(&first), ["Intercambio"], "{}", first.body);

    // Published behind the server's back: anonymous callers keep getting
    // the shared answer, a signed-in one sees the database as it is.
    sea_orm::ConnectionTrait::execute_unprepared(
        &app.state.db,
        "UPDATE events SET title = 'Renamed outside' WHERE title = 'Intercambio'",
    )
    .await
    .unwrap();
    let shared = post(&app, query.clone(), None).await;
    assert_eq!(titles(&shared), ["Intercambio"]);
    assert_eq!(shared.header(CACHE_CONTROL), "no-store");
    let member = app.register("Mara", "mara@example.com").await;
    let personal = post(&app, query.clone(), Some(&member.token)).await;
    assert_eq!(titles(&personal), ["Renamed outside"]);

    // Another question is another answer.
    let other = post(
        &app,
        json!({ "query": "query Few($n: Int) { events(first: $n) { edges { node { title } } } }", "variables": { "n": 5 } }),
        None,
    )
    .await;
    assert_eq!(titles(&other), ["Renamed outside"]);

    // A write through the server: the next anonymous answer is fresh.
    published_event(&app, "Conversation Club").await;
    let fresh = post(&app, query.clone(), None).await;
    let mut seen = titles(&fresh);
    seen.sort();
    assert_eq!(seen, ["Conversation Club", "Renamed outside"]);

    // A failed sign-in writes nothing and leaves the shared answers alone.
    sea_orm::ConnectionTrait::execute_unprepared(
        &app.state.db,
        "UPDATE events SET title = 'Renamed again' WHERE title = 'Conversation Club'",
    )
    .await
    .unwrap();
    let refused = post(
        &app,
        json!({ "query": "mutation { login(email: \"mara@example.com\", password: \"wrong password\") { accessToken } }" }),
        None,
    )
    .await;
    assert!(refused.body["errors"].is_array(), "{}", refused.body);
    let still = post(&app, query, None).await;
    assert_eq!(titles(&still), titles(&fresh));
}

/// What only a signed-in caller may see is never kept for anyone else.
async fn a_personal_answer_is_never_shared_with_an_anonymous_caller(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.graphql_answer_cache_ms = 60_000).await;
    let member = app.register("Mara", "mara@example.com").await;
    let me = json!({ "query": "{ me { email } }" });

    let mine = post(&app, me.clone(), Some(&member.token)).await;
    assert_eq!(mine.body["data"]["me"]["email"], "mara@example.com");
    assert_eq!(mine.header(CACHE_CONTROL), "private, no-store");

    let anonymous = post(&app, me, None).await;
    assert!(
        !anonymous.body.to_string().contains("mara@example.com"),
        "{}",
        anonymous.body
    );
}

on_both_databases!(
    anonymous_answers_are_shared_until_a_write_and_never_with_a_token,
    a_personal_answer_is_never_shared_with_an_anonymous_caller,
    a_persisted_query_is_sent_once_and_then_served_by_its_hash_over_get,
    a_document_sent_under_another_documents_hash_is_refused_and_never_served,
    an_anonymous_get_of_the_event_list_is_cacheable_and_revalidates_with_its_etag,
    get_takes_variables_and_picks_the_named_operation,
    the_same_get_with_a_token_answers_for_the_viewer_and_is_never_stored,
    a_personal_field_asked_anonymously_over_get_is_refused_and_not_cached,
    a_mutation_over_get_is_refused_and_changes_nothing,
    posts_errors_and_oversized_gets_are_never_cacheable,
    a_zero_max_age_turns_public_caching_off,
    a_browser_get_without_a_query_still_opens_the_playground,
);
