//! Mirror configuration: `--mirror URL`, and containerd's `hosts.toml`.
//!
//! A hosts directory holds one folder per registry, named like the registry
//! (`docker.io`, `localhost:5000` or `localhost_5000_`), with a `hosts.toml` in it;
//! `_default/hosts.toml` applies to registries without a folder of their own. The file lists
//! mirrors in order:
//!
//! ```toml
//! server = "https://registry-1.docker.io"   # optional: where the registry itself is
//! capabilities = ["pull", "resolve"]        # with server: what it may be asked; absent or [ ]: both
//! override_path = false                     # with server: true: its URL path is the API root
//!
//! [host."https://mirror.example.com"]
//!   capabilities = ["pull", "resolve"]      # absent or empty: both
//!   ca = "/etc/dist/mirror-ca.pem"          # or a list; relative to the file
//!   skip_verify = false
//!   client = [["client.cert", "client.key"]] # or "both.pem", or ["both.pem", ...]
//!   dial_timeout = "2s"                     # connect timeout (default --connect-timeout)
//!   [host."https://mirror.example.com".header]
//!     x-team = "build"                      # or a list of values
//!
//! [host."mirror.internal:5000"]
//!   plain-http = true                       # no scheme given: http instead of https
//!   override_path = false                   # true: the URL path is the API root
//! ```
//!
//! `ca`, `skip_verify`, `client`, `dial_timeout` and `[header]` at the top of the file apply
//! to the registry itself; `capabilities` and `override_path` there only once `server`
//! moves it, as in containerd. Of several client certificates only the first is used (a TLS
//! client presents one). Configured headers go to their host only, never along a redirect
//! to another.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::registry::host::{Capabilities, Server};
use crate::transport::tls::ClientIdentity;

/// How to talk to one host: whom to trust, which certificate to show, what to add.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostSettings {
    /// CA certificates to trust for it, besides the system's.
    pub ca: Vec<PathBuf>,
    /// Accept any certificate from it.
    pub skip_verify: bool,
    /// The client certificate to show it.
    pub client: Option<ClientIdentity>,
    /// Headers for every request to it (a name may carry several values). They may be
    /// keys: read from `hosts.toml` they are marked sensitive, and `Debug` shows their
    /// names alone, however they were made.
    pub headers: http::HeaderMap,
    /// How long establishing a connection to it may take (`dial_timeout`); short for a
    /// mirror that may be gone, so that the registry takes over quickly. `None`, and a
    /// zero (as `dial_timeout = "0s"` is in containerd), is none of its own: see
    /// [`HostSettings::connect_timeout`].
    pub dial_timeout: Option<std::time::Duration>,
}

impl HostSettings {
    /// The [`TransportOptions::connect_timeout`](crate::transport::TransportOptions) for
    /// the host: its `dial_timeout`, else `default` (everyone's, `--connect-timeout`).
    /// A zero `dial_timeout` is none of the host's own, as `"0s"` in `hosts.toml` is:
    /// set as it is, `Transport::new` refused it naming `connect_timeout`, a field the
    /// caller never set.
    pub fn connect_timeout(&self, default: std::time::Duration) -> std::time::Duration {
        self.dial_timeout
            .filter(|d| !d.is_zero())
            .unwrap_or(default)
    }
}

impl std::fmt::Debug for HostSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSettings")
            .field("ca", &self.ca)
            .field("skip_verify", &self.skip_verify)
            .field("client", &self.client)
            .field("headers", &crate::transport::HeaderNames(&self.headers))
            .field("dial_timeout", &self.dial_timeout)
            .finish()
    }
}

/// One mirror as configured, before a client is built for it. Read from a file or a flag,
/// it gains fields as `hosts.toml` gains keys (as `settings` came): a pattern needs `..`.
///
/// ```
/// let spec = dist::hosts::HostSpec::from_flag("mirror.example:5000")?;
/// let dist::hosts::HostSpec { url, .. } = spec;
/// assert_eq!(url, "https://mirror.example:5000");
/// # Ok::<_, dist::Error>(())
/// ```
///
/// ```compile_fail
/// # let spec = dist::hosts::HostSpec::from_flag("mirror.example").unwrap();
/// let dist::hosts::HostSpec { url, capabilities, override_path, settings } = spec;
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostSpec {
    /// `scheme://host[:port][/path]`.
    pub url: String,
    /// What it may be asked for.
    pub capabilities: Capabilities,
    /// The URL path is the API root (no `/v2` appended).
    pub override_path: bool,
    /// Trust, client certificate and headers.
    pub settings: HostSettings,
}

impl std::fmt::Debug for HostSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The files and the flag refuse a login in the URL; one set here later is no more
        // shown than a mirror's (see `Mirror`'s `Debug`).
        f.debug_struct("HostSpec")
            .field("url", &crate::error::redact_url(&self.url))
            .field("capabilities", &self.capabilities)
            .field("override_path", &self.override_path)
            .field("settings", &self.settings)
            .finish()
    }
}

impl HostSpec {
    /// A mirror given on the command line: `URL` or `host[:port]` (https unless loopback).
    pub fn from_flag(value: &str) -> Result<HostSpec> {
        // A mirror is asked at its URL's path only, as containerd asks it: a query
        // (`?token=…`) would never be sent, the mirror asked without it and passed over
        // for the registry without a word. A login is refused first, unshown: its
        // password may hold a `?`.
        crate::registry::api_root::no_credentials_in(value, "mirror")?;
        crate::registry::api_root::nothing_unsent_in(value, "mirror")?;
        Ok(HostSpec {
            url: with_scheme(value, None, "mirror")?,
            capabilities: Capabilities::ALL,
            override_path: false,
            settings: HostSettings::default(),
        })
    }
}

/// Why a mirror's or server's URL with a query is refused on the command line and in a
/// [`Mirror`](crate::registry::host::Mirror) or [`Server`], and warned about in a hosts
/// file (which containerd reads so too): the query is never sent.
pub const NO_QUERY_SENT: &str = "a mirror (or a registry's server) is asked at its URL's \
     path only, and a query would never be sent (left out of this message: it may hold a \
     token); its credentials come from docker login or podman login, or a `header` in \
     hosts.toml";

/// Why a mirror's or server's URL with a fragment (`#…`) is refused or warned about, as
/// one with a query is ([`NO_QUERY_SENT`]): the fragment is never sent either, and was
/// dropped without a word.
pub const NO_FRAGMENT_SENT: &str = "a mirror (or a registry's server) is asked at its URL's \
     path only, and a fragment (`#…`) is never sent to a server";

/// Where the part of a mirror's or server's `url` that is never sent starts, its query or
/// its fragment, whichever comes first, and why it is refused ([`NO_QUERY_SENT`],
/// [`NO_FRAGMENT_SENT`]); `None` when the whole URL is sent.
pub fn unsent_part(url: &str) -> Option<(usize, &'static str)> {
    let at = url.find(['?', '#'])?;
    let why = if url[at..].starts_with('?') {
        NO_QUERY_SENT
    } else {
        NO_FRAGMENT_SENT
    };
    Some((at, why))
}

/// The parsed `hosts.toml` of one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostsFile {
    /// Where the registry itself is served, if not at its usual address, with the file's
    /// top-level `capabilities` and `override_path` (containerd reads them only then).
    pub server: Option<Server>,
    /// How to talk to the registry itself (the keys at the top of the file).
    pub server_settings: HostSettings,
    /// Mirrors, in the order of the file.
    pub hosts: Vec<HostSpec>,
}

impl HostsFile {
    /// Reads the registry's folder, else `DIR/_default`, as containerd does: its
    /// `hosts.toml`, or without one, Docker's certificate files in it (`*.crt` CAs, a
    /// `*.cert` with its `*.key`, else one holding its key: [`crate::certs::in_folder`]) for
    /// the registry itself. The registry's folder is
    /// `DIR/<host>_<port>_` (the spelling that works on every filesystem, tried first), else
    /// `DIR/<host>:<port>`. `None` when no folder exists.
    pub fn load(dir: &Path, registry: &str) -> Result<Option<HostsFile>> {
        let own = crate::certs::is_folder_name(registry)
            .then(|| {
                port_spelled_out(registry)
                    .into_iter()
                    .chain([registry.to_string()])
            })
            .into_iter()
            .flatten();
        let Some(folder) = own
            .chain(["_default".to_string()])
            .map(|name| dir.join(name))
            .find(|d| d.is_dir())
        else {
            return Ok(None);
        };
        let path = folder.join("hosts.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::invalid(format!("reading {}", path.display())).with_cause(e))
            }
        };
        // containerd takes an empty file (one made with `touch`, say, before it is
        // written) for none: the folder's certificate files still count.
        match text.filter(|t| !t.is_empty()) {
            Some(text) => HostsFile::parse(&text, &folder)
                .and_then(|file| file.cas_found().map(|()| Some(file)))
                .map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.reason()))),
            None => {
                let (ca, client) = crate::certs::in_folder(&folder);
                let server_settings = HostSettings {
                    ca,
                    client,
                    ..HostSettings::default()
                };
                Ok(Some(HostsFile {
                    server_settings,
                    ..HostsFile::default()
                }))
            }
        }
    }

    /// Refuses a `ca` that names no file, or a directory (`ca = ""`, the folder itself), for
    /// [`HostsFile::load`] to say with the file it is written in: found when its client was
    /// made, as `reading CA file …/nofile.pem`, it left the user to find where it was
    /// configured. One under `skip_verify` is never read, and is no error.
    fn cas_found(&self) -> Result<()> {
        let registry = std::iter::once(("the registry".to_string(), &self.server_settings));
        let mirrors = (self.hosts.iter()).map(|h| (format!("host {:?}", h.url), &h.settings));
        for (whose, settings) in registry.chain(mirrors) {
            for ca in settings.ca.iter().filter(|_| !settings.skip_verify) {
                let why = match std::fs::metadata(ca) {
                    Err(e) => e.to_string(),
                    Ok(m) if m.is_dir() => "is a directory, not a PEM file".to_string(),
                    Ok(_) => continue,
                };
                let ca = ca.display();
                return Err(Error::invalid(format!("{whose}: ca {ca}: {why}")));
            }
        }
        Ok(())
    }

    /// Parses the text of a `hosts.toml`; relative CA paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<HostsFile> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            // The message alone ("invalid array") leaves the user searching the file.
            let at = e.span().map_or(String::new(), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                format!(" at line {line}, column {column}")
            });
            Error::invalid(format!("not valid TOML{at}: {}", e.message()))
        })?;
        let mut file = HostsFile::default();
        let server = match table.get("server") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or_else(|| Error::invalid("\"server\" must be a string"))?,
            ),
        };
        // containerd reads `server = ""` as no server: the registry at its usual address.
        if let Some(s) = server.filter(|s| !s.is_empty()) {
            file.server = Some(Server {
                url: with_scheme(s, None, "registry server")?,
                capabilities: capabilities(&table, "the registry")?,
                override_path: flag(&table, "override_path", "the registry")?,
            });
        }
        file.server_settings = settings(&table, base, "the registry")?;
        let Some(hosts) = table.get("host") else {
            return Ok(file);
        };
        let hosts = hosts
            .as_table()
            .ok_or_else(|| Error::invalid("\"host\" must be a table of tables"))?;
        for (url, entry) in hosts {
            // Before the table's name is quoted by a message on one of its keys; quoted
            // without a query, which may hold a token.
            crate::registry::api_root::no_credentials_in(url, "mirror")?;
            let what = format!("host {:?}", crate::error::redact_url(url));
            let entry = entry
                .as_table()
                .ok_or_else(|| Error::invalid(format!("{what} must be a table")))?;
            let plain = flag(entry, "plain-http", &what)? || flag(entry, "plain_http", &what)?;
            file.hosts.push(HostSpec {
                url: with_scheme(url, Some(plain), "mirror")?,
                capabilities: capabilities(entry, &what)?,
                override_path: flag(entry, "override_path", &what)?,
                settings: settings(entry, base, &what)?,
            });
        }
        Ok(file)
    }
}

/// `host_port_` for `host:port`, containerd's folder name without a colon; `None` without
/// a port.
fn port_spelled_out(registry: &str) -> Option<String> {
    let (host, port) = registry.rsplit_once(':')?;
    (!host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{host}_{port}_"))
}

/// A true/false key of one table (a host's, or the file's top), false when absent.
fn flag(table: &toml::Table, key: &str, what: &str) -> Result<bool> {
    match table.get(key) {
        None => Ok(false),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| Error::invalid(format!("{what}: {key} must be true or false"))),
    }
}

/// `capabilities` of one table: both pull and resolve when absent or empty; `push` is
/// accepted and ignored, since dist never pushes.
fn capabilities(table: &toml::Table, what: &str) -> Result<Capabilities> {
    let Some(v) = table.get("capabilities") else {
        return Ok(Capabilities::ALL);
    };
    let list = v
        .as_array()
        .ok_or_else(|| Error::invalid(format!("{what}: capabilities must be a list")))?;
    // containerd reads an empty list as no list at all: the host may do everything. Read
    // as "nothing", the mirror would be skipped (or the registry refused) where containerd
    // sends every request.
    if list.is_empty() {
        return Ok(Capabilities::ALL);
    }
    let mut caps = Capabilities {
        pull: false,
        resolve: false,
    };
    for c in list {
        match c.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("pull") => caps.pull = true,
            Some("resolve") => caps.resolve = true,
            Some("push") => {}
            Some(other) => {
                return Err(Error::invalid(format!(
                    "{what}: unknown capability {other:?}"
                )))
            }
            None => {
                return Err(Error::invalid(format!(
                    "{what}: capabilities must be strings"
                )))
            }
        }
    }
    Ok(caps)
}

/// `ca`, `skip_verify`, `client`, `dial_timeout` and `[header]` of one table (a host's, or
/// the file's top level for the registry itself); relative paths are taken from `base`.
fn settings(table: &toml::Table, base: &Path, whose: &str) -> Result<HostSettings> {
    let invalid = |what: &str| Error::invalid(format!("{whose}: {what}"));
    let ca = match table.get("ca") {
        None => Vec::new(),
        Some(v) => strings(v)
            .ok_or_else(|| invalid("ca must be a path or a list of paths"))?
            .into_iter()
            .map(|s| base.join(s))
            .collect(),
    };
    let skip_verify = flag(table, "skip_verify", whose)?;
    let dial_timeout = match table.get("dial_timeout") {
        None => None,
        Some(v) => {
            let text = v
                .as_str()
                .ok_or_else(|| invalid("dial_timeout must be a duration such as \"5s\""))?;
            // containerd reads an empty one as none given.
            if text.is_empty() {
                None
            } else {
                let d = crate::duration::parse(text)
                    .map_err(|e| invalid(&format!("dial_timeout: {e}")))?;
                // Zero is no limit of its own in containerd (Go's dialer): the default applies.
                (!d.is_zero()).then_some(d)
            }
        }
    };
    let client = match table.get("client") {
        None => None,
        Some(v) => client_identity(v, base).ok_or_else(|| {
            invalid("client must be a path, a list of paths, or a list of [certificate, key] pairs")
        })?,
    };
    let mut headers = http::HeaderMap::new();
    if let Some(h) = table.get("header") {
        let h = h
            .as_table()
            .ok_or_else(|| invalid("header must be a table"))?;
        for (name, value) in h {
            let values = strings(value).ok_or_else(|| {
                invalid(&format!(
                    "header {name:?} must be a string or a list of strings"
                ))
            })?;
            let not_valid = || invalid(&format!("header {name:?} is not a valid HTTP header"));
            let key = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| not_valid())?;
            for v in values {
                let mut value = http::HeaderValue::from_str(v).map_err(|_| not_valid())?;
                value.set_sensitive(true);
                headers.append(&key, value);
            }
        }
    }
    Ok(HostSettings {
        ca,
        skip_verify,
        client,
        headers,
        dial_timeout,
    })
}

/// A value containerd lets be one string or a list of them; `None` for any other shape.
fn strings(value: &toml::Value) -> Option<Vec<&str>> {
    match value {
        toml::Value::String(s) => Some(vec![s.as_str()]),
        toml::Value::Array(list) => list.iter().map(toml::Value::as_str).collect(),
        _ => None,
    }
}

/// containerd's three spellings of `client`: a PEM with both certificate and key, a list
/// of such files, or a list of `[certificate, key]` pairs (an empty key: it is in the
/// certificate's file). The first one counts. `None` when the shape is wrong.
fn client_identity(value: &toml::Value, base: &Path) -> Option<Option<ClientIdentity>> {
    let both = |path: &str| {
        let path = base.join(path);
        ClientIdentity {
            cert: path.clone(),
            key: path,
        }
    };
    let first = match value {
        toml::Value::String(s) => return Some(Some(both(s))),
        toml::Value::Array(list) => match list.first() {
            None => return Some(None),
            Some(first) => first,
        },
        _ => return None,
    };
    match first {
        toml::Value::String(s) => Some(Some(both(s))),
        toml::Value::Array(pair) => match pair.as_slice() {
            [toml::Value::String(cert), toml::Value::String(key)] if key.is_empty() => {
                Some(Some(both(cert)))
            }
            [toml::Value::String(cert), toml::Value::String(key)] => Some(Some(ClientIdentity {
                cert: base.join(cert),
                key: base.join(key),
            })),
            [toml::Value::String(cert)] => Some(Some(both(cert))),
            _ => None,
        },
        _ => None,
    }
}

/// Adds a scheme to `host[:port][/path]`: http when `plain` says so (or, when unsaid, for
/// loopback hosts, as for registries), https otherwise; and refuses, as the `what` it is
/// (`mirror`, `registry server`) and quoted as written, what is no such URL (a port past
/// 65535, a space). Found only once its client was made, that was said with a scheme
/// nobody wrote, and without the `hosts.toml` it came from, which names only errors of
/// its reading.
fn with_scheme(value: &str, plain: Option<bool>, what: &str) -> Result<String> {
    let url = scheme_added(value, plain, what)?;
    crate::registry::api_root::api_root_of(&url, false, what, value.trim())?;
    Ok(url)
}

/// [`with_scheme`]'s URL, refusing what no scheme makes one: a login, another scheme, a
/// bare IPv6 address.
fn scheme_added(value: &str, plain: Option<bool>, what: &str) -> Result<String> {
    // Quoted with its trailing `/`, as written: a refusal of `http://m.example:99999/`
    // quoted a spelling the user did not write.
    let written = value.trim();
    let value = written.trim_end_matches('/');
    if value.is_empty() {
        return Err(Error::invalid(format!("empty {what} address")));
    }
    crate::registry::api_root::no_credentials_in(value, what)?;
    // A scheme is case-insensitive (RFC 3986, 3.1), and written in lower case from here on.
    // Looked for before the trailing `/`s go: `http://` alone lost its `//`, and `http:`
    // was taken for a host, asked as `https://http:`.
    if let Some((scheme, rest)) = written.split_once("://") {
        if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
            let rest = rest.trim_end_matches('/');
            return Ok(format!("{}://{rest}", scheme.to_ascii_lowercase()));
        }
    }
    // Quoted without a query, which may hold a token.
    let shown = crate::error::redact_url(written);
    if value.contains("://") {
        return Err(Error::invalid(format!(
            "{what} {shown:?}: only http and https are supported"
        )));
    }
    let host = value.split('/').next().unwrap_or(value);
    // Refused later as `http://::1:5002`, a spelling the user never wrote: refused here,
    // as written, with the spelling that works.
    if let Some(bracketed) = crate::reference::bracketed_ipv6(host) {
        return Err(Error::invalid(format!(
            "invalid {what} {shown:?}: an IPv6 address is written in brackets, as in URLs: \
             {bracketed}"
        )));
    }
    let plain = plain.unwrap_or_else(|| crate::reference::is_loopback(host));
    Ok(format!(
        "{}://{value}",
        if plain { "http" } else { "https" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `mirror_flags_take_their_scheme` (tests/properties.rs): `--mirror http://`
    /// was asked as `https://http:`, and `:5000` (a host left out) as `https://:5000`.
    #[test]
    fn a_mirror_of_no_host_is_refused() {
        for flag in ["http://", "HTTPS:///", ":5000", "https://:5000/x"] {
            let e = HostSpec::from_flag(flag).unwrap_err();
            assert!(e.to_string().contains("scheme://host"), "{flag}: {e}");
        }
        assert_eq!(
            HostSpec::from_flag("m.example:5000/").unwrap().url,
            "https://m.example:5000"
        );
        assert_eq!(
            HostSpec::from_flag("HTTP://m.example//").unwrap().url,
            "http://m.example"
        );
    }

    #[test]
    fn a_mirror_with_a_password_is_refused_without_showing_it() {
        for value in [
            "http://mu:mirrorSECRET@127.0.0.1:16004",
            "mu:mirrorSECRET@mirror.example/cache",
            // A password pasted unencoded, a '/' in it ending no valid host.
            "http://mu:mirror/SECRET@127.0.0.1:16004",
            "mu:mirror/SECRET@mirror.example/cache",
            // A '?' or '#' in it ended no valid host either.
            "http://mu:mirror?SECRET@127.0.0.1:16004",
            "http://mu:mirror#SECRET@127.0.0.1:16004",
            "mu:mirror?SECRET@mirror.example/cache",
            // A password whose start reads as a port: `mu:1234` was the mirror.
            "http://mu:1234/SECRET@127.0.0.1:16004",
            "mu:1234/SECRET@mirror.example/cache",
        ] {
            let e = with_scheme(value, None, "mirror").unwrap_err();
            assert!(e.to_string().contains("credentials do not go here"), "{e}");
            assert!(!e.to_string().contains("SECRET"), "{e}");
            assert!(!e.to_string().contains("mu:"), "{e}");
        }
        assert!(with_scheme("mirror.example/path@x", None, "mirror").is_ok());
        assert!(with_scheme("https://mirror.example:5000/path@x", None, "mirror").is_ok());
    }

    /// A `[host."…"]` table's name with a login was quoted whole, `host "https://mu:…"`,
    /// by the messages on its keys (a flag that is no boolean), before the login was
    /// looked for: the login is refused first, unshown.
    #[test]
    fn a_host_table_named_with_a_login_is_refused_before_its_keys_are_read() {
        for text in [
            "[host.\"https://mu:SECRET@mirror.example\"]\nplain-http = \"yes\"\n",
            "[host.\"https://mu:SECRET@mirror.example\"]\ncapabilities = \"pull\"\n",
            "host = { \"https://mu:SECRET@mirror.example\" = 5 }\n",
        ] {
            let e = HostsFile::parse(text, Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("credentials do not go here"), "{text}: {e}");
            assert!(!e.contains("SECRET") && !e.contains("mu:"), "{text}: {e}");
        }
    }

    /// A hosts file's query is taken out with a warning that shows it as `?…` (it may be
    /// a token), but the messages of the file's other faults quoted the URL whole: the
    /// name of a `[host."…"]` table on a key's error, and a `server` or `host` with
    /// another scheme or a bare IPv6 address.
    #[test]
    fn a_hosts_file_s_query_is_not_shown_by_its_other_errors() {
        for text in [
            "[host.\"https://mirror.example/x?token=SECRET\"]\nplain-http = \"yes\"\n",
            "[host.\"https://mirror.example/x?token=SECRET\"]\ncapabilities = \"pull\"\n",
            "[host.\"https://mirror.example/x?token=SECRET\"]\ndial_timeout = \"soon\"\n",
            "host = { \"https://mirror.example/x?token=SECRET\" = 5 }\n",
            "[host.\"ftp://mirror.example/x?token=SECRET\"]\n",
            "[host.\"::1/x?token=SECRET\"]\n",
            "server = \"ftp://registry.example/x?token=SECRET\"\n",
            "server = \"::1/x?token=SECRET\"\n",
        ] {
            let e = HostsFile::parse(text, Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(!e.contains("SECRET"), "{text}: {e}");
            assert!(e.contains("?…"), "{text}: {e}");
        }
    }

    /// What the login checks of a mirror's URL must leave alone: a query (`?ns=`, as
    /// containerd's requests carry), an `@` in a path segment, with or without a port, and
    /// an `@` in the query after a port.
    #[test]
    fn a_mirror_with_a_query_or_a_path_s_at_is_accepted_as_written() {
        for value in [
            "https://mirror.example/path?ns=docker.io",
            "https://mirror.example:5000/path?ns=docker.io",
            "mirror.example:5000/cache?ns=docker.io",
            "https://mirror.example/a@b/c",
            "https://mirror.example:5000/a@b/c",
            "https://mirror.example:5000/p?x=a@b.example",
            // A version after a path's `@` (`team@v1.2`) names no host: a host's last
            // label is no number, unless the host is an IPv4 address.
            "https://mirror.example:5000/team@v1.2/c",
            "https://10.0.0.5:5000/cache@2.0",
        ] {
            let url = with_scheme(value, None, "mirror").unwrap_or_else(|e| panic!("{value}: {e}"));
            assert!(url.ends_with(value.split_once("://").map_or(value, |(_, v)| v)));
            assert_eq!(crate::reference::url_login_end(&url), None, "{url}");
        }
    }

    /// `--mirror 'http://m/cache?token=…'` was taken, the mirror asked at `/cache/v2/…`
    /// without the query and, refusing, passed over for the registry without a word: it
    /// is refused, the query unshown, as a locator's is. Other refusals of such a URL
    /// (port 0) leave the query out too.
    #[test]
    fn a_mirror_flag_with_a_query_is_refused_unshown() {
        for value in [
            "http://127.0.0.1:5000/cache?token=tokSECRET",
            "mirror.example?token=tokSECRET",
        ] {
            let e = HostSpec::from_flag(value).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{value}");
            let e = e.to_string();
            assert!(e.contains("a query would never be sent"), "{e}");
            assert!(e.contains("?…"), "{e}");
            assert!(!e.contains("tokSECRET"), "{e}");
        }
        // A fragment is never sent either: refused, where it was dropped without a word.
        let e = HostSpec::from_flag("http://127.0.0.1:5000/cache#v2").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(
            e.to_string().contains("a fragment (`#…`) is never sent"),
            "{e}"
        );
        let e = HostSpec::from_flag("mu:pw?x@mirror.example/c").unwrap_err();
        assert!(e.to_string().contains("credentials do not go here"), "{e}");
        let e = with_scheme("http://127.0.0.1:0/c?token=tokSECRET", None, "mirror").unwrap_err();
        assert!(!e.to_string().contains("tokSECRET"), "{e}");
        assert!(HostSpec::from_flag("http://127.0.0.1:5000/cache").is_ok());
    }

    /// Port 0 in a mirror's URL (`--mirror`, a hosts file's `server` or host) is refused,
    /// as in a locator: taken, every request tried it first, failed as "connection
    /// refused" and went on to the registry, the mirror never asked.
    #[test]
    fn a_mirror_on_port_0_is_refused() {
        for value in [
            "localhost:0",
            "http://127.0.0.1:0/cache",
            "https://[::1]:00",
        ] {
            for what in ["mirror", "registry server"] {
                let e = with_scheme(value, None, what).unwrap_err();
                assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{value}");
                let e = e.to_string();
                assert!(e.contains("no server listens on port 0"), "{value}: {e}");
                assert!(e.starts_with(&format!("invalid {what} {:?}", value)), "{e}");
            }
        }
        assert!(with_scheme("localhost:1", None, "mirror").is_ok());
        assert!(with_scheme("http://localhost:10/cache", None, "mirror").is_ok());
    }

    /// A URL given with a trailing `/` was quoted without it, where refusals quote what
    /// was written.
    #[test]
    fn a_refused_url_is_quoted_with_its_trailing_slash() {
        for (value, want) in [
            (
                "http://127.0.0.1:99999/",
                "invalid mirror \"http://127.0.0.1:99999/\"",
            ),
            ("ftp://m.example/", "mirror \"ftp://m.example/\""),
            ("::1:5002/", "invalid mirror \"::1:5002/\""),
        ] {
            let e = HostSpec::from_flag(value).unwrap_err().to_string();
            assert!(e.starts_with(want), "{value}: {e}");
        }
    }

    /// `--mirror ::1:5002`, an address as `ss` shows it, was refused as
    /// `"http://::1:5002"`, which the user never wrote: the message quotes what was given.
    #[test]
    fn a_bare_ipv6_mirror_is_refused_as_it_was_written() {
        for (value, want) in [("::1:5002", "[::1]:5002"), ("fd00::5/cache", "[fd00::5]")] {
            let e = HostSpec::from_flag(value).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "invalid mirror {value:?}: an IPv6 address is written in brackets, as in \
                     URLs: {want}"
                ),
            );
        }
        assert!(HostSpec::from_flag("[::1]:5002").is_ok());
    }

    /// A scheme is case-insensitive (RFC 3986, 3.1): `HTTPS://` was refused with "only http
    /// and https are supported", which is what it is.
    #[test]
    fn a_scheme_in_capitals_is_the_same_scheme() {
        assert_eq!(
            HostSpec::from_flag("HTTPS://Mirror.example:5000/cache")
                .unwrap()
                .url,
            "https://Mirror.example:5000/cache"
        );
        let f = HostsFile::parse(
            "server = \"Https://r.example\"\n[host.\"HTTP://m.example:5000\"]\n",
            Path::new("/r"),
        )
        .unwrap();
        assert_eq!(f.server.unwrap().url, "https://r.example");
        assert_eq!(f.hosts[0].url, "http://m.example:5000");
        assert!(with_scheme("FTP://m.example", None, "mirror").is_err());
    }

    #[test]
    fn parses_containerd_shape_in_order() {
        let f = HostsFile::parse(
            r#"
server = "https://registry-1.docker.io"

[host."https://b.example"]
  capabilities = ["pull"]
  ca = ["ca1.pem", "/abs/ca2.pem"]

[host."a.example:5000"]
  plain-http = true
  skip_verify = true

[host."https://c.example/prefix"]
  override_path = true
"#,
            Path::new("/etc/dist/docker.io"),
        )
        .unwrap();
        assert_eq!(
            f.server,
            Some(Server {
                url: "https://registry-1.docker.io".into(),
                capabilities: Capabilities::ALL,
                override_path: false,
            })
        );
        let urls: Vec<&str> = f.hosts.iter().map(|h| h.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://b.example",
                "http://a.example:5000",
                "https://c.example/prefix"
            ]
        );
        assert_eq!(
            f.hosts[0].capabilities,
            Capabilities {
                pull: true,
                resolve: false
            }
        );
        assert_eq!(
            f.hosts[0].settings.ca,
            vec![
                PathBuf::from("/etc/dist/docker.io/ca1.pem"),
                PathBuf::from("/abs/ca2.pem")
            ]
        );
        assert!(f.hosts[1].settings.skip_verify && !f.hosts[0].settings.skip_verify);
        assert!(f.hosts[2].override_path);
        assert_eq!(f.hosts[2].capabilities, Capabilities::ALL);
    }

    #[test]
    fn top_level_capabilities_and_override_path_belong_to_the_server() {
        let f = HostsFile::parse(
            r#"
server = "registry.example:5000/cache/docker"
capabilities = ["Pull", "push"]
override_path = true
"#,
            Path::new("/etc/dist/r"),
        )
        .unwrap();
        assert_eq!(
            f.server,
            Some(Server {
                url: "https://registry.example:5000/cache/docker".into(),
                capabilities: Capabilities {
                    pull: true,
                    resolve: false
                },
                override_path: true,
            })
        );
        assert_eq!(f.server_settings.dial_timeout, None);
        // An empty list is containerd's default, every capability, not none.
        let f = HostsFile::parse(
            "server = \"r.example\"\ncapabilities = []\n[host.\"m.example\"]\ncapabilities = []\n",
            Path::new("/r"),
        )
        .unwrap();
        assert_eq!(f.server.unwrap().capabilities, Capabilities::ALL);
        assert_eq!(f.hosts[0].capabilities, Capabilities::ALL);
        // Without `server` containerd keeps the registry at its address with every
        // capability; so does dist.
        let f = HostsFile::parse("capabilities = [\"pull\"]\n", Path::new("/r")).unwrap();
        assert_eq!(f.server, None);
        for (text, want) in [
            (
                "server = \"r.example\"\ncapabilities = [\"fetch\"]",
                "the registry: unknown capability \"fetch\"",
            ),
            (
                "server = \"r.example\"\ncapabilities = [1]",
                "the registry: capabilities must be strings",
            ),
            (
                "server = \"r.example\"\noverride_path = \"yes\"",
                "the registry: override_path must be true or false",
            ),
            (
                "[host.\"m.example\"]\ncapabilities = \"pull\"",
                "host \"m.example\": capabilities must be a list",
            ),
        ] {
            let e = HostsFile::parse(text, Path::new("/r")).unwrap_err();
            assert_eq!(e.reason(), want, "{text}");
        }
    }

    #[test]
    fn dial_timeouts_are_per_host_and_give_the_host_its_own_client() {
        let f = HostsFile::parse(
            "dial_timeout = \"1m30s\"\n[host.\"https://m.example\"]\n  dial_timeout = \"250ms\"\n[host.\"https://n.example\"]\n",
            Path::new("/r"),
        )
        .unwrap();
        let d = std::time::Duration::from_millis;
        assert_eq!(f.server_settings.dial_timeout, Some(d(90_000)));
        assert_eq!(f.hosts[0].settings.dial_timeout, Some(d(250)));
        assert_eq!(f.hosts[1].settings.dial_timeout, None);
        let zero = HostsFile::parse("dial_timeout = \"0s\"", Path::new("/r")).unwrap();
        assert_eq!(zero.server_settings.dial_timeout, None);
        let e = HostsFile::parse("dial_timeout = \"5 parsecs\"", Path::new("/r")).unwrap_err();
        assert!(
            e.reason()
                .starts_with("the registry: dial_timeout: invalid duration"),
            "{}",
            e.reason()
        );
    }

    /// A library user's `dial_timeout` of zero is none of the host's own, as `"0s"` read
    /// from `hosts.toml` is: taken as the host's, the transport built with it was refused
    /// over a zero `connect_timeout`.
    #[test]
    fn a_zero_dial_timeout_is_none_of_the_host_s_own() {
        let d = std::time::Duration::from_millis;
        let default = d(30_000);
        let mut s = HostSettings::default();
        assert_eq!(s.connect_timeout(default), default);
        s.dial_timeout = Some(d(250));
        assert_eq!(s.connect_timeout(default), d(250));
        s.dial_timeout = Some(d(0));
        assert_eq!(s.connect_timeout(default), default);
        let options = crate::transport::TransportOptions {
            connect_timeout: s.connect_timeout(default),
            ..Default::default()
        };
        assert!(crate::transport::Transport::new(options).is_ok());
    }

    #[test]
    fn client_certificates_in_containerd_s_three_spellings_and_headers() {
        let base = Path::new("/etc/dist/r");
        let pair = |cert: &str, key: &str| ClientIdentity {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        };
        let f = HostsFile::parse(
            r#"
ca = "registry-ca.pem"
client = "/certs/both.pem"
[header]
  x-team = "build"

[host."https://a.example"]
  client = ["one.pem", "two.pem"]

[host."https://b.example"]
  client = [["b.cert", "b.key"], ["other.pem", ""]]
  [host."https://b.example".header]
    x-custom = ["first", "second"]
    x-other = "third"

[host."https://c.example"]
  client = [["c.pem", ""]]
"#,
            base,
        )
        .unwrap();
        let top = &f.server_settings;
        assert_eq!(top.ca, [PathBuf::from("/etc/dist/r/registry-ca.pem")]);
        assert_eq!(top.client, Some(pair("/certs/both.pem", "/certs/both.pem")));
        assert_eq!(top.headers.len(), 1);
        assert_eq!(top.headers["x-team"], "build");
        assert!(top.headers["x-team"].is_sensitive());
        let clients: Vec<_> = f.hosts.iter().map(|h| h.settings.client.clone()).collect();
        assert_eq!(
            clients,
            [
                Some(pair("/etc/dist/r/one.pem", "/etc/dist/r/one.pem")),
                Some(pair("/etc/dist/r/b.cert", "/etc/dist/r/b.key")),
                Some(pair("/etc/dist/r/c.pem", "/etc/dist/r/c.pem")),
            ]
        );
        let headers = &f.hosts[1].settings.headers;
        let custom: Vec<_> = headers.get_all("x-custom").iter().collect();
        assert_eq!(custom, ["first", "second"]);
        assert_eq!(headers["x-other"], "third");
        assert_eq!(
            HostSpec::from_flag("m.example").unwrap().settings,
            HostSettings::default(),
            "a --mirror has no settings of its own"
        );
    }

    #[test]
    fn a_syntax_error_is_placed_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("registry.corp");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("hosts.toml"),
            "server = \"https://r.example\"\n\n[host.\"https://m.example\"]\n  capabilities = [\"pull\"\n  skip_verify = true\n",
        )
        .unwrap();
        let e = HostsFile::load(dir.path(), "registry.corp").unwrap_err();
        let file = folder.join("hosts.toml");
        assert!(
            e.reason().starts_with(&format!(
                "{}: not valid TOML at line 5, column 3: ",
                file.display()
            )),
            "{}",
            e.reason()
        );
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        for bad in [
            "host = 3",
            "[host.\"m\"]\ncapabilities = [\"teleport\"]",
            "[host.\"m\"]\nskip_verify = \"yes\"",
            "[host.\"m\"]\nclient = 3",
            "[host.\"m\"]\nclient = [[\"a\", \"b\", \"c\"]]",
            "[host.\"m\"]\nheader = \"x\"",
            "[host.\"m\".header]\n\"bad name\" = \"v\"",
            "[host.\"m\".header]\nx = 3",
            "ca = 3",
            "dial_timeout = \"soon\"",
            "[host.\"m\"]\ndial_timeout = 5",
            "[host.\"ftp://m\"]",
            "not toml [",
        ] {
            assert!(HostsFile::parse(bad, Path::new("/")).is_err(), "{bad}");
        }
    }

    /// containerd's `parseHostConfig` puts `https://` before any host without a scheme,
    /// loopback or not, and has no `plain-http`: a file made for it with a TLS mirror on
    /// loopback keeps it https here, where `--mirror` reads loopback as a locator does.
    #[test]
    fn a_loopback_host_without_a_scheme_in_hosts_toml_is_https_as_in_containerd() {
        let f = HostsFile::parse(
            "[host.\"127.0.0.1:5001\"]\n[host.\"localhost:5002\"]\n  plain-http = true\n",
            Path::new("/r"),
        )
        .unwrap();
        let urls: Vec<&str> = f.hosts.iter().map(|h| h.url.as_str()).collect();
        assert_eq!(urls, ["https://127.0.0.1:5001", "http://localhost:5002"]);
    }

    #[test]
    fn flags_and_directory_lookup() {
        assert_eq!(
            HostSpec::from_flag("mirror.example").unwrap().url,
            "https://mirror.example"
        );
        assert_eq!(
            HostSpec::from_flag("127.0.0.1:5001").unwrap().url,
            "http://127.0.0.1:5001"
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(HostsFile::load(dir.path(), "docker.io").unwrap(), None);
        std::fs::create_dir_all(dir.path().join("_default")).unwrap();
        std::fs::write(
            dir.path().join("_default/hosts.toml"),
            "[host.\"https://d.example\"]\n",
        )
        .unwrap();
        let f = HostsFile::load(dir.path(), "docker.io").unwrap().unwrap();
        assert_eq!(f.hosts[0].url, "https://d.example");
    }

    /// containerd's rule: a registry's own folder wins over `_default` even without a
    /// `hosts.toml`, and then its Docker-style certificate files are the registry's.
    #[test]
    fn a_folder_without_hosts_toml_holds_the_registry_s_certificates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("_default")).unwrap();
        std::fs::write(
            dir.path().join("_default/hosts.toml"),
            "[host.\"https://d.example\"]\n",
        )
        .unwrap();
        let own = dir.path().join("registry.corp:5000");
        std::fs::create_dir_all(&own).unwrap();
        for name in ["ca.crt", "client.cert", "client.key", "lonely.cert"] {
            std::fs::write(own.join(name), "").unwrap();
        }
        let f = HostsFile::load(dir.path(), "registry.corp:5000")
            .unwrap()
            .unwrap();
        assert!(f.hosts.is_empty(), "_default is not consulted: {f:?}");
        assert_eq!(f.server_settings.ca, [own.join("ca.crt")]);
        assert_eq!(
            f.server_settings.client,
            Some(ClientIdentity {
                cert: own.join("client.cert"),
                key: own.join("client.key"),
            })
        );
        let other = HostsFile::load(dir.path(), "other.example")
            .unwrap()
            .unwrap();
        assert_eq!(other.hosts[0].url, "https://d.example");
        assert!(HostsFile::load(dir.path(), "../etc")
            .unwrap()
            .unwrap()
            .server_settings
            .ca
            .is_empty());
    }

    /// containerd reads an empty `hosts.toml` as none at all (`len(b) == 0` in
    /// `loadHostDir`): the folder's certificate files are the registry's.
    #[test]
    fn an_empty_hosts_toml_leaves_the_folder_s_certificates_to_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("registry.corp");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("hosts.toml"), "").unwrap();
        std::fs::write(own.join("ca.crt"), "").unwrap();
        let f = HostsFile::load(dir.path(), "registry.corp")
            .unwrap()
            .unwrap();
        assert_eq!(f.server_settings.ca, [own.join("ca.crt")]);
        // Anything in it, even a comment alone, makes it the folder's configuration.
        std::fs::write(own.join("hosts.toml"), "# nothing yet\n").unwrap();
        let f = HostsFile::load(dir.path(), "registry.corp")
            .unwrap()
            .unwrap();
        assert!(f.server_settings.ca.is_empty(), "{f:?}");
    }

    /// containerd takes an empty `server` or `dial_timeout` for one not given; refusing
    /// the file stopped every run over a key a generated file often leaves empty.
    #[test]
    fn empty_server_and_dial_timeout_are_as_if_absent() {
        let f = HostsFile::parse(
            "server = \"\"\ndial_timeout = \"\"\n[host.\"https://m.example\"]\n  dial_timeout = \"\"\n",
            Path::new("/r"),
        )
        .unwrap();
        assert_eq!(f.server, None);
        assert_eq!(f.server_settings.dial_timeout, None);
        assert_eq!(f.hosts[0].settings.dial_timeout, None);
    }

    /// containerd looks for `host_port_` before `host:port` (a name every filesystem takes).
    #[test]
    fn a_port_may_be_spelled_with_underscores_and_that_folder_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        for (folder, mirror) in [
            ("registry.corp:5000", "https://colon.example"),
            ("registry.corp_5000_", "https://underscore.example"),
            ("[::1]_5000_", "https://v6.example"),
        ] {
            std::fs::create_dir_all(dir.path().join(folder)).unwrap();
            std::fs::write(
                dir.path().join(folder).join("hosts.toml"),
                format!("[host.\"{mirror}\"]\n"),
            )
            .unwrap();
        }
        let first = |registry: &str| {
            HostsFile::load(dir.path(), registry)
                .unwrap()
                .map(|f| f.hosts[0].url.clone())
        };
        assert_eq!(
            first("registry.corp:5000").as_deref(),
            Some("https://underscore.example")
        );
        assert_eq!(first("[::1]:5000").as_deref(), Some("https://v6.example"));
        assert_eq!(first("registry.corp"), None);
        assert_eq!(port_spelled_out("registry.corp"), None);
        assert_eq!(port_spelled_out("[::1]"), None);
        std::fs::remove_dir_all(dir.path().join("registry.corp_5000_")).unwrap();
        assert_eq!(
            first("registry.corp:5000").as_deref(),
            Some("https://colon.example")
        );
    }
}
