//! Tickets: seats booked for events.

pub mod entity;
