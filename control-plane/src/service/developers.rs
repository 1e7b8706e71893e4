//! Developers: portal accounts. Emails are unique regardless of case (kept in an index tree
//! updated in the same transaction); passwords are write-only and stored as argon2id hashes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::AuditAction;
use super::oauth_clients::StoredOAuthClient;
use super::passwords;
use super::{
    Actor, AppState, Change, Page, PageRequest, Precondition, Resource, ResourceKind, ResourceRef,
    Versioned, put, random_id, remove, to_value, validate,
};
use crate::error::ApiError;
use crate::secret::Secret;
use crate::store::{Tree, Write};

/// The longest email address accepted, in bytes.
pub const MAX_EMAIL_LEN: usize = 254;

/// A developer, as the API shows them (the password hash is never shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Developer {
    /// The developer's id (`dev_` and 32 hex digits, assigned by the server).
    pub id: String,
    /// The email address, unique regardless of case.
    pub email: String,
    /// The developer's name.
    pub name: String,
    /// Disabled developers cannot sign in.
    pub state: DeveloperState,
    /// When the account was created (RFC 3339).
    pub created_at: String,
}

/// Whether a developer may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeveloperState {
    /// The developer may sign in.
    Active,
    /// The developer may not sign in.
    Disabled,
}

/// A developer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredDeveloper {
    pub(crate) developer: Developer,
    pub(crate) password_hash: String,
    /// Sessions opened under another epoch are over: disabling the developer, resetting or
    /// changing the password moves it on, which ends every session at once and for good.
    #[serde(default)]
    pub(crate) session_epoch: u64,
}

impl Resource for StoredDeveloper {
    const KIND: ResourceKind = ResourceKind::Developer;
    const TREE: Tree = Tree::Developers;

    fn id(&self) -> &str {
        &self.developer.id
    }

    fn audit_view(&self) -> serde_json::Value {
        to_value(&self.developer)
    }
}

/// The body of a developer's creation.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeveloper {
    /// The email address.
    pub email: String,
    /// The developer's name.
    pub name: String,
    /// The initial password (write-only): at least 12 characters after Unicode NFKC, at most
    /// 1024 bytes, not the email, not a common password.
    #[schema(value_type = String, write_only)]
    pub password: Secret,
}

/// The body of a developer's update. The password and state have their own operations.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeveloperUpdate {
    /// May be given but must match the path.
    #[serde(default)]
    pub id: Option<String>,
    /// The email address.
    pub email: String,
    /// The developer's name.
    pub name: String,
}

/// The body of a password reset.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// The new password (write-only), under the same policy as at sign-up.
    #[schema(value_type = String, write_only)]
    pub password: Secret,
}

/// Which developers to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeveloperFilter {
    /// Only the developer with this email (any case).
    pub email: Option<String>,
    /// Only developers in this state.
    pub state: Option<DeveloperState>,
}

/// An email address: at most [`MAX_EMAIL_LEN`] bytes, one `@`, a dotted domain, no spaces,
/// control, bidi or zero-width characters. Returned trimmed.
pub(crate) fn email(value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.len() > MAX_EMAIL_LEN {
        return Err(ApiError::invalid(
            "email",
            format!("must be at most {MAX_EMAIL_LEN} bytes"),
        ));
    }
    let valid = !value
        .chars()
        .any(|c| c.is_whitespace() || validate::is_deceptive(c))
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ApiError::invalid(
            "email",
            format!("`{value}` is not an email address"),
        ))
    }
}

/// The key of the email index: the email in lower case.
pub(crate) fn email_key(email: &str) -> Vec<u8> {
    email.to_lowercase().into_bytes()
}

/// Developers.
#[derive(Debug, Clone, Copy)]
pub struct Developers<'a> {
    state: &'a AppState,
}

impl<'a> Developers<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Developers { state }
    }

    /// Creates an active developer with a new id. 409 if the email is taken.
    pub async fn create(
        &self,
        actor: &Actor,
        input: NewDeveloper,
    ) -> Result<Versioned<Developer>, ApiError> {
        let email = email(&input.email)?;
        let name = validate::name("name", &input.name)?;
        passwords::check_policy(&input.password, &email)?;
        let password_hash = self.state.hasher().hash(&input.password).await?;
        let id = random_id("dev_")?;
        let writer = self.state.writer().await?;
        self.check_email_free(&email, None)?;
        let stored = StoredDeveloper {
            developer: Developer {
                id: id.clone(),
                email,
                name,
                state: DeveloperState::Active,
                created_at: self.state.now_rfc3339(),
            },
            password_hash,
            session_epoch: 0,
        };
        let revision = writer.revision();
        let change = Change {
            writes: vec![
                put(revision, &stored)?,
                Write::put(
                    Tree::DeveloperEmails,
                    email_key(&stored.developer.email),
                    id.clone().into_bytes(),
                ),
            ],
            action: AuditAction::Create,
            resource: ResourceRef::new(ResourceKind::Developer, &id),
            before: None,
            after: Some(stored.audit_view()),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned {
            revision,
            value: stored.developer,
        })
    }

    /// Every developer, in id order (the snapshot builder reads them all).
    pub fn all(&self) -> Result<Vec<Developer>, ApiError> {
        Ok(self
            .state
            .load_all::<StoredDeveloper>()?
            .into_iter()
            .map(|versioned| versioned.value.developer)
            .collect())
    }

    /// Reads a developer.
    pub fn get(&self, id: &str) -> Result<Versioned<Developer>, ApiError> {
        Ok(self
            .state
            .fetch::<StoredDeveloper>(id)?
            .map(|stored| stored.developer))
    }

    /// Lists developers in id order.
    pub fn list(
        &self,
        page: &PageRequest,
        filter: &DeveloperFilter,
    ) -> Result<Page<Versioned<Developer>>, ApiError> {
        let email = filter.email.as_ref().map(|email| email.to_lowercase());
        Ok(self
            .state
            .page(page, |stored: &StoredDeveloper| {
                email
                    .as_ref()
                    .is_none_or(|email| stored.developer.email.to_lowercase() == *email)
                    && filter
                        .state
                        .is_none_or(|state| stored.developer.state == state)
            })?
            .map(|record| record.map(|stored| stored.developer)))
    }

    /// Changes a developer's email and name.
    pub async fn update(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
        input: DeveloperUpdate,
    ) -> Result<Versioned<Developer>, ApiError> {
        validate::same_id(id, input.id.as_deref())?;
        let email = email(&input.email)?;
        let name = validate::name("name", &input.name)?;
        let writer = self.state.writer().await?;
        let current = self.state.fetch::<StoredDeveloper>(id)?;
        precondition.check(current.revision, true)?;
        self.check_email_free(&email, Some(id))?;
        let mut stored = current.value.clone();
        stored.developer.email = email;
        stored.developer.name = name;
        let revision = writer.revision();
        let mut writes = vec![put(revision, &stored)?];
        let old_key = email_key(&current.value.developer.email);
        let new_key = email_key(&stored.developer.email);
        if old_key != new_key {
            writes.push(Write::remove(Tree::DeveloperEmails, old_key));
            writes.push(Write::put(
                Tree::DeveloperEmails,
                new_key,
                id.as_bytes().to_vec(),
            ));
        }
        let change = Change {
            writes,
            action: AuditAction::Update,
            resource: ResourceRef::new(ResourceKind::Developer, id),
            before: Some(current.value.audit_view()),
            after: Some(stored.audit_view()),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned {
            revision,
            value: stored.developer,
        })
    }

    /// Disables (or enables) a developer. `If-Match` is optional here. Disabling ends every
    /// session of the developer for good (a later enable does not bring them back).
    pub async fn set_state(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
        state: DeveloperState,
    ) -> Result<Versioned<Developer>, ApiError> {
        let action = match state {
            DeveloperState::Active => AuditAction::Enable,
            DeveloperState::Disabled => AuditAction::Disable,
        };
        self.modify(actor, id, precondition, action, |stored| {
            // Disabling a disabled developer changes nothing: their sessions ended when they
            // were first disabled, and no new one can start while they are.
            if state == DeveloperState::Disabled && stored.developer.state != state {
                stored.session_epoch += 1;
            }
            stored.developer.state = state;
        })
        .await
    }

    /// Sets a developer's password (an operator's reset, or the developer's own change) and
    /// ends every session of the developer. `If-Match` is optional here.
    pub async fn reset_password(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
        input: PasswordReset,
    ) -> Result<Versioned<Developer>, ApiError> {
        let current = self.state.fetch::<StoredDeveloper>(id)?;
        passwords::check_policy(&input.password, &current.value.developer.email)?;
        let password_hash = self.state.hasher().hash(&input.password).await?;
        self.modify(
            actor,
            id,
            precondition,
            AuditAction::ResetPassword,
            |stored| {
                stored.password_hash = password_hash;
                stored.session_epoch += 1;
            },
        )
        .await
    }

    /// Deletes a developer. 409 while they own OAuth clients.
    pub async fn delete(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), ApiError> {
        let writer = self.state.writer().await?;
        let current = self.state.fetch::<StoredDeveloper>(id)?;
        precondition.check(current.revision, true)?;
        let referrers: Vec<ResourceRef> = self
            .state
            .load_all::<StoredOAuthClient>()?
            .into_iter()
            .filter(|client| client.value.client.developer_id == id)
            .map(|client| ResourceRef::new(ResourceKind::OauthClient, client.value.client.id))
            .collect();
        if !referrers.is_empty() {
            return Err(ApiError::InUse {
                kind: ResourceKind::Developer.label(),
                id: id.to_owned(),
                referrers,
            });
        }
        let change = Change {
            writes: vec![
                remove::<StoredDeveloper>(id),
                Write::remove(
                    Tree::DeveloperEmails,
                    email_key(&current.value.developer.email),
                ),
            ],
            action: AuditAction::Delete,
            resource: ResourceRef::new(ResourceKind::Developer, id),
            before: Some(current.value.audit_view()),
            after: None,
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(())
    }

    async fn modify(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
        action: AuditAction,
        apply: impl FnOnce(&mut StoredDeveloper),
    ) -> Result<Versioned<Developer>, ApiError> {
        let writer = self.state.writer().await?;
        let current = self.state.fetch::<StoredDeveloper>(id)?;
        precondition.check(current.revision, false)?;
        let mut stored = current.value.clone();
        apply(&mut stored);
        if stored == current.value {
            // A no-op (disabling a disabled developer): nothing to commit, audit or publish.
            return Ok(current.map(|stored| stored.developer));
        }
        let revision = writer.revision();
        let change = Change {
            writes: vec![put(revision, &stored)?],
            action,
            resource: ResourceRef::new(ResourceKind::Developer, id),
            before: Some(current.value.audit_view()),
            after: Some(stored.audit_view()),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned {
            revision,
            value: stored.developer,
        })
    }

    fn check_email_free(&self, email: &str, except: Option<&str>) -> Result<(), ApiError> {
        let owner: Option<Vec<u8>> = self
            .state
            .store()
            .get(Tree::DeveloperEmails, &email_key(email))?;
        match owner {
            Some(owner) if except.is_none_or(|id| id.as_bytes() != owner.as_slice()) => {
                Err(ApiError::AlreadyExists {
                    field: "email".to_owned(),
                    message: format!("a developer with the email `{email}` already exists"),
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use argon2::Argon2;
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;

    use super::*;
    use crate::service::test_support::{ops, state};

    fn new_developer(email: &str) -> NewDeveloper {
        NewDeveloper {
            email: email.to_owned(),
            name: "Ada".to_owned(),
            password: Secret::new("correct horse battery"),
        }
    }

    #[tokio::test]
    async fn password_is_stored_as_an_argon2id_hash_and_reset_replaces_it() {
        let (state, _dir) = state();
        let developer = state
            .developers()
            .create(&ops(), new_developer("ada@example.com"))
            .await
            .unwrap();
        let stored = state
            .fetch::<StoredDeveloper>(&developer.value.id)
            .unwrap()
            .value;
        assert!(stored.password_hash.starts_with("$argon2id$"));
        let hash = PasswordHash::new(&stored.password_hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &hash)
                .is_ok()
        );

        state
            .developers()
            .reset_password(
                &ops(),
                &developer.value.id,
                &Precondition::Missing,
                PasswordReset {
                    password: Secret::new("another long password"),
                },
            )
            .await
            .unwrap();
        let stored = state
            .fetch::<StoredDeveloper>(&developer.value.id)
            .unwrap()
            .value;
        let hash = PasswordHash::new(&stored.password_hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"another long password", &hash)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn emails_are_unique_regardless_of_case_and_freed_on_delete() {
        let (state, _dir) = state();
        let developers = state.developers();
        let ada = developers
            .create(&ops(), new_developer("Ada@Example.com"))
            .await
            .unwrap();
        let error = developers
            .create(&ops(), new_developer("ada@example.COM"))
            .await
            .unwrap_err();
        assert!(matches!(error, ApiError::AlreadyExists { ref field, .. } if field == "email"));
        developers
            .delete(&ops(), &ada.value.id, &Precondition::Any)
            .await
            .unwrap();
        developers
            .create(&ops(), new_developer("ada@example.com"))
            .await
            .unwrap();
    }
}
