//! Mirror configuration: `--mirror URL`, and containerd's `hosts.toml`.
//!
//! A hosts directory holds one folder per registry, named like the registry
//! (`docker.io`, `localhost:5000`), with a `hosts.toml` in it; `_default/hosts.toml` applies
//! to registries without a folder of their own. The file lists mirrors in order:
//!
//! ```toml
//! server = "https://registry-1.docker.io"   # optional: where the registry itself is
//!
//! [host."https://mirror.example.com"]
//!   capabilities = ["pull", "resolve"]      # default: both
//!   ca = "/etc/dist/mirror-ca.pem"          # or a list; relative to the file
//!   skip_verify = false
//!
//! [host."mirror.internal:5000"]
//!   plain-http = true                       # no scheme given: http instead of https
//!   override_path = false                   # true: the URL path is the API root
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::registry::host::Capabilities;

/// One mirror as configured, before a client is built for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// `scheme://host[:port][/path]`.
    pub url: String,
    /// What it may be asked for.
    pub capabilities: Capabilities,
    /// CA certificates to trust for it, besides the system's.
    pub ca: Vec<PathBuf>,
    /// Accept any certificate from it.
    pub skip_verify: bool,
    /// The URL path is the API root (no `/v2` appended).
    pub override_path: bool,
}

impl HostSpec {
    /// A mirror given on the command line: `URL` or `host[:port]` (https unless loopback).
    pub fn from_flag(value: &str) -> Result<HostSpec> {
        Ok(HostSpec {
            url: with_scheme(value, None)?,
            capabilities: Capabilities::ALL,
            ca: Vec::new(),
            skip_verify: false,
            override_path: false,
        })
    }
}

/// The parsed `hosts.toml` of one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsFile {
    /// Where the registry itself is served, if not at its usual address.
    pub server: Option<String>,
    /// Mirrors, in the order of the file.
    pub hosts: Vec<HostSpec>,
}

impl HostsFile {
    /// Reads `DIR/<registry>/hosts.toml`, else `DIR/_default/hosts.toml`; `None` when
    /// neither exists.
    pub fn load(dir: &Path, registry: &str) -> Result<Option<HostsFile>> {
        for folder in [registry, "_default"] {
            let path = dir.join(folder).join("hosts.toml");
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let base = path.parent().unwrap_or(dir);
                    return HostsFile::parse(&text, base).map(Some).map_err(|e| {
                        Error::invalid(format!("{}: {}", path.display(), e.reason()))
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::invalid(format!("reading {}", path.display())).with_cause(e));
                }
            }
        }
        Ok(None)
    }

    /// Parses the text of a `hosts.toml`; relative CA paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<HostsFile> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Error::invalid(format!("not valid TOML: {}", e.message()))
        })?;
        let mut file = HostsFile::default();
        if let Some(server) = table.get("server") {
            let s = server
                .as_str()
                .ok_or_else(|| Error::invalid("\"server\" must be a string"))?;
            file.server = Some(with_scheme(s, None)?);
        }
        let Some(hosts) = table.get("host") else {
            return Ok(file);
        };
        let hosts = hosts
            .as_table()
            .ok_or_else(|| Error::invalid("\"host\" must be a table of tables"))?;
        for (url, entry) in hosts {
            let entry = entry
                .as_table()
                .ok_or_else(|| Error::invalid(format!("host {url:?} must be a table")))?;
            let flag = |key: &str| -> Result<bool> {
                match entry.get(key) {
                    None => Ok(false),
                    Some(v) => v.as_bool().ok_or_else(|| {
                        Error::invalid(format!("host {url:?}: {key} must be true or false"))
                    }),
                }
            };
            let plain = flag("plain-http")? || flag("plain_http")?;
            let capabilities = match entry.get("capabilities") {
                None => Capabilities::ALL,
                Some(v) => {
                    let list = v.as_array().ok_or_else(|| {
                        Error::invalid(format!("host {url:?}: capabilities must be a list"))
                    })?;
                    let mut caps = Capabilities {
                        pull: false,
                        resolve: false,
                    };
                    for c in list {
                        match c.as_str() {
                            Some("pull") => caps.pull = true,
                            Some("resolve") => caps.resolve = true,
                            Some("push") => {} // dist never pushes
                            _ => {
                                return Err(Error::invalid(format!(
                                    "host {url:?}: unknown capability {c:?}"
                                )))
                            }
                        }
                    }
                    caps
                }
            };
            let ca = match entry.get("ca") {
                None => Vec::new(),
                Some(toml::Value::String(s)) => vec![base.join(s)],
                Some(toml::Value::Array(list)) => list
                    .iter()
                    .map(|v| v.as_str().map(|s| base.join(s)))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "host {url:?}: ca must be a path or a list of paths"
                        ))
                    })?,
                Some(_) => {
                    return Err(Error::invalid(format!(
                        "host {url:?}: ca must be a path or a list of paths"
                    )))
                }
            };
            file.hosts.push(HostSpec {
                url: with_scheme(url, Some(plain))?,
                capabilities,
                ca,
                skip_verify: flag("skip_verify")?,
                override_path: flag("override_path")?,
            });
        }
        Ok(file)
    }
}

/// Adds a scheme to `host[:port][/path]`: http when `plain` says so (or, when unsaid, for
/// loopback hosts, as for registries), https otherwise.
fn with_scheme(value: &str, plain: Option<bool>) -> Result<String> {
    let value = value.trim().trim_end_matches('/');
    if value.is_empty() {
        return Err(Error::invalid("empty mirror address"));
    }
    if value.starts_with("http://") || value.starts_with("https://") {
        return Ok(value.to_string());
    }
    if value.contains("://") {
        return Err(Error::invalid(format!(
            "mirror {value:?}: only http and https are supported"
        )));
    }
    let host = value.split('/').next().unwrap_or(value);
    let plain = plain.unwrap_or_else(|| crate::reference::is_loopback(host));
    Ok(format!(
        "{}://{value}",
        if plain { "http" } else { "https" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(f.server.as_deref(), Some("https://registry-1.docker.io"));
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
            f.hosts[0].ca,
            vec![
                PathBuf::from("/etc/dist/docker.io/ca1.pem"),
                PathBuf::from("/abs/ca2.pem")
            ]
        );
        assert!(f.hosts[1].skip_verify && !f.hosts[0].skip_verify);
        assert!(f.hosts[2].override_path);
        assert_eq!(f.hosts[2].capabilities, Capabilities::ALL);
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        for bad in [
            "host = 3",
            "[host.\"m\"]\ncapabilities = [\"teleport\"]",
            "[host.\"m\"]\nskip_verify = \"yes\"",
            "[host.\"ftp://m\"]",
            "not toml [",
        ] {
            assert!(HostsFile::parse(bad, Path::new("/")).is_err(), "{bad}");
        }
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
}
