//! oada-gateway: a Pingora reverse proxy that hosts an OADA OAuth 2.0 authorization server and
//! enforces bearer tokens and OADA scopes on every proxied request.

pub mod auth;
pub mod config;
pub mod ids;
pub mod keys;
pub mod oauth;
pub mod reply;
pub mod routes;
pub mod scope;
pub mod store;
pub mod token;
