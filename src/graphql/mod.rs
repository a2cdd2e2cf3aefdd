//! The GraphQL schema: each domain's query and mutation objects merged at one
//! root, with the limits that make it safe to expose.

pub mod limits;
pub mod loaders;
pub mod metrics;
pub mod pagination;
pub mod scalars;

use async_graphql::{EmptySubscription, MergedObject, Schema, SchemaBuilder};

use crate::accounts::graphql::{AccountMutation, AccountQuery};
use crate::audit::graphql::AuditQuery;
use crate::config::Config;
use crate::email::graphql::{EmailMutation, EmailQuery};
use crate::events::graphql::{EventMutation, EventQuery};
use crate::media::graphql::{MediaMutation, MediaQuery};
use crate::payments::graphql::{PaymentMutation, PaymentQuery};
use crate::tickets::graphql::{TicketMutation, TicketQuery};

#[derive(MergedObject, Default)]
pub struct Query(
    AccountQuery,
    EventQuery,
    TicketQuery,
    PaymentQuery,
    EmailQuery,
    MediaQuery,
    AuditQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    AccountMutation,
    EventMutation,
    TicketMutation,
    PaymentMutation,
    EmailMutation,
    MediaMutation,
);

pub type AppSchema = Schema<Query, Mutation, EmptySubscription>;

/// The schema's shape, without data: what `export-schema` prints.
pub fn builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
}

/// The schema as served, with the configured limits. Depth and complexity
/// are computed over the executed selection, fragments included. The
/// metrics extension comes first so that it wraps the others: it times and
/// counts an operation however another extension ends it.
pub fn build(config: &Config) -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    let mut schema = builder()
        .extension(metrics::OperationMetrics::new())
        .limit_depth(config.graphql_max_depth)
        .limit_complexity(config.graphql_max_complexity)
        .limit_recursive_depth(32)
        .limit_directives(8)
        .extension(limits::RootFieldLimit::new(config.graphql_max_root_fields));
    if !config.introspection_enabled() {
        schema = schema.disable_introspection();
    }
    schema
}

/// The SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
