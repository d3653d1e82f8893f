//! Integration tests: the real gateway binary in front of a real upstream, over real sockets.

mod attacks;
mod browser;
mod config_check;
mod distributed_tracing;
mod external_issuers;
mod harness;
mod interop;
mod key_rotation;
mod lifecycle;
mod oauth;
mod observability;
mod partners;
mod proxy_auth;
mod proxy_upstreams;
mod reload;
mod remote_keys;
mod replicas;
mod user_flow;
