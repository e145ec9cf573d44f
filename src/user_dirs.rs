//! Where a user keeps configuration, read from the environment the way the XDG base
//! directory rules and the tools dist follows (Docker, podman) read it: a variable set to
//! an empty string counts as unset, the home directory is `$HOME`, else the account's, and
//! the configuration folder is `$XDG_CONFIG_HOME`, else `~/.config`.

use std::ffi::OsString;
use std::path::PathBuf;

/// The environment variable `name` as a path; unset or empty is `None`.
pub(crate) fn path_var(env: &impl Fn(&str) -> Option<OsString>, name: &str) -> Option<PathBuf> {
    env(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `$HOME`, else the home directory the password database gives the user, as Docker and
/// podman (their `homedir.Get`) fall back to it: systemd starts a system service that has
/// no `User=` without `HOME`, and root's `~/.docker/config.json` is still in `/root`.
pub(crate) fn home(env: &impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    path_var(env, "HOME").or_else(account_home)
}

/// `$XDG_CONFIG_HOME`, else `~/.config`.
pub(crate) fn config_home(env: &impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    path_var(env, "XDG_CONFIG_HOME").or_else(|| home(env).map(|h| h.join(".config")))
}

/// The home directory of the user running dist, from the password database.
fn account_home() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    // SAFETY: getuid(2) cannot fail and touches no memory of ours.
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0u8; 1024];
    loop {
        let mut entry = std::mem::MaybeUninit::<libc::passwd>::uninit();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to memory of ours that outlives the call, and `buf`'s
        // length is the one given.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                entry.as_mut_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || found.is_null() {
            return None;
        }
        // SAFETY: on success `found` points to `entry`, whose `pw_dir` is a C string in `buf`.
        let dir = unsafe { std::ffi::CStr::from_ptr((*found).pw_dir) };
        let dir = std::ffi::OsStr::from_bytes(dir.to_bytes());
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A system service started without `HOME` still finds `~/.docker` and `~/.config`
    /// where Docker and podman look: the account's home.
    #[test]
    fn without_home_the_account_s_home_counts() {
        // SAFETY: see `account_home`.
        let uid = unsafe { libc::getuid() };
        let out = std::process::Command::new("getent")
            .args(["passwd", &uid.to_string()])
            .output()
            .expect("run getent");
        let line = String::from_utf8(out.stdout).unwrap();
        let dir = PathBuf::from(line.trim_end().split(':').nth(5).expect("a passwd line"));
        for unset in [None, Some(OsString::new())] {
            let env = |_: &str| unset.clone();
            assert_eq!(home(&env).as_ref(), Some(&dir));
            assert_eq!(config_home(&env), Some(dir.join(".config")));
        }
        let env = |name: &str| (name == "HOME").then(|| OsString::from("/home/u"));
        assert_eq!(home(&env), Some(PathBuf::from("/home/u")));
    }
}
