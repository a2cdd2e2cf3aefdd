//! Relay cursor pagination over a unique order: a timestamp, then the id to
//! break ties, so walking pages never skips nor repeats a row.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, OutputType, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::LikeExpr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

pub const DEFAULT_PAGE: u64 = 20;
pub const MAX_PAGE: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn new(at: DateTime<Utc>, id: Uuid) -> Self {
        Self { at, id }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.at.timestamp_micros(), self.id))
    }

    pub fn decode(raw: &str) -> AppResult<Self> {
        let invalid = || AppError::bad_input("after", "not a cursor of this list");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (micros, id) = text.split_once('|').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        Ok(Self {
            at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
            id: Uuid::parse_str(id).map_err(|_| invalid())?,
        })
    }

    /// Rows after this cursor in ascending (at, id) order.
    pub fn after_condition(&self, at: impl ColumnTrait, id: impl ColumnTrait) -> Condition {
        Condition::any()
            .add(at.gt(self.at))
            .add(Condition::all().add(at.eq(self.at)).add(id.gt(self.id)))
    }

    /// Rows after this cursor in descending (at, id) order.
    pub fn after_condition_desc(&self, at: impl ColumnTrait, id: impl ColumnTrait) -> Condition {
        Condition::any()
            .add(at.lt(self.at))
            .add(Condition::all().add(at.eq(self.at)).add(id.lt(self.id)))
    }
}

/// A validated `first`/`after` pair, and whether the caller asked for
/// `totalCount` (counting costs a query, so it runs only when asked).
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub first: u64,
    pub after: Option<Cursor>,
    pub wants_total: bool,
}

impl PageRequest {
    pub fn new(ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> AppResult<Self> {
        let mut page = Self::parse(first, after)?;
        page.wants_total = ctx.look_ahead().field("totalCount").exists();
        Ok(page)
    }

    pub fn parse(first: Option<i32>, after: Option<String>) -> AppResult<Self> {
        let first = match first {
            None => DEFAULT_PAGE,
            Some(n) if n < 0 => {
                return Err(AppError::bad_input("first", "first cannot be negative"));
            }
            Some(n) if n as u64 > MAX_PAGE => {
                return Err(AppError::bad_input(
                    "first",
                    format!("first cannot exceed {MAX_PAGE}"),
                ));
            }
            Some(n) => n as u64,
        };
        let after = after.as_deref().map(Cursor::decode).transpose()?;
        Ok(Self {
            first,
            after,
            wants_total: false,
        })
    }
}

pub struct Page<T> {
    pub items: Vec<(Cursor, T)>,
    pub has_next: bool,
    pub has_previous: bool,
    pub total: Option<u64>,
}

impl<T> Page<T> {
    /// Builds a page from rows fetched with `LIMIT first + 1`: the extra row
    /// only tells that there is a next page.
    pub fn from_rows(
        mut rows: Vec<T>,
        page: &PageRequest,
        total: Option<u64>,
        cursor: impl Fn(&T) -> Cursor,
    ) -> Self {
        let has_next = rows.len() as u64 > page.first;
        rows.truncate(page.first as usize);
        Self {
            items: rows.into_iter().map(|row| (cursor(&row), row)).collect(),
            has_next,
            has_previous: page.after.is_some(),
            total,
        }
    }

    /// The rows of the page, in order.
    pub fn models(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.items.iter().map(|(_, t)| t.clone()).collect()
    }

    pub fn map<U>(self, f: impl Fn(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(|(c, t)| (c, f(t))).collect(),
            has_next: self.has_next,
            has_previous: self.has_previous,
            total: self.total,
        }
    }
}

#[derive(SimpleObject)]
pub struct TotalCount {
    pub total_count: i64,
}

pub type CountedConnection<T> = Connection<String, T, TotalCount>;

impl<T: OutputType> From<Page<T>> for CountedConnection<T> {
    fn from(page: Page<T>) -> Self {
        let total = TotalCount {
            total_count: page.total.unwrap_or(0) as i64,
        };
        let mut connection =
            Connection::with_additional_fields(page.has_previous, page.has_next, total);
        connection.edges.extend(
            page.items
                .into_iter()
                .map(|(cursor, node)| Edge::new(cursor.encode(), node)),
        );
        connection
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ascending,
    Descending,
}

/// One page of `E` matching `condition`, in (`at`, `id`) order: the one
/// query shape every list of this API uses. `totalCount` is counted only
/// when asked for.
pub async fn keyset_page<E>(
    db: &impl ConnectionTrait,
    condition: Condition,
    page: &PageRequest,
    (at, id): (E::Column, E::Column),
    direction: Direction,
    cursor: impl Fn(&E::Model) -> Cursor,
) -> AppResult<Page<E::Model>>
where
    E: EntityTrait,
    E::Model: Sync,
{
    let total = match page.wants_total {
        true => Some(E::find().filter(condition.clone()).count(db).await?),
        false => None,
    };
    let mut query = E::find().filter(condition);
    if let Some(after) = &page.after {
        query = query.filter(match direction {
            Direction::Ascending => after.after_condition(at, id),
            Direction::Descending => after.after_condition_desc(at, id),
        });
    }
    let order = match direction {
        Direction::Ascending => Order::Asc,
        Direction::Descending => Order::Desc,
    };
    let rows = query
        .order_by(at, order.clone())
        .order_by(id, order)
        .limit(page.first + 1)
        .all(db)
        .await?;
    Ok(Page::from_rows(rows, page, total, cursor))
}

/// A "contains" pattern for a folded search term (`text::search_term`),
/// with the user's `%` and `_` taken literally. Compare it against a column
/// folded the same way.
pub fn like_pattern(search: &str) -> LikeExpr {
    let escaped = search
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

/// Parses a GraphQL `ID` argument as a UUID in its hyphenated form, in any
/// letter case (braced, URN and hyphen-less forms are not ids of this API).
pub fn parse_id(id: &async_graphql::ID, field: &str) -> AppResult<Uuid> {
    parse_uuid(id.as_str()).ok_or_else(|| AppError::bad_input(field, "not a valid id"))
}

pub fn parse_uuid(raw: &str) -> Option<Uuid> {
    if raw.len() != 36 {
        return None;
    }
    Uuid::parse_str(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor::new(Utc::now(), Uuid::new_v4());
        let decoded = Cursor::decode(&cursor.encode()).unwrap();
        assert_eq!(decoded.id, cursor.id);
        assert_eq!(decoded.at.timestamp_micros(), cursor.at.timestamp_micros());
        assert!(Cursor::decode("not-a-cursor").is_err());
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(PageRequest::parse(None, None).unwrap().first, 20);
        assert_eq!(PageRequest::parse(Some(100), None).unwrap().first, 100);
        assert!(PageRequest::parse(Some(101), None).is_err());
        assert!(PageRequest::parse(Some(-1), None).is_err());
    }
}
