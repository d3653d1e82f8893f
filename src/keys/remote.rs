//! Fetching key sets from URLs: partners' `jwks_uri` and trusted signers' `jku`.

/// Checks a URL the gateway will fetch keys from: https, or http on a loopback host only
/// (a key set fetched over plain http on a network could be swapped in transit).
pub fn validate_fetch_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("`{text}` has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(format!("`{text}` must use https (http only for loopback hosts)")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{text}` must not contain credentials"));
    }
    Ok(url.to_string())
}
