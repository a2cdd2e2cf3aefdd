//! Tickets: seats booked for events, holds that lapse, and check-in.

pub mod codes;
pub mod entity;
pub mod graphql;
pub mod rest;
pub mod service;
