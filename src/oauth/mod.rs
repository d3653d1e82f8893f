//! The authorization server the gateway hosts: discovery, JWKS, registration, token,
//! introspection and revocation endpoints.

pub mod paths;
pub mod software_statement;
