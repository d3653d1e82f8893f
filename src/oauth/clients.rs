//! Who a `client_id` is: a partner configured in `gateway.yaml` (by its fixed id, or by a
//! temporary id from `/register` that carries its binding, see [`super::partner_id`]), or a client
//! registered with a software statement (kept in the store). Every endpoint resolves clients
//! here, the same way.

use super::partner_id::{self, partner_hash, PartnerIds};
use crate::config::{ClientKeys, ClientSecret, Config};
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
    /// A software-statement client: only itself (its client_id).
    Registered,
}

/// Where a client's public keys are.
#[derive(Debug, Clone)]
pub enum KeySource {
    Inline(Arc<PublicJwkSet>),
    Uri(String),
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
}

impl ClientRegistry {
    pub fn new(config: &Config, store: Arc<dyn Store>, fetcher: Arc<KeyFetcher>) -> Self {
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
        }
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

    /// Resolves a client_id; `None` for unknown or expired ids.
    pub async fn find(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        if let Some(i) = self.static_ids.get(client_id) {
            return Ok(Some(Client {
                client_id: client_id.to_string(),
                profile: self.configured[*i].clone(),
            }));
        }
        if client_id.starts_with(partner_id::PREFIX) {
            return Ok(self.partner(client_id));
        }
        let Some(registration) = self.store.registration(client_id).await? else {
            return Ok(None);
        };
        let registered = ScopeSet::parse(&registration.scope).unwrap_or_default();
        let profile = match registration.binding {
            ClientBinding::SoftwareStatement {
                software_id: _,
                trusted,
                jwks,
                jwks_uri,
            } => {
                let keys = match (jwks, jwks_uri) {
                    (Some(jwks), _) => PublicJwkSet::from_json(&jwks)
                        .ok()
                        .map(|s| KeySource::Inline(Arc::new(s))),
                    (None, Some(uri)) => Some(KeySource::Uri(uri)),
                    (None, None) => None,
                };
                Arc::new(ClientProfile {
                    label: if trusted { "software_statement" } else { "untrusted_software_statement" }.to_string(),
                    principal: Principal::Registered,
                    scopes: registered,
                    keys,
                    secret: None,
                    introspection: false,
                })
            }
        };
        Ok(Some(Client {
            client_id: client_id.to_string(),
            profile,
        }))
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
