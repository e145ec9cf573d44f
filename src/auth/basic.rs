//! Basic authentication: the header of the credential found, and putting it in place.

use http::HeaderValue;

use super::credentials::Credential;
use super::Authorizer;
use crate::error::{Error, Result};

impl Authorizer {
    /// The `Authorization: Basic` of another credential than `refused`, if looking up
    /// again gives one ([`renewed`](Self::renewed)).
    pub(super) async fn renewed_basic(&self, refused: &Credential) -> Result<Option<HeaderValue>> {
        match self.renewed(refused).await {
            Some(renewed) => self.basic_header(Some(&renewed)).map(Some),
            None => Ok(None),
        }
    }

    /// Sends `header` (Basic credentials, which do not expire) from now on.
    pub(super) fn put_basic(&self, header: HeaderValue) {
        let mut s = self.state.lock().expect("auth state poisoned");
        s.header = Some(header);
        s.expires_at = None;
        s.valid_until = None;
        s.generation += 1;
    }

    /// Stops sending the Basic credentials refused: the requests after the refusal go
    /// without, meet the registry's challenge, and fail there without another login.
    pub(super) fn forget_basic(&self) {
        let mut s = self.state.lock().expect("auth state poisoned");
        // Already forgotten, nothing changes: a new generation would have the tasks
        // meeting the standing refusal at once take it for another's reaction, and send
        // again, until their rounds ran out in a bare 401.
        if s.header.take().is_some() {
            s.generation += 1;
        }
    }

    /// The `Authorization: Basic` of the credential `found`.
    pub(super) fn basic_header(&self, found: Option<&(Credential, String)>) -> Result<HeaderValue> {
        let Some((credential, origin)) = found else {
            return Err(self.no_credentials("Basic", false));
        };
        let header = credential
            .basic_header()
            .ok_or_else(|| self.not_for_basic(credential, origin))?;
        let mut header = HeaderValue::from_str(&header)
            .map_err(|_| Error::invalid("credential is not a valid header"))?;
        header.set_sensitive(true);
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::CredentialSource;
    use crate::retry::RetryPolicy;

    /// A user who logged in to a registry whose token server handed out an identity token
    /// (or who has a registry token) did log in: a Basic challenge cannot use that
    /// credential, and saying none was found sends them to log in again for nothing.
    #[tokio::test]
    async fn a_basic_challenge_met_with_a_token_credential_says_so() {
        for (credential, named) in [
            (
                Credential::IdentityToken("refresh-s3cret".into()),
                "an identity token",
            ),
            (
                Credential::RegistryToken("bearer-s3cret".into()),
                "a registry token",
            ),
        ] {
            let a = Authorizer::for_tests(CredentialSource::Fixed(credential));
            let policy = RetryPolicy::default();
            let anonymous = a.grant(&policy).await.unwrap();
            let e = a
                .challenged(&anonymous, &[r#"Basic realm="r""#.into()], false, &policy)
                .await
                .unwrap_err();
            let said = e.to_string();
            assert_eq!(e.kind(), crate::error::ErrorKind::Unauthorized, "{said}");
            assert!(!said.contains("no credentials"), "{said}");
            assert!(said.contains(named), "{said}");
            assert!(said.contains("the credential given"), "{said}");
            assert!(!said.contains("s3cret"), "{said}");
        }
    }
}
