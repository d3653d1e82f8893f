//! The attack suite: hostile clients, hostile networks and flaky upstreams against the real
//! gateway, each case bounded in time so that CI runs them all.

mod connections;
mod identity;
mod registration;
mod strict_http;
mod upstream_faults;
