//! OADA scopes: `<type>:<perm>`.
//!
//! `perm` is `read`, `write` or `all`; `all` covers read and write. The type `all` covers every type,
//! so `all:read` covers `weather.observations:read`. Used by the proxy (does a token's scope cover
//! what the route needs?) and by the token endpoint (is a requested scope within what a client may
//! get?), so both answer the question the same way.

use std::fmt;

/// The permission half of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perm {
    Read,
    Write,
    All,
}

impl Perm {
    pub fn as_str(self) -> &'static str {
        match self {
            Perm::Read => "read",
            Perm::Write => "write",
            Perm::All => "all",
        }
    }

    /// Does holding `self` grant `needed`?
    pub fn covers(self, needed: Perm) -> bool {
        self == Perm::All || self == needed
    }

    /// The permission an HTTP method needs on a route that names only a scope type: safe methods
    /// read, everything else writes.
    pub fn for_method(method: &http::Method) -> Perm {
        match *method {
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => Perm::Read,
            _ => Perm::Write,
        }
    }
}

/// The wildcard type.
pub const ALL_TYPES: &str = "all";

/// One scope, e.g. `weather.observations:read`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    kind: Box<str>,
    perm: Perm,
}

/// Why a scope string is not a valid OADA scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("`{0}` is not an OADA scope; expected <type>:<perm> with perm read, write or all (e.g. weather.observations:read)")]
    Malformed(String),
    #[error("`{0}` has a character not allowed in an OAuth scope (RFC 6749 §3.3)")]
    BadCharacter(String),
}

impl Scope {
    pub fn new(kind: &str, perm: Perm) -> Result<Self, ScopeError> {
        Self::parse(&format!("{kind}:{}", perm.as_str()))
    }

    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        // RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E
        if !text
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
        {
            return Err(ScopeError::BadCharacter(text.to_string()));
        }
        let (kind, perm) = text
            .rsplit_once(':')
            .ok_or_else(|| ScopeError::Malformed(text.to_string()))?;
        let perm = match perm {
            "read" => Perm::Read,
            "write" => Perm::Write,
            "all" => Perm::All,
            _ => return Err(ScopeError::Malformed(text.to_string())),
        };
        if kind.is_empty() {
            return Err(ScopeError::Malformed(text.to_string()));
        }
        Ok(Scope {
            kind: kind.into(),
            perm,
        })
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn perm(&self) -> Perm {
        self.perm
    }

    /// Does holding `self` grant `perm` on `kind`?
    pub fn grants(&self, kind: &str, perm: Perm) -> bool {
        (&*self.kind == ALL_TYPES || &*self.kind == kind) && self.perm.covers(perm)
    }

    /// Does holding `self` grant everything `other` grants?
    pub fn covers(&self, other: &Scope) -> bool {
        if &*other.kind == ALL_TYPES && &*self.kind != ALL_TYPES {
            return false;
        }
        self.grants(&other.kind, other.perm)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.perm.as_str())
    }
}

/// A set of scopes as granted to a client or carried by a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(Box<[Scope]>);

impl ScopeSet {
    /// Parses a space-separated scope string (RFC 6749 §3.3). Duplicates are dropped.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        Self::from_iter_str(text.split(' ').filter(|s| !s.is_empty()))
    }

    pub fn from_iter_str<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, ScopeError> {
        let mut scopes: Vec<Scope> = Vec::new();
        for item in items {
            let scope = Scope::parse(item)?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        Ok(ScopeSet(scopes.into_boxed_slice()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Does any scope in the set grant `perm` on `kind`?
    pub fn grants(&self, kind: &str, perm: Perm) -> bool {
        self.0.iter().any(|s| s.grants(kind, perm))
    }

    /// Does the set grant every scope in `required`?
    pub fn grants_all(&self, required: &[Scope]) -> bool {
        required.iter().all(|r| self.grants(&r.kind, r.perm))
    }

    /// Is every scope of `requested` within this set (token endpoint: may the client have it)?
    pub fn covers(&self, requested: &ScopeSet) -> bool {
        requested.iter().all(|r| self.0.iter().any(|s| s.covers(r)))
    }

    /// The scopes of `requested` this set does not cover.
    pub fn uncovered<'a>(&self, requested: &'a ScopeSet) -> Vec<&'a Scope> {
        requested
            .iter()
            .filter(|r| !self.0.iter().any(|s| s.covers(r)))
            .collect()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[test]
    fn parses_type_and_perm() {
        let s = scope("weather.observations:read");
        assert_eq!(s.kind(), "weather.observations");
        assert_eq!(s.perm(), Perm::Read);
        // the type may itself contain a colon: the perm is after the last one
        assert_eq!(scope("application/vnd.x:1:write").kind(), "application/vnd.x:1");
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "read", "weather", ":read", "weather:admin", "weather:READ", "a b:read", "a\"b:read"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn all_perm_covers_read_and_write() {
        let held = set("weather.observations:all");
        assert!(held.grants("weather.observations", Perm::Read));
        assert!(held.grants("weather.observations", Perm::Write));
        assert!(!held.grants("weather.stations", Perm::Read));
    }

    #[test]
    fn all_type_covers_every_type() {
        let held = set("all:read");
        assert!(held.grants("weather.observations", Perm::Read));
        assert!(held.grants("anything.else", Perm::Read));
        assert!(!held.grants("weather.observations", Perm::Write));
    }

    #[test]
    fn read_does_not_cover_write() {
        let held = set("weather.observations:read");
        assert!(!held.grants("weather.observations", Perm::Write));
        assert!(!held.grants("weather.observations", Perm::All));
    }

    #[test]
    fn every_required_scope_is_needed() {
        let held = set("a:read b:read");
        assert!(held.grants_all(&[scope("a:read"), scope("b:read")]));
        assert!(!held.grants_all(&[scope("a:read"), scope("c:read")]));
    }

    #[test]
    fn covers_for_token_requests() {
        let allowed = set("weather.observations:read weather.stations:all");
        assert!(allowed.covers(&set("weather.observations:read")));
        assert!(allowed.covers(&set("weather.stations:write")));
        assert!(!allowed.covers(&set("weather.observations:write")));
        // a specific allowance never covers the wildcard type
        assert!(!allowed.covers(&set("all:read")));
        assert!(set("all:all").covers(&set("all:read x:write")));
        assert_eq!(allowed.uncovered(&set("weather.observations:all")).len(), 1);
    }

    #[test]
    fn method_decides_permission() {
        assert_eq!(Perm::for_method(&http::Method::GET), Perm::Read);
        assert_eq!(Perm::for_method(&http::Method::HEAD), Perm::Read);
        assert_eq!(Perm::for_method(&http::Method::OPTIONS), Perm::Read);
        assert_eq!(Perm::for_method(&http::Method::POST), Perm::Write);
        assert_eq!(Perm::for_method(&http::Method::DELETE), Perm::Write);
    }

    #[test]
    fn display_round_trips() {
        assert_eq!(set("a:read  b:all a:read").to_string(), "a:read b:all");
    }
}
