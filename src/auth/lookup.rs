//! The credential: looked up once, and again when the registry refuses it.

use std::time::{Duration, Instant};

use super::credentials::Credential;
use super::{Authorizer, CredentialSource};
use crate::error::{Error, Result};

/// How often refused credentials are looked up again, at most; and for how long a lookup
/// that failed slowly (a helper silent for its whole minute) is not run again.
const RELOOK_EVERY: Duration = Duration::from_secs(30);
/// How long a lookup that failed quickly (a helper that crashed, or whose keychain was
/// locked for a moment) is not run again, doubled with each failure in a row up to
/// [`RELOOK_EVERY`]. Docker runs the helper again with each command; a failure that
/// passes must not fail every request for half a minute, nor one that stays have the
/// helper run by each of them.
const RELOOK_FIRST: Duration = Duration::from_secs(1);
/// A failed lookup that took this long would take it again: a hang, not a hiccup.
const SLOW_LOOKUP: Duration = Duration::from_secs(10);

/// The lookup's last failure, with when it came and how long it stands.
pub(super) struct Failed {
    at: Instant,
    error: Error,
    stands: Duration,
}

/// How long a failure of a lookup that `took` so long stands, after one that stood
/// `before` (none: the first in a row).
fn stands(took: Duration, before: Option<Duration>) -> Duration {
    if took >= SLOW_LOOKUP {
        return RELOOK_EVERY;
    }
    before.map_or(RELOOK_FIRST, |b| b * 2).min(RELOOK_EVERY)
}

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
        let before = {
            let failed = self.lookup_failed.lock().expect("auth state poisoned");
            if let Some(f) = failed.as_ref().filter(|f| f.at.elapsed() < f.stands) {
                tracing::debug!(registry = %self.registry_host, ago_ms = f.at.elapsed().as_millis() as u64, "the credential lookup failed a moment ago; not run again yet");
                return Err(f.error.shared());
            }
            failed.as_ref().map(|f| f.stands)
        };
        let started = Instant::now();
        match self.look_up().await {
            Ok(found) => {
                self.put_found(&mut known, found.clone());
                Ok(found)
            }
            Err(e) => {
                let mut failed = self.lookup_failed.lock().expect("auth state poisoned");
                *failed = Some(Failed {
                    at: Instant::now(),
                    error: e.shared(),
                    stands: stands(started.elapsed(), before),
                });
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
                self.put_found(&mut known, Some((c.clone(), origin.clone())));
                Some((c, origin))
            }
            // The refusal says more than a helper failing now would.
            _ => None,
        }
    }

    /// Puts `found` in `slot`, the `credential` lock's, and in `credential_known`.
    pub(super) fn put_found(
        &self,
        slot: &mut Option<Option<(Credential, String)>>,
        found: Option<(Credential, String)>,
    ) {
        let mut known = self.credential_known.lock().expect("auth state poisoned");
        *known = found.as_ref().map(|(c, _)| c.clone());
        *slot = Some(found);
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
    use crate::auth::credentials::tests::helper;
    use crate::auth::DockerConfig;

    /// An authorizer whose credentials come from the credential helper `name` in `dir`,
    /// running `script`.
    fn with_helper(dir: &std::path::Path, name: &str, script: &str) -> Authorizer {
        helper(dir, name, script);
        let file = dir.join("config.json");
        std::fs::write(&file, format!(r#"{{"credsStore":"{name}"}}"#)).unwrap();
        let cfg = DockerConfig::from_path(&file).unwrap().with_helper_dir(dir);
        Authorizer::for_tests(CredentialSource::DockerConfig(Arc::new(cfg)))
    }

    /// A helper that fails once (crashed, its keychain busy for a moment) is run again
    /// within seconds, as Docker runs it with each command: the requests of the half
    /// minute after it all failed with its one failure. One that says it has no
    /// credentials has said all there is, and is not run again.
    #[tokio::test]
    async fn a_helper_failing_once_is_run_again_soon_and_one_without_credentials_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let a = with_helper(
            dir.path(),
            "flaky",
            &format!(
                "echo run >> {0}\n[ $(wc -l < {0}) -gt 1 ] || exit 1\n\
                 printf '{{\"Username\":\"u\",\"Secret\":\"s\"}}'",
                runs.display()
            ),
        );
        assert!(a.found().await.is_err());
        let failed = Instant::now();
        let found = loop {
            match a.found().await {
                Ok(found) => break found,
                Err(e) => assert!(failed.elapsed() < Duration::from_secs(10), "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(found.is_some());
        // Not run by each of the lookups meanwhile either.
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 2);

        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let script = format!(
            "echo run >> {}\necho 'credentials not found in native keychain'\nexit 1",
            runs.display()
        );
        let a = with_helper(dir.path(), "empty", &script);
        for _ in 0..3 {
            assert_eq!(a.found().await.unwrap(), None);
        }
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1);
    }

    /// A helper that failed fast is given a second, then twice as long each time it
    /// fails again; one that failed after a long wait (its whole minute) would make the
    /// requests wait that long again, and stands the full half minute at once.
    #[test]
    fn a_slow_failure_stands_longer_than_a_quick_one() {
        let quick = Duration::from_millis(20);
        assert_eq!(stands(quick, None), RELOOK_FIRST);
        assert_eq!(stands(quick, Some(RELOOK_FIRST)), RELOOK_FIRST * 2);
        assert_eq!(stands(quick, Some(RELOOK_EVERY)), RELOOK_EVERY);
        assert_eq!(stands(Duration::from_secs(60), None), RELOOK_EVERY);
    }

    /// A credential helper that fails (one that hangs fails only after a minute) fails
    /// again if run again at once: each request that needs the credential meanwhile is
    /// given its failure rather than run it, and waiting for it, once more.
    #[tokio::test]
    async fn a_failed_lookup_is_not_run_again_by_every_request() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let script = format!("echo run >> {}\nexit 3", runs.display());
        let a = with_helper(dir.path(), "broken", &script);
        let ran = || std::fs::read_to_string(&runs).unwrap().lines().count();
        for _ in 0..3 {
            let e = a.found().await.unwrap_err();
            assert!(e.to_string().contains("docker-credential-broken"), "{e}");
        }
        assert_eq!(ran(), 1);
        // A while later, it is run again: it may have been mended meanwhile.
        // Returning here passed having checked nothing, on a machine up for less than that.
        let long_ago = Instant::now()
            .checked_sub(RELOOK_EVERY)
            .expect("the machine has run for less than RELOOK_EVERY: no instant that long ago");
        a.lookup_failed.lock().unwrap().as_mut().unwrap().at = long_ago;
        assert!(a.found().await.is_err());
        assert_eq!(ran(), 2);
    }
}
