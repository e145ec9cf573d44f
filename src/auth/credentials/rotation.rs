//! Identity tokens an OAuth2 server rotated during a run, so every host trading the same
//! token sends the newest.

use std::collections::HashMap;

/// Refresh tokens an OAuth2 server rotated, by the realm and service it did so for and the
/// token each replaced: every host of a run trading the same identity token there (a hosts
/// file's entry for the registry itself, a mirror on the same token service) must send the
/// newest, the only one the server still takes. In memory only: never written, never shown.
#[derive(Default)]
pub(crate) struct RotatedTokens(std::sync::Mutex<HashMap<RotationKey, String>>);

/// The realm, the service (if the challenge names one) and the token replaced.
type RotationKey = (String, Option<String>, String);

fn rotation_key(realm: &str, service: Option<&str>, token: &str) -> RotationKey {
    (
        realm.to_string(),
        service.map(str::to_string),
        token.to_string(),
    )
}

impl RotatedTokens {
    /// The newest refresh token `token` was rotated to at `realm` for `service`, if it was.
    pub(crate) fn newest(&self, realm: &str, service: Option<&str>, token: &str) -> Option<String> {
        let map = self.0.lock().expect("rotated tokens poisoned");
        let mut key = rotation_key(realm, service, token);
        let mut newest = None;
        // Bounded: a server handing an old token out again must not loop us forever.
        for _ in 0..map.len() {
            let Some(next) = map.get(&key) else { break };
            newest = Some(next.clone());
            key.2 = next.clone();
        }
        newest.filter(|n| n != token)
    }

    /// Records that the server at `realm` for `service` replaced `old` with `new`.
    pub(crate) fn record(&self, realm: &str, service: Option<&str>, old: &str, new: &str) {
        let mut map = self.0.lock().expect("rotated tokens poisoned");
        map.insert(rotation_key(realm, service, old), new.to_string());
    }
}

impl std::fmt::Debug for RotatedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or_default();
        write!(f, "RotatedTokens({n} <redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_token_is_followed_to_the_newest_for_its_realm_and_service_only() {
        let rotated = RotatedTokens::default();
        let realm = "https://auth.example/token";
        rotated.record(realm, Some("reg"), "t0", "t1");
        rotated.record(realm, Some("reg"), "t1", "t2");
        assert_eq!(
            rotated.newest(realm, Some("reg"), "t0").as_deref(),
            Some("t2")
        );
        assert_eq!(
            rotated.newest(realm, Some("reg"), "t1").as_deref(),
            Some("t2")
        );
        assert_eq!(rotated.newest(realm, Some("reg"), "t2"), None);
        assert_eq!(rotated.newest(realm, Some("other"), "t0"), None);
        assert_eq!(rotated.newest(realm, None, "t0"), None);
        assert_eq!(
            rotated.newest("https://else.example/token", Some("reg"), "t0"),
            None
        );
        // A server that hands an old one out again is no endless chain.
        rotated.record(realm, Some("reg"), "t2", "t0");
        let _ = rotated.newest(realm, Some("reg"), "t1");
        let shown = format!("{rotated:?}");
        assert!(!shown.contains("t1") && !shown.contains("t2"), "{shown}");
    }
}
