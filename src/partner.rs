//! The partner's side of the OADA client grant (moisturemapper in the use case): discover the
//! endpoints, register the client registration document, sign a client assertion with the
//! private key, ask for a token. Used by `oada-gateway token`, the demo and the tests.

use crate::keys::jwk::algorithm_name;
use crate::keys::{PublicJwk, PublicJwkSet, SigningKey};
use crate::oauth::client_auth::ASSERTION_TYPE_JWT_BEARER;
use crate::oauth::paths;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    #[error("the private key: {0}")]
    Key(String),
    #[error("the registration document: {0}")]
    Registration(String),
    #[error("{what} failed: {reason}")]
    Http { what: &'static str, reason: String },
    #[error("{what} answered {status}: {body}")]
    Refused { what: &'static str, status: u16, body: String },
}

/// A partner's private signing key and the `kid` its registration document gives it.
pub struct PartnerKey {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub encoding: EncodingKey,
    pub public: PublicJwk,
}

impl PartnerKey {
    /// Loads a PKCS#8 PEM key (RSA → RS256, P-256 → ES256, Ed25519 → EdDSA).
    pub fn from_pem(pem: &[u8]) -> Result<Self, PartnerError> {
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            if let Ok(key) = SigningKey::from_pem("partner", alg, pem) {
                let mut public = key.public.clone();
                public.kid = None;
                return Ok(PartnerKey {
                    alg,
                    kid: None,
                    encoding: key.encoding,
                    public,
                });
            }
        }
        Err(PartnerError::Key("not a PKCS#8 PEM RSA, P-256 or Ed25519 private key".into()))
    }

    /// Takes the `kid` of this key from the registration document, which must list the key.
    pub fn with_kid_from(mut self, registration: &Value) -> Result<Self, PartnerError> {
        let jwks = registration
            .get("jwks")
            .ok_or_else(|| PartnerError::Registration("has no jwks".into()))?;
        let set = PublicJwkSet::from_json(jwks).map_err(|e| PartnerError::Registration(e.to_string()))?;
        let mine = self.public.thumbprint();
        let listed = set
            .keys()
            .iter()
            .find(|k| k.thumbprint() == mine)
            .ok_or_else(|| PartnerError::Registration("does not list the public half of this private key".into()))?;
        self.kid = listed.kid.clone();
        Ok(self)
    }

    /// A signed client assertion (RFC 7523): `iss` = `sub` = client_id, fresh `jti`, 60 s life.
    pub fn assertion(&self, client_id: &str, audience: &str, now: u64) -> String {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 60,
            "jti": crate::ids::random_id(16),
        });
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("signing with a loaded key")
    }
}

/// A token response.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub client_id: String,
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
}

pub struct Partner {
    http: reqwest::Client,
    issuer: String,
    key: PartnerKey,
    registration: Value,
}

impl Partner {
    pub fn new(issuer: &str, key: PartnerKey, registration: Value) -> Self {
        Partner {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .no_proxy()
                .build()
                .expect("HTTP client"),
            issuer: issuer.trim_end_matches('/').to_string(),
            key,
            registration,
        }
    }

    pub fn key(&self) -> &PartnerKey {
        &self.key
    }

    async fn json(&self, what: &'static str, request: reqwest::RequestBuilder, ok: u16) -> Result<Value, PartnerError> {
        let response = request.send().await.map_err(|e| PartnerError::Http {
            what,
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if status != ok {
            return Err(PartnerError::Refused { what, status, body });
        }
        serde_json::from_str(&body).map_err(|e| PartnerError::Http {
            what,
            reason: format!("not JSON: {e}"),
        })
    }

    /// The OADA configuration at the issuer's origin.
    pub async fn discover(&self) -> Result<Value, PartnerError> {
        let origin = url::Url::parse(&self.issuer)
            .map(|u| u.origin().ascii_serialization())
            .map_err(|e| PartnerError::Http {
                what: "discovery",
                reason: e.to_string(),
            })?;
        self.json(
            "discovery",
            self.http.get(format!("{origin}{}", paths::OADA_CONFIGURATION)),
            200,
        )
        .await
    }

    /// POSTs the registration document; returns the registration response.
    pub async fn register(&self, registration_endpoint: &str) -> Result<Value, PartnerError> {
        self.json("registration", self.http.post(registration_endpoint).json(&self.registration), 201)
            .await
    }

    /// `client_credentials` with `private_key_jwt`.
    pub async fn request_token(&self, token_endpoint: &str, client_id: &str, scope: Option<&str>) -> Result<Value, PartnerError> {
        let assertion = self.key.assertion(client_id, token_endpoint, crate::ids::unix_now());
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE_JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.json("token request", self.http.post(token_endpoint).form(&form), 200)
            .await
    }

    /// Discover, register, request a token.
    pub async fn obtain_token(&self, scope: Option<&str>) -> Result<TokenResponse, PartnerError> {
        let config = self.discover().await?;
        let endpoint = |name: &str| {
            config
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| PartnerError::Http {
                    what: "discovery",
                    reason: format!("no {name}"),
                })
        };
        let registration = self.register(&endpoint("registration_endpoint")?).await?;
        let client_id = registration["client_id"]
            .as_str()
            .ok_or_else(|| PartnerError::Http {
                what: "registration",
                reason: "no client_id".into(),
            })?
            .to_string();
        let token = self
            .request_token(&endpoint("token_endpoint")?, &client_id, scope)
            .await?;
        Ok(TokenResponse {
            client_id,
            access_token: token["access_token"].as_str().unwrap_or_default().to_string(),
            expires_in: token["expires_in"].as_u64().unwrap_or_default(),
            scope: token["scope"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Describes the key, for logs: algorithm and kid.
    pub fn key_description(&self) -> String {
        format!(
            "{} key {}",
            algorithm_name(self.key.alg),
            self.key.kid.as_deref().unwrap_or("(no kid)")
        )
    }
}
