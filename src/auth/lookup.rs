//! The credential: looked up once, and again when the registry refuses it.

use std::time::{Duration, Instant};

use super::credentials::Credential;
use super::{Authorizer, CredentialSource};
use crate::error::Result;

/// How often refused credentials are looked up again, at most.
const RELOOK_EVERY: Duration = Duration::from_secs(30);

impl Authorizer {
    pub(super) async fn credential(&self) -> Result<Option<Credential>> {
        Ok(self.found().await?.map(|(c, _)| c))
    }

    /// The credential and where it came from, looked up once.
    pub(super) async fn found(&self) -> Result<Option<(Credential, String)>> {
        let mut known = self.credential.lock().await;
        if let Some(found) = &*known {
            return Ok(found.clone());
        }
        let found = self.look_up().await?;
        *known = Some(found.clone());
        Ok(found)
    }

    /// Another credential than `refused`, if looking up again gives one: a credential
    /// helper's may expire within a long run (a cloud's access token lasts an hour, an
    /// ECR password 12 hours) and the helper hands out a fresh one when asked again.
    /// Files are read once, and give the same one again.
    pub(super) async fn renewed(&self, refused: &Credential) -> Option<(Credential, String)> {
        let mut known = self.credential.lock().await;
        {
            let mut relooked = self.relooked.lock().expect("auth state poisoned");
            if relooked.is_some_and(|at| at.elapsed() < RELOOK_EVERY) {
                return None;
            }
            *relooked = Some(Instant::now());
        }
        match self.look_up().await {
            Ok(Some((c, origin))) if c != *refused => {
                tracing::debug!(registry = %self.registry_host, %origin, "refused credentials replaced by a fresh lookup");
                *known = Some(Some((c.clone(), origin.clone())));
                Some((c, origin))
            }
            // The refusal says more than a helper failing now would.
            _ => None,
        }
    }

    async fn look_up(&self) -> Result<Option<(Credential, String)>> {
        match &self.source {
            CredentialSource::None => Ok(None),
            CredentialSource::Fixed(c) => Ok(Some((c.clone(), "the credential given".to_string()))),
            // Boxed: the lookup's future (files, credential helpers) is large and runs
            // once a run, and unboxed it made every request's future as large.
            CredentialSource::DockerConfig(cfg) => {
                Box::pin(cfg.find(&self.registry_host, Some(&self.repository))).await
            }
        }
    }
}
