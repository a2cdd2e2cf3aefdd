//! Events: creation rules, visibility, filters and pagination.

use serde_json::{Value, json};
use spanglish::accounts::Role;

use crate::support::{Backend, TestApp, error_code, error_field, on_both_databases};

pub const CREATE: &str = "mutation($input: CreateEventInput!) { createEvent(input: $input) { id slug status price { amount currency } startsAt } }";

pub fn event_input(title: &str) -> Value {
    json!({
        "title": title,
        "description": "Practice Spanish and English over coffee",
        "startsAt": "2027-01-15T19:00:00-03:00",
        "endsAt": "2027-01-15T22:00:00-03:00",
        "location": "Café Literario, Asunción",
        "capacity": 30,
    })
}

pub async fn create_event(app: &TestApp, token: &str, input: Value) -> Value {
    let answer = app
        .gql(Some(token), CREATE, json!({ "input": input }))
        .await;
    assert!(answer["errors"].is_null(), "createEvent failed: {answer}");
    answer["data"]["createEvent"].clone()
}

async fn organizer_creates_a_priced_event_in_guaranies(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;

    let mut input = event_input("Noche de Intercambio");
    input["price"] = json!({ "amount": "50000", "currency": "PYG" });
    input["status"] = json!("PUBLISHED");
    let event = create_event(&app, &organizer.token, input).await;

    assert_eq!(event["slug"], "noche-de-intercambio");
    assert_eq!(
        event["price"],
        json!({ "amount": "50000", "currency": "PYG" })
    );
    assert_eq!(
        event["startsAt"], "2027-01-15T22:00:00Z",
        "outputs are UTC with Z"
    );
    let actions = app
        .audit_actions(&format!("event:{}", event["id"].as_str().unwrap()))
        .await;
    assert_eq!(actions, vec!["event.create"]);
}

async fn prices_respect_the_currency_minor_units(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;

    let cases = [
        ("50000.5", "PYG", false),
        ("1000", "CLP", true),
        ("1000.5", "CLP", false),
        ("12.50", "USD", true),
        ("12.505", "USD", false),
        ("1.234", "KWD", true),
        ("-1", "USD", false),
        ("10", "ZZZ", false),
    ];
    for (amount, currency, accepted) in cases {
        let mut input = event_input(&format!("Priced {amount} {currency}"));
        input["price"] = json!({ "amount": amount, "currency": currency });
        let answer = app
            .gql(Some(&organizer.token), CREATE, json!({ "input": input }))
            .await;
        if accepted {
            assert!(answer["errors"].is_null(), "{amount} {currency}: {answer}");
            assert_eq!(answer["data"]["createEvent"]["price"]["currency"], currency);
        } else {
            assert_eq!(
                error_code(&answer),
                "BAD_USER_INPUT",
                "{amount} {currency}: {answer}"
            );
            assert_eq!(error_field(&answer), "price");
        }
    }

    let mut usd = event_input("Dollar night");
    usd["price"] = json!({ "amount": "12.5", "currency": "USD" });
    let event = create_event(&app, &organizer.token, usd).await;
    assert_eq!(
        event["price"]["amount"], "12.50",
        "amounts read back at the currency's scale"
    );
}

async fn invalid_events_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;

    let cases: Vec<(&str, Value, &str)> = vec![
        ("endsAt", json!("2027-01-15T18:00:00-03:00"), "endsAt"),
        ("capacity", json!(-1), "capacity"),
        ("timezone", json!("Mars/Olympus"), "timezone"),
        ("title", json!("   "), "title"),
        ("slug", json!("Not A Slug!"), "slug"),
        ("status", json!("CANCELLED"), "status"),
        (
            "bannerId",
            json!("7b0f7d1e-6c5a-4f7e-9a43-2c2f8a1d0b11"),
            "bannerId",
        ),
    ];
    for (key, value, field) in cases {
        let mut input = event_input("Broken");
        input[key] = value;
        let answer = app
            .gql(Some(&organizer.token), CREATE, json!({ "input": input }))
            .await;
        assert_eq!(error_code(&answer), "BAD_USER_INPUT", "{key}: {answer}");
        assert_eq!(error_field(&answer), field, "{key}: {answer}");
    }

    let answer = app
        .gql(None, "{ event(id: \"not-a-uuid\") { id } }", json!({}))
        .await;
    assert_eq!(error_code(&answer), "BAD_USER_INPUT");
}

async fn slugs_are_unique_and_chosen_slugs_conflict(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;

    let first = create_event(&app, &organizer.token, event_input("Game Night")).await;
    let second = create_event(&app, &organizer.token, event_input("Game Night")).await;
    assert_eq!(first["slug"], "game-night");
    assert_eq!(second["slug"], "game-night-2");

    let mut taken = event_input("Another");
    taken["slug"] = json!("game-night");
    let answer = app
        .gql(Some(&organizer.token), CREATE, json!({ "input": taken }))
        .await;
    assert_eq!(error_code(&answer), "CONFLICT");
    assert_eq!(error_field(&answer), "slug");
}

async fn drafts_are_invisible_to_members_and_anonymous_callers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let member = app.user_with_role(Role::Member).await;
    let draft = create_event(&app, &organizer.token, event_input("Secret draft")).await;
    let mut published = event_input("Open meetup");
    published["status"] = json!("PUBLISHED");
    create_event(&app, &organizer.token, published).await;

    let by_id = "query($id: ID!) { event(id: $id) { title } }";
    let by_slug = "query($slug: String!) { event(slug: $slug) { title } }";
    let list = "{ events { totalCount edges { node { title status } } } }";
    for token in [None, Some(member.token.as_str())] {
        let answer = app.gql(token, by_id, json!({ "id": draft["id"] })).await;
        assert_eq!(error_code(&answer), "NOT_FOUND", "{answer}");
        let answer = app
            .gql(token, by_slug, json!({ "slug": "secret-draft" }))
            .await;
        assert_eq!(error_code(&answer), "NOT_FOUND", "{answer}");
        let answer = app.gql(token, list, json!({})).await;
        assert_eq!(answer["data"]["events"]["totalCount"], 1, "{answer}");
        assert_eq!(
            answer["data"]["events"]["edges"][0]["node"]["title"],
            "Open meetup"
        );
    }

    // Ids are found in any letter case, and organizers see drafts.
    let upper = draft["id"].as_str().unwrap().to_uppercase();
    let answer = app
        .gql(Some(&organizer.token), by_id, json!({ "id": upper }))
        .await;
    assert_eq!(answer["data"]["event"]["title"], "Secret draft");
    let answer = app.gql(Some(&organizer.token), list, json!({})).await;
    assert_eq!(answer["data"]["events"]["totalCount"], 2);
}

async fn walking_45_events_in_pages_of_20_never_skips_or_repeats(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;

    // Fifteen share one start time, so the id must break the ties.
    let mut expected = Vec::new();
    for i in 0..45 {
        let mut input = event_input(&format!("Meetup {i}"));
        let day = if i % 3 == 0 { 10 } else { 10 + i };
        input["startsAt"] = json!(format!("2027-02-{:02}T19:00:00Z", day % 28 + 1));
        input["endsAt"] = json!(format!("2027-02-{:02}T22:00:00Z", day % 28 + 1));
        input["status"] = json!("PUBLISHED");
        expected.push(
            create_event(&app, &organizer.token, input).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }

    let query = "query($after: String) { events(first: 20, after: $after) { totalCount edges { cursor node { id startsAt } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let answer = app.gql(None, query, json!({ "after": after })).await;
        let events = &answer["data"]["events"];
        assert_eq!(events["totalCount"], 45, "{answer}");
        for edge in events["edges"].as_array().unwrap() {
            seen.push((
                edge["node"]["startsAt"].as_str().unwrap().into(),
                edge["node"]["id"].as_str().unwrap().into(),
            ));
        }
        pages += 1;
        assert_eq!(events["pageInfo"]["hasPreviousPage"], pages > 1);
        if events["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = events["pageInfo"]["endCursor"].clone();
    }

    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 45);
    let mut ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 45, "no event repeats");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ordered by startsAt, then id");
}

async fn filters_window_by_start_and_search_text(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    for (title, starts) in [
        ("Karaoke", "2027-03-01T20:00:00Z"),
        ("Book club", "2027-03-02T20:00:00Z"),
        ("Karaoke 100%", "2027-03-03T20:00:00Z"),
    ] {
        let mut input = event_input(title);
        input["startsAt"] = json!(starts);
        input["endsAt"] = json!(starts.replace("20:00", "23:00"));
        input["status"] = json!("PUBLISHED");
        create_event(&app, &organizer.token, input).await;
    }

    let query =
        "query($filter: EventFilter) { events(filter: $filter) { edges { node { title } } } }";
    let titles = |answer: Value| -> Vec<String> {
        answer["data"]["events"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["title"].as_str().unwrap().to_string())
            .collect()
    };
    let window = json!({ "filter": { "startsAfter": "2027-03-02T20:00:00Z", "startsBefore": "2027-03-03T20:00:00Z" } });
    assert_eq!(
        titles(app.gql(None, query, window).await),
        vec!["Book club"],
        "after is inclusive, before exclusive"
    );
    let search = json!({ "filter": { "search": "KARAOKE" } });
    assert_eq!(
        titles(app.gql(None, query, search).await),
        vec!["Karaoke", "Karaoke 100%"]
    );
    let literal = json!({ "filter": { "search": "100%" } });
    assert_eq!(
        titles(app.gql(None, query, literal).await),
        vec!["Karaoke 100%"],
        "% is taken literally"
    );
}

async fn organizers_update_and_delete_events_with_an_audit_trail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let event = create_event(&app, &organizer.token, event_input("Draft to publish")).await;
    let id = event["id"].as_str().unwrap();

    let update = "mutation($id: ID!, $input: UpdateEventInput!) { updateEvent(id: $id, input: $input) { status capacity price { amount } } }";
    let answer = app.gql(Some(&organizer.token), update, json!({ "id": id, "input": { "status": "PUBLISHED", "capacity": 12, "price": { "amount": "20", "currency": "USD" } } })).await;
    assert_eq!(
        answer["data"]["updateEvent"],
        json!({ "status": "PUBLISHED", "capacity": 12, "price": { "amount": "20.00" } }),
        "{answer}"
    );

    let answer = app
        .gql(
            Some(&organizer.token),
            update,
            json!({ "id": id, "input": { "price": null } }),
        )
        .await;
    assert_eq!(
        answer["data"]["updateEvent"]["price"],
        Value::Null,
        "null makes it free: {answer}"
    );

    let answer = app.gql(Some(&organizer.token), update, json!({ "id": id, "input": { "endsAt": "2027-01-15T20:00:00-05:00", "startsAt": "2027-01-15T23:00:00-03:00" } })).await;
    assert_eq!(error_code(&answer), "BAD_USER_INPUT", "{answer}");

    let delete = "mutation($id: ID!) { deleteEvent(id: $id) }";
    let answer = app
        .gql(Some(&organizer.token), delete, json!({ "id": id }))
        .await;
    assert_eq!(answer["data"]["deleteEvent"], true, "{answer}");
    let answer = app
        .gql(Some(&organizer.token), delete, json!({ "id": id }))
        .await;
    assert_eq!(error_code(&answer), "NOT_FOUND");

    let actions = app.audit_actions(&format!("event:{id}")).await;
    assert_eq!(
        actions,
        vec![
            "event.create",
            "event.update",
            "event.update",
            "event.delete"
        ]
    );
}

async fn only_organizers_and_admins_write_events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.user_with_role(Role::Admin).await;
    let event = create_event(&app, &admin.token, event_input("Admin made")).await;

    for (token, code) in [
        (None, "UNAUTHENTICATED"),
        (
            Some(app.user_with_role(Role::Member).await.token),
            "FORBIDDEN",
        ),
        (
            Some(app.user_with_role(Role::Staff).await.token),
            "FORBIDDEN",
        ),
    ] {
        let answer = app
            .gql(
                token.as_deref(),
                CREATE,
                json!({ "input": event_input("Nope") }),
            )
            .await;
        assert_eq!(error_code(&answer), code, "{answer}");
        let answer = app
            .gql(
                token.as_deref(),
                "mutation($id: ID!) { deleteEvent(id: $id) }",
                json!({ "id": event["id"] }),
            )
            .await;
        assert_eq!(error_code(&answer), code, "{answer}");
    }
}

on_both_databases!(
    organizer_creates_a_priced_event_in_guaranies,
    prices_respect_the_currency_minor_units,
    invalid_events_are_refused_naming_the_field,
    slugs_are_unique_and_chosen_slugs_conflict,
    drafts_are_invisible_to_members_and_anonymous_callers,
    walking_45_events_in_pages_of_20_never_skips_or_repeats,
    filters_window_by_start_and_search_text,
    organizers_update_and_delete_events_with_an_audit_trail,
    only_organizers_and_admins_write_events,
);

mod hardening {
    use serde_json::{Value, json};
    use spanglish::accounts::Role;

    use super::{CREATE, create_event, event_input};
    use crate::support::{Backend, TestApp, error_code, error_field, on_both_databases};

    async fn paging_ends_even_with_nanosecond_start_times(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let organizer = app.user_with_role(Role::Organizer).await;
        for i in 0..3 {
            let mut input = event_input(&format!("Precise {i}"));
            input["startsAt"] = json!("2028-01-01T10:00:00.123456789Z");
            input["endsAt"] = json!("2028-01-01T12:00:00Z");
            input["status"] = json!("PUBLISHED");
            let event = create_event(&app, &organizer.token, input).await;
            assert_eq!(event["startsAt"], "2028-01-01T10:00:00.123456Z");
        }
        let query = "query($after: String) { events(first: 1, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }";
        let mut after = Value::Null;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let answer = app.gql(None, query, json!({ "after": after })).await;
            let events = &answer["data"]["events"];
            seen.push(events["edges"][0]["node"]["id"].clone());
            if events["pageInfo"]["hasNextPage"] == false {
                break;
            }
            after = events["pageInfo"]["endCursor"].clone();
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

    async fn money_and_times_that_cannot_be_stored_are_refused(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let organizer = app.user_with_role(Role::Organizer).await;
        let cases = [
            (
                "price",
                json!({ "amount": "79228162514264337593543950335", "currency": "USD" }),
                "price",
            ),
            (
                "price",
                json!({ "amount": 12.5, "currency": "USD" }),
                "price.amount",
            ),
            (
                "price",
                json!({ "amount": "1e30", "currency": "USD" }),
                "price",
            ),
            ("startsAt", json!("2028-01-01T12:00:60Z"), "startsAt"),
            ("title", json!("Bad\u{7}title"), "title"),
        ];
        for (key, value, field) in cases {
            let mut input = event_input("Edge");
            input[key] = value.clone();
            let answer = app
                .gql(Some(&organizer.token), CREATE, json!({ "input": input }))
                .await;
            assert_eq!(
                error_code(&answer),
                "BAD_USER_INPUT",
                "{key}={value}: {answer}"
            );
            assert!(
                error_field(&answer).starts_with(field.split('.').next().unwrap()),
                "{key}={value}: {answer}"
            );
        }

        let event = create_event(&app, &organizer.token, event_input("Moving")).await;
        let update = "mutation($id: ID!, $input: UpdateEventInput!) { updateEvent(id: $id, input: $input) { id } }";
        let late_start =
            json!({ "id": event["id"], "input": { "startsAt": "2027-01-16T02:00:00Z" } });
        assert_eq!(
            error_field(&app.gql(Some(&organizer.token), update, late_start).await),
            "startsAt"
        );
    }

    async fn search_folds_case_beyond_ascii(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let organizer = app.user_with_role(Role::Organizer).await;
        let mut input = event_input("NOCHE ÑANDUTÍ");
        input["status"] = json!("PUBLISHED");
        create_event(&app, &organizer.token, input).await;
        let answer = app
            .gql(
                None,
                "{ events(filter: { search: \"ñandutí\" }) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(answer["data"]["events"]["totalCount"], 1, "{answer}");
    }

    on_both_databases!(
        paging_ends_even_with_nanosecond_start_times,
        money_and_times_that_cannot_be_stored_are_refused,
        search_folds_case_beyond_ascii,
    );
}
