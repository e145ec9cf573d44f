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
        {
            let failed = self.lookup_failed.lock().expect("auth state poisoned");
            if let Some((at, e)) = failed
                .as_ref()
                .filter(|(at, _)| at.elapsed() < RELOOK_EVERY)
            {
                tracing::debug!(registry = %self.registry_host, ago_ms = at.elapsed().as_millis() as u64, "the credential lookup failed a moment ago; not run again yet");
                return Err(e.shared());
            }
        }
        match self.look_up().await {
            Ok(found) => {
                *known = Some(found.clone());
                Ok(found)
            }
            Err(e) => {
                let mut failed = self.lookup_failed.lock().expect("auth state poisoned");
                *failed = Some((Instant::now(), e.shared()));
                Err(e)
            }
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::DockerConfig;

    /// A credential helper that fails (one that hangs fails only after a minute) fails
    /// again if run again at once: each request that needs the credential meanwhile is
    /// given its failure rather than run it, and waiting for it, once more.
    #[tokio::test]
    async fn a_failed_lookup_is_not_run_again_by_every_request() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let helper = dir.path().join("docker-credential-broken");
        let script = format!("#!/bin/sh\necho run >> {}\nexit 3\n", runs.display());
        std::fs::write(&helper, script).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, r#"{"credsStore":"broken"}"#).unwrap();
        let cfg = DockerConfig::from_path(&file)
            .unwrap()
            .with_helper_dir(dir.path());
        let a = Authorizer::for_tests(CredentialSource::DockerConfig(Arc::new(cfg)));
        let ran = || std::fs::read_to_string(&runs).unwrap().lines().count();
        for _ in 0..3 {
            let e = a.found().await.unwrap_err();
            assert!(e.to_string().contains("docker-credential-broken"), "{e}");
        }
        assert_eq!(ran(), 1);
        // A while later, it is run again: it may have been mended meanwhile.
        let Some(long_ago) = Instant::now().checked_sub(RELOOK_EVERY) else {
            return;
        };
        a.lookup_failed.lock().unwrap().as_mut().unwrap().0 = long_ago;
        assert!(a.found().await.is_err());
        assert_eq!(ran(), 2);
    }
}
