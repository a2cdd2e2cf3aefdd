//! The whole data model: later migrations add columns, not tables.
//!
//! Conventions: UUID primary keys; timestamps are `timestamptz` on PostgreSQL
//! and RFC 3339 UTC text on SQLite (the application always binds the time, so
//! both sort the same); money is an integer amount of minor units beside an
//! ISO 4217 code; statuses are upper-case strings matching the GraphQL enums.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_users(manager).await?;
        create_refresh_tokens(manager).await?;
        create_password_resets(manager).await?;
        create_media(manager).await?;
        create_events(manager).await?;
        create_tickets(manager).await?;
        create_payments(manager).await?;
        create_refunds(manager).await?;
        create_webhook_events(manager).await?;
        create_emails(manager).await?;
        create_audit_logs(manager).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Alias::new("audit_logs"),
            Alias::new("emails"),
            Alias::new("webhook_events"),
            Alias::new("refunds"),
            Alias::new("payments"),
            Alias::new("tickets"),
            Alias::new("events"),
            Alias::new("media"),
            Alias::new("password_resets"),
            Alias::new("refresh_tokens"),
            Alias::new("users"),
        ];
        for table in tables {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            raw(
                manager,
                "DROP FUNCTION IF EXISTS audit_logs_refuse_change()",
            )
            .await?;
        }
        Ok(())
    }
}

/// Runs a statement that sea-query cannot express (expression and partial
/// indexes); the SQL given must be valid on both backends.
async fn raw(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    columns: &[&'static str],
) -> Result<(), DbErr> {
    let mut stmt = Index::create();
    stmt.name(name).table(table);
    for column in columns {
        stmt.col(Alias::new(*column));
    }
    manager.create_index(stmt.to_owned()).await
}

fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .to_owned()
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Name,
    Email,
    EmailKey,
    SearchText,
    PasswordHash,
    Phone,
    Locale,
    Role,
    CreatedAt,
    UpdatedAt,
}

async fn create_users(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Users::Table)
                .col(pk_uuid(Users::Id))
                .col(string(Users::Name))
                .col(string(Users::Email))
                .col(string(Users::EmailKey))
                .col(text(Users::SearchText))
                .col(string(Users::PasswordHash))
                .col(string_null(Users::Phone))
                .col(string_len(Users::Locale, 8).default("es"))
                .col(string_len(Users::Role, 16).default("MEMBER"))
                .col(timestamp_with_time_zone(Users::CreatedAt))
                .col(timestamp_with_time_zone(Users::UpdatedAt))
                .to_owned(),
        )
        .await?;

    // Case-insensitive uniqueness lives in the database, so two concurrent
    // registrations of "Ana@x.org" and "ANA@x.org" cannot both succeed. The
    // key is folded by the application (SQLite's lower() knows only ASCII,
    // and "Élodie" must collide with "élodie" on both databases).
    manager
        .create_index(
            Index::create()
                .name("users_email_key")
                .table(Users::Table)
                .col(Users::EmailKey)
                .unique()
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "users_created_at_idx",
        Users::Table,
        &["created_at", "id"],
    )
    .await
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    UserId,
    FamilyId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    RevokedAt,
}

async fn create_refresh_tokens(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(RefreshTokens::Table)
                .col(pk_uuid(RefreshTokens::Id))
                .col(uuid(RefreshTokens::UserId))
                .col(uuid(RefreshTokens::FamilyId))
                .col(string_uniq(RefreshTokens::TokenHash))
                .col(timestamp_with_time_zone(RefreshTokens::CreatedAt))
                .col(timestamp_with_time_zone(RefreshTokens::ExpiresAt))
                .col(timestamp_with_time_zone_null(RefreshTokens::UsedAt))
                .col(timestamp_with_time_zone_null(RefreshTokens::RevokedAt))
                .foreign_key(&mut fk(
                    "refresh_tokens_user_id_fkey",
                    (RefreshTokens::Table, RefreshTokens::UserId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "refresh_tokens_family_idx",
        RefreshTokens::Table,
        &["family_id"],
    )
    .await?;
    index(
        manager,
        "refresh_tokens_user_idx",
        RefreshTokens::Table,
        &["user_id"],
    )
    .await
}

#[derive(DeriveIden)]
enum PasswordResets {
    Table,
    Id,
    UserId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

async fn create_password_resets(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(PasswordResets::Table)
                .col(pk_uuid(PasswordResets::Id))
                .col(uuid(PasswordResets::UserId))
                .col(string_uniq(PasswordResets::TokenHash))
                .col(timestamp_with_time_zone(PasswordResets::CreatedAt))
                .col(timestamp_with_time_zone(PasswordResets::ExpiresAt))
                .col(timestamp_with_time_zone_null(PasswordResets::UsedAt))
                .foreign_key(&mut fk(
                    "password_resets_user_id_fkey",
                    (PasswordResets::Table, PasswordResets::UserId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "password_resets_user_idx",
        PasswordResets::Table,
        &["user_id", "created_at"],
    )
    .await
}

#[derive(DeriveIden)]
enum Media {
    Table,
    Id,
    StorageKey,
    ThumbnailKey,
    ContentType,
    Size,
    Width,
    Height,
    RelatedId,
    UploadedBy,
    CreatedAt,
}

async fn create_media(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Media::Table)
                .col(pk_uuid(Media::Id))
                .col(string_uniq(Media::StorageKey))
                .col(string_null(Media::ThumbnailKey))
                .col(string_len(Media::ContentType, 64))
                .col(big_integer(Media::Size))
                .col(integer_null(Media::Width))
                .col(integer_null(Media::Height))
                .col(uuid_null(Media::RelatedId))
                .col(uuid_null(Media::UploadedBy))
                .col(timestamp_with_time_zone(Media::CreatedAt))
                .foreign_key(&mut fk(
                    "media_uploaded_by_fkey",
                    (Media::Table, Media::UploadedBy),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "media_created_at_idx",
        Media::Table,
        &["created_at", "id"],
    )
    .await?;
    index(manager, "media_related_idx", Media::Table, &["related_id"]).await
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    Slug,
    Title,
    Description,
    StartsAt,
    EndsAt,
    Timezone,
    Location,
    SearchText,
    PriceMinor,
    Currency,
    Capacity,
    Status,
    BannerId,
    CancelReason,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

async fn create_events(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Events::Table)
                .col(pk_uuid(Events::Id))
                .col(string_uniq(Events::Slug))
                .col(string(Events::Title))
                .col(text(Events::Description))
                .col(timestamp_with_time_zone(Events::StartsAt))
                .col(timestamp_with_time_zone(Events::EndsAt))
                .col(string_len(Events::Timezone, 64))
                .col(string(Events::Location))
                .col(text(Events::SearchText))
                .col(big_integer_null(Events::PriceMinor))
                .col(char_len_null(Events::Currency, 3))
                .col(integer(Events::Capacity))
                .col(string_len(Events::Status, 16))
                .col(uuid_null(Events::BannerId))
                .col(text_null(Events::CancelReason))
                .col(uuid_null(Events::CreatedBy))
                .col(timestamp_with_time_zone(Events::CreatedAt))
                .col(timestamp_with_time_zone(Events::UpdatedAt))
                .check(Expr::col(Events::Capacity).gte(0))
                .check(Expr::col(Events::EndsAt).gt(Expr::col(Events::StartsAt)))
                .foreign_key(&mut fk(
                    "events_banner_id_fkey",
                    (Events::Table, Events::BannerId),
                    (Media::Table, Media::Id),
                    ForeignKeyAction::Restrict,
                ))
                .foreign_key(&mut fk(
                    "events_created_by_fkey",
                    (Events::Table, Events::CreatedBy),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
        )
        .await?;

    // The public list filters on status and walks (starts_at, id) pages.
    index(
        manager,
        "events_status_starts_idx",
        Events::Table,
        &["status", "starts_at", "id"],
    )
    .await?;
    index(
        manager,
        "events_starts_idx",
        Events::Table,
        &["starts_at", "id"],
    )
    .await?;
    index(manager, "events_banner_idx", Events::Table, &["banner_id"]).await
}

#[derive(DeriveIden)]
enum Tickets {
    Table,
    Id,
    EventId,
    UserId,
    Status,
    Code,
    PriceMinor,
    Currency,
    ExpiresAt,
    CheckedInAt,
    CheckedInBy,
    CreatedAt,
    UpdatedAt,
}

async fn create_tickets(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Tickets::Table)
                .col(pk_uuid(Tickets::Id))
                .col(uuid(Tickets::EventId))
                .col(uuid(Tickets::UserId))
                .col(string_len(Tickets::Status, 16))
                .col(string_null(Tickets::Code))
                .col(big_integer_null(Tickets::PriceMinor))
                .col(char_len_null(Tickets::Currency, 3))
                .col(timestamp_with_time_zone_null(Tickets::ExpiresAt))
                .col(timestamp_with_time_zone_null(Tickets::CheckedInAt))
                .col(uuid_null(Tickets::CheckedInBy))
                .col(timestamp_with_time_zone(Tickets::CreatedAt))
                .col(timestamp_with_time_zone(Tickets::UpdatedAt))
                .foreign_key(&mut fk(
                    "tickets_event_id_fkey",
                    (Tickets::Table, Tickets::EventId),
                    (Events::Table, Events::Id),
                    ForeignKeyAction::Restrict,
                ))
                .foreign_key(&mut fk(
                    "tickets_user_id_fkey",
                    (Tickets::Table, Tickets::UserId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::Restrict,
                ))
                .foreign_key(&mut fk(
                    "tickets_checked_in_by_fkey",
                    (Tickets::Table, Tickets::CheckedInBy),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
        )
        .await?;

    // One active ticket per person per event, kept by the database itself.
    raw(
        manager,
        "CREATE UNIQUE INDEX tickets_one_active_key ON tickets (event_id, user_id) \
         WHERE status IN ('PENDING', 'CONFIRMED')",
    )
    .await?;
    raw(
        manager,
        "CREATE UNIQUE INDEX tickets_code_key ON tickets (code) WHERE code IS NOT NULL",
    )
    .await?;
    index(
        manager,
        "tickets_event_status_idx",
        Tickets::Table,
        &["event_id", "status"],
    )
    .await?;
    index(
        manager,
        "tickets_event_created_idx",
        Tickets::Table,
        &["event_id", "created_at", "id"],
    )
    .await?;
    index(
        manager,
        "tickets_user_created_idx",
        Tickets::Table,
        &["user_id", "created_at", "id"],
    )
    .await?;
    index(
        manager,
        "tickets_status_expires_idx",
        Tickets::Table,
        &["status", "expires_at"],
    )
    .await
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    TicketId,
    UserId,
    Provider,
    Status,
    AmountMinor,
    Currency,
    RefundedMinor,
    Reference,
    ProviderPaymentId,
    ManualRefundRequired,
    CreatedAt,
    UpdatedAt,
}

async fn create_payments(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Payments::Table)
                .col(pk_uuid(Payments::Id))
                .col(uuid(Payments::TicketId))
                .col(uuid(Payments::UserId))
                .col(string_len(Payments::Provider, 16))
                .col(string_len(Payments::Status, 24))
                .col(big_integer(Payments::AmountMinor))
                .col(char_len(Payments::Currency, 3))
                .col(big_integer(Payments::RefundedMinor).default(0))
                .col(string_null(Payments::Reference))
                .col(string_null(Payments::ProviderPaymentId))
                .col(boolean(Payments::ManualRefundRequired).default(false))
                .col(timestamp_with_time_zone(Payments::CreatedAt))
                .col(timestamp_with_time_zone(Payments::UpdatedAt))
                .check(Expr::col(Payments::AmountMinor).gte(0))
                .check(Expr::col(Payments::RefundedMinor).gte(0))
                .check(Expr::col(Payments::RefundedMinor).lte(Expr::col(Payments::AmountMinor)))
                .foreign_key(&mut fk(
                    "payments_ticket_id_fkey",
                    (Payments::Table, Payments::TicketId),
                    (Tickets::Table, Tickets::Id),
                    ForeignKeyAction::Restrict,
                ))
                .foreign_key(&mut fk(
                    "payments_user_id_fkey",
                    (Payments::Table, Payments::UserId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::Restrict,
                ))
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "payments_ticket_idx",
        Payments::Table,
        &["ticket_id"],
    )
    .await?;
    index(
        manager,
        "payments_status_created_idx",
        Payments::Table,
        &["status", "created_at"],
    )
    .await?;
    index(
        manager,
        "payments_created_idx",
        Payments::Table,
        &["created_at", "id"],
    )
    .await?;
    index(
        manager,
        "payments_provider_reference_idx",
        Payments::Table,
        &["provider", "reference"],
    )
    .await
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Id,
    PaymentId,
    AmountMinor,
    Status,
    ProviderReference,
    RequestedBy,
    CreatedAt,
    UpdatedAt,
}

async fn create_refunds(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Refunds::Table)
                .col(pk_uuid(Refunds::Id))
                .col(uuid(Refunds::PaymentId))
                .col(big_integer(Refunds::AmountMinor))
                .col(string_len(Refunds::Status, 16))
                .col(string_null(Refunds::ProviderReference))
                .col(uuid_null(Refunds::RequestedBy))
                .col(timestamp_with_time_zone(Refunds::CreatedAt))
                .col(timestamp_with_time_zone(Refunds::UpdatedAt))
                .check(Expr::col(Refunds::AmountMinor).gt(0))
                .foreign_key(&mut fk(
                    "refunds_payment_id_fkey",
                    (Refunds::Table, Refunds::PaymentId),
                    (Payments::Table, Payments::Id),
                    ForeignKeyAction::Restrict,
                ))
                .foreign_key(&mut fk(
                    "refunds_requested_by_fkey",
                    (Refunds::Table, Refunds::RequestedBy),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "refunds_payment_idx",
        Refunds::Table,
        &["payment_id"],
    )
    .await
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Id,
    Provider,
    ProviderEventId,
    Payload,
    ReceivedAt,
    ProcessedAt,
    Outcome,
}

async fn create_webhook_events(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(WebhookEvents::Table)
                .col(pk_uuid(WebhookEvents::Id))
                .col(string_len(WebhookEvents::Provider, 16))
                .col(string(WebhookEvents::ProviderEventId))
                .col(text(WebhookEvents::Payload))
                .col(timestamp_with_time_zone(WebhookEvents::ReceivedAt))
                .col(timestamp_with_time_zone_null(WebhookEvents::ProcessedAt))
                .col(string_null(WebhookEvents::Outcome))
                .to_owned(),
        )
        .await?;

    // A provider delivers the same event more than once; this key is what
    // makes processing exactly-once.
    manager
        .create_index(
            Index::create()
                .name("webhook_events_provider_event_key")
                .table(WebhookEvents::Table)
                .col(WebhookEvents::Provider)
                .col(WebhookEvents::ProviderEventId)
                .unique()
                .to_owned(),
        )
        .await
}

#[derive(DeriveIden)]
enum Emails {
    Table,
    Id,
    UserId,
    ToAddress,
    Subject,
    Body,
    BodyHtml,
    Template,
    DedupeKey,
    Status,
    Attempts,
    LastError,
    NextAttemptAt,
    LockedUntil,
    SentAt,
    CreatedAt,
    UpdatedAt,
}

async fn create_emails(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Emails::Table)
                .col(pk_uuid(Emails::Id))
                .col(uuid_null(Emails::UserId))
                .col(string(Emails::ToAddress))
                .col(string(Emails::Subject))
                .col(text(Emails::Body))
                .col(text_null(Emails::BodyHtml))
                .col(string_len_null(Emails::Template, 64))
                .col(string_null(Emails::DedupeKey))
                .col(string_len(Emails::Status, 16))
                .col(integer(Emails::Attempts).default(0))
                .col(text_null(Emails::LastError))
                .col(timestamp_with_time_zone(Emails::NextAttemptAt))
                .col(timestamp_with_time_zone_null(Emails::LockedUntil))
                .col(timestamp_with_time_zone_null(Emails::SentAt))
                .col(timestamp_with_time_zone(Emails::CreatedAt))
                .col(timestamp_with_time_zone(Emails::UpdatedAt))
                .foreign_key(&mut fk(
                    "emails_user_id_fkey",
                    (Emails::Table, Emails::UserId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
        )
        .await?;

    // A transactional email (say, "ticket confirmed" for one ticket) is queued
    // at most once, however often the event that causes it is replayed.
    raw(
        manager,
        "CREATE UNIQUE INDEX emails_dedupe_key ON emails (dedupe_key) WHERE dedupe_key IS NOT NULL",
    )
    .await?;
    index(
        manager,
        "emails_status_next_idx",
        Emails::Table,
        &["status", "next_attempt_at"],
    )
    .await?;
    index(
        manager,
        "emails_created_idx",
        Emails::Table,
        &["created_at", "id"],
    )
    .await?;
    index(manager, "emails_user_idx", Emails::Table, &["user_id"]).await
}

#[derive(DeriveIden)]
enum AuditLogs {
    Table,
    Id,
    UserId,
    Action,
    Target,
    Details,
    Timestamp,
}

async fn create_audit_logs(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(AuditLogs::Table)
                .col(pk_uuid(AuditLogs::Id))
                .col(uuid_null(AuditLogs::UserId))
                .col(string_len(AuditLogs::Action, 64))
                .col(string(AuditLogs::Target))
                .col(json_null(AuditLogs::Details))
                .col(timestamp_with_time_zone(AuditLogs::Timestamp))
                .foreign_key(&mut fk(
                    "audit_logs_user_id_fkey",
                    (AuditLogs::Table, AuditLogs::UserId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::Restrict,
                ))
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "audit_logs_timestamp_idx",
        AuditLogs::Table,
        &["timestamp", "id"],
    )
    .await?;
    index(
        manager,
        "audit_logs_user_idx",
        AuditLogs::Table,
        &["user_id", "timestamp"],
    )
    .await?;
    index(
        manager,
        "audit_logs_action_idx",
        AuditLogs::Table,
        &["action", "timestamp"],
    )
    .await?;
    index(
        manager,
        "audit_logs_target_idx",
        AuditLogs::Table,
        &["target", "timestamp"],
    )
    .await?;
    make_audit_log_append_only(manager).await
}

/// The audit log is evidence: the database itself refuses to change or remove
/// an entry, whoever asks.
async fn make_audit_log_append_only(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    if manager.get_database_backend() == DatabaseBackend::Sqlite {
        for verb in ["UPDATE", "DELETE"] {
            raw(
                manager,
                &format!(
                    "CREATE TRIGGER audit_logs_refuse_{} BEFORE {verb} ON audit_logs \
                     BEGIN SELECT RAISE(ABORT, 'audit_logs is append-only'); END",
                    verb.to_lowercase()
                ),
            )
            .await?;
        }
        return Ok(());
    }
    raw(
        manager,
        "CREATE FUNCTION audit_logs_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'audit_logs is append-only'; END $$",
    )
    .await?;
    raw(
        manager,
        "CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_logs \
         FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_refuse_change()",
    )
    .await
}
