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
        s.header = None;
        s.generation += 1;
    }

    /// The `Authorization: Basic` of the credential `found`.
    pub(super) fn basic_header(&self, found: Option<&(Credential, String)>) -> Result<HeaderValue> {
        let header = found
            .and_then(|(c, _)| c.basic_header())
            .ok_or_else(|| self.no_credentials("Basic"))?;
        let mut header = HeaderValue::from_str(&header)
            .map_err(|_| Error::invalid("credential is not a valid header"))?;
        header.set_sensitive(true);
        Ok(header)
    }
}
