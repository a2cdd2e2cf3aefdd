//! Accounts: registration, sign-in, token rotation, roles and visibility.

use chrono::Duration;
use serde_json::{Value, json};
use spanglish::accounts::Role;

use crate::support::{Backend, TestApp, error_code, error_field, on_both_databases};

const LOGIN: &str = "mutation($email: String!, $password: String!) { login(email: $email, password: $password) { accessToken refreshToken expiresIn user { id email role } } }";
const REFRESH: &str =
    "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken } }";
const ME: &str = "{ me { id name email role locale } }";

async fn registration_validates_and_emails_are_unique_in_any_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.register("Ana", "Ana@Example.org").await;

    let me = app.gql(Some(&ana.token), ME, json!({})).await;
    assert_eq!(me["data"]["me"]["email"], "Ana@Example.org");
    assert_eq!(me["data"]["me"]["role"], "MEMBER");
    assert_eq!(me["data"]["me"]["locale"], "es");

    let register = "mutation($input: RegisterInput!) { register(input: $input) { user { id } } }";
    let cases = [
        (
            json!({ "name": "Ana 2", "email": "ana@EXAMPLE.org", "password": "long enough pass" }),
            "CONFLICT",
            "email",
        ),
        (
            json!({ "name": "Bea", "email": "not-an-email", "password": "long enough pass" }),
            "BAD_USER_INPUT",
            "email",
        ),
        (
            json!({ "name": "Bea", "email": "bea@example.org", "password": "short" }),
            "BAD_USER_INPUT",
            "password",
        ),
        (
            json!({ "name": "Bea", "email": "bea@example.org", "password": "x".repeat(257) }),
            "BAD_USER_INPUT",
            "password",
        ),
        (
            json!({ "name": "", "email": "bea@example.org", "password": "long enough pass" }),
            "BAD_USER_INPUT",
            "name",
        ),
        (
            json!({ "name": "Bea", "email": "bea@example.org", "password": "long enough pass", "locale": "fr" }),
            "BAD_USER_INPUT",
            "locale",
        ),
        (
            json!({ "name": "Bea", "email": "bea@example.org", "password": "long enough pass", "phone": "call me" }),
            "BAD_USER_INPUT",
            "phone",
        ),
    ];
    for (input, code, field) in cases {
        let answer = app.gql(None, register, json!({ "input": input })).await;
        assert_eq!(error_code(&answer), code, "{input}: {answer}");
        assert_eq!(error_field(&answer), field, "{input}: {answer}");
    }
}

async fn login_answers_the_same_for_unknown_email_and_wrong_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.register("Ana", "ana@example.org").await;

    let wrong_password = app
        .gql(
            None,
            LOGIN,
            json!({ "email": "ana@example.org", "password": "wrong password" }),
        )
        .await;
    let unknown = app
        .gql(
            None,
            LOGIN,
            json!({ "email": "nobody@example.org", "password": "wrong password" }),
        )
        .await;
    assert_eq!(error_code(&wrong_password), "UNAUTHENTICATED");
    assert_eq!(
        wrong_password["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );
    assert_eq!(error_code(&unknown), "UNAUTHENTICATED");

    let ok = app
        .gql(
            None,
            LOGIN,
            json!({ "email": "ANA@example.org", "password": "correct horse battery" }),
        )
        .await;
    assert_eq!(ok["data"]["login"]["user"]["id"], ana.id.as_str(), "{ok}");
    assert_eq!(ok["data"]["login"]["expiresIn"], 900);
    assert_eq!(
        ok["data"]["login"]["user"]["email"], "ana@example.org",
        "the signed-in user sees their own email"
    );
}

async fn access_tokens_expire_after_fifteen_minutes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.register("Ana", "ana@example.org").await;
    assert!(app.gql(Some(&ana.token), ME, json!({})).await["data"]["me"].is_object());

    app.clock.advance(Duration::minutes(15));
    let answer = app.gql(Some(&ana.token), ME, json!({})).await;
    assert_eq!(error_code(&answer), "UNAUTHENTICATED", "{answer}");

    // A forged or garbled token is refused the same way; no token is anonymous.
    let answer = app.gql(Some("not.a.token"), ME, json!({})).await;
    assert_eq!(error_code(&answer), "UNAUTHENTICATED");
    assert_eq!(
        app.gql(None, ME, json!({})).await["data"]["me"],
        Value::Null
    );
}

async fn refresh_rotates_and_a_reused_token_revokes_its_family(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.register("Ana", "ana@example.org").await;

    let first = app.gql(None, REFRESH, json!({ "t": ana.refresh })).await;
    let rotated = first["data"]["refreshToken"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rotated, ana.refresh);
    let access = first["data"]["refreshToken"]["accessToken"]
        .as_str()
        .unwrap();
    assert_eq!(
        app.gql(Some(access), ME, json!({})).await["data"]["me"]["id"],
        ana.id.as_str()
    );

    // The old token comes back: stolen. It fails, and so does its successor.
    let reuse = app.gql(None, REFRESH, json!({ "t": ana.refresh })).await;
    assert_eq!(error_code(&reuse), "UNAUTHENTICATED");
    let successor = app.gql(None, REFRESH, json!({ "t": rotated })).await;
    assert_eq!(
        error_code(&successor),
        "UNAUTHENTICATED",
        "the family is revoked: {successor}"
    );
}

async fn two_concurrent_refreshes_of_one_token_yield_one_success(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.register("Ana", "ana@example.org").await;

    let attempts = (0..2).map(|_| app.gql(None, REFRESH, json!({ "t": ana.refresh })));
    let answers = futures_util::future::join_all(attempts).await;
    let successes = answers.iter().filter(|a| a["errors"].is_null()).count();
    assert_eq!(successes, 1, "{answers:?}");
}

async fn logout_ends_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.register("Ana", "ana@example.org").await;

    let answer = app
        .gql(
            None,
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": ana.refresh }),
        )
        .await;
    assert_eq!(answer["data"]["logout"], true);
    let answer = app.gql(None, REFRESH, json!({ "t": ana.refresh })).await;
    assert_eq!(error_code(&answer), "UNAUTHENTICATED");
}

async fn contact_details_are_for_oneself_and_organizers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.register("Ana", "ana@example.org").await;
    let query = "query($id: ID!) { user(id: $id) { name email phone } }";

    let staff = app.user_with_role(Role::Staff).await;
    let seen_by_staff = app
        .gql(Some(&staff.token), query, json!({ "id": ana.id }))
        .await;
    assert_eq!(
        seen_by_staff["data"]["user"],
        json!({ "name": "Ana", "email": null, "phone": null })
    );

    let organizer = app.user_with_role(Role::Organizer).await;
    let seen_by_organizer = app
        .gql(Some(&organizer.token), query, json!({ "id": ana.id }))
        .await;
    assert_eq!(
        seen_by_organizer["data"]["user"]["email"],
        "ana@example.org"
    );

    let bea = app.user_with_role(Role::Member).await;
    let seen_by_member = app
        .gql(Some(&bea.token), query, json!({ "id": ana.id }))
        .await;
    assert_eq!(error_code(&seen_by_member), "NOT_FOUND", "{seen_by_member}");
    let anonymous = app.gql(None, query, json!({ "id": ana.id })).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
}

async fn the_role_matrix_of_user_administration(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let member = app.user_with_role(Role::Member).await;
    let staff = app.user_with_role(Role::Staff).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let admin = app.user_with_role(Role::Admin).await;
    let users = "{ users(filter: { role: STAFF }) { totalCount edges { node { email } } } }";

    assert_eq!(
        error_code(&app.gql(None, users, json!({})).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        error_code(&app.gql(Some(&member.token), users, json!({})).await),
        "FORBIDDEN"
    );
    assert_eq!(
        error_code(&app.gql(Some(&staff.token), users, json!({})).await),
        "FORBIDDEN"
    );
    let listed = app.gql(Some(&organizer.token), users, json!({})).await;
    assert_eq!(listed["data"]["users"]["totalCount"], 1, "{listed}");
    assert_eq!(
        listed["data"]["users"]["edges"][0]["node"]["email"],
        staff.email.as_str()
    );

    let promote =
        "mutation($id: ID!, $role: Role!) { updateUser(id: $id, input: { role: $role }) { role } }";
    let by_organizer = app
        .gql(
            Some(&organizer.token),
            promote,
            json!({ "id": member.id, "role": "STAFF" }),
        )
        .await;
    assert_eq!(error_code(&by_organizer), "FORBIDDEN");
    let by_self = app
        .gql(
            Some(&member.token),
            promote,
            json!({ "id": member.id, "role": "ADMIN" }),
        )
        .await;
    assert_eq!(error_code(&by_self), "FORBIDDEN");
    let by_admin = app
        .gql(
            Some(&admin.token),
            promote,
            json!({ "id": member.id, "role": "STAFF" }),
        )
        .await;
    assert_eq!(
        by_admin["data"]["updateUser"]["role"], "STAFF",
        "{by_admin}"
    );
    assert_eq!(
        app.audit_actions(&format!("user:{}", member.id)).await,
        vec!["user.role_change"]
    );

    // The new role applies to the token already held.
    let other = app
        .gql(
            Some(&member.token),
            "query($id: ID!) { user(id: $id) { name } }",
            json!({ "id": organizer.id }),
        )
        .await;
    assert_eq!(other["data"]["user"]["name"], "ORGANIZER", "{other}");

    let rename_other =
        "mutation($id: ID!) { updateUser(id: $id, input: { name: \"X\" }) { name } }";
    assert_eq!(
        error_code(
            &app.gql(
                Some(&staff.token),
                rename_other,
                json!({ "id": organizer.id })
            )
            .await
        ),
        "FORBIDDEN"
    );

    let audit = "{ auditLogs { edges { node { action target user { id } } } } }";
    assert_eq!(
        error_code(&app.gql(Some(&organizer.token), audit, json!({})).await),
        "FORBIDDEN"
    );
    let log = app.gql(Some(&admin.token), audit, json!({})).await;
    let newest = &log["data"]["auditLogs"]["edges"][0]["node"];
    assert_eq!(newest["action"], "user.role_change", "{log}");
    assert_eq!(newest["target"], format!("user:{}", member.id));
    assert_eq!(newest["user"]["id"], admin.id.as_str());
}

async fn changing_ones_password_needs_the_current_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.register("Ana", "ana@example.org").await;
    let change = "mutation($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { id } }";

    let without = app
        .gql(
            Some(&ana.token),
            change,
            json!({ "id": ana.id, "input": { "password": "a brand new pass" } }),
        )
        .await;
    assert_eq!(error_code(&without), "UNAUTHENTICATED");
    let wrong = app.gql(Some(&ana.token), change, json!({ "id": ana.id, "input": { "password": "a brand new pass", "currentPassword": "nope nope" } })).await;
    assert_eq!(error_code(&wrong), "UNAUTHENTICATED");
    let right = app.gql(Some(&ana.token), change, json!({ "id": ana.id, "input": { "password": "a brand new pass", "currentPassword": "correct horse battery" } })).await;
    assert!(right["errors"].is_null(), "{right}");

    let old = app
        .gql(
            None,
            LOGIN,
            json!({ "email": "ana@example.org", "password": "correct horse battery" }),
        )
        .await;
    assert_eq!(error_code(&old), "UNAUTHENTICATED");
    let new = app
        .gql(
            None,
            LOGIN,
            json!({ "email": "ana@example.org", "password": "a brand new pass" }),
        )
        .await;
    assert!(new["errors"].is_null(), "{new}");
    let stale_session = app.gql(None, REFRESH, json!({ "t": ana.refresh })).await;
    assert_eq!(
        error_code(&stale_session),
        "UNAUTHENTICATED",
        "a password change ends other sessions"
    );
}

async fn the_last_admin_cannot_demote_themself(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.user_with_role(Role::Admin).await;
    let demote = "mutation($id: ID!) { updateUser(id: $id, input: { role: MEMBER }) { role } }";
    let answer = app
        .gql(Some(&admin.token), demote, json!({ "id": admin.id }))
        .await;
    assert_eq!(error_code(&answer), "CONFLICT", "{answer}");
}

/// `spanglish create-admin` on an existing account is how an operator takes
/// it back: the new password ends every session the old one opened, as a
/// password change or reset does.
async fn create_admin_on_an_existing_account_ends_its_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.register("Ana", "ana@example.org").await;

    let admin = spanglish::accounts::service::create_or_promote_admin(
        &app.state,
        "Ana@Example.org",
        "Ana",
        "a new admin password",
    )
    .await
    .unwrap();
    assert_eq!(admin.role, Role::Admin);

    let answer = app.gql(None, REFRESH, json!({ "t": ana.refresh })).await;
    assert_eq!(error_code(&answer), "UNAUTHENTICATED", "{answer}");
    let login = app
        .gql(
            None,
            LOGIN,
            json!({ "email": "ana@example.org", "password": "a new admin password" }),
        )
        .await;
    assert_eq!(login["data"]["login"]["user"]["role"], "ADMIN", "{login}");
}

on_both_databases!(
    create_admin_on_an_existing_account_ends_its_sessions,
    registration_validates_and_emails_are_unique_in_any_case,
    login_answers_the_same_for_unknown_email_and_wrong_password,
    access_tokens_expire_after_fifteen_minutes,
    refresh_rotates_and_a_reused_token_revokes_its_family,
    two_concurrent_refreshes_of_one_token_yield_one_success,
    logout_ends_the_session,
    contact_details_are_for_oneself_and_organizers,
    the_role_matrix_of_user_administration,
    changing_ones_password_needs_the_current_one,
    the_last_admin_cannot_demote_themself,
);

mod hardening {
    use serde_json::json;
    use spanglish::accounts::Role;

    use crate::support::{Backend, TestApp, error_code, error_field, on_both_databases};

    const REGISTER: &str =
        "mutation($input: RegisterInput!) { register(input: $input) { user { id } } }";

    async fn emails_are_bare_addresses_unique_in_any_script(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.register("Élodie", "ÉLODIE@example.org").await;

        let twin = json!({ "name": "Twin", "email": "élodie@EXAMPLE.org", "password": "long enough pass" });
        let answer = app.gql(None, REGISTER, json!({ "input": twin })).await;
        assert_eq!(error_code(&answer), "CONFLICT", "{answer}");

        let login = app
            .client
            .post(app.url("/api/auth/login"))
            .json(&json!({ "email": "élodie@example.org", "password": "correct horse battery" }))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200, "sign-in ignores case beyond ASCII");

        for email in [
            "Evil <elodie@example.org>",
            "x@localhost",
            "x@[127.0.0.1]",
            "a\u{0}b@example.org",
        ] {
            let input = json!({ "name": "Evil", "email": email, "password": "long enough pass" });
            let answer = app.gql(None, REGISTER, json!({ "input": input })).await;
            assert_eq!(error_code(&answer), "BAD_USER_INPUT", "{email}: {answer}");
        }
        let nul_login = app
            .client
            .post(app.url("/api/auth/login"))
            .json(&json!({ "email": "a\u{0}b@example.org", "password": "whatever pass" }))
            .send()
            .await
            .unwrap();
        assert_eq!(nul_login.status(), 401);

        let spaces =
            json!({ "name": "Blank", "email": "blank@example.org", "password": "          " });
        assert_eq!(
            error_field(&app.gql(None, REGISTER, json!({ "input": spaces })).await),
            "password"
        );
        let bidi = json!({ "name": "\u{202E}nimda", "email": "bidi@example.org", "password": "long enough pass" });
        assert_eq!(
            error_field(&app.gql(None, REGISTER, json!({ "input": bidi })).await),
            "name"
        );

        let organizer = app.user_with_role(Role::Organizer).await;
        let found = app
            .gql(
                Some(&organizer.token),
                "{ users(filter: { search: \"ÉLOD\" }) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(found["data"]["users"]["totalCount"], 1, "{found}");
    }

    async fn two_admins_demoting_each_other_at_once_leave_one_admin(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let demote = "mutation($id: ID!) { updateUser(id: $id, input: { role: MEMBER }) { role } }";
        for _ in 0..5 {
            let a = app.user_with_role(Role::Admin).await;
            let b = app.user_with_role(Role::Admin).await;
            let (first, second) = tokio::join!(
                app.gql(Some(&a.token), demote, json!({ "id": b.id })),
                app.gql(Some(&b.token), demote, json!({ "id": a.id }))
            );
            let demoted = [&first, &second]
                .iter()
                .filter(|r| r["errors"].is_null())
                .count();
            assert_eq!(demoted, 1, "{first} / {second}");
            // Start the next round with no admin left over from this one.
            use sea_orm::ConnectionTrait;
            app.state
                .db
                .execute_unprepared("UPDATE users SET role = 'MEMBER'")
                .await
                .unwrap();
        }
    }

    on_both_databases!(
        emails_are_bare_addresses_unique_in_any_script,
        two_admins_demoting_each_other_at_once_leave_one_admin,
    );
}
