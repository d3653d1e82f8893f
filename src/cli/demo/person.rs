//! The demo's second half: Frank, a farmer, lets FieldScout (a demo app, a public client) read his
//! weather stations. The walkthrough plays his browser (sign-in and consent forms, the session
//! cookie) and the app (PKCE, the code exchange, refresh), printing each exchange.

use super::{short, DemoResult, Walkthrough};
use crate::oauth::pkce;
use serde_json::Value;

/// The demo app's registration in the bundled `gateway.yaml`.
pub const APP_CLIENT_ID: &str = "fieldscout-demo";

/// A browser: the gateway's session cookie, no automatic redirects.
struct Browser {
    cookie: Option<String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Page {
    fn hidden(&self, name: &str) -> DemoResult<String> {
        let marker = format!(r#"name="{name}" value=""#);
        let start = self.body.find(&marker).ok_or_else(|| format!("the page has no {name} field"))? + marker.len();
        let end = self.body[start..].find('"').ok_or("a broken form")? + start;
        Ok(self.body[start..end].to_string())
    }
}

impl Browser {
    async fn send(&mut self, request: reqwest::RequestBuilder) -> DemoResult<Page> {
        let request = match &self.cookie {
            Some(c) => request.header("Cookie", c),
            None => request,
        };
        let response = request.send().await.map_err(|e| e.to_string())?;
        if let Some(set) = response.headers().get("set-cookie").and_then(|v| v.to_str().ok()) {
            self.cookie = set.split(';').next().map(str::to_string);
        }
        Ok(Page {
            status: response.status().as_u16(),
            location: response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string),
            body: response.text().await.map_err(|e| e.to_string())?,
        })
    }
}

fn query(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url).map(|u| u.query_pairs().into_owned().collect()).unwrap_or_default()
}

impl Walkthrough {
    pub(super) async fn person(&self, redirect_uri: &str, password: &str) -> DemoResult<()> {
        let base = &self.base;
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let mut browser = Browser { cookie: None };

        println!("\n8. Frank, a farmer, lets the FieldScout app read his stations: OADA authorization code flow");
        let (_, _, config) = self.send(self.http.get(format!("{base}/.well-known/oada-configuration"))).await?;
        let authorization_endpoint = config["authorization_endpoint"].as_str().unwrap_or_default().to_string();
        let token_endpoint = config["token_endpoint"].as_str().unwrap_or_default().to_string();
        let verifier = format!("{}{}", crate::ids::random_id(32), "demo");
        let state = crate::ids::random_id(8);
        let mut url = url::Url::parse(&authorization_endpoint).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", APP_CLIENT_ID)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "weather.stations:read weather.observations:read")
            .append_pair("state", &state)
            .append_pair("code_challenge", &pkce::challenge_of(&verifier))
            .append_pair("code_challenge_method", "S256");
        println!("   the app sends Frank's browser to GET {authorization_endpoint}?client_id={APP_CLIENT_ID}&code_challenge=<S256 of a secret>&state=…");
        let login = browser.send(http.get(url.as_str())).await?;
        if login.status != 200 {
            return Err(format!("the authorization endpoint answered {}: {}", login.status, login.body));
        }
        println!("   ← 200 the sign-in page (and an HttpOnly session cookie)");

        println!("\n9. Frank signs in: POST {base}/login username=frank");
        let signed_in = browser
            .send(http.post(format!("{base}/login")).form(&[
                ("username", "frank"),
                ("password", password),
                ("request", &login.hidden("request")?),
                ("csrf", &login.hidden("csrf")?),
            ]))
            .await?;
        let next = signed_in.location.clone().ok_or_else(|| format!("sign-in failed ({}): is clients/demo-password.txt the password of clients/users.yaml?", signed_in.status))?;
        println!("   ← {} to the consent page (a new session cookie)", signed_in.status);
        let consent = browser.send(http.get(format!("{base}{next}"))).await?;
        let shown: Vec<String> = consent
            .body
            .split(r#"class="scope""#)
            .skip(1)
            .filter_map(|s| s.split('>').nth(1).and_then(|t| t.split('<').next()).map(str::to_string))
            .collect();
        println!("   ← 200 the consent page asks: {}", shown.join("; "));

        println!("\n10. Frank approves: POST {base}/consent decision=approve");
        let approved = browser
            .send(http.post(format!("{base}/consent")).form(&[
                ("decision", "approve"),
                ("request", &consent.hidden("request")?),
                ("csrf", &consent.hidden("csrf")?),
            ]))
            .await?;
        let callback = approved.location.ok_or("the consent did not send the browser back")?;
        let returned = query(&callback);
        let code = returned.get("code").ok_or("no code came back")?.clone();
        if returned.get("state") != Some(&state) {
            return Err("the state did not come back".into());
        }
        println!("   ← {} to {redirect_uri}?code={}&state=… (the same state)", approved.status, short(&code));

        println!("\n11. The app exchanges the code: POST {token_endpoint} grant_type=authorization_code, code_verifier (a public client: PKCE instead of a secret)");
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", APP_CLIENT_ID),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.as_str()),
        ];
        let (status, _, tokens) = self.send(self.http.post(&token_endpoint).form(&form)).await?;
        self.expect("code exchange", status, 200, &tokens)?;
        let access = tokens["access_token"].as_str().unwrap_or_default().to_string();
        let refresh = tokens["refresh_token"].as_str().unwrap_or_default().to_string();
        println!("   ← 200 access token {} (sub=frank), refresh token {}, scope \"{}\"", short(&access), short(&refresh), tokens["scope"].as_str().unwrap_or(""));

        println!("\n12. The app reads Frank's stations: GET {base}/stations");
        let (status, _, data) = self.send(self.http.get(format!("{base}/stations")).bearer_auth(&access)).await?;
        self.expect("Frank's stations", status, 200, &data)?;
        let names: Vec<&str> = data["stations"].as_array().map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect()).unwrap_or_default();
        println!("   ← 200 {} (the API got X-OADA-User-Id: frank and answered with his stations only; Grace's are not there)", names.join(", "));

        println!("\n13. The code again: refused, and the tokens it brought are revoked");
        let (status, _, body) = self.send(self.http.post(&token_endpoint).form(&form)).await?;
        self.expect("code replay", status, 400, &body)?;
        println!("   ← 400 {}", body["error_description"].as_str().unwrap_or(""));
        let (status, _, _) = self.send(self.http.get(format!("{base}/stations")).bearer_auth(&access)).await?;
        println!("   GET /stations with the first access token ← {status}");

        println!("\n14. Refresh tokens rotate: a fresh flow, then POST {token_endpoint} grant_type=refresh_token twice with the same token");
        Box::pin(self.refresh_demo(&http, &authorization_endpoint, &token_endpoint, redirect_uri, password)).await
    }

    async fn refresh_demo(&self, http: &reqwest::Client, authorization_endpoint: &str, token_endpoint: &str, redirect_uri: &str, password: &str) -> DemoResult<()> {
        let base = &self.base;
        let mut browser = Browser { cookie: None };
        let verifier = format!("{}{}", crate::ids::random_id(32), "again");
        let mut url = url::Url::parse(authorization_endpoint).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", APP_CLIENT_ID)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "weather.stations:read")
            .append_pair("code_challenge", &pkce::challenge_of(&verifier))
            .append_pair("code_challenge_method", "S256");
        let login = browser.send(http.get(url.as_str())).await?;
        let signed_in = browser
            .send(http.post(format!("{base}/login")).form(&[("username", "frank"), ("password", password), ("request", &login.hidden("request")?), ("csrf", &login.hidden("csrf")?)]))
            .await?;
        let consent = browser.send(http.get(format!("{base}{}", signed_in.location.unwrap_or_default()))).await?;
        let approved = browser
            .send(http.post(format!("{base}/consent")).form(&[("decision", "approve"), ("request", &consent.hidden("request")?), ("csrf", &consent.hidden("csrf")?)]))
            .await?;
        let code = query(&approved.location.unwrap_or_default()).get("code").cloned().ok_or("no code")?;
        let (_, _, tokens) = self
            .send(self.http.post(token_endpoint).form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("client_id", APP_CLIENT_ID), ("redirect_uri", redirect_uri), ("code_verifier", verifier.as_str())]))
            .await?;
        let refresh = tokens["refresh_token"].as_str().unwrap_or_default().to_string();
        let refresh_form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", APP_CLIENT_ID)];
        let (status, _, renewed) = self.send(self.http.post(token_endpoint).form(&refresh_form)).await?;
        self.expect("refresh", status, 200, &renewed)?;
        println!("   ← 200 a new access token and a new refresh token {}", short(renewed["refresh_token"].as_str().unwrap_or("")));
        let (status, _, body) = self.send(self.http.post(token_endpoint).form(&refresh_form)).await?;
        self.expect("refresh token reuse", status, 400, &body)?;
        println!("   ← 400 {} (the whole family is revoked: a replaced refresh token coming back means it leaked)", body["error_description"].as_str().unwrap_or(""));
        let _: &Value = &renewed;
        Ok(())
    }
}
