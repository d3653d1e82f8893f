//! The route table: which route a request's path and method select.
//!
//! Prefixes match on segment boundaries (`/observations` matches `/observations` and
//! `/observations/7`, not `/observationsX`) and the longest prefix wins. Routes that share a prefix
//! are told apart by method; when the longest matching prefix has no route for the method the
//! answer is 405, never a shorter prefix's route, so a method restriction can't be side-stepped.

use crate::scope::{Perm, Scope, ScopeSet};
use http::Method;

/// What a route requires of a request's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// No token needed.
    None,
    /// A valid bearer token carrying the scopes.
    Bearer(ScopeRequirement),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRequirement {
    /// Every one of these scopes (possibly none: any valid token).
    All(Vec<Scope>),
    /// `<kind>:read` for safe methods, `<kind>:write` for the others.
    ByMethod { kind: String },
}

impl ScopeRequirement {
    /// Do `scopes` (a token's) satisfy this requirement for a request with `method`?
    pub fn is_met_by(&self, scopes: &ScopeSet, method: &Method) -> bool {
        match self {
            ScopeRequirement::All(required) => scopes.grants_all(required),
            ScopeRequirement::ByMethod { kind } => scopes.grants(kind, Perm::for_method(method)),
        }
    }

    /// The scopes a request with `method` needs, as written in `WWW-Authenticate` on a 403.
    pub fn describe(&self, method: &Method) -> String {
        match self {
            ScopeRequirement::All(scopes) => scopes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            ScopeRequirement::ByMethod { kind } => {
                format!("{kind}:{}", Perm::for_method(method).as_str())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the config's route list; set by [`RouteTable::new`].
    pub id: usize,
    /// Label in metrics and logs; the path unless the config names the route.
    pub name: String,
    pub prefix: String,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    pub auth: RouteAuth,
    /// Index into the gateway's upstream list.
    pub upstream: usize,
    /// Forward the client's `Authorization` header upstream (removed by default).
    pub forward_authorization: bool,
    /// The issuers (`iss`) whose tokens the route accepts; `None`: every configured issuer.
    pub issuers: Option<Box<[Box<str>]>>,
}

impl Route {
    fn allows(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }
}

/// The outcome of matching a request against the table.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    Found(&'a Route),
    /// A prefix matched but no route under it takes this method; `allow` is the `Allow` header.
    MethodNotAllowed { allow: &'a str },
    NotFound,
}

#[derive(Debug)]
struct PrefixGroup {
    prefix: String,
    /// Route ids, in config order.
    members: Vec<usize>,
    allow: String,
}

/// Routes grouped by prefix, longest prefix first.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    groups: Vec<PrefixGroup>,
}

/// Does `path` fall under `prefix` on a segment boundary?
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl RouteTable {
    /// Builds the table. The config loader has already refused duplicate (prefix, method) pairs.
    pub fn new(mut routes: Vec<Route>) -> Self {
        let mut groups: Vec<PrefixGroup> = Vec::new();
        for (id, route) in routes.iter_mut().enumerate() {
            route.id = id;
            match groups.iter_mut().find(|g| g.prefix == route.prefix) {
                Some(group) => group.members.push(id),
                None => groups.push(PrefixGroup {
                    prefix: route.prefix.clone(),
                    members: vec![id],
                    allow: String::new(),
                }),
            }
        }
        for group in &mut groups {
            let members: Vec<&Route> = group.members.iter().map(|id| &routes[*id]).collect();
            group.allow = allow_header(&members);
        }
        groups.sort_by(|a, b| b.prefix.len().cmp(&a.prefix.len()));
        RouteTable { routes, groups }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route with `id` (ids come from this table).
    pub fn route(&self, id: usize) -> &Route {
        &self.routes[id]
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Selects the route for `path` (without query) and `method`.
    pub fn find(&self, path: &str, method: &Method) -> RouteMatch<'_> {
        let Some(group) = self.groups.iter().find(|g| prefix_matches(&g.prefix, path)) else {
            return RouteMatch::NotFound;
        };
        match group
            .members
            .iter()
            .map(|id| &self.routes[*id])
            .find(|r| r.allows(method))
        {
            Some(route) => RouteMatch::Found(route),
            None => RouteMatch::MethodNotAllowed { allow: &group.allow },
        }
    }
}

fn allow_header(routes: &[&Route]) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for route in routes {
        match &route.methods {
            None => return String::new(),
            Some(list) => {
                for m in list {
                    if !methods.contains(&m.as_str()) {
                        methods.push(m.as_str());
                    }
                }
            }
        }
    }
    methods.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, methods: Option<&[&str]>, upstream: usize) -> Route {
        Route {
            id: 0,
            name: prefix.to_string(),
            prefix: prefix.to_string(),
            methods: methods.map(|ms| ms.iter().map(|m| m.parse().unwrap()).collect()),
            auth: RouteAuth::None,
            upstream,
            forward_authorization: false,
            issuers: None,
        }
    }

    fn table() -> RouteTable {
        RouteTable::new(vec![
            route("/", None, 0),
            route("/observations", Some(&["GET"]), 1),
            route("/observations", Some(&["POST"]), 2),
            route("/observations/archive", Some(&["GET"]), 3),
            route("/stations", Some(&["GET", "HEAD"]), 4),
        ])
    }

    fn upstream_of(t: &RouteTable, path: &str, method: Method) -> Option<usize> {
        match t.find(path, &method) {
            RouteMatch::Found(r) => Some(r.upstream),
            _ => None,
        }
    }

    #[test]
    fn segment_boundaries() {
        assert!(prefix_matches("/observations", "/observations"));
        assert!(prefix_matches("/observations", "/observations/7"));
        assert!(!prefix_matches("/observations", "/observationsX"));
        assert!(!prefix_matches("/observations", "/observation"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn longest_prefix_wins_and_method_selects() {
        let t = table();
        assert_eq!(upstream_of(&t, "/observations/7", Method::GET), Some(1));
        assert_eq!(upstream_of(&t, "/observations", Method::POST), Some(2));
        assert_eq!(upstream_of(&t, "/observations/archive/2020", Method::GET), Some(3));
        assert_eq!(upstream_of(&t, "/observationsX", Method::GET), Some(0));
        assert_eq!(upstream_of(&t, "/elsewhere", Method::DELETE), Some(0));
    }

    #[test]
    fn method_not_allowed_never_falls_back_to_shorter_prefix() {
        let t = table();
        match t.find("/stations/1", &Method::DELETE) {
            RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "GET, HEAD"),
            other => panic!("expected 405, got {other:?}"),
        }
        match t.find("/observations/archive", &Method::POST) {
            RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "GET"),
            other => panic!("expected 405, got {other:?}"),
        }
    }

    #[test]
    fn no_route_is_not_found() {
        let t = RouteTable::new(vec![route("/observations", None, 0)]);
        assert!(matches!(t.find("/stations", &Method::GET), RouteMatch::NotFound));
        assert!(matches!(t.find("/observationsX", &Method::GET), RouteMatch::NotFound));
    }
}
