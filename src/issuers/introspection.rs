//! The RFC 7662 client: `POST token=…&token_type_hint=access_token` to an issuer's
//! introspection endpoint, authenticated with `client_secret_basic` (RFC 6749 §2.3.1: id and
//! secret form-encoded before Basic).

use crate::fetch::{read_bounded, BodyError};
use crate::config::IntrospectionConfig;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// Largest introspection answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The members of an introspection answer the gateway uses.
#[derive(Debug, Deserialize)]
pub struct Answer {
    pub active: bool,
    pub scope: Option<Value>,
    /// Some servers (Azure-style) answer with `scp`.
    pub scp: Option<Value>,
    pub client_id: Option<String>,
    pub sub: Option<String>,
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    pub iss: Option<String>,
    pub aud: Option<Value>,
    pub token_type: Option<String>,
}

pub struct Introspector {
    pub config: IntrospectionConfig,
    authorization: String,
}

fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl Introspector {
    pub fn new(config: IntrospectionConfig) -> Introspector {
        let credentials = format!("{}:{}", form_encode(&config.client_id), form_encode(&config.client_secret.value));
        Introspector {
            authorization: format!("Basic {}", STANDARD.encode(credentials)),
            config,
        }
    }

    /// Asks `endpoint` about `token`. The error says what went wrong without the token.
    pub async fn call(&self, http: &reqwest::Client, endpoint: &str, token: &str) -> Result<Answer, String> {
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let mut response = http
            .post(endpoint)
            .timeout(self.config.timeout)
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{endpoint}: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("{endpoint} answered {}", response.status()));
        }
        let bytes = read_bounded(&mut response, MAX_ANSWER_BYTES).await.map_err(|e| match e {
            BodyError::TooLarge => format!("{endpoint}: answer larger than {MAX_ANSWER_BYTES} bytes"),
            BodyError::Read(e) => e.without_url().to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{endpoint}: not an introspection answer: {e}"))
    }
}
