//! Queueing: sending an email means inserting its row in the transaction
//! of the change that causes it, so a change and its notice commit or
//! vanish together. The worker delivers later.

use chrono::{DateTime, Utc};
use minijinja::Value;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ConnectionTrait, EntityTrait, Set};
use uuid::Uuid;

use super::entity::{self as email, EmailStatus};
use super::templates::{self, Kind};
use crate::accounts::entity::user;
use crate::error::{AppError, AppResult};

/// An email for one user, rendered in their language.
pub struct Notice<'a> {
    pub to: &'a user::Model,
    pub kind: Kind,
    pub context: Value,
    pub trusted_html: Option<String>,
    /// The same key never queues twice (a webhook replayed, a retry).
    pub dedupe_key: Option<String>,
}

pub async fn enqueue(
    db: &impl ConnectionTrait,
    notice: Notice<'_>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let rendered = templates::render(
        notice.kind,
        &notice.to.locale,
        notice.context,
        notice.trusted_html,
    )
    .map_err(|e| AppError::Internal(anyhow::anyhow!("rendering {}: {e}", notice.kind.as_str())))?;
    let row = email::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(Some(notice.to.id)),
        to_address: Set(notice.to.email.clone()),
        subject: Set(rendered.subject),
        body: Set(rendered.text),
        body_html: Set(Some(rendered.html)),
        template: Set(Some(notice.kind.as_str().to_string())),
        dedupe_key: Set(notice.dedupe_key),
        status: Set(EmailStatus::Queued),
        attempts: Set(0),
        last_error: Set(None),
        next_attempt_at: Set(now),
        locked_until: Set(None),
        sent_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    // Inside the caller's transaction a failed INSERT would abort it on
    // PostgreSQL, so a duplicate key is skipped by the database instead.
    let on_duplicate = OnConflict::column(email::Column::DedupeKey)
        .target_and_where(Expr::col(email::Column::DedupeKey).is_not_null())
        .do_nothing()
        .to_owned();
    let inserted = email::Entity::insert(row)
        .on_conflict(on_duplicate)
        .try_insert()
        .exec(db)
        .await?;
    if matches!(inserted, sea_orm::TryInsertResult::Conflicted) {
        tracing::debug!(kind = notice.kind.as_str(), "email already queued");
    }
    metrics::counter!("emails_queued_total", "template" => notice.kind.as_str()).increment(1);
    Ok(())
}
