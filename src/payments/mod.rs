//! Payments: Stripe, MercadoPago and cash, webhooks applied exactly once,
//! and refunds that never exceed what was paid.

pub mod entity;
pub mod gateways;
pub mod graphql;
pub mod reconcile;
pub mod service;
pub mod signatures;
pub mod units;
pub mod webhooks;
