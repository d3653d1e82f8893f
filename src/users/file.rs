//! People from `authorization.users_file`, with Argon2 password hashes.

use super::{User, UserSource};
use crate::config::UserRecord;
use crate::secrets::Argon2Verifier;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub struct FileUsers {
    by_username: HashMap<String, (User, String)>,
    by_id: HashMap<String, User>,
    argon2: Arc<Argon2Verifier>,
}

/// A hash that no password matches, checked for unknown usernames so that they take as long as
/// known ones (an attacker cannot tell which usernames exist by timing).
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| crate::secrets::hash(&crate::ids::random_id(32)))
}

impl FileUsers {
    pub fn new(records: &[UserRecord], argon2: Arc<Argon2Verifier>) -> Self {
        let mut by_username = HashMap::new();
        let mut by_id = HashMap::new();
        for r in records {
            let user = User {
                id: r.id.clone(),
                username: r.username.clone(),
                name: r.name.clone(),
            };
            by_id.insert(r.id.clone(), user.clone());
            by_username.insert(r.username.clone(), (user, r.password_hash.clone()));
        }
        FileUsers {
            by_username,
            by_id,
            argon2,
        }
    }
}

#[async_trait]
impl UserSource for FileUsers {
    async fn verify_password(&self, username: &str, password: &str) -> Option<User> {
        match self.by_username.get(username) {
            Some((user, phc)) => self.argon2.verify(phc, password).await.then(|| user.clone()),
            None => {
                let _ = self.argon2.verify(decoy_hash(), password).await;
                None
            }
        }
    }

    fn find(&self, id: &str) -> Option<User> {
        self.by_id.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_are_checked_and_unknown_users_refused() {
        let records = vec![UserRecord {
            username: "frank".into(),
            password_hash: crate::secrets::hash("corn field"),
            name: "Frank".into(),
            id: "farmer-frank".into(),
        }];
        let users = FileUsers::new(&records, Arc::new(Argon2Verifier::default()));
        let frank = users.verify_password("frank", "corn field").await.unwrap();
        assert_eq!(frank.id, "farmer-frank");
        assert!(users.verify_password("frank", "soy field").await.is_none());
        assert!(users.verify_password("nobody", "corn field").await.is_none());
        assert_eq!(users.find("farmer-frank").unwrap().name, "Frank");
    }
}
