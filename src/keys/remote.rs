//! Fetching key sets from URLs (partners' `jwks_uri`, trusted `jku`s); filled in with the
//! authorization server.
