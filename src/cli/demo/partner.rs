//! The demo's first half: moisturemapper, a partner company, gets grounddata's weather data through
//! the OADA client grant (registration, token, data, refusals).

use super::{short, DemoResult, Walkthrough, PARTNER_DOC, PARTNER_KEY};
use crate::partner::PartnerKey;
use serde_json::{json, Value};
use std::path::Path;

impl Walkthrough {
    pub(super) async fn partner(&self, dir: &Path) -> DemoResult<()> {
        let base = &self.base;
        println!("\n1. Discovery: GET {base}/.well-known/oada-configuration");
        let (status, _, config) = self.send(self.http.get(format!("{base}/.well-known/oada-configuration"))).await?;
        self.expect("discovery", status, 200, &config)?;
        let token_endpoint = config["token_endpoint"].as_str().unwrap_or_default().to_string();
        let registration_endpoint = config["registration_endpoint"].as_str().unwrap_or_default().to_string();
        println!("   ← 200 token_endpoint={token_endpoint}\n         registration_endpoint={registration_endpoint}");

        let doc_text = std::fs::read_to_string(dir.join(PARTNER_DOC)).map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_str(&doc_text).map_err(|e| e.to_string())?;
        let pem = std::fs::read(dir.join(PARTNER_KEY)).map_err(|e| e.to_string())?;
        let key = PartnerKey::from_pem(&pem)
            .and_then(|k| k.with_kid_from(&doc))
            .map_err(|e| e.to_string())?;

        println!("\n2. Registration: POST {registration_endpoint}");
        println!("   → moisturemapper's client registration document (the one grounddata stored in advance; key {})", key.kid.as_deref().unwrap_or("-"));
        let (status, _, registration) = self.send(self.http.post(&registration_endpoint).json(&doc)).await?;
        self.expect("registration", status, 201, &registration)?;
        let client_id = registration["client_id"].as_str().unwrap_or_default().to_string();
        println!(
            "   ← 201 client_id={client_id} (temporary, expires at {}), scope \"{}\"",
            registration["client_id_expires_at"], registration["scope"].as_str().unwrap_or("")
        );

        println!("\n3. Token: POST {token_endpoint}");
        let assertion = key.assertion(&client_id, &token_endpoint, crate::ids::unix_now());
        println!("   → grant_type=client_credentials, client_assertion=<JWT {} signed with moisturemapper's private key: iss=sub={client_id}, aud=token endpoint, fresh jti>", short(&assertion));
        let form = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", crate::oauth::client_auth::ASSERTION_TYPE_JWT_BEARER),
            ("client_assertion", assertion.as_str()),
            ("scope", "weather.observations:read"),
        ];
        let (status, _, token) = self.send(self.http.post(&token_endpoint).form(&form)).await?;
        self.expect("token", status, 200, &token)?;
        let access_token = token["access_token"].as_str().unwrap_or_default().to_string();
        println!(
            "   ← 200 {} token {}, expires_in={}, scope \"{}\"",
            token["token_type"].as_str().unwrap_or(""),
            short(&access_token),
            token["expires_in"],
            token["scope"].as_str().unwrap_or("")
        );

        println!("\n4. Data: GET {base}/observations with Authorization: Bearer {}", short(&access_token));
        let (status, _, data) = self.send(self.http.get(format!("{base}/observations")).bearer_auth(&access_token)).await?;
        self.expect("data", status, 200, &data)?;
        let observations = data["observations"].as_array().cloned().unwrap_or_default();
        println!(
            "   ← 200 {} observations; the API saw the caller as {} of partner {} (X-OADA-Client-Id changes at every registration, X-OADA-Partner does not)",
            observations.len(),
            data["requested_by"],
            data["partner"]
        );
        if let Some(first) = observations.first() {
            println!("     e.g. {first}");
        }

        println!("\n5. Refused: GET {base}/observations without a token");
        let (status, headers, body) = self.send(self.http.get(format!("{base}/observations"))).await?;
        self.expect("no token", status, 401, &body)?;
        println!(
            "   ← 401 WWW-Authenticate: {}",
            headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("")
        );

        println!("\n6. Refused: POST {base}/observations with the read-only token");
        let (status, headers, body) = self
            .send(self.http.post(format!("{base}/observations")).bearer_auth(&access_token).json(&json!({"station": "ames-1", "rainfall_mm": 3.2})))
            .await?;
        self.expect("write with a read token", status, 403, &body)?;
        println!(
            "   ← 403 WWW-Authenticate: {}",
            headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("")
        );

        println!("\n7. Refused: the same client assertion sent again (replay)");
        let (status, _, body) = self.send(self.http.post(&token_endpoint).form(&form)).await?;
        self.expect("replay", status, 400, &body)?;
        println!("   ← 400 {}: {}", body["error"].as_str().unwrap_or(""), body["error_description"].as_str().unwrap_or(""));
        Ok(())
    }
}
