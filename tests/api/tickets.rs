//! Tickets: booking that never oversells, holds that lapse on time, check-in
//! at the door, and who may see what.

use std::sync::atomic::Ordering;

use chrono::Duration;
use serde_json::{Value, json};
use spanglish::accounts::Role;

use crate::events::{create_event, event_input};
use crate::support::{Backend, Member, TestApp, error_code, on_both_databases};

const BOOK: &str = "mutation($e: ID!) { bookTicket(eventId: $e) { id status code expiresAt event { ticketsRemaining } } }";
const CHECK_IN: &str = "mutation($c: String!) { checkIn(code: $c) { alreadyCheckedIn ticket { id checkedInAt status } } }";

/// A published event starting tomorrow; `price` in PYG, or free.
async fn published_event(
    app: &TestApp,
    organizer: &Member,
    capacity: i64,
    price: Option<&str>,
) -> String {
    let starts = app.clock_now() + Duration::days(1);
    let mut input = event_input("Meetup");
    input["startsAt"] = json!(starts.to_rfc3339());
    input["endsAt"] = json!((starts + Duration::hours(3)).to_rfc3339());
    input["capacity"] = json!(capacity);
    input["status"] = json!("PUBLISHED");
    if let Some(amount) = price {
        input["price"] = json!({ "amount": amount, "currency": "PYG" });
    }
    create_event(app, &organizer.token, input).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn book(app: &TestApp, member: &Member, event: &str) -> Value {
    app.gql(Some(&member.token), BOOK, json!({ "e": event }))
        .await
}

impl TestApp {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use spanglish::clock::Clock;
        self.clock.now()
    }
}

async fn a_free_booking_is_confirmed_and_a_paid_one_holds_its_seat(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let member = app.user_with_role(Role::Member).await;

    let free = published_event(&app, &organizer, 5, None).await;
    let ticket = &book(&app, &member, &free).await["data"]["bookTicket"];
    assert_eq!(ticket["status"], "CONFIRMED");
    assert!(ticket["code"].as_str().unwrap().starts_with("SPG1."));
    assert_eq!(ticket["expiresAt"], Value::Null);
    assert_eq!(ticket["event"]["ticketsRemaining"], 4);

    let paid = published_event(&app, &organizer, 5, Some("50000")).await;
    let ticket = &book(&app, &member, &paid).await["data"]["bookTicket"];
    assert_eq!(ticket["status"], "PENDING");
    assert_eq!(ticket["code"], Value::Null, "no code before payment");
    let expires =
        chrono::DateTime::parse_from_rfc3339(ticket["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires.timestamp(),
        (app.clock_now() + Duration::seconds(900)).timestamp()
    );

    let again = book(&app, &member, &paid).await;
    assert_eq!(
        error_code(&again),
        "CONFLICT",
        "one active ticket per person: {again}"
    );
}

async fn sixty_members_racing_for_ten_seats_get_exactly_ten(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.database_max_connections = 10).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let event = published_event(&app, &organizer, 10, None).await;
    let members = app.members(60).await;

    let answers =
        futures_util::future::join_all(members.iter().map(|m| book(&app, m, &event))).await;
    let booked = answers.iter().filter(|a| a["errors"].is_null()).count();
    let sold_out = answers
        .iter()
        .filter(|a| error_code(a) == "SOLD_OUT")
        .count();
    assert_eq!(
        (booked, sold_out),
        (10, 50),
        "{:?}",
        answers
            .iter()
            .find(|a| error_code(a) != "SOLD_OUT" && !a["errors"].is_null())
    );

    let remaining = app
        .gql(
            None,
            "query($id: ID!) { event(id: $id) { ticketsRemaining } }",
            json!({ "id": event }),
        )
        .await;
    assert_eq!(remaining["data"]["event"]["ticketsRemaining"], 0);
}

async fn a_one_seat_event_raced_by_two_twenty_times_sells_one_seat_each_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let pair = app.members(2).await;

    for round in 0..20 {
        let event = published_event(&app, &organizer, 1, None).await;
        let (a, b) = tokio::join!(book(&app, &pair[0], &event), book(&app, &pair[1], &event));
        let mut codes = [error_code(&a), error_code(&b)];
        codes.sort();
        assert_eq!(codes, ["", "SOLD_OUT"], "round {round}: {a} / {b}");
    }
}

async fn an_expired_hold_frees_its_seat_the_moment_it_lapses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let people = app.members(2).await;
    let event = published_event(&app, &organizer, 1, Some("50000")).await;

    let held = book(&app, &people[0], &event).await;
    let held_id = held["data"]["bookTicket"]["id"].clone();
    assert_eq!(
        error_code(&book(&app, &people[1], &event).await),
        "SOLD_OUT"
    );

    app.clock.advance(Duration::seconds(900));
    let people: Vec<Member> = people
        .into_iter()
        .map(|p| Member {
            token: app.fresh_token(&p),
            ..p
        })
        .collect();
    let ticket = app
        .gql(
            Some(&people[0].token),
            "query($id: ID!) { ticket(id: $id) { status expiresAt } }",
            json!({ "id": held_id }),
        )
        .await;
    assert_eq!(
        ticket["data"]["ticket"]["status"], "EXPIRED",
        "no sweeper has run yet: {ticket}"
    );
    let second = book(&app, &people[1], &event).await;
    assert_eq!(
        second["data"]["bookTicket"]["status"], "PENDING",
        "{second}"
    );

    // The sweeper writes down what the reads already showed, once.
    app.clock.advance(Duration::seconds(900));
    let people: Vec<Member> = people
        .into_iter()
        .map(|p| Member {
            token: app.fresh_token(&p),
            ..p
        })
        .collect();
    let now = app.clock_now();
    assert_eq!(
        spanglish::tickets::service::expire_holds(&app.state.db, now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        spanglish::tickets::service::expire_holds(&app.state.db, now)
            .await
            .unwrap(),
        0
    );
    let again = book(&app, &people[0], &event).await;
    assert_eq!(
        again["data"]["bookTicket"]["status"], "PENDING",
        "the first member may book again: {again}"
    );
}

async fn only_published_events_that_have_not_ended_can_be_booked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let member = app.user_with_role(Role::Member).await;

    let draft = create_event(&app, &organizer.token, event_input("Draft")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(error_code(&book(&app, &member, &draft).await), "NOT_FOUND");

    let event = published_event(&app, &organizer, 5, None).await;
    let complete =
        "mutation($id: ID!) { updateEvent(id: $id, input: { status: COMPLETED }) { status } }";
    app.gql(Some(&organizer.token), complete, json!({ "id": event }))
        .await;
    assert_eq!(error_code(&book(&app, &member, &event).await), "CONFLICT");

    let later = published_event(&app, &organizer, 5, None).await;
    app.clock.advance(Duration::days(2));
    let member = Member {
        token: app.fresh_token(&member),
        ..member
    };
    assert_eq!(
        error_code(&book(&app, &member, &later).await),
        "CONFLICT",
        "the event has ended"
    );
    assert_eq!(
        error_code(&app.gql(None, BOOK, json!({ "e": later })).await),
        "UNAUTHENTICATED"
    );
}

async fn two_scans_of_one_code_at_once_make_one_check_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let door = app.user_with_role(Role::Staff).await;
    let member = app.user_with_role(Role::Member).await;
    let event = published_event(&app, &organizer, 5, None).await;
    let ticket = book(&app, &member, &event).await["data"]["bookTicket"].clone();
    let code = ticket["code"].as_str().unwrap();

    let (a, b) = tokio::join!(
        app.gql(Some(&door.token), CHECK_IN, json!({ "c": code })),
        app.gql(Some(&door.token), CHECK_IN, json!({ "c": code }))
    );
    let mut flags = [
        a["data"]["checkIn"]["alreadyCheckedIn"].as_bool(),
        b["data"]["checkIn"]["alreadyCheckedIn"].as_bool(),
    ];
    flags.sort();
    assert_eq!(flags, [Some(false), Some(true)], "{a} / {b}");
    assert_eq!(
        a["data"]["checkIn"]["ticket"]["checkedInAt"],
        b["data"]["checkIn"]["ticket"]["checkedInAt"],
        "the second answer gives the first time"
    );

    let target = format!("ticket:{}", ticket["id"].as_str().unwrap());
    assert_eq!(app.audit_actions(&target).await, vec!["ticket.check_in"]);

    let undo = app
        .gql(
            Some(&door.token),
            "mutation($id: ID!) { undoCheckIn(ticketId: $id) { checkedInAt } }",
            json!({ "id": ticket["id"] }),
        )
        .await;
    assert_eq!(
        undo["data"]["undoCheckIn"]["checkedInAt"],
        Value::Null,
        "{undo}"
    );
    assert_eq!(
        app.audit_actions(&target).await,
        vec!["ticket.check_in", "ticket.undo_check_in"]
    );

    let forged = app
        .gql(
            Some(&door.token),
            CHECK_IN,
            json!({ "c": format!("{code}x") }),
        )
        .await;
    assert_eq!(error_code(&forged), "NOT_FOUND");
    assert_eq!(
        error_code(
            &app.gql(Some(&member.token), CHECK_IN, json!({ "c": code }))
                .await
        ),
        "FORBIDDEN"
    );
}

async fn a_code_of_a_ticket_that_is_not_confirmed_is_a_conflict(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let member = app.user_with_role(Role::Member).await;
    let event = published_event(&app, &organizer, 5, None).await;
    let ticket = book(&app, &member, &event).await["data"]["bookTicket"].clone();

    let cancel = app
        .gql(
            Some(&member.token),
            "mutation($id: ID!) { cancelTicket(id: $id) { status } }",
            json!({ "id": ticket["id"] }),
        )
        .await;
    assert_eq!(
        cancel["data"]["cancelTicket"]["status"], "CANCELLED",
        "{cancel}"
    );
    let scan = app
        .gql(
            Some(&organizer.token),
            CHECK_IN,
            json!({ "c": ticket["code"] }),
        )
        .await;
    assert_eq!(error_code(&scan), "CONFLICT", "{scan}");
}

async fn members_cannot_see_each_others_tickets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let staff = app.user_with_role(Role::Staff).await;
    let people = app.members(2).await;
    let event = published_event(&app, &organizer, 5, None).await;
    let ticket = book(&app, &people[0], &event).await["data"]["bookTicket"].clone();
    let query = "query($id: ID!) { ticket(id: $id) { id code user { id } } }";

    let by_other = app
        .gql(Some(&people[1].token), query, json!({ "id": ticket["id"] }))
        .await;
    let missing = app
        .gql(
            Some(&people[1].token),
            query,
            json!({ "id": "0192a0f0-0000-7000-8000-000000000000" }),
        )
        .await;
    assert_eq!(error_code(&by_other), "NOT_FOUND");
    assert_eq!(
        by_other["errors"][0]["message"], missing["errors"][0]["message"],
        "indistinguishable from a missing ticket"
    );

    let by_staff = app
        .gql(Some(&staff.token), query, json!({ "id": ticket["id"] }))
        .await;
    assert_eq!(by_staff["data"]["ticket"]["code"], ticket["code"]);
    let mine = app
        .gql(
            Some(&people[1].token),
            "{ myTickets { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(mine["data"]["myTickets"]["totalCount"], 0);

    let attendees = "query($id: ID!) { event(id: $id) { tickets { totalCount } } }";
    assert_eq!(
        error_code(
            &app.gql(Some(&people[1].token), attendees, json!({ "id": event }))
                .await
        ),
        "FORBIDDEN"
    );
    assert_eq!(
        app.gql(Some(&staff.token), attendees, json!({ "id": event }))
            .await["data"]["event"]["tickets"]["totalCount"],
        1
    );

    let history = "query($id: ID!) { user(id: $id) { history { totalCount } } }";
    assert_eq!(
        app.gql(Some(&staff.token), history, json!({ "id": people[0].id }))
            .await["data"]["user"]["history"]["totalCount"],
        1
    );
    assert_eq!(
        app.gql(
            Some(&people[0].token),
            "{ me { history { totalCount } } }",
            json!({})
        )
        .await["data"]["me"]["history"]["totalCount"],
        1
    );

    let qr = |token: &str| {
        app.client
            .get(app.url(&format!(
                "/api/tickets/{}/qr.svg",
                ticket["id"].as_str().unwrap()
            )))
            .bearer_auth(token.to_string())
            .send()
    };
    let own = qr(&people[0].token).await.unwrap();
    assert_eq!(own.status(), 200);
    assert_eq!(own.headers()["content-type"], "image/svg+xml");
    assert!(own.text().await.unwrap().contains("<svg"));
    assert_eq!(qr(&people[1].token).await.unwrap().status(), 404);
    assert_eq!(qr(&staff.token).await.unwrap().status(), 200);
}

async fn a_scanner_verifies_codes_offline_with_the_public_key(backend: Backend) {
    use base64::Engine;
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let member = app.user_with_role(Role::Member).await;
    let event = published_event(&app, &organizer, 5, None).await;
    let ticket = book(&app, &member, &event).await["data"]["bookTicket"].clone();

    let jwk: Value = app
        .client
        .get(app.url("/api/tickets/public-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwk["crv"], "Ed25519");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().unwrap())
        .unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes.try_into().unwrap()).unwrap();
    let (ticket_id, event_id) =
        spanglish::tickets::codes::verify_with(&key, ticket["code"].as_str().unwrap()).unwrap();
    assert_eq!(ticket_id.to_string(), ticket["id"].as_str().unwrap());
    assert_eq!(event_id.to_string(), event);
}

/// Pays for every third ticket with a MANUAL payment; every sixth is paid
/// twice (the first attempt is then CANCELLED), and the ticket at index 3 is
/// confirmed as paid. Returns the expected latest payment status per ticket.
async fn pay_for_some(
    app: &TestApp,
    organizer: &Member,
    members: &[Member],
    tickets: &[String],
) -> Vec<Option<&'static str>> {
    let initiate =
        "mutation($t: ID!) { initiatePayment(ticketId: $t, provider: MANUAL) { payment { id } } }";
    let confirm = "mutation($id: ID!) { confirmManualPayment(id: $id) { status } }";
    let mut expected = Vec::new();
    for (i, (member, ticket)) in members.iter().zip(tickets).enumerate() {
        if i % 3 != 0 {
            expected.push(None);
            continue;
        }
        let attempts = if i % 6 == 0 { 2 } else { 1 };
        let mut payment = String::new();
        for _ in 0..attempts {
            let started = app
                .gql(Some(&member.token), initiate, json!({ "t": ticket }))
                .await;
            payment = started["data"]["initiatePayment"]["payment"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{started}"))
                .to_string();
            // The second attempt is later than the first, not just a later id.
            app.clock.advance(Duration::seconds(1));
        }
        if i == 3 {
            let confirmed = app
                .gql(Some(&organizer.token), confirm, json!({ "id": payment }))
                .await;
            assert_eq!(
                confirmed["data"]["confirmManualPayment"]["status"], "SUCCEEDED",
                "{confirmed}"
            );
            expected.push(Some("SUCCEEDED"));
        } else {
            expected.push(Some("PENDING"));
        }
    }
    expected
}

async fn listing_fifty_tickets_with_events_users_and_payments_costs_the_same_queries_as_five(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let event = published_event(&app, &organizer, 60, Some("50000")).await;
    let members = app.members(50).await;
    let mut tickets = Vec::new();
    for member in &members {
        let booked = book(&app, member, &event).await;
        tickets.push(
            booked["data"]["bookTicket"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let expected = pay_for_some(&app, &organizer, &members, &tickets).await;

    let attendees = "query($id: ID!, $n: Int) { event(id: $id) { tickets(first: $n) { edges { node { id status user { name email } event { title ticketsRemaining } payment { status amount { amount } } } } } } }";
    let mut counts = Vec::new();
    for n in [5, 50] {
        let before = app.state.statements.load(Ordering::SeqCst);
        let answer = app
            .gql(
                Some(&organizer.token),
                attendees,
                json!({ "id": event, "n": n }),
            )
            .await;
        counts.push(app.state.statements.load(Ordering::SeqCst) - before);
        assert!(answer["errors"].is_null(), "{answer}");
        let edges = answer["data"]["event"]["tickets"]["edges"]
            .as_array()
            .unwrap();
        assert_eq!(edges.len(), n);
        assert_eq!(edges[0]["node"]["event"]["ticketsRemaining"], 10);
        for (edge, (ticket, status)) in edges.iter().zip(tickets.iter().zip(&expected)) {
            assert_eq!(edge["node"]["id"], ticket.as_str());
            assert_eq!(
                edge["node"]["payment"]["status"].as_str(),
                *status,
                "{edge}"
            );
        }
    }
    assert_eq!(
        counts[0], counts[1],
        "statements for 5 and for 50 tickets: {counts:?}"
    );
}

async fn cancelling_an_event_cancels_its_tickets_and_deleting_it_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let people = app.members(3).await;
    let event = published_event(&app, &organizer, 10, None).await;
    for person in &people {
        book(&app, person, &event).await;
    }

    let lower = app
        .gql(
            Some(&organizer.token),
            "mutation($id: ID!) { updateEvent(id: $id, input: { capacity: 2 }) { capacity } }",
            json!({ "id": event }),
        )
        .await;
    assert_eq!(
        error_code(&lower),
        "CONFLICT",
        "capacity below what is sold: {lower}"
    );
    let delete = app
        .gql(
            Some(&organizer.token),
            "mutation($id: ID!) { deleteEvent(id: $id) }",
            json!({ "id": event }),
        )
        .await;
    assert_eq!(error_code(&delete), "CONFLICT");

    let cancel = app.gql(Some(&organizer.token), "mutation($id: ID!) { cancelEvent(id: $id, reason: \"Venue flooded\") { status ticketsRemaining tickets { edges { node { status } } } } }", json!({ "id": event })).await;
    let cancelled = &cancel["data"]["cancelEvent"];
    assert_eq!(cancelled["status"], "CANCELLED", "{cancel}");
    assert!(
        cancelled["tickets"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["node"]["status"] == "CANCELLED")
    );
    assert_eq!(
        app.audit_actions(&format!("event:{event}")).await,
        vec!["event.create", "event.cancel"]
    );
    assert_eq!(
        error_code(&book(&app, &people[0], &event).await),
        "CONFLICT"
    );

    // Anonymous visitors still see a cancelled event.
    let seen = app
        .gql(
            None,
            "query($id: ID!) { event(id: $id) { status } }",
            json!({ "id": event }),
        )
        .await;
    assert_eq!(seen["data"]["event"]["status"], "CANCELLED");
}

async fn organizers_correct_tickets_within_capacity_and_on_the_record(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let staff = app.user_with_role(Role::Staff).await;
    let people = app.members(2).await;
    let event = published_event(&app, &organizer, 1, Some("50000")).await;
    let held = book(&app, &people[0], &event).await["data"]["bookTicket"].clone();
    let update = "mutation($id: ID!, $s: TicketStatus!) { updateTicket(id: $id, status: $s) { status code } }";

    assert_eq!(
        error_code(
            &app.gql(
                Some(&staff.token),
                update,
                json!({ "id": held["id"], "s": "CONFIRMED" })
            )
            .await
        ),
        "FORBIDDEN"
    );
    let confirmed = app
        .gql(
            Some(&organizer.token),
            update,
            json!({ "id": held["id"], "s": "CONFIRMED" }),
        )
        .await;
    assert_eq!(
        confirmed["data"]["updateTicket"]["status"], "CONFIRMED",
        "{confirmed}"
    );
    assert!(
        confirmed["data"]["updateTicket"]["code"].as_str().is_some(),
        "a confirmed ticket gets its code"
    );

    // A paid, confirmed ticket is not the member's to cancel: that is a refund.
    let own_cancel = app
        .gql(
            Some(&people[0].token),
            "mutation($id: ID!) { cancelTicket(id: $id) { status } }",
            json!({ "id": held["id"] }),
        )
        .await;
    assert_eq!(error_code(&own_cancel), "CONFLICT");
    let by_organizer = app
        .gql(
            Some(&organizer.token),
            "mutation($id: ID!) { cancelTicket(id: $id) { status } }",
            json!({ "id": held["id"] }),
        )
        .await;
    assert_eq!(by_organizer["data"]["cancelTicket"]["status"], "CANCELLED");

    let second = book(&app, &people[1], &event).await["data"]["bookTicket"].clone();
    let revive = app
        .gql(
            Some(&organizer.token),
            update,
            json!({ "id": held["id"], "s": "CONFIRMED" }),
        )
        .await;
    assert_eq!(
        error_code(&revive),
        "SOLD_OUT",
        "the seat went to someone else: {revive}"
    );
    assert_eq!(second["status"], "PENDING");

    let target = format!("ticket:{}", held["id"].as_str().unwrap());
    assert_eq!(
        app.audit_actions(&target).await,
        vec!["ticket.update", "ticket.cancel"]
    );
}

/// Replicas share one PostgreSQL in production (SQLite is the embedded,
/// single-process store), so this one runs on PostgreSQL only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_on_one_postgres_database_never_oversell() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let event = published_event(&app, &organizer, 10, None).await;
    let members = app.members(60).await;

    let servers = [
        crate::support::ServerProcess::start(&app).await,
        crate::support::ServerProcess::start(&app).await,
    ];
    let requests = members.iter().enumerate().map(|(i, member)| {
        let base = &servers[i % 2].base;
        app.client
            .post(format!("{base}/graphql"))
            .bearer_auth(&member.token)
            .json(&json!({ "query": BOOK, "variables": { "e": event } }))
            .send()
    });
    let mut booked = 0;
    let mut sold_out = 0;
    for response in futures_util::future::join_all(requests).await {
        let answer: Value = response.unwrap().json().await.unwrap();
        match error_code(&answer) {
            "" => booked += 1,
            "SOLD_OUT" => sold_out += 1,
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert_eq!((booked, sold_out), (10, 50));
}

on_both_databases!(
    a_free_booking_is_confirmed_and_a_paid_one_holds_its_seat,
    sixty_members_racing_for_ten_seats_get_exactly_ten,
    a_one_seat_event_raced_by_two_twenty_times_sells_one_seat_each_time,
    an_expired_hold_frees_its_seat_the_moment_it_lapses,
    only_published_events_that_have_not_ended_can_be_booked,
    two_scans_of_one_code_at_once_make_one_check_in,
    a_code_of_a_ticket_that_is_not_confirmed_is_a_conflict,
    members_cannot_see_each_others_tickets,
    a_scanner_verifies_codes_offline_with_the_public_key,
    listing_fifty_tickets_with_events_users_and_payments_costs_the_same_queries_as_five,
    cancelling_an_event_cancels_its_tickets_and_deleting_it_is_refused,
    organizers_correct_tickets_within_capacity_and_on_the_record,
);
