//! People who sign in at the authorization endpoint. [`UserSource`] is the interface the login
//! step uses, so that another source (federated login against an external OpenID provider) can
//! stand beside [`file::FileUsers`] without the endpoints changing.

pub mod file;

use async_trait::async_trait;

/// A person, as tokens and pages name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The `sub` of this person's access tokens; forwarded upstream as `X-OADA-User-Id`.
    pub id: String,
    pub username: String,
    /// Shown on the consent page.
    pub name: String,
}

#[async_trait]
pub trait UserSource: Send + Sync {
    /// The person whose username and password these are; `None` for a wrong password or an
    /// unknown username, in the same time either way.
    async fn verify_password(&self, username: &str, password: &str) -> Option<User>;

    /// The person with this id (for a session's user).
    fn find(&self, id: &str) -> Option<User>;
}
