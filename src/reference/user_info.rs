//! Credentials typed into a locator or reference: found, refused, and kept out of messages.

/// Why `user:password@host/…` is refused.
pub(crate) const NO_CREDENTIALS_HERE: &str =
    "credentials do not go here; dist reads them from docker \
     login, podman login or a credential helper (see --help)";

/// Whether `s` starts with user information (`[scheme://]user[:password]@host/…`).
pub(super) fn has_user_info(s: &str) -> bool {
    let body = s.split_once("://").map_or(s, |(_, rest)| rest);
    body.split_once('/')
        .is_some_and(|(authority, _)| authority.contains('@'))
}

/// The locator as it may be shown in a message: without user information
/// (`user:password@host/…`), which has no place in a locator and must not reach a
/// terminal or a log.
pub(super) fn shown(s: &str) -> String {
    if has_user_info(s) {
        crate::error::redact_url(s)
    } else {
        s.to_string()
    }
}
