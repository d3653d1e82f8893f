//! Who a `client_id` is: a partner configured in `gateway.yaml` (by its fixed id, or by a
//! temporary id from `/register` that carries its binding, see [`super::partner_id`]), or a client
//! registered with a software statement (kept in the store). Every endpoint resolves clients
//! here, the same way.

use super::partner_id::{self, partner_hash, PartnerIds};
use super::client_discovery::{ClientDiscovery, DiscoveryError};
use crate::config::{ClientKeys, ClientSecret, Config, GrantTypes};
use crate::keys::remote::{FetchError, KeyFetcher};
use crate::keys::{PublicJwk, PublicJwkSet};
use crate::scope::ScopeSet;
use crate::store::{ClientBinding, Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

/// Whose client this is, for ownership checks (revocation, introspection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A configured partner, whatever client_id it is using.
    Configured(String),
    /// A software-statement or discovered client: only itself (its client_id); a statement's
    /// `software_id`, when it has one.
    Registered { software_id: Option<String> },
}

impl Principal {
    /// What the client's tokens say of who it belongs to.
    pub fn partner_claim(&self) -> Option<crate::token::PartnerClaim<'_>> {
        match self {
            Principal::Configured(name) => Some(crate::token::PartnerClaim::Configured(name)),
            Principal::Registered { software_id } => software_id.as_deref().map(crate::token::PartnerClaim::Software),
        }
    }
}

/// Where a client's public keys are.
#[derive(Debug, Clone)]
pub enum KeySource {
    Inline(Arc<PublicJwkSet>),
    Uri(String),
}

/// Why a person may trust a client, as the consent page says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Configured by the API owner.
    Configured,
    /// Registered with a software statement signed by a trusted key.
    TrustedStatement,
    /// Registered with a software statement nobody trusted signed.
    UntrustedStatement,
    /// Described by a trusted OADA client discovery provider.
    Discovery { provider: String },
}

impl Trust {
    pub fn is_trusted(&self) -> bool {
        !matches!(self, Trust::UntrustedStatement)
    }
}

/// What the consent page shows of a client.
#[derive(Debug, Clone)]
pub struct ClientDisplay {
    pub name: String,
    pub contact: Option<String>,
    /// Its privacy-and-use page (OADA `puc`, RFC 7591 `policy_uri`).
    pub puc: Option<String>,
    pub licenses: Vec<String>,
    pub trust: Trust,
}

/// What a client may do and how it proves itself.
#[derive(Debug)]
pub struct ClientProfile {
    /// Label in metrics and logs: the configured name, or `software_statement`.
    pub label: String,
    pub principal: Principal,
    pub scopes: ScopeSet,
    pub keys: Option<KeySource>,
    pub secret: Option<ClientSecret>,
    pub introspection: bool,
    /// Where the authorization endpoint may send people back to (compared as strings).
    pub redirect_uris: Vec<String>,
    pub grant_types: GrantTypes,
    /// No credentials (`none`): PKCE stands in for them.
    pub public: bool,
    pub display: ClientDisplay,
}

#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub profile: Arc<ClientProfile>,
}

pub struct ClientRegistry {
    /// Indexed like `config.clients`.
    configured: Vec<Arc<ClientProfile>>,
    names: HashMap<String, usize>,
    static_ids: HashMap<String, usize>,
    /// Configured partners by the hash their registered ids carry.
    by_hash: HashMap<[u8; 8], usize>,
    partner_ids: PartnerIds,
    store: Arc<dyn Store>,
    fetcher: Arc<KeyFetcher>,
    discovery: Option<ClientDiscovery>,
}

/// Why a client could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

impl ClientRegistry {
    pub fn new(config: &Config, store: Arc<dyn Store>, fetcher: Arc<KeyFetcher>, discovery: Option<ClientDiscovery>) -> Self {
        let mut configured = Vec::new();
        let mut names = HashMap::new();
        let mut static_ids = HashMap::new();
        let mut by_hash = HashMap::new();
        for (i, c) in config.clients.iter().enumerate() {
            by_hash.insert(partner_hash(&c.name), i);
            let keys = c.document.as_ref().map(|d| match &d.keys {
                ClientKeys::Jwks(set) => KeySource::Inline(Arc::new(set.clone())),
                ClientKeys::JwksUri(uri) => KeySource::Uri(uri.clone()),
            });
            configured.push(Arc::new(ClientProfile {
                label: c.name.clone(),
                principal: Principal::Configured(c.name.clone()),
                scopes: c.scopes.clone(),
                keys,
                secret: c.secret.clone(),
                introspection: c.introspection,
                redirect_uris: c.redirect_uris.clone(),
                grant_types: c.grant_types,
                public: c.public,
                display: ClientDisplay {
                    name: c.display_name.clone(),
                    contact: c.contact.clone(),
                    puc: c.policy_uri.clone(),
                    licenses: Vec::new(),
                    trust: Trust::Configured,
                },
            }));
            names.insert(c.name.clone(), i);
            if let Some(id) = &c.client_id {
                static_ids.insert(id.clone(), i);
            }
        }
        ClientRegistry {
            configured,
            names,
            static_ids,
            by_hash,
            partner_ids: PartnerIds::new(&config.keys),
            store,
            fetcher,
            discovery,
        }
    }

    /// OADA client discovery, when configured.
    pub fn discovery(&self) -> Option<&ClientDiscovery> {
        self.discovery.as_ref()
    }

    /// Issues and opens the ids of registered partners.
    pub fn partner_ids(&self) -> &PartnerIds {
        &self.partner_ids
    }

    /// A registered partner id: its partner must still be configured, the id unexpired and its
    /// scopes still decodable; the config's scopes bound what it gets.
    fn partner(&self, client_id: &str) -> Option<Client> {
        let id = self.partner_ids.open(client_id)?;
        if id.expires_at <= crate::ids::unix_now() {
            return None;
        }
        let base = &self.configured[*self.by_hash.get(&id.partner)?];
        let scopes = id.scopes(&base.scopes)?;
        let profile = if scopes == base.scopes {
            base.clone()
        } else {
            Arc::new(ClientProfile {
                label: base.label.clone(),
                principal: base.principal.clone(),
                scopes,
                keys: base.keys.clone(),
                secret: None,
                introspection: base.introspection,
                redirect_uris: base.redirect_uris.clone(),
                grant_types: base.grant_types,
                public: base.public,
                display: base.display.clone(),
            })
        };
        Some(Client {
            client_id: client_id.to_string(),
            profile,
        })
    }

    /// The profile of the configured client named `name`.
    pub fn configured(&self, name: &str) -> Option<Arc<ClientProfile>> {
        self.names.get(name).map(|i| self.configured[*i].clone())
    }

    /// Resolves a client_id; `None` for unknown or expired ids (and `<id>@<provider>` ids of a
    /// provider that is not trusted: those are never fetched).
    pub async fn find(&self, client_id: &str) -> Result<Option<Client>, LookupError> {
        if let Some(i) = self.static_ids.get(client_id) {
            return Ok(Some(Client {
                client_id: client_id.to_string(),
                profile: self.configured[*i].clone(),
            }));
        }
        if client_id.starts_with(partner_id::PREFIX) {
            return Ok(self.partner(client_id));
        }
        if let Some(registration) = self.store.registration(client_id).await? {
            return Ok(Some(Client {
                client_id: client_id.to_string(),
                profile: Arc::new(statement_profile(&registration)),
            }));
        }
        if let Some(discovery) = &self.discovery {
            if discovery.is_trusted(client_id) {
                return Ok(discovery.find(client_id).await?.map(|profile| Client {
                    client_id: client_id.to_string(),
                    profile,
                }));
            }
        }
        Ok(None)
    }

    /// The client's key a signature names (by `kid`, or its only key).
    pub async fn key_for(&self, client: &Client, kid: Option<&str>) -> Result<Option<PublicJwk>, FetchError> {
        match &client.profile.keys {
            None => Ok(None),
            Some(KeySource::Inline(set)) => Ok(set.select(kid).cloned()),
            Some(KeySource::Uri(uri)) => self.fetcher.find_key(uri, kid).await,
        }
    }

    /// Do two clients belong to the same party (a partner using two temporary client_ids)?
    pub fn same_owner(a: &Client, b: &Client) -> bool {
        a.client_id == b.client_id
            || matches!((&a.profile.principal, &b.profile.principal),
                (Principal::Configured(x), Principal::Configured(y)) if x == y)
    }
}

/// A software-statement client, from its stored registration.
fn statement_profile(registration: &crate::store::Registration) -> ClientProfile {
    let ClientBinding::SoftwareStatement {
        software_id,
        trusted,
        jwks,
        jwks_uri,
    } = &registration.binding;
    let keys = match (jwks, jwks_uri) {
        (Some(jwks), _) => PublicJwkSet::from_json(jwks).ok().map(|s| KeySource::Inline(Arc::new(s))),
        (None, Some(uri)) => Some(KeySource::Uri(uri.clone())),
        (None, None) => None,
    };
    let meta = &registration.metadata;
    let strings = |member: &str| -> Vec<String> {
        meta.get(member)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let grant_names = strings("grant_types");
    let grant_types = GrantTypes {
        client_credentials: grant_names.iter().any(|g| g == crate::config::GRANT_CLIENT_CREDENTIALS),
        jwt_bearer: grant_names.iter().any(|g| g == crate::config::GRANT_JWT_BEARER),
        authorization_code: grant_names.iter().any(|g| g == crate::config::GRANT_AUTHORIZATION_CODE),
        refresh_token: grant_names.iter().any(|g| g == crate::config::GRANT_REFRESH_TOKEN),
    };
    let text = |member: &str| meta.get(member).and_then(|v| v.as_str()).map(str::to_string);
    ClientProfile {
        label: if *trusted { "software_statement" } else { "untrusted_software_statement" }.to_string(),
        principal: Principal::Registered { software_id: software_id.clone() },
        scopes: ScopeSet::parse(&registration.scope).unwrap_or_default(),
        keys,
        secret: None,
        introspection: false,
        redirect_uris: strings("redirect_uris"),
        grant_types,
        public: text("token_endpoint_auth_method").as_deref() == Some("none"),
        display: ClientDisplay {
            name: text("client_name").or_else(|| text("software_id")).unwrap_or_else(|| "an unnamed application".into()),
            contact: strings("contacts").into_iter().next(),
            puc: text("policy_uri").or_else(|| text("puc")),
            licenses: Vec::new(),
            trust: if *trusted { Trust::TrustedStatement } else { Trust::UntrustedStatement },
        },
    }
}
