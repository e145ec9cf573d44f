//! Certificate authorities and client certificates for one registry, where Docker and the
//! containers tools (podman, skopeo, buildah) keep them: a `certs.d/<host[:port]>/` folder
//! with `*.crt` files (CAs) and `*.cert` files each beside a `*.key` of the same name (a
//! client certificate for mutual TLS).
//!
//! The folders, in the containers tools' order of priority:
//! `$XDG_CONFIG_HOME/containers/certs.d/<host>` (else `~/.config/containers/certs.d/<host>`),
//! `/etc/containers/certs.d/<host>`, then Docker's `/etc/docker/certs.d/<host>`. Every CA
//! found is used; of client certificates, the first. A registry that `docker pull` or
//! `podman pull` already reaches is then reached by dist too, without `--ca-file` or
//! `--cert`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::transport::tls::ClientIdentity;

/// The CA files for registry `host` (`registry.corp`, `localhost:5000`), given the
/// environment `env`: every `*.crt` of every folder, sorted within a folder, but those
/// that hold no PEM certificate.
pub fn ca_files_for(host: &str, env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    folders(host, env)
        .iter()
        .flat_map(|dir| files_ending(dir, "crt"))
        .filter(|path| holds_pem_certificate(path))
        .collect()
}

/// Whether the file at `path` holds a PEM certificate, or cannot be read (the error will
/// name it). Docker and podman pass over a `*.crt` without one (a DER copy, an empty file),
/// as Go's `AppendCertsFromPEM` ignores it; refusing it would make a registry they reach
/// unusable to dist.
fn holds_pem_certificate(path: &Path) -> bool {
    let Ok(pem) = std::fs::read(path) else {
        return true;
    };
    let found = rustls_pemfile::certs(&mut pem.as_slice()).any(|c| c.is_ok());
    if !found {
        tracing::warn!(
            "ignoring {}: it holds no PEM certificate, as Docker and podman ignore it",
            path.display()
        );
    }
    found
}

/// The client certificate for registry `host`, given the environment `env`: the first
/// `*.cert` (in folder order, then by name) that has its `*.key` beside it.
pub fn client_identity_for(
    host: &str,
    env: impl Fn(&str) -> Option<OsString>,
) -> Option<ClientIdentity> {
    folders(host, env).iter().find_map(|dir| first_pair(dir))
}

/// The CAs (`*.crt`) and the first client certificate (`*.cert` with its `*.key`) kept in
/// one folder of a containerd hosts directory laid out like `certs.d/<host>`. Without any
/// such pair, the first `*.cert` holding its key too, as containerd reads one without its
/// `*.key`: a folder with a combined `client.cert` showed no certificate to the registry.
pub fn in_folder(dir: &Path) -> (Vec<PathBuf>, Option<ClientIdentity>) {
    let client = first_pair(dir).or_else(|| {
        files_ending(dir, "cert")
            .into_iter()
            .next()
            .map(|both| ClientIdentity {
                cert: both.clone(),
                key: both,
            })
    });
    (files_ending(dir, "crt"), client)
}

/// The first `*.cert` in `dir`, by name, that has its `*.key` beside it.
fn first_pair(dir: &Path) -> Option<ClientIdentity> {
    files_ending(dir, "cert").into_iter().find_map(|cert| {
        let key = cert.with_extension("key");
        key.is_file().then_some(ClientIdentity { cert, key })
    })
}

/// Whether `host` may name a folder of its own (`certs.d/<host>`, a hosts dir's
/// `<host>`): a host name never holds a path separator, and a locator that smuggles one in
/// must not send us reading other folders.
pub(crate) fn is_folder_name(host: &str) -> bool {
    !host.is_empty() && !host.contains(['/', '\\']) && !host.starts_with('.')
}

/// The `certs.d` folders for `host` that may exist, in the order they are read.
fn folders(host: &str, env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    if !is_folder_name(host) {
        return Vec::new();
    }
    let config_home = crate::user_dirs::config_home(&env);
    let mut roots: Vec<PathBuf> = config_home
        .map(|d| d.join("containers").join("certs.d"))
        .into_iter()
        .collect();
    roots.push(PathBuf::from("/etc/containers/certs.d"));
    roots.push(PathBuf::from("/etc/docker/certs.d"));
    roots.iter().map(|root| root.join(host)).collect()
}

/// Files named `*.<extension>` directly in `dir`, sorted; none if it does not exist.
fn files_ending(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == extension) && p.is_file())
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crt_files_of_the_host_folder_only() {
        let home = tempfile::tempdir().unwrap();
        let certs = home.path().join("containers/certs.d");
        let mine = certs.join("registry.corp:5000");
        std::fs::create_dir_all(&mine).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = rcgen::CertificateParams::new(vec!["registry.corp".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        for name in ["b.crt", "a.crt", "client.cert", "client.key"] {
            std::fs::write(mine.join(name), &pem).unwrap();
        }
        // Not PEM: passed over, as Docker and podman pass it over.
        std::fs::write(mine.join("c.crt"), "x").unwrap();
        std::fs::create_dir_all(certs.join("other.corp")).unwrap();
        std::fs::write(certs.join("other.corp/ca.crt"), &pem).unwrap();
        let config_home = home.path().as_os_str().to_owned();
        let env = |name: &str| (name == "XDG_CONFIG_HOME").then(|| config_home.clone());
        let found = ca_files_for("registry.corp:5000", env);
        // The system folders may exist on this machine; the user's come first.
        assert!(found[0].starts_with(home.path()), "{found:?}");
        let ours: Vec<_> = found
            .iter()
            .filter(|p| p.starts_with(home.path()))
            .collect();
        assert_eq!(ours, [&mine.join("a.crt"), &mine.join("b.crt")]);
        assert!(ca_files_for("../other.corp", env).is_empty());
        assert!(ca_files_for("x/../../other.corp", env).is_empty());
    }

    /// containerd's hosts directory takes a `*.cert` without its `*.key` for a file that
    /// holds both (`loadCertFiles`); a pair beside it still comes first.
    #[test]
    fn a_hosts_folder_s_lonely_cert_holds_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let both = dir.path().join("client.cert");
        std::fs::write(&both, "x").unwrap();
        assert_eq!(
            in_folder(dir.path()).1,
            Some(ClientIdentity {
                cert: both.clone(),
                key: both,
            })
        );
        std::fs::write(dir.path().join("pair.cert"), "x").unwrap();
        std::fs::write(dir.path().join("pair.key"), "x").unwrap();
        assert_eq!(
            in_folder(dir.path()).1,
            Some(ClientIdentity {
                cert: dir.path().join("pair.cert"),
                key: dir.path().join("pair.key"),
            })
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let home = tempfile::tempdir().unwrap();
        let mine = home.path().join("containers/certs.d/registry.corp");
        std::fs::create_dir_all(&mine).unwrap();
        let config_home = home.path().as_os_str().to_owned();
        let env = |name: &str| (name == "XDG_CONFIG_HOME").then(|| config_home.clone());
        std::fs::write(mine.join("a.cert"), "x").unwrap();
        let ours =
            |found: Option<ClientIdentity>| found.filter(|i| i.cert.starts_with(home.path()));
        assert_eq!(
            ours(client_identity_for("registry.corp", env)),
            None,
            "no a.key"
        );
        std::fs::write(mine.join("b.cert"), "x").unwrap();
        std::fs::write(mine.join("b.key"), "x").unwrap();
        assert_eq!(
            ours(client_identity_for("registry.corp", env)),
            Some(ClientIdentity {
                cert: mine.join("b.cert"),
                key: mine.join("b.key"),
            })
        );
    }
}
