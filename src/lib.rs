//! oada-gateway: a Pingora reverse proxy that hosts an OADA OAuth 2.0 authorization server and
//! enforces bearer tokens and OADA scopes on every proxied request.

pub mod config;
pub mod keys;
pub mod scope;
