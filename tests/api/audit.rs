//! The audit log: privileged acts leave one entry each, and entries cannot
//! be changed.

use sea_orm::ConnectionTrait;
use serde_json::json;
use spanglish::accounts::Role;

use crate::events::{create_event, event_input};
use crate::support::{Backend, TestApp, on_both_databases};

async fn staff_acts_on_themselves_and_on_bookings_are_recorded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let staff = app.user_with_role(Role::Staff).await;

    let rename =
        "mutation($id: ID!) { updateUser(id: $id, input: { name: \"Door Team\" }) { name } }";
    app.gql(Some(&staff.token), rename, json!({ "id": staff.id }))
        .await;
    assert_eq!(
        app.audit_actions(&format!("user:{}", staff.id)).await,
        vec!["user.update"]
    );

    let mut input = event_input("Staff night");
    input["status"] = json!("PUBLISHED");
    let event = create_event(&app, &organizer.token, input).await;
    let booked = app
        .gql(
            Some(&staff.token),
            "mutation($e: ID!) { bookTicket(eventId: $e) { id } }",
            json!({ "e": event["id"] }),
        )
        .await;
    let ticket = booked["data"]["bookTicket"]["id"].as_str().unwrap();
    assert_eq!(
        app.audit_actions(&format!("ticket:{ticket}")).await,
        vec!["ticket.book"]
    );

    // A member's own acts are not privileged and leave no entry.
    let member = app.user_with_role(Role::Member).await;
    app.gql(Some(&member.token), rename, json!({ "id": member.id }))
        .await;
    assert!(
        app.audit_actions(&format!("user:{}", member.id))
            .await
            .is_empty()
    );
}

async fn the_audit_log_filters_and_pages_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.user_with_role(Role::Admin).await;
    for i in 0..5 {
        create_event(&app, &admin.token, event_input(&format!("Event {i}"))).await;
        app.clock.advance(chrono::Duration::seconds(1));
    }
    let token = app.fresh_token(&admin);

    let query = "query($after: String) { auditLogs(first: 2, after: $after, filter: { action: \"event.create\" }) { totalCount edges { node { details timestamp } } pageInfo { hasNextPage endCursor } } }";
    let mut titles = Vec::new();
    let mut after = serde_json::Value::Null;
    loop {
        let answer = app
            .gql(Some(&token), query, json!({ "after": after }))
            .await;
        let logs = &answer["data"]["auditLogs"];
        assert_eq!(logs["totalCount"], 5, "{answer}");
        for edge in logs["edges"].as_array().unwrap() {
            titles.push(
                edge["node"]["details"]["slug"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        if logs["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = logs["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(
        titles,
        vec!["event-4", "event-3", "event-2", "event-1", "event-0"]
    );
}

/// The database itself refuses to change the record, whoever asks.
async fn the_database_refuses_to_update_or_delete_audit_entries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.user_with_role(Role::Admin).await;
    create_event(&app, &admin.token, event_input("Evidence")).await;

    let mut attempts = vec![
        "UPDATE audit_logs SET action = 'nothing.happened'",
        "DELETE FROM audit_logs",
    ];
    if backend == Backend::Postgres {
        attempts.push("TRUNCATE audit_logs");
    }
    for sql in attempts {
        let refused = app.state.db.execute_unprepared(sql).await;
        assert!(refused.is_err(), "{sql} was allowed");
    }
    use sea_orm::{EntityTrait, PaginatorTrait};
    let entries = spanglish::audit::entity::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(entries, 1, "the entry is still there");
}

on_both_databases!(
    staff_acts_on_themselves_and_on_bookings_are_recorded,
    the_audit_log_filters_and_pages_newest_first,
    the_database_refuses_to_update_or_delete_audit_entries,
);
