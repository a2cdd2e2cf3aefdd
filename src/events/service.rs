//! Event rules: validation, slugs, visibility, and the writes organizers make.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect, Set, Unchanged,
};
use serde_json::json;
use uuid::Uuid;

use super::entity::{self as event, EventStatus};
use crate::accounts::{CurrentUser, Role, Viewer};
use crate::app::AppState;
use crate::audit;
use crate::db;
use crate::error::{AppError, AppResult, unique_violation};
use crate::graphql::pagination::{Cursor, Direction, Page, PageRequest, keyset_page, like_pattern};
use crate::media::entity as media;
use crate::money::Money;
use crate::text;
use crate::tickets::entity::{self as ticket, TicketStatus};

pub const DEFAULT_TIMEZONE: &str = "America/Asuncion";
const MAX_CAPACITY: i32 = 1_000_000;
const MAX_SLUG_LEN: usize = 80;

/// The writable fields of an event; `None` leaves a field as it is (on
/// create, the required ones are guaranteed present by the GraphQL input).
#[derive(Debug, Default, Clone)]
pub struct EventFields {
    pub title: Option<String>,
    pub description: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub timezone: Option<String>,
    pub location: Option<String>,
    /// `Some(None)`: make the event free.
    pub price: Option<Option<(rust_decimal::Decimal, String)>>,
    pub capacity: Option<i32>,
    pub status: Option<EventStatus>,
    pub banner_id: Option<Option<Uuid>>,
    pub slug: Option<String>,
}

#[derive(Debug, Default)]
pub struct EventFilter {
    pub status: Option<EventStatus>,
    pub starts_after: Option<DateTime<Utc>>,
    pub starts_before: Option<DateTime<Utc>>,
    pub search: Option<String>,
}

/// Staff and above see drafts; everyone else sees only what was published.
fn can_see_drafts(viewer: &Viewer) -> bool {
    viewer.has_role(Role::Staff)
}

fn visible_to(viewer: &Viewer, event: &event::Model) -> bool {
    event.status != EventStatus::Draft || can_see_drafts(viewer)
}

pub async fn get(db: &impl ConnectionTrait, viewer: &Viewer, id: Uuid) -> AppResult<event::Model> {
    event::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|e| visible_to(viewer, e))
        .ok_or(AppError::NotFound("Event"))
}

pub async fn get_by_slug(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    slug: &str,
) -> AppResult<event::Model> {
    event::Entity::find()
        .filter(event::Column::Slug.eq(slug.trim().to_lowercase()))
        .one(db)
        .await?
        .filter(|e| visible_to(viewer, e))
        .ok_or(AppError::NotFound("Event"))
}

pub async fn list(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    filter: EventFilter,
    page: &PageRequest,
) -> AppResult<Page<event::Model>> {
    let mut condition = Condition::all();
    if !can_see_drafts(viewer) {
        condition = condition.add(event::Column::Status.is_in(EventStatus::PUBLIC));
    }
    if let Some(status) = filter.status {
        condition = condition.add(event::Column::Status.eq(status));
    }
    if let Some(after) = filter.starts_after {
        condition = condition.add(event::Column::StartsAt.gte(after));
    }
    if let Some(before) = filter.starts_before {
        condition = condition.add(event::Column::StartsAt.lt(before));
    }
    if let Some(term) = text::search_term("search", filter.search.as_deref())? {
        condition = condition.add(event::Column::SearchText.like(like_pattern(&term)));
    }

    keyset_page::<event::Entity>(
        db,
        condition,
        page,
        (event::Column::StartsAt, event::Column::Id),
        Direction::Ascending,
        |row| Cursor::new(row.starts_at, row.id),
    )
    .await
}

fn validate_text(field: &str, value: &str, min: usize, max: usize) -> AppResult<String> {
    let trimmed = value.trim();
    text::check_clean(field, trimmed, field == "description")?;
    let len = trimmed.chars().count();
    if len < min || len > max {
        return Err(AppError::bad_input(
            field,
            format!("must be {min} to {max} characters"),
        ));
    }
    Ok(trimmed.to_string())
}

fn validate_timezone(raw: &str) -> AppResult<String> {
    raw.trim()
        .parse::<Tz>()
        .map(|tz| tz.name().to_string())
        .map_err(|_| AppError::bad_input("timezone", format!("{raw} is not an IANA time zone")))
}

fn validate_slug(raw: &str) -> AppResult<String> {
    let slug = raw.trim().to_lowercase();
    let well_formed = !slug.is_empty()
        && slug.len() <= MAX_SLUG_LEN
        && slug.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !well_formed {
        return Err(AppError::bad_input(
            "slug",
            "use lowercase letters, digits and single hyphens",
        ));
    }
    Ok(slug)
}

fn search_text(title: &str, description: &str, location: &str) -> String {
    text::fold(&format!("{title}\n{description}\n{location}"))
}

fn slug_base(title: &str) -> String {
    let mut base = slug::slugify(title);
    base.truncate(MAX_SLUG_LEN - 8);
    let base = base.trim_end_matches('-').to_string();
    if base.is_empty() {
        "event".into()
    } else {
        base
    }
}

/// The first free slug among `base`, `base-2`, `base-3`, …
async fn free_slug(db: &impl ConnectionTrait, base: &str) -> AppResult<String> {
    let taken: Vec<String> = event::Entity::find()
        .select_only()
        .column(event::Column::Slug)
        .filter(
            Condition::any()
                .add(event::Column::Slug.eq(base))
                .add(event::Column::Slug.like(format!("{base}-%"))),
        )
        .into_tuple()
        .all(db)
        .await?;
    if !taken.iter().any(|s| s == base) {
        return Ok(base.to_string());
    }
    let next = (2..)
        .find(|n| !taken.iter().any(|s| *s == format!("{base}-{n}")))
        .unwrap_or(2);
    Ok(format!("{base}-{next}"))
}

fn validate_status(status: EventStatus) -> AppResult<EventStatus> {
    if status == EventStatus::Cancelled {
        return Err(AppError::bad_input(
            "status",
            "use cancelEvent to cancel an event",
        ));
    }
    Ok(status)
}

fn validate_capacity(capacity: i32) -> AppResult<i32> {
    if !(0..=MAX_CAPACITY).contains(&capacity) {
        return Err(AppError::bad_input(
            "capacity",
            format!("must be between 0 and {MAX_CAPACITY}"),
        ));
    }
    Ok(capacity)
}

fn validate_price(price: Option<(rust_decimal::Decimal, String)>) -> AppResult<Option<Money>> {
    let Some((amount, currency)) = price else {
        return Ok(None);
    };
    let money = Money::from_decimal(amount, &currency, "price")?;
    // A price of zero is a free event: nothing to pay, confirmed at booking.
    Ok(Some(money).filter(|m| m.minor > 0))
}

async fn check_banner(db: &impl ConnectionTrait, banner: Option<Uuid>) -> AppResult<()> {
    if let Some(id) = banner
        && media::Entity::find_by_id(id).one(db).await?.is_none()
    {
        return Err(AppError::bad_input("bannerId", "no such media"));
    }
    Ok(())
}

/// `field` is the input to blame: the one the caller changed.
fn check_times(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>, field: &str) -> AppResult<()> {
    if ends_at <= starts_at {
        return Err(AppError::bad_input(field, "endsAt must be after startsAt"));
    }
    Ok(())
}

pub async fn create(
    state: &AppState,
    caller: CurrentUser,
    fields: EventFields,
) -> AppResult<event::Model> {
    let missing = |field: &str| AppError::bad_input(field, "is required");
    let title = validate_text(
        "title",
        fields.title.as_deref().ok_or_else(|| missing("title"))?,
        1,
        200,
    )?;
    let description = validate_text(
        "description",
        fields.description.as_deref().unwrap_or_default(),
        0,
        20_000,
    )?;
    let location = validate_text(
        "location",
        fields
            .location
            .as_deref()
            .ok_or_else(|| missing("location"))?,
        1,
        300,
    )?;
    let starts_at = fields.starts_at.ok_or_else(|| missing("startsAt"))?;
    let ends_at = fields.ends_at.ok_or_else(|| missing("endsAt"))?;
    check_times(starts_at, ends_at, "endsAt")?;
    let timezone = validate_timezone(fields.timezone.as_deref().unwrap_or(DEFAULT_TIMEZONE))?;
    let price = validate_price(fields.price.flatten())?;
    let capacity = validate_capacity(fields.capacity.ok_or_else(|| missing("capacity"))?)?;
    let status = validate_status(fields.status.unwrap_or(EventStatus::Draft))?;
    let explicit_slug = fields.slug.as_deref().map(validate_slug).transpose()?;
    let banner_id = fields.banner_id.flatten();

    // A generated slug can lose a race to a concurrent create; try again
    // with the next free one. A slug the organizer chose is theirs to change.
    for _ in 0..5 {
        let txn = db::begin_write(&state.db).await?;
        check_banner(&txn, banner_id).await?;
        let slug = match &explicit_slug {
            Some(slug) => slug.clone(),
            None => free_slug(&txn, &slug_base(&title)).await?,
        };

        let now = state.clock.now();
        let model = event::ActiveModel {
            id: Set(Uuid::now_v7()),
            slug: Set(slug),
            title: Set(title.clone()),
            description: Set(description.clone()),
            starts_at: Set(starts_at),
            ends_at: Set(ends_at),
            timezone: Set(timezone.clone()),
            location: Set(location.clone()),
            search_text: Set(search_text(&title, &description, &location)),
            price_minor: Set(price.map(|m| m.minor)),
            currency: Set(price.map(|m| m.code().to_string())),
            capacity: Set(capacity),
            status: Set(status),
            banner_id: Set(banner_id),
            cancel_reason: Set(None),
            created_by: Set(Some(caller.id)),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let created = match model.insert(&txn).await {
            Ok(created) => created,
            Err(err) if unique_violation(&err, "events_slug_key", "events.slug") => {
                if explicit_slug.is_some() {
                    return Err(AppError::conflict_on("slug", "this slug is taken"));
                }
                continue;
            }
            Err(err) => return Err(err.into()),
        };

        let details = json!({ "slug": created.slug, "status": created.status.as_str() });
        audit::record(
            &txn,
            Some(caller.id),
            "event.create",
            &audit::target("event", created.id),
            details,
            now,
        )
        .await?;
        txn.commit().await?;
        return Ok(created);
    }
    Err(AppError::conflict(
        "could not find a free slug; give one explicitly",
    ))
}

/// Tickets that hold a seat right now: confirmed, or pending and not yet
/// expired.
pub async fn seats_taken(
    db: &impl ConnectionTrait,
    event_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<u64> {
    let holding = Condition::any()
        .add(ticket::Column::Status.eq(TicketStatus::Confirmed))
        .add(
            Condition::all()
                .add(ticket::Column::Status.eq(TicketStatus::Pending))
                .add(ticket::Column::ExpiresAt.gt(now)),
        );
    Ok(ticket::Entity::find()
        .filter(ticket::Column::EventId.eq(event_id))
        .filter(holding)
        .count(db)
        .await?)
}

pub async fn update(
    state: &AppState,
    caller: CurrentUser,
    id: Uuid,
    fields: EventFields,
) -> AppResult<event::Model> {
    let txn = db::begin_write(&state.db).await?;
    let current = event::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(AppError::NotFound("Event"))?;
    if current.status == EventStatus::Cancelled {
        return Err(AppError::conflict("a cancelled event cannot be changed"));
    }

    let mut model: event::ActiveModel = current.clone().into();
    let mut changed: Vec<&str> = Vec::new();
    if let Some(title) = &fields.title {
        model.title = Set(validate_text("title", title, 1, 200)?);
        changed.push("title");
    }
    if let Some(description) = &fields.description {
        model.description = Set(validate_text("description", description, 0, 20_000)?);
        changed.push("description");
    }
    if let Some(location) = &fields.location {
        model.location = Set(validate_text("location", location, 1, 300)?);
        changed.push("location");
    }
    if let Some(timezone) = &fields.timezone {
        model.timezone = Set(validate_timezone(timezone)?);
        changed.push("timezone");
    }
    let starts_at = fields.starts_at.unwrap_or(current.starts_at);
    let ends_at = fields.ends_at.unwrap_or(current.ends_at);
    if fields.starts_at.is_some() || fields.ends_at.is_some() {
        let blamed = if fields.ends_at.is_some() {
            "endsAt"
        } else {
            "startsAt"
        };
        check_times(starts_at, ends_at, blamed)?;
        model.starts_at = Set(starts_at);
        model.ends_at = Set(ends_at);
        changed.push("schedule");
    }
    if let Some(price) = fields.price.clone() {
        let price = validate_price(price)?;
        model.price_minor = Set(price.map(|m| m.minor));
        model.currency = Set(price.map(|m| m.code().to_string()));
        changed.push("price");
    }
    if let Some(capacity) = fields.capacity {
        let capacity = validate_capacity(capacity)?;
        let taken = seats_taken(&txn, id, state.clock.now()).await?;
        if (capacity as u64) < taken {
            return Err(AppError::conflict_on(
                "capacity",
                format!("{taken} seats are already taken"),
            ));
        }
        model.capacity = Set(capacity);
        changed.push("capacity");
    }
    if let Some(status) = fields.status {
        model.status = Set(validate_status(status)?);
        changed.push("status");
    }
    if let Some(banner) = fields.banner_id {
        check_banner(&txn, banner).await?;
        model.banner_id = Set(banner);
        changed.push("banner");
    }
    if let Some(slug) = &fields.slug {
        model.slug = Set(validate_slug(slug)?);
        changed.push("slug");
    }

    let now = state.clock.now();
    model.updated_at = Set(now);
    if let (
        Set(title) | Unchanged(title),
        Set(description) | Unchanged(description),
        Set(location) | Unchanged(location),
    ) = (&model.title, &model.description, &model.location)
    {
        model.search_text = Set(search_text(title, description, location));
    }
    let updated = model.update(&txn).await.map_err(|err| {
        if unique_violation(&err, "events_slug_key", "events.slug") {
            AppError::conflict_on("slug", "this slug is taken")
        } else {
            err.into()
        }
    })?;

    let mut details = json!({ "changed": changed });
    if current.status != updated.status {
        details["status"] =
            json!({ "from": current.status.as_str(), "to": updated.status.as_str() });
    }
    audit::record(
        &txn,
        Some(caller.id),
        "event.update",
        &audit::target("event", id),
        details,
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(updated)
}

/// Deletes an event nobody has a ticket for; once tickets exist, an event is
/// history and can only be cancelled.
pub async fn delete(state: &AppState, caller: CurrentUser, id: Uuid) -> AppResult<bool> {
    let txn = db::begin_write(&state.db).await?;
    let current = event::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(AppError::NotFound("Event"))?;
    let tickets = ticket::Entity::find()
        .filter(ticket::Column::EventId.eq(id))
        .count(&txn)
        .await?;
    if tickets > 0 {
        return Err(AppError::conflict(
            "the event has tickets; cancel it instead",
        ));
    }

    event::Entity::delete_by_id(id).exec(&txn).await?;
    let now = state.clock.now();
    let details = json!({ "slug": current.slug, "title": current.title });
    audit::record(
        &txn,
        Some(caller.id),
        "event.delete",
        &audit::target("event", id),
        details,
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_come_from_titles() {
        assert_eq!(
            slug_base("Intercambio de Idiomas: ¡Navidad!"),
            "intercambio-de-idiomas-navidad"
        );
        assert_eq!(slug_base("¿¡!?"), "event");
    }

    #[test]
    fn given_slugs_must_be_well_formed() {
        assert_eq!(validate_slug("Noche-De-Juegos").unwrap(), "noche-de-juegos");
        assert!(validate_slug("with space").is_err());
        assert!(validate_slug("double--hyphen").is_err());
        assert!(validate_slug("-leading").is_err());
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(
            validate_timezone("America/Asuncion").unwrap(),
            "America/Asuncion"
        );
        assert!(validate_timezone("Mars/Olympus").is_err());
    }
}
