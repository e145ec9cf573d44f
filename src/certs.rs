//! Certificate authorities for one registry, where Docker and the containers tools (podman,
//! skopeo, buildah) keep them: `*.crt` files in a `certs.d/<host[:port]>/` folder.
//!
//! The folders, all read when present: `/etc/docker/certs.d/<host>`,
//! `/etc/containers/certs.d/<host>`, and `$XDG_CONFIG_HOME/containers/certs.d/<host>` (else
//! `~/.config/containers/certs.d/<host>`). A registry with a private CA that `docker pull`
//! or `podman pull` already trusts is then trusted by dist too, without `--ca-file`. Client
//! certificates (`*.cert` and `*.key`) are not used.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The CA files for registry `host` (`registry.corp`, `localhost:5000`), given the
/// environment `env`: every `*.crt` of every folder, sorted within a folder.
pub fn ca_files_for(host: &str, env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    // A host name never holds a path separator; a locator that smuggles one in must not
    // send us reading other folders.
    if host.is_empty() || host.contains(['/', '\\']) || host.starts_with('.') {
        return Vec::new();
    }
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let config_home = var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config")));
    let mut roots = vec![
        PathBuf::from("/etc/docker/certs.d"),
        PathBuf::from("/etc/containers/certs.d"),
    ];
    roots.extend(config_home.map(|d| d.join("containers").join("certs.d")));
    roots
        .iter()
        .flat_map(|root| crt_files(&root.join(host)))
        .collect()
}

/// `*.crt` files directly in `dir`, sorted; none if it does not exist.
fn crt_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt") && p.is_file())
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
        for name in ["b.crt", "a.crt", "client.cert", "client.key"] {
            std::fs::write(mine.join(name), "x").unwrap();
        }
        std::fs::create_dir_all(certs.join("other.corp")).unwrap();
        std::fs::write(certs.join("other.corp/ca.crt"), "x").unwrap();
        let config_home = home.path().as_os_str().to_owned();
        let env = |name: &str| (name == "XDG_CONFIG_HOME").then(|| config_home.clone());
        let found = ca_files_for("registry.corp:5000", env);
        // The system folders may exist on this machine; ours come last.
        let ours: Vec<_> = found
            .iter()
            .filter(|p| p.starts_with(home.path()))
            .collect();
        assert_eq!(ours, [&mine.join("a.crt"), &mine.join("b.crt")]);
        assert!(ca_files_for("../other.corp", env).is_empty());
        assert!(ca_files_for("x/../../other.corp", env).is_empty());
    }
}
