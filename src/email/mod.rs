//! Email: an outbox table filled in the same transaction as the change that
//! causes each message, a worker that delivers, templates in Spanish and
//! English, and organizers' announcements.

pub mod entity;
pub mod graphql;
pub mod notices;
pub mod outbox;
pub mod templates;
pub mod transport;
pub mod worker;
