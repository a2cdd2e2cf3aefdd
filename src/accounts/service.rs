//! Account rules: who may register, sign in, refresh, and change what.

use chrono::Duration;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QuerySelect, Set, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use super::entity::{Role, password_reset, refresh_token, user};
use super::{password, tokens};
use crate::accounts::auth::{CurrentUser, Viewer};
use crate::app::AppState;
use crate::audit;
use crate::db;
use crate::error::{AppError, AppResult, unique_violation};
use crate::graphql::pagination::{Cursor, Direction, Page, PageRequest, keyset_page, like_pattern};
use crate::text;

/// What a successful sign-in hands back.
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub user: user::Model,
}

pub struct NewUser {
    pub name: String,
    pub email: String,
    pub password: String,
    pub phone: Option<String>,
    pub locale: Option<String>,
}

#[derive(Default)]
pub struct UserChanges {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub locale: Option<String>,
    pub role: Option<Role>,
    pub password: Option<String>,
    pub current_password: Option<String>,
}

#[derive(Default)]
pub struct UserFilter {
    pub role: Option<Role>,
    pub search: Option<String>,
}

pub const LOCALES: [&str; 2] = ["es", "en"];

/// A bare address on a public domain: no display name ("Eve <ana@x.org>"
/// would otherwise be a second account for Ana's mailbox), no IP literal, no
/// single-label host.
pub fn normalize_email(raw: &str) -> AppResult<String> {
    let email = raw.trim();
    let options = email_address::Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
        ..email_address::Options::default()
    };
    let parsed = email_address::EmailAddress::parse_with_options(email, options);
    if email.len() > 254 || parsed.is_err() || email.chars().any(char::is_control) {
        return Err(AppError::bad_input("email", "enter a valid email address"));
    }
    Ok(email.to_string())
}

pub fn email_key(email: &str) -> String {
    text::fold(email.trim())
}

fn search_text(name: &str, email: &str) -> String {
    text::fold(&format!("{name} {email}"))
}

fn validate_name(raw: &str) -> AppResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::bad_input(
            "name",
            "the name must be 1 to 100 characters",
        ));
    }
    text::check_clean("name", name, false)?;
    Ok(name.to_string())
}

fn validate_phone(raw: Option<String>) -> AppResult<Option<String>> {
    let Some(phone) = raw.map(|p| p.trim().to_string()).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let allowed = phone
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_digit() || " -().".contains(c) || (i == 0 && c == '+'));
    if !allowed || !(6..=20).contains(&digits) || phone.len() > 32 {
        return Err(AppError::bad_input(
            "phone",
            "enter a phone number such as +595 981 123456",
        ));
    }
    Ok(Some(phone))
}

fn validate_locale(raw: Option<String>) -> AppResult<Option<String>> {
    match raw.map(|l| l.trim().to_lowercase()) {
        None => Ok(None),
        Some(l) if LOCALES.contains(&l.as_str()) => Ok(Some(l)),
        Some(_) => Err(AppError::bad_input(
            "locale",
            "the locale must be \"es\" or \"en\"",
        )),
    }
}

pub async fn find_by_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> AppResult<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::EmailKey.eq(email_key(email)))
        .one(db)
        .await?)
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<user::Model>> {
    Ok(user::Entity::find_by_id(id).one(db).await?)
}

/// Resolves the `Authorization` header to the caller. No header is an
/// anonymous caller; a header that is not a valid bearer token is a bad
/// token. The role is read from the database, not the token, so a demotion
/// takes effect at once.
pub async fn resolve_viewer(state: &AppState, headers: &axum::http::HeaderMap) -> Viewer {
    if !headers.contains_key(axum::http::header::AUTHORIZATION) {
        return Viewer::Anonymous;
    }
    let Some(token) = super::auth::bearer(headers) else {
        return Viewer::InvalidToken;
    };
    let Ok(claims) = state.tokens.verify(token, state.clock.now()) else {
        return Viewer::InvalidToken;
    };
    match find(&state.db, claims.sub).await {
        Ok(Some(user)) => Viewer::User(CurrentUser {
            id: user.id,
            role: user.role,
        }),
        Ok(None) => Viewer::InvalidToken,
        Err(err) => {
            tracing::error!(error = %err, "resolving the caller");
            Viewer::InvalidToken
        }
    }
}

pub async fn register(state: &AppState, input: NewUser) -> AppResult<Session> {
    let name = validate_name(&input.name)?;
    let email = normalize_email(&input.email)?;
    password::validate(&input.password, "password")?;
    let phone = validate_phone(input.phone)?;
    let locale = validate_locale(input.locale)?.unwrap_or_else(|| "es".into());
    let password_hash = password::hash(&input.password).await?;

    let now = state.clock.now();
    let model = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        search_text: Set(search_text(&name, &email)),
        email_key: Set(email_key(&email)),
        name: Set(name),
        email: Set(email),
        password_hash: Set(password_hash),
        phone: Set(phone),
        locale: Set(locale),
        role: Set(Role::Member),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let user = model.insert(&state.db).await.map_err(|err| {
        if unique_violation(&err, "users_email_key", "users.email_key") {
            AppError::conflict_on("email", "this email is already registered")
        } else {
            err.into()
        }
    })?;

    tracing::info!(user.id = %user.id, "registered");
    start_session(state, user, None).await
}

pub async fn login(
    state: &AppState,
    email: &str,
    password_attempt: &str,
    client_ip: std::net::IpAddr,
) -> AppResult<Session> {
    if let Err(limited) = state.limiter.check_email(email.trim()) {
        tracing::warn!(
            target: "spanglish::security",
            event = "login_rate_limited",
            client.ip = %client_ip,
            "login refused: too many failures for this email"
        );
        return Err(limited);
    }

    // An address that could never have registered is a wrong credential,
    // answered like any other (and never sent to the database).
    let email = normalize_email(email).unwrap_or_default();
    let user = match email.is_empty() {
        true => None,
        false => find_by_email(&state.db, &email).await?,
    };
    let stored = user.as_ref().map(|u| u.password_hash.as_str());
    if !password::verify(password_attempt, stored).await {
        if !email.is_empty() {
            state.limiter.record_failure(&email);
        }
        tracing::warn!(
            target: "spanglish::security",
            event = "login_failed",
            client.ip = %client_ip,
            user.id = user.as_ref().map(|u| u.id.to_string()),
            "failed login"
        );
        return Err(AppError::Unauthenticated("Wrong email or password"));
    }

    let Some(user) = user else {
        return Err(AppError::Unauthenticated("Wrong email or password"));
    };
    tracing::info!(user.id = %user.id, "signed in");
    start_session(state, user, None).await
}

/// Issues an access token and a refresh token; a new sign-in starts a new
/// token family, a rotation continues the old one.
async fn start_session(
    state: &AppState,
    user: user::Model,
    family: Option<Uuid>,
) -> AppResult<Session> {
    let now = state.clock.now();
    let refresh = tokens::random_token();
    refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        family_id: Set(family.unwrap_or_else(Uuid::now_v7)),
        token_hash: Set(tokens::hash_token(&refresh)),
        created_at: Set(now),
        expires_at: Set(now + Duration::days(tokens::REFRESH_TOKEN_DAYS)),
        used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(&state.db)
    .await?;

    Ok(Session {
        access_token: state.tokens.issue(user.id, now)?,
        refresh_token: refresh,
        expires_in: tokens::ACCESS_TOKEN_SECONDS,
        user,
    })
}

/// Rotates a refresh token. A token that was already rotated and comes back
/// was copied by someone: its whole family is revoked. Of two simultaneous
/// uses of one token, the conditional update lets exactly one through.
pub async fn refresh(state: &AppState, presented: &str) -> AppResult<Session> {
    let invalid = || AppError::Unauthenticated("Invalid or expired refresh token");
    let now = state.clock.now();
    let hash = tokens::hash_token(presented);
    let Some(token) = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .one(&state.db)
        .await?
    else {
        return Err(invalid());
    };

    if token.revoked_at.is_some() || token.expires_at <= now {
        return Err(invalid());
    }
    if token.used_at.is_some() {
        revoke_family(&state.db, token.family_id, now).await?;
        tracing::warn!(
            target: "spanglish::security",
            event = "refresh_token_reuse",
            user.id = %token.user_id,
            "a rotated refresh token was used again; its family is revoked"
        );
        return Err(invalid());
    }

    let claimed = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .filter(refresh_token::Column::Id.eq(token.id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(&state.db)
        .await?;
    if claimed.rows_affected != 1 {
        return Err(invalid());
    }

    let user = find(&state.db, token.user_id).await?.ok_or_else(invalid)?;
    start_session(state, user, Some(token.family_id)).await
}

async fn revoke_family(
    db: &impl ConnectionTrait,
    family: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<()> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::FamilyId.eq(family))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

async fn revoke_all_sessions(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<()> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::UserId.eq(user_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Ends the session the refresh token belongs to. Unknown tokens are not an
/// error: signing out twice is harmless.
pub async fn logout(state: &AppState, presented: &str) -> AppResult<bool> {
    let hash = tokens::hash_token(presented);
    let token = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .one(&state.db)
        .await?;
    if let Some(token) = token {
        revoke_family(&state.db, token.family_id, state.clock.now()).await?;
    }
    Ok(true)
}

pub async fn list(
    db: &impl ConnectionTrait,
    filter: UserFilter,
    page: &PageRequest,
) -> AppResult<Page<user::Model>> {
    let mut condition = Condition::all();
    if let Some(role) = filter.role {
        condition = condition.add(user::Column::Role.eq(role));
    }
    if let Some(term) = text::search_term("search", filter.search.as_deref())? {
        condition = condition.add(user::Column::SearchText.like(like_pattern(&term)));
    }

    keyset_page::<user::Entity>(
        db,
        condition,
        page,
        (user::Column::CreatedAt, user::Column::Id),
        Direction::Ascending,
        |row| Cursor::new(row.created_at, row.id),
    )
    .await
}

pub async fn update(
    state: &AppState,
    caller: CurrentUser,
    id: Uuid,
    changes: UserChanges,
) -> AppResult<user::Model> {
    let is_self = caller.id == id;
    if !is_self && caller.role < Role::Admin {
        return Err(AppError::Forbidden);
    }
    if changes.role.is_some() && caller.role < Role::Admin {
        return Err(AppError::Forbidden);
    }

    let name = changes.name.as_deref().map(validate_name).transpose()?;
    let phone = changes
        .phone
        .clone()
        .map(|p| validate_phone(Some(p)))
        .transpose()?;
    let locale = validate_locale(changes.locale.clone())?;
    let new_hash = match &changes.password {
        Some(new_password) => {
            password::validate(new_password, "password")?;
            Some(password::hash(new_password).await?)
        }
        None => None,
    };

    let txn = db::begin_write(&state.db).await?;
    let current = find(&txn, id).await?.ok_or(AppError::NotFound("User"))?;

    if new_hash.is_some() && is_self {
        let confirmed = match changes.current_password.as_deref() {
            Some(given) => password::verify(given, Some(&current.password_hash)).await,
            None => false,
        };
        if !confirmed {
            return Err(AppError::Unauthenticated("The current password is wrong"));
        }
    }
    if let Some(role) = changes.role
        && current.role == Role::Admin
        && role < Role::Admin
        && count_admins(&txn).await? <= 1
    {
        return Err(AppError::conflict("the last admin cannot be demoted"));
    }

    let now = state.clock.now();
    let mut model: user::ActiveModel = current.clone().into();
    let mut changed = Vec::new();
    if let Some(name) = name {
        model.search_text = Set(search_text(&name, &current.email));
        model.name = Set(name);
        changed.push("name");
    }
    if let Some(phone) = phone {
        model.phone = Set(phone);
        changed.push("phone");
    }
    if let Some(locale) = locale {
        model.locale = Set(locale);
        changed.push("locale");
    }
    if let Some(role) = changes.role {
        model.role = Set(role);
    }
    if let Some(hash) = new_hash {
        model.password_hash = Set(hash);
        changed.push("password");
        revoke_all_sessions(&txn, id, now).await?;
    }
    model.updated_at = Set(now);
    let updated = model.update(&txn).await?;

    let target = audit::target("user", id);
    if changes.role.is_some_and(|r| r != current.role) {
        let details = json!({ "from": current.role.as_str(), "to": updated.role.as_str(), "changed": changed });
        audit::record(
            &txn,
            Some(caller.id),
            "user.role_change",
            &target,
            details,
            now,
        )
        .await?;
    } else if caller.role >= Role::Staff {
        audit::record(
            &txn,
            Some(caller.id),
            "user.update",
            &target,
            json!({ "changed": changed }),
            now,
        )
        .await?;
    }
    txn.commit().await?;
    Ok(updated)
}

/// Counts admins, locking their rows on PostgreSQL so that two admins
/// demoting each other at the same instant cannot both see "another admin
/// remains". (SQLite's write transaction is exclusive already.)
async fn count_admins(txn: &DatabaseTransaction) -> AppResult<u64> {
    let mut query = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .filter(user::Column::Role.eq(Role::Admin));
    if db::is_postgres(txn) {
        query = query.lock_exclusive();
    }
    let ids: Vec<Uuid> = query.into_tuple().all(txn).await?;
    Ok(ids.len() as u64)
}

/// For `spanglish create-admin`: creates the account, or promotes and
/// re-passwords an existing one. Re-passwording is how an operator takes
/// back an account, so it ends the account's sessions as a reset does.
pub async fn create_or_promote_admin(
    state: &AppState,
    email: &str,
    name: &str,
    new_password: &str,
) -> AppResult<user::Model> {
    let email = normalize_email(email)?;
    let name = validate_name(name)?;
    password::validate(new_password, "password")?;
    let hash = password::hash(new_password).await?;
    let now = state.clock.now();

    let txn = state.db.begin().await?;
    let saved = match find_by_email(&txn, &email).await? {
        Some(existing) => {
            let previous = existing.role;
            let mut model: user::ActiveModel = existing.into();
            model.role = Set(Role::Admin);
            model.search_text = Set(search_text(&name, &email));
            model.name = Set(name);
            model.password_hash = Set(hash);
            model.updated_at = Set(now);
            let saved = model.update(&txn).await?;
            revoke_all_sessions(&txn, saved.id, now).await?;
            if previous != Role::Admin {
                let details = json!({ "from": previous.as_str(), "to": "ADMIN", "via": "cli" });
                audit::record(
                    &txn,
                    None,
                    "user.role_change",
                    &audit::target("user", saved.id),
                    details,
                    now,
                )
                .await?;
            }
            saved
        }
        None => {
            let saved = user::ActiveModel {
                id: Set(Uuid::now_v7()),
                search_text: Set(search_text(&name, &email)),
                email_key: Set(email_key(&email)),
                name: Set(name),
                email: Set(email),
                password_hash: Set(hash),
                phone: Set(None),
                locale: Set("es".into()),
                role: Set(Role::Admin),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await?;
            let details = json!({ "to": "ADMIN", "via": "cli" });
            audit::record(
                &txn,
                None,
                "user.create_admin",
                &audit::target("user", saved.id),
                details,
                now,
            )
            .await?;
            saved
        }
    };
    txn.commit().await?;
    Ok(saved)
}

/// How long a reset link works, and how often one address may get one.
const RESET_VALID_MINUTES: i64 = 60;
const RESET_EVERY_MINUTES: i64 = 5;

/// Sends a reset link when the address belongs to someone, at most once per
/// few minutes. Answers the same either way, so it cannot be used to learn
/// who has an account.
pub async fn request_password_reset(state: &AppState, email: &str) -> AppResult<()> {
    let Ok(email) = normalize_email(email) else {
        return Ok(());
    };
    let Some(user) = find_by_email(&state.db, &email).await? else {
        return Ok(());
    };
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let recent = password_reset::Entity::find()
        .filter(password_reset::Column::UserId.eq(user.id))
        .filter(password_reset::Column::CreatedAt.gt(now - Duration::minutes(RESET_EVERY_MINUTES)))
        .count(&txn)
        .await?;
    if recent > 0 {
        return Ok(());
    }

    let token = tokens::random_token();
    password_reset::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        token_hash: Set(tokens::hash_token(&token)),
        created_at: Set(now),
        expires_at: Set(now + Duration::minutes(RESET_VALID_MINUTES)),
        used_at: Set(None),
    }
    .insert(&txn)
    .await?;
    let base = state
        .config
        .cors_origins
        .first()
        .cloned()
        .unwrap_or_else(|| state.config.public_url());
    let link = format!("{base}/reset-password?token={token}");
    crate::email::notices::password_reset(&txn, &user, &link, now).await?;
    txn.commit().await?;
    tracing::info!(user.id = %user.id, "password reset requested");
    Ok(())
}

/// Sets a new password with a reset token: once, within the hour. Every
/// session of the account ends, since whoever held them may be the reason
/// for the reset.
pub async fn reset_password(state: &AppState, token: &str, new_password: &str) -> AppResult<()> {
    password::validate(new_password, "newPassword")?;
    let hash = password::hash(new_password).await?;
    let now = state.clock.now();
    let invalid = || AppError::bad_input("token", "this reset link is invalid or has expired");

    let txn = db::begin_write(&state.db).await?;
    let claimed = password_reset::Entity::update_many()
        .col_expr(password_reset::Column::UsedAt, Expr::value(now))
        .filter(password_reset::Column::TokenHash.eq(tokens::hash_token(token)))
        .filter(password_reset::Column::UsedAt.is_null())
        .filter(password_reset::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?;
    if claimed.rows_affected != 1 {
        return Err(invalid());
    }
    let reset = password_reset::Entity::find()
        .filter(password_reset::Column::TokenHash.eq(tokens::hash_token(token)))
        .one(&txn)
        .await?
        .ok_or_else(invalid)?;
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(hash))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(reset.user_id))
        .exec(&txn)
        .await?;
    revoke_all_sessions(&txn, reset.user_id, now).await?;
    txn.commit().await?;
    tracing::info!(user.id = %reset.user_id, "password reset");
    Ok(())
}
