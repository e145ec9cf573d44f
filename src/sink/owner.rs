//! Who owns a temporary file or a lock in a shared directory, and whether that owner is
//! gone.
//!
//! An owner is `<pid>@<host>`. A directory may be shared by machines (an NFS export, a
//! Kubernetes volume under an Indexed Job), where another machine's PID says nothing here:
//! only this host's owners are judged by their PID; another host's are judged by age alone.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// This process, as written into names and lock files: `<pid>@<host>`.
pub fn me() -> &'static str {
    static ME: OnceLock<String> = OnceLock::new();
    ME.get_or_init(|| format!("{}@{}", std::process::id(), host()))
}

/// This machine's host name, reduced to characters safe in a file name.
fn host() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

/// Whether the owner `owner` (as written by [`me`], or a bare PID from older versions) is
/// gone, for a file last modified `age` ago. Another host's owner is gone only after
/// `foreign_after`.
pub fn is_gone(owner: &str, age: Option<Duration>, foreign_after: Duration) -> bool {
    let (pid, owner_host) = match owner.split_once('@') {
        Some((pid, host)) => (pid, Some(host)),
        None => (owner, None),
    };
    let here = owner_host.is_none_or(|h| h == host());
    match (here, pid.parse::<u32>()) {
        (true, Ok(pid)) if Path::new("/proc/self").exists() => {
            !Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => age.is_some_and(|a| a > foreign_after),
    }
}

/// How long ago `path` was last modified.
pub fn age(path: &Path) -> Option<Duration> {
    std::fs::metadata(path)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_this_host_by_pid_and_others_by_age() {
        let mine = me();
        assert!(
            !is_gone(mine, None, Duration::ZERO),
            "this process is alive"
        );
        let dead = format!("2147483647@{}", host());
        assert!(is_gone(&dead, None, Duration::from_secs(3600)));
        assert!(
            is_gone("2147483647", None, Duration::from_secs(3600)),
            "bare PIDs are local"
        );
        let foreign = "1@some-other-machine";
        assert!(!is_gone(
            foreign,
            Some(Duration::from_secs(60)),
            Duration::from_secs(3600)
        ));
        assert!(is_gone(
            foreign,
            Some(Duration::from_secs(7200)),
            Duration::from_secs(3600)
        ));
        assert!(!is_gone(foreign, None, Duration::from_secs(3600)));
    }
}
