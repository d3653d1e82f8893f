//! `POST /register` (RFC 7591, OADA): a partner posts its client registration document and gets a
//! temporary `client_id`.
//!
//! The id is bound to what the API owner already trusts, never to what the body merely claims:
//! - a document whose keys all belong to a pre-agreed partner's stored document (RFC 7638
//!   thumbprints, or the same `jwks_uri`) binds to that partner: its stored keys, its configured
//!   scopes. The id carries that binding under a MAC ([`super::partner_id`]); nothing is stored,
//!   so a flood of registrations of a (public) partner document cannot displace anything;
//! - a `software_statement` signed by a trusted key binds to the statement's signed claims (its
//!   keys included) and the configured statement scopes; kept in the store, which refuses (503)
//!   rather than evicts when full;
//! - anything else is refused.

use super::discovery::{GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER, GRANT_REFRESH_TOKEN};
use super::error::RegistrationError;
use super::form::content_type_is;
use super::clients::ClientRegistry;
use super::software_statement::StatementVerifier;
use super::HostedRequest;
use crate::config::{build::parse_client_keys, ClientKeys, Config, ConfiguredClient};
use crate::ids::random_id;
use crate::metrics::Metrics;
use crate::reply::Reply;
use crate::scope::ScopeSet;
use crate::store::{ClientBinding, Registration, Store, StoreError};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

const AUTH_METHOD: &str = "private_key_jwt";
/// What software-statement clients may register for.
const STATEMENT_GRANTS: &[&str] = &[GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER, GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN];

/// Registration metadata members a stored document may carry that are echoed back; anything
/// else in it stays private to the API owner.
const ECHOED_MEMBERS: &[&str] = &[
    "client_name",
    "client_uri",
    "logo_uri",
    "contacts",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
    "redirect_uris",
    "jwks",
    "jwks_uri",
];

pub struct Registrar {
    config: Arc<Config>,
    statements: Option<StatementVerifier>,
    registry: Arc<ClientRegistry>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    lifetime: Duration,
}

/// Who the new `client_id` stands for.
enum Binding {
    /// A configured partner: a self-contained id, nothing stored.
    Partner { name: String },
    /// A software-statement client: stored.
    Stored(ClientBinding),
}

/// What a registration was matched to.
struct Decision {
    binding: Binding,
    /// Metadata of the trusted source (stored document, or statement over body).
    metadata: Map<String, Value>,
    allowed: ScopeSet,
    /// The grant types it may register for.
    grants: Vec<&'static str>,
}

impl Registrar {
    pub fn new(
        config: Arc<Config>,
        statements: Option<StatementVerifier>,
        registry: Arc<ClientRegistry>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let lifetime = config.registration.lifetime;
        Registrar {
            config,
            statements,
            registry,
            store,
            metrics,
            lifetime,
        }
    }

    pub async fn register(&self, request: &HostedRequest<'_>) -> Reply {
        match self.try_register(request).await {
            Ok(reply) => {
                self.metrics.registrations.with_label_values(&["created"]).inc();
                reply
            }
            Err(e) => {
                self.metrics
                    .registrations
                    .with_label_values(&[e.code.as_str()])
                    .inc();
                tracing::info!(error = e.code.as_str(), reason = %e.description, "registration refused");
                e.reply()
            }
        }
    }

    async fn try_register(&self, request: &HostedRequest<'_>) -> Result<Reply, RegistrationError> {
        if !content_type_is(request.headers, "application/json") {
            return Err(RegistrationError::metadata("the registration must be a JSON document (Content-Type: application/json)"));
        }
        let body: Map<String, Value> = match crate::json::from_slice(&request.body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(RegistrationError::metadata("the registration body is not a JSON object")),
            Err(e) => return Err(RegistrationError::metadata(format!("the registration body is not valid JSON: {e}"))),
        };
        let decision = match body.get("software_statement") {
            Some(Value::String(statement)) => self.by_statement(statement, &body, request.now).await?,
            Some(_) => return Err(RegistrationError::statement("software_statement must be a compact JWS string")),
            None => self.by_stored_document(&body)?,
        };
        // a statement's signed claims decide the client's metadata; a partner's posted document does
        let requested = match &decision.binding {
            Binding::Stored(_) => decision.metadata.clone(),
            Binding::Partner { .. } => body.clone(),
        };
        let metadata = self.registered_metadata(&requested, decision.metadata, &decision.allowed, &decision.grants)?;
        let now = request.now;
        let expires_at = now + self.lifetime.as_secs();
        let scope = metadata.get("scope").and_then(Value::as_str).unwrap_or_default().to_string();
        let (client_id, label) = match decision.binding {
            Binding::Partner { name } => {
                let registered = ScopeSet::parse(&scope).unwrap_or_default();
                let id = self
                    .registry
                    .partner_ids()
                    .issue(&name, &decision.allowed, &registered, now, expires_at);
                (id, format!("configured:{name}"))
            }
            Binding::Stored(binding) => {
                let label = binding_label(&binding);
                let registration = Registration {
                    client_id: random_id(16),
                    issued_at: now,
                    expires_at,
                    binding,
                    scope,
                    metadata: Value::Object(metadata.clone()),
                };
                self.store.put_registration(&registration).await.map_err(|e| {
                    let why = match e {
                        StoreError::Full(_) => "too many registrations are live; retry later".to_string(),
                        other => other.to_string(),
                    };
                    RegistrationError::new(super::error::RegistrationErrorCode::TemporarilyUnavailable, why)
                })?;
                (registration.client_id, label)
            }
        };
        let mut response = metadata;
        response.insert("client_id".into(), json!(client_id));
        response.insert("client_id_issued_at".into(), json!(now));
        response.insert("client_id_expires_at".into(), json!(expires_at));
        tracing::info!(binding = %label, "client registered");
        Ok(Reply::json(201, &Value::Object(response)).no_store())
    }

    /// Matches the posted keys against the pre-agreed partners' stored documents.
    fn by_stored_document(&self, body: &Map<String, Value>) -> Result<Decision, RegistrationError> {
        let (posted_keys, posted_thumbprints) =
            parse_client_keys(body).map_err(|(member, e)| RegistrationError::metadata(format!("{member}: {e}")))?;
        let matches = |client: &&ConfiguredClient| {
            let Some(doc) = &client.document else { return false };
            match (&posted_keys, &doc.keys) {
                (ClientKeys::Jwks(_), ClientKeys::Jwks(_)) => {
                    !posted_thumbprints.is_empty() && posted_thumbprints.iter().all(|t| doc.thumbprints.contains(t))
                }
                (ClientKeys::JwksUri(a), ClientKeys::JwksUri(b)) => a == b,
                _ => false,
            }
        };
        let client = self.config.clients.iter().find(matches).ok_or_else(|| {
            RegistrationError::metadata(
                "the registration's keys do not match any pre-agreed client registration document; \
                 give the API owner your registration document first, or register with a trusted software_statement",
            )
        })?;
        let document = client.document.as_ref().expect("matched clients have a document");
        Ok(Decision {
            binding: Binding::Partner {
                name: client.name.clone(),
            },
            metadata: document.metadata.clone(),
            allowed: client.scopes.clone(),
            grants: client.grant_types.names(),
        })
    }

    /// Verifies the software statement; its signed claims win over the body (RFC 7591 §2.3).
    async fn by_statement(&self, statement: &str, body: &Map<String, Value>, now: u64) -> Result<Decision, RegistrationError> {
        let verifier = self
            .statements
            .as_ref()
            .ok_or_else(|| RegistrationError::unapproved("this server does not accept software statements"))?;
        let verified = verifier.verify(statement, now).await?;
        let mut metadata = body.clone();
        metadata.remove("software_statement");
        // keys come from the signed claims only: drop whatever the body said
        metadata.remove("jwks");
        metadata.remove("jwks_uri");
        for (k, v) in &verified.claims {
            metadata.insert(k.clone(), v.clone());
        }
        // a public client (auth method none) has no keys; every other client needs them
        let public = metadata.get("token_endpoint_auth_method").and_then(Value::as_str) == Some("none");
        let keys = if public && !verified.claims.contains_key("jwks") && !verified.claims.contains_key("jwks_uri") {
            None
        } else {
            Some(
                parse_client_keys(&verified.claims)
                    .map_err(|(member, e)| RegistrationError::statement(format!("software_statement {member}: {e}")))?
                    .0,
            )
        };
        let policy = verifier.policy();
        let allowed = if verified.trusted {
            policy.scopes.clone()
        } else {
            policy.untrusted_scopes.clone()
        };
        let (jwks, jwks_uri) = match keys {
            Some(ClientKeys::Jwks(set)) => (Some(set.to_json()), None),
            Some(ClientKeys::JwksUri(uri)) => (None, Some(uri)),
            None => (None, None),
        };
        metadata.insert("software_statement".into(), json!(statement));
        Ok(Decision {
            binding: Binding::Stored(ClientBinding::SoftwareStatement {
                software_id: verified.claims.get("software_id").and_then(Value::as_str).map(str::to_string),
                trusted: verified.trusted,
                jwks,
                jwks_uri,
            }),
            metadata,
            allowed,
            grants: STATEMENT_GRANTS.to_vec(),
        })
    }

    /// The metadata as registered: the trusted source's members, with this server's decisions on
    /// auth method, grant types and scope.
    fn registered_metadata(
        &self,
        requested: &Map<String, Value>,
        source: Map<String, Value>,
        allowed: &ScopeSet,
        grants: &[&'static str],
    ) -> Result<Map<String, Value>, RegistrationError> {
        let public = match requested.get("token_endpoint_auth_method").and_then(Value::as_str) {
            None | Some(AUTH_METHOD) => false,
            Some("none") => true,
            Some(other) => {
                return Err(RegistrationError::metadata(format!(
                    "token_endpoint_auth_method `{other}` is not supported for registered clients; use private_key_jwt, or none for a public client"
                )))
            }
        };
        let grant_types: Vec<&str> = match requested.get("grant_types") {
            None if public => vec![GRANT_AUTHORIZATION_CODE],
            None => vec![GRANT_CLIENT_CREDENTIALS],
            Some(Value::Array(items)) => {
                let asked: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                let supported: Vec<&str> = grants.iter().copied().filter(|g| asked.contains(g)).collect();
                if supported.is_empty() {
                    return Err(RegistrationError::metadata(format!(
                        "none of the grant_types {asked:?} is available to this client; available: {grants:?}"
                    )));
                }
                supported
            }
            Some(_) => return Err(RegistrationError::metadata("grant_types must be an array of strings")),
        };
        let code_flow = grant_types.contains(&GRANT_AUTHORIZATION_CODE);
        if public && grant_types.iter().any(|g| *g == GRANT_CLIENT_CREDENTIALS || *g == GRANT_JWT_BEARER) {
            return Err(RegistrationError::metadata("a public client (none) cannot use client_credentials or jwt-bearer"));
        }
        if grant_types.contains(&GRANT_REFRESH_TOKEN) && !code_flow {
            return Err(RegistrationError::metadata("refresh_token goes with authorization_code"));
        }
        match requested.get("response_types") {
            None => {}
            Some(Value::Array(items)) if items.iter().all(|v| v.as_str() == Some("code")) && !items.is_empty() && code_flow => {}
            Some(_) => {
                return Err(RegistrationError::metadata(
                    "response_types must be [\"code\"], with the authorization_code grant (no implicit or hybrid flows)",
                ))
            }
        }
        let redirect_uris: Vec<String> = match requested.get("redirect_uris") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    let uri = item
                        .as_str()
                        .ok_or_else(|| RegistrationError::new(super::error::RegistrationErrorCode::InvalidRedirectUri, "redirect_uris must be strings"))?;
                    crate::config::check_redirect_uri(uri)
                        .map_err(|e| RegistrationError::new(super::error::RegistrationErrorCode::InvalidRedirectUri, e))?;
                    out.push(uri.to_string());
                }
                out
            }
            Some(_) => {
                return Err(RegistrationError::new(
                    super::error::RegistrationErrorCode::InvalidRedirectUri,
                    "redirect_uris must be an array of URIs",
                ))
            }
        };
        if code_flow && redirect_uris.is_empty() {
            return Err(RegistrationError::new(
                super::error::RegistrationErrorCode::InvalidRedirectUri,
                "the authorization_code grant needs redirect_uris",
            ));
        }
        // A requested scope narrows what the client may get; it never widens it.
        let scope = match requested.get("scope").and_then(Value::as_str) {
            Some(asked) => {
                let asked = ScopeSet::parse(asked).map_err(|e| RegistrationError::metadata(format!("scope: {e}")))?;
                let granted: Vec<String> = asked
                    .iter()
                    .filter(|s| allowed.iter().any(|a| a.covers(s)))
                    .map(ToString::to_string)
                    .collect();
                if granted.is_empty() {
                    return Err(RegistrationError::metadata(format!(
                        "none of the requested scopes is allowed for this client; allowed: {allowed}"
                    )));
                }
                granted.join(" ")
            }
            None => allowed.to_string(),
        };
        let mut metadata = Map::new();
        for member in ECHOED_MEMBERS {
            if let Some(v) = source.get(*member) {
                metadata.insert((*member).to_string(), v.clone());
            }
        }
        if let Some(statement) = source.get("software_statement") {
            metadata.insert("software_statement".into(), statement.clone());
        }
        if !redirect_uris.is_empty() {
            metadata.insert("redirect_uris".into(), json!(redirect_uris));
        }
        if code_flow {
            metadata.insert("response_types".into(), json!(["code"]));
        }
        metadata.insert("token_endpoint_auth_method".into(), json!(if public { "none" } else { AUTH_METHOD }));
        metadata.insert("grant_types".into(), json!(grant_types));
        metadata.insert("scope".into(), json!(scope));
        Ok(metadata)
    }
}

fn binding_label(binding: &ClientBinding) -> String {
    match binding {
        ClientBinding::SoftwareStatement { trusted: true, .. } => "software_statement".into(),
        ClientBinding::SoftwareStatement { trusted: false, .. } => "untrusted_software_statement".into(),
    }
}
