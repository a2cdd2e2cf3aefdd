//! `auditLogs` for admins, newest first.

use async_graphql::{ComplexObject, Context, ID, InputObject, Json, Object, SimpleObject};
use sea_orm::{ColumnTrait, Condition};

use crate::error::AppError;

use super::entity;
use crate::accounts::graphql::UserObject;
use crate::accounts::{Role, RoleGuard};
use crate::app::AppState;
use crate::graphql::loaders;
use crate::graphql::pagination::{CountedConnection, PageRequest, parse_id};
use crate::graphql::scalars::DateTimeScalar;

#[derive(SimpleObject)]
#[graphql(name = "AuditLog", complex)]
pub struct AuditLogObject {
    pub id: ID,
    #[graphql(skip)]
    pub user_id: Option<uuid::Uuid>,
    pub action: String,
    pub target: String,
    pub timestamp: DateTimeScalar,
    pub details: Option<Json<serde_json::Value>>,
}

#[ComplexObject]
impl AuditLogObject {
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<UserObject>> {
        let Some(id) = self.user_id else {
            return Ok(None);
        };
        Ok(loaders::user(ctx, id).await?.map(UserObject::from))
    }
}

impl From<entity::Model> for AuditLogObject {
    fn from(m: entity::Model) -> Self {
        Self {
            id: ID(m.id.to_string()),
            user_id: m.user_id,
            action: m.action,
            target: m.target,
            timestamp: m.timestamp.into(),
            details: m.details.map(Json),
        }
    }
}

#[derive(InputObject, Default)]
pub struct AuditLogFilter {
    pub user_id: Option<ID>,
    pub action: Option<String>,
    pub target: Option<String>,
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    #[graphql(
        guard = "RoleGuard::new(Role::Admin)",
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity"
    )]
    async fn audit_logs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<AuditLogFilter>,
    ) -> async_graphql::Result<CountedConnection<AuditLogObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let page = PageRequest::new(ctx, first, after)?;
        let filter = filter.unwrap_or_default();

        let condition = filter_condition(filter)?;
        let page = super::list(&state.db, condition, &page).await?;
        Ok(page.map(AuditLogObject::from).into())
    }
}

fn filter_condition(filter: AuditLogFilter) -> Result<Condition, AppError> {
    let mut condition = Condition::all();
    if let Some(user_id) = &filter.user_id {
        condition = condition.add(entity::Column::UserId.eq(parse_id(user_id, "userId")?));
    }
    if let Some(action) = filter.action {
        condition = condition.add(entity::Column::Action.eq(action));
    }
    if let Some(target) = filter.target {
        condition = condition.add(entity::Column::Target.eq(target.to_lowercase()));
    }
    Ok(condition)
}
