//! The HTML pages a person sees (sign-in, consent, errors): templates with one layout, escaped by
//! default (minijinja's HTML auto-escaping), served with headers that keep them out of frames,
//! caches and other origins' reach.
//!
//! The Content-Security-Policy allows no script, only the layout's own stylesheet (by hash), and
//! forms posting to the gateway and to the client's redirect origin: Chromium applies
//! `form-action` to the redirect that follows a form post, so `'self'` alone would block the way
//! back to the client.

use crate::reply::Reply;
use aws_lc_rs::digest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use minijinja::{context, Environment, Value};
use serde::Serialize;

const STYLE: &str = include_str!("../../templates/gateway.css");

pub struct Pages {
    env: Environment<'static>,
    style_hash: String,
    site: String,
}

/// What the consent page shows of the client.
#[derive(Debug, Serialize)]
pub struct ClientView {
    pub name: String,
    pub contact: Option<String>,
    pub puc: Option<String>,
    pub licenses: Vec<String>,
    pub trusted: bool,
    /// A sentence on why (or whether) the client can be trusted.
    pub trust: String,
}

#[derive(Debug, Serialize)]
pub struct ScopeView {
    pub name: String,
    pub description: String,
}

/// The origin a form may lead to besides the gateway: `scheme://host[:port]`, or `scheme:` for a
/// native app's private-use scheme.
pub fn origin_of(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    match url.origin() {
        url::Origin::Tuple(..) => Some(url.origin().ascii_serialization()),
        url::Origin::Opaque(_) => Some(format!("{}:", url.scheme())),
    }
}

impl Pages {
    pub fn new(site: &str) -> Self {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        for (name, text) in [
            ("layout.html", include_str!("../../templates/layout.html")),
            ("login.html", include_str!("../../templates/login.html")),
            ("consent.html", include_str!("../../templates/consent.html")),
            ("error.html", include_str!("../../templates/error.html")),
        ] {
            env.add_template(name, text).expect("the bundled templates parse");
        }
        let hash = digest::digest(&digest::SHA256, STYLE.as_bytes());
        Pages {
            env,
            style_hash: format!("'sha256-{}'", STANDARD.encode(hash.as_ref())),
            site: site.to_string(),
        }
    }

    fn render(&self, status: u16, template: &str, ctx: Value, form_targets: &[String]) -> Reply {
        let full = context! { site => &self.site, style => Value::from_safe_string(STYLE.to_string()), ..ctx };
        let body = self
            .env
            .get_template(template)
            .and_then(|t| t.render(full))
            .unwrap_or_else(|e| {
                tracing::error!(template, error = %e, "a page template failed to render");
                "<!doctype html><title>Error</title><p>The page could not be shown.</p>".to_string()
            });
        let mut form_action = String::from("'self'");
        for target in form_targets {
            // only well-formed origins reach the header (no quotes, spaces or semicolons)
            if target.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b'\'' && b != b',') {
                form_action.push(' ');
                form_action.push_str(target);
            }
        }
        let csp = format!(
            "default-src 'none'; style-src {}; img-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'",
            self.style_hash
        );
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::from(body),
        }
        .with_header("Content-Type", "text/html; charset=utf-8")
        .with_header("Content-Security-Policy", csp)
        .with_header("X-Frame-Options", "DENY")
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
        .no_store()
    }

    /// The sign-in form of a pending authorization request.
    pub fn login(&self, action: &str, request_id: &str, csrf: &str, client_name: &str, username: &str, error: Option<&str>, status: u16, redirect_origin: Option<&str>) -> Reply {
        let targets: Vec<String> = redirect_origin.map(str::to_string).into_iter().collect();
        self.render(
            status,
            "login.html",
            context! { action, request_id, csrf, client_name, username, error },
            &targets,
        )
    }

    /// The consent page of a pending authorization request.
    pub fn consent(&self, action: &str, request_id: &str, csrf: &str, client: &ClientView, user_name: &str, scopes: &[ScopeView], redirect_origin: &str) -> Reply {
        self.render(
            200,
            "consent.html",
            context! { action, request_id, csrf, client, user_name, scopes, redirect_origin },
            &[redirect_origin.to_string()],
        )
    }

    /// An error shown to the person (never a redirect: the client or its redirect URI could not
    /// be trusted, or the request cannot go on).
    pub fn error(&self, status: u16, code: &str, title: &str, message: &str) -> Reply {
        self.render(status, "error.html", context! { code, title, message }, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show_and_carry_their_headers() {
        let pages = Pages::new("grounddata");
        let client = ClientView {
            name: "<script>alert(1)</script>".into(),
            contact: Some("a@b".into()),
            puc: Some("https://fieldscout.example/puc".into()),
            licenses: vec!["OADA v1".into()],
            trusted: true,
            trust: "trusted".into(),
        };
        let scopes = vec![ScopeView {
            name: "weather.observations:read".into(),
            description: "Read \"observations\"".into(),
        }];
        let r = pages.consent("/consent", "req1", "tok", &client, "Frank", &scopes, "https://fieldscout.example");
        let body = String::from_utf8(r.body.to_vec()).unwrap();
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("&lt;script&gt;"));
        assert!(body.contains(r#"name="decision" value="approve""#) && body.contains(r#"name="decision" value="deny""#));
        assert!(body.contains(r#"name="csrf" value="tok""#));
        let csp = r.header("Content-Security-Policy").unwrap();
        assert!(csp.contains("form-action 'self' https://fieldscout.example"), "{csp}");
        assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"));
        assert_eq!(r.header("X-Frame-Options"), Some("DENY"));
        assert_eq!(r.header("Cache-Control"), Some("no-store"));
        assert!(r.header("Content-Type").unwrap().starts_with("text/html"));
    }

    #[test]
    fn redirect_origins() {
        assert_eq!(origin_of("https://fieldscout.com/code_accepter?x=1").as_deref(), Some("https://fieldscout.com"));
        assert_eq!(origin_of("http://127.0.0.1:8000/cb").as_deref(), Some("http://127.0.0.1:8000"));
        assert_eq!(origin_of("com.example.app:/cb").as_deref(), Some("com.example.app:"));
    }
}
