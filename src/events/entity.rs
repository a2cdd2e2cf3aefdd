//! The events table.

use async_graphql::Enum;
use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Enum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum EventStatus {
    #[sea_orm(string_value = "DRAFT")]
    Draft,
    #[sea_orm(string_value = "PUBLISHED")]
    Published,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
    #[sea_orm(string_value = "COMPLETED")]
    Completed,
}

impl EventStatus {
    /// What anonymous callers and members may see.
    pub const PUBLIC: [EventStatus; 3] = [
        EventStatus::Published,
        EventStatus::Cancelled,
        EventStatus::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Draft => "DRAFT",
            EventStatus::Published => "PUBLISHED",
            EventStatus::Cancelled => "CANCELLED",
            EventStatus::Completed => "COMPLETED",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub description: String,
    pub starts_at: DateTimeUtc,
    pub ends_at: DateTimeUtc,
    /// IANA name, e.g. "America/Asuncion".
    pub timezone: String,
    pub location: String,
    /// Title, description and location, folded, for the search filter.
    pub search_text: String,
    /// Minor units of `currency`; both null for a free event.
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    pub capacity: i32,
    pub status: EventStatus,
    pub banner_id: Option<Uuid>,
    pub cancel_reason: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    pub fn price(&self) -> Option<crate::money::Money> {
        let (minor, code) = (self.price_minor?, self.currency.as_deref()?);
        crate::money::Money::from_minor(minor, code)
    }
}
