//! Accounts: registration, sign-in, tokens, roles and the `User` type.

pub mod auth;
pub mod entity;
pub mod graphql;
pub mod password;
pub mod rest;
pub mod service;
pub mod tokens;

pub use auth::{CurrentUser, RoleGuard, Viewer};
pub use entity::Role;
