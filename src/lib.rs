//! oada-gateway: a Pingora reverse proxy that hosts an OADA OAuth 2.0 authorization server and
//! enforces bearer tokens and OADA scopes on every proxied request.
//!
//! A request's path through the gateway: [`proxy`] (Pingora hooks) → [`oauth`] (hosted
//! endpoints) or [`routes`] → [`auth`] (bearer token, cache, scopes) → [`upstream`].

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod downstream;
pub mod fetch;
pub mod gateway;
pub mod ids;
pub mod issuers;
pub mod json;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod partner;
pub mod proxy;
pub mod ratelimit;
pub mod redact;
pub mod reload;
pub mod reply;
pub mod routes;
pub mod sample_api;
pub mod scope;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod upstream;
pub mod users;
