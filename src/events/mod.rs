//! Events: the meetups that members book tickets for.

pub mod entity;
pub mod graphql;
pub mod service;
