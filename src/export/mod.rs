//! Export: what leaves cerflow. Every exporter formats what the deriver published
//! ([`crate::published::Shared`]) and never touches worker state, so a slow scrape or
//! push cannot hold up ingest, and nothing is derived twice.

pub mod config;

pub mod otlp;
pub mod prometheus;
