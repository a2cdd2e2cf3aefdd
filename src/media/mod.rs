//! Media: uploaded pictures such as event banners.

pub mod entity;
