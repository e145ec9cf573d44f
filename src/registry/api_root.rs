//! The URL checks and API roots of the hosts a repository is asked at: a mirror's or moved
//! registry's URL refused when it could not be asked as written (credentials, a query,
//! port 0, a bare IPv6 address), read as containerd reads a hosts file otherwise.
//!
//! Separate from [`super::host`], which sends requests: the command line and hosts files
//! (`crate::hosts`) check URLs here too, before any host exists.

use http::Uri;

use crate::error::{Error, Result};
use crate::transport;

/// Whether requests to `authority` for `registry`'s content need `?ns=<registry>`, by
/// containerd's rule (`isProxy`): every host but the registry itself, Docker Hub's API
/// host counting as Docker Hub.
pub(super) fn serves_another(authority: &str, registry: &str) -> bool {
    let hub =
        registry == crate::reference::DOCKER_HUB && authority == crate::reference::DOCKER_HUB_API;
    !(hub || authority.eq_ignore_ascii_case(registry))
}

/// Refuses a query or a fragment in the URL of a mirror or server (`what`), as the command
/// line does for a mirror: the host is asked at its URL's path only, as containerd asks
/// it, and a query (`?token=…`) taken out without a word left it asked without, failing,
/// and passed over for the next host. Quoted without the query, which may hold a token.
pub(crate) fn nothing_unsent_in(url: &str, what: &str) -> Result<()> {
    let Some((_, why)) = crate::hosts::unsent_part(url) else {
        return Ok(());
    };
    Err(Error::invalid(format!(
        "invalid {what} {:?}: {why}",
        crate::error::redact_url(url.trim()),
    )))
}

/// Refuses `user:password@` in the URL of a mirror or server (`what`), written on the
/// command line, in a hosts file or by a library caller: never sent (credentials come
/// from the same files as the registry's), it became part of the host's name, which
/// messages and logs show.
pub(crate) fn no_credentials_in(url: &str, what: &str) -> Result<()> {
    if crate::reference::url_login_end(url).is_none() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{what} {}: {}",
        crate::error::redact_url(url),
        crate::reference::NO_CREDENTIALS_HERE
    )))
}

/// `scheme://host[:port]` of an API root (`scheme://host[:port]/path/`).
pub(super) fn origin_of(api: &str) -> &str {
    let path = api.find("://").map_or(0, |i| i + 3);
    let end = api[path..].find('/').map_or(api.len(), |i| path + i);
    &api[..end]
}

/// [`api_root`], or the error refusing `url` as the `what` (`mirror`, `registry server`)
/// that was written `shown`: the user's own spelling, before a scheme was put in front.
pub(crate) fn api_root_of(
    url: &str,
    override_path: bool,
    what: &str,
    shown: &str,
) -> Result<(String, String)> {
    // Quoted without a query, which may hold a token (a mirror's `?token=…`).
    let shown = &crate::error::redact_url(shown);
    // Taken, as the locator's was, every request tried it first and failed as "connection
    // refused", and went on to the next host: a mirror never asked, without a word.
    if url.parse::<Uri>().is_ok_and(|uri| transport::port_0(&uri)) {
        return Err(Error::invalid(format!(
            "invalid {what} {shown:?}: {}",
            crate::reference::PORT_0
        )));
    }
    api_root(url, override_path).ok_or_else(|| {
        // `--mirror http://::1:5000`, the address as ss or a log shows it, was refused
        // without a word of the brackets, as the locator no longer is.
        let host = url.split_once("://").map_or(url, |(_, rest)| rest);
        let parsed = url.parse::<Uri>().ok();
        // What is wrong, where the form alone left `:5000` or `:99999` to be puzzled out.
        let hint = if parsed.as_ref().and_then(Uri::host) == Some("") {
            "; it names no host".to_string()
        } else if parsed.as_ref().is_some_and(transport::bad_port) {
            "; its port is no number up to 65535".to_string()
        } else {
            crate::reference::bracketed_ipv6(host.split('/').next().unwrap_or(""))
                .map(|b| format!("; an IPv6 address is written in brackets, as in URLs: {b}"))
                .unwrap_or_default()
        };
        Error::invalid(format!(
            "invalid {what} {shown:?} (scheme://host[:port][/path]){hint}"
        ))
    })
}

/// The authority and API root of `scheme://host[:port][/path]`, as containerd reads a
/// hosts file: `<path>/v2/`, unless the path already ends in `/v2` or `override_path` says
/// the path is the root. `None` for anything but an http(s) URL with a host.
fn api_root(url: &str, override_path: bool) -> Option<(String, String)> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri
        .scheme_str()
        .filter(|s| matches!(*s, "http" | "https"))?;
    // The URI parser takes an empty host (`https://:5000`, or `--mirror :5000` with its
    // scheme added): a mirror of no host, asked and failed as a lookup of no name.
    uri.host().filter(|h| !h.is_empty())?;
    let authority = uri.authority()?.as_str().to_string();
    // `http::Uri` reads `[::1]5000` as `[::1]` on the scheme's port, the rest unread: a
    // mirror written without its colon would be asked at port 80 or 443.
    if let Some((_, after)) = authority.split_once(']') {
        let port = || {
            after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok())
        };
        if !after.is_empty() && !port() {
            return None;
        }
    }
    // `:+5000` was asked as `Host: reg.example:+5000`, and `:7x` at port 80 or 443.
    if transport::bad_port(&uri) {
        return None;
    }
    let path = uri.path().trim_end_matches('/');
    let v2 = if override_path || path.ends_with("/v2") {
        ""
    } else {
        "/v2"
    };
    let api = format!("{scheme}://{authority}{path}{v2}/");
    Some((authority, api))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found as a redirect's `//:?` was (tests/properties.rs): a URL whose host is empty
    /// was taken for a mirror's or a registry server's.
    #[test]
    fn a_url_of_no_host_is_refused() {
        for url in [
            "https://:5000",
            "https://:5000/x",
            "http://:80",
            "https://:/",
        ] {
            let e = api_root_of(url, false, "mirror", url).unwrap_err();
            assert!(e.to_string().contains("scheme://host"), "{url}: {e}");
            assert!(e.to_string().contains("no host"), "{url}: {e}");
        }
        assert!(api_root_of("https://m.example:5000", false, "mirror", "m").is_ok());
    }

    /// `http::Uri` takes `[::1]5000` for `[::1]` on the scheme's port: a mirror written
    /// without its colon was asked at port 80 or 443 of the address.
    #[test]
    fn a_mirror_s_ipv6_literal_is_followed_by_a_port_or_nothing() {
        assert_eq!(
            api_root("http://[::1]:5000", false),
            Some(("[::1]:5000".into(), "http://[::1]:5000/v2/".into()))
        );
        assert_eq!(
            api_root("https://[fd00::5]/cache", false),
            Some(("[fd00::5]".into(), "https://[fd00::5]/cache/v2/".into()))
        );
        for url in [
            "http://[::1]5000",
            "https://[fd00::5]x/v2",
            "http://[::1]:x",
        ] {
            assert_eq!(api_root(url, false), None, "{url}");
        }
    }

    /// `http::Uri` reads a port with `u16::from_str`, which takes a leading '+': a mirror
    /// at `reg.example:+5000` was asked with `Host: reg.example:+5000`; and it reads no
    /// port from one that is no number up to 65535.
    #[test]
    fn a_mirror_s_port_is_digits_only() {
        // A port `Uri` takes and then reads as none (`:7x`, `:99999`) was the scheme's
        // default: the mirror was asked at port 80 or 443.
        for url in [
            "http://reg.example:+5000",
            "http://[::1]:+5000/cache",
            "http://reg.example:7x",
            "https://reg.example:99999/cache",
        ] {
            assert_eq!(api_root(url, false), None, "{url}");
            // Said as what is wrong, not only as the form to write.
            let e = api_root_of(url, false, "mirror", url)
                .unwrap_err()
                .to_string();
            assert!(e.contains("no number up to 65535"), "{url}: {e}");
        }
        assert!(api_root("http://reg.example:5000", false).is_some());
    }
}
