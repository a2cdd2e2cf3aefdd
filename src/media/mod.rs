//! Media: uploaded pictures such as event banners. Files are sniffed,
//! decoded under limits, turned upright and re-encoded without metadata
//! (`images`), then kept in local or S3 storage (`storage`).

pub mod entity;
pub mod graphql;
pub mod images;
pub mod rest;
pub mod service;
pub mod storage;
