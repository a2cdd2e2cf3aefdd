//! The outbox worker: claims queued emails, sends each, records the result.
//! Safe on many processes: on PostgreSQL rows are claimed with `FOR UPDATE
//! SKIP LOCKED`; on SQLite the claim is an exclusive write transaction. A
//! claim is a lease (`locked_until`), so a worker that dies mid-way only
//! delays its emails. Each recipient is a row of its own: a crash between
//! sending and recording can repeat at most the one email in hand.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};

use super::entity::{self as email, EmailStatus};
use crate::app::AppState;
use crate::db;
use crate::error::AppResult;

pub const MAX_ATTEMPTS: i32 = 5;
const BATCH: u64 = 20;
const LEASE_SECONDS: i64 = 120;

/// Seconds to wait before attempt `n + 1`: 30 s, 1 min, 2 min, 4 min, …
pub fn backoff(attempts: i32) -> Duration {
    Duration::seconds(30 * 2_i64.pow(attempts.clamp(1, 10) as u32 - 1))
}

/// Sends what is due; returns how many emails were attempted.
pub async fn run_once(state: &AppState) -> AppResult<usize> {
    let now = state.clock.now();
    let claimed = claim(state, now).await?;
    let count = claimed.len();
    for message in claimed {
        let result = state.mailer.send(&message).await;
        record(state, message, result).await?;
    }
    Ok(count)
}

async fn claim(state: &AppState, now: DateTime<Utc>) -> AppResult<Vec<email::Model>> {
    let due = Condition::all()
        .add(email::Column::Status.eq(EmailStatus::Queued))
        .add(email::Column::NextAttemptAt.lte(now))
        .add(
            Condition::any()
                .add(email::Column::LockedUntil.is_null())
                .add(email::Column::LockedUntil.lt(now)),
        );
    let txn = db::begin_write(&state.db).await?;
    let mut query = email::Entity::find()
        .filter(due)
        .order_by_asc(email::Column::NextAttemptAt)
        .limit(BATCH);
    if db::is_postgres(&txn) {
        query = query.lock_with_behavior(
            sea_orm::sea_query::LockType::Update,
            sea_orm::sea_query::LockBehavior::SkipLocked,
        );
    }
    let rows = query.all(&txn).await?;
    let ids: Vec<_> = rows.iter().map(|r| r.id).collect();
    if !ids.is_empty() {
        email::Entity::update_many()
            .col_expr(
                email::Column::LockedUntil,
                Expr::value(now + Duration::seconds(LEASE_SECONDS)),
            )
            .col_expr(
                email::Column::Attempts,
                Expr::col(email::Column::Attempts).add(Expr::value(1)),
            )
            .filter(email::Column::Id.is_in(ids))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(rows
        .into_iter()
        .map(|r| email::Model {
            attempts: r.attempts + 1,
            ..r
        })
        .collect())
}

async fn record(
    state: &AppState,
    message: email::Model,
    result: Result<(), String>,
) -> AppResult<()> {
    let now = state.clock.now();
    let attempts = message.attempts;
    let id = message.id;
    let mut model: email::ActiveModel = message.into();
    model.locked_until = Set(None);
    model.updated_at = Set(now);
    match result {
        Ok(()) => {
            model.status = Set(EmailStatus::Sent);
            model.sent_at = Set(Some(now));
            model.last_error = Set(None);
            metrics::counter!("emails_sent_total").increment(1);
        }
        Err(error) => {
            tracing::warn!(email.id = %id, attempts, error = %error, "email not sent");
            model.last_error = Set(Some(error.chars().take(1000).collect()));
            if attempts >= MAX_ATTEMPTS {
                model.status = Set(EmailStatus::Failed);
                metrics::counter!("emails_failed_total").increment(1);
            } else {
                model.next_attempt_at = Set(now + backoff(attempts));
            }
        }
    }
    model.update(&state.db).await?;
    Ok(())
}

/// Keeps sending until the process stops.
pub async fn run_forever(state: AppState) {
    loop {
        match run_once(&state).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "email worker"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        assert_eq!(backoff(1), Duration::seconds(30));
        assert_eq!(backoff(2), Duration::seconds(60));
        assert_eq!(backoff(4), Duration::seconds(240));
    }
}
