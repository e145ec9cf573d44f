//! Who owns a temporary file in a shared directory, and whether that owner is gone.
//!
//! An owner is `<pid>.<start>@<host>`, `<start>` being when the process started (clock
//! ticks since boot, from `/proc/<pid>/stat`). A PID alone is not enough: a container that
//! restarts in its pod (a Job with `restartPolicy: OnFailure`) runs dist again under the
//! same host name and, in a fresh PID namespace, often the same PID as the run that was
//! killed, whose files would then look like those of a live process (this very one)
//! forever. A directory may also be shared by machines (an NFS export, a Kubernetes volume
//! under an Indexed Job), where another machine's PID says nothing here: only this host's
//! owners are judged by their process; another host's by age, or where the layout store
//! knows its filesystem to be a local disk's, by their lock. A run in
//! another PID namespace under this host name looks gone by its PID: the layout store
//! asks the lock its live files are held under before it believes a name
//! ([`super::layout`]).

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// This process, as written into the names of its files: `<pid>.<start>@<host>`, or
/// `<pid>@<host>` where `/proc` cannot tell when it started.
pub fn me() -> &'static str {
    static ME: OnceLock<String> = OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        match start_time(pid) {
            Some(start) => format!("{pid}.{start}@{}", host()),
            None => format!("{pid}@{}", host()),
        }
    })
}

/// When process `pid` started, in clock ticks since boot: field 22 of `/proc/<pid>/stat`.
/// `None` when there is no such process (or no `/proc`).
fn start_time(pid: u32) -> Option<u64> {
    stat_after_name(pid)?
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

/// Whether process `pid` is a zombie: killed (`kill -9`, the OOM killer) and not reaped
/// by its parent yet, as a supervisor that starts the next run before it waits for the
/// killed one leaves it. Its PID and start time are still in `/proc`, but it holds no file
/// and no lock any more; taken for live, its download was fetched again whole.
fn zombie(pid: u32) -> bool {
    stat_after_name(pid)
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .map(|state| matches!(state, "Z" | "X"))
        })
        .unwrap_or(false)
}

/// `/proc/<pid>/stat` from the state (field 3) on. Fields are counted after the command
/// name, which is in parentheses and may itself hold spaces and parentheses.
fn stat_after_name(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat[stat.rfind(')')? + 1..].to_string())
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

/// Whether the owner `owner` (as written by [`me`]; `<pid>@<host>` or a bare PID from
/// older versions) is gone, for a file last modified `age` ago. An owner of this host is
/// gone when no process has its PID, or one that started at another time has. Another
/// host's owner is gone only after `foreign_after`.
pub fn is_gone(owner: &str, age: Option<Duration>, foreign_after: Duration) -> bool {
    let (process, owner_host) = match owner.split_once('@') {
        Some((process, host)) => (process, Some(host)),
        None => (owner, None),
    };
    let (pid, start) = match process.split_once('.') {
        Some((pid, start)) => (pid, Some(start.parse::<u64>())),
        None => (process, None),
    };
    let here = owner_host.is_none_or(|h| h == host()) && Path::new("/proc/self").exists();
    match (here, pid.parse::<u32>(), start) {
        (true, Ok(pid), Some(Ok(start))) => start_time(pid) != Some(start) || zombie(pid),
        (true, Ok(pid), None) => !Path::new(&format!("/proc/{pid}")).exists() || zombie(pid),
        _ => age.is_some_and(|a| a > foreign_after),
    }
}

/// Whether the owner `owner` (as written by [`me`]) is a process of another host: one
/// whose PID says nothing here.
pub fn is_foreign(owner: &str) -> bool {
    owner.split_once('@').is_some_and(|(_, h)| h != host())
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
    fn judges_this_host_by_process_and_others_by_age() {
        let mine = me();
        assert!(
            !is_gone(mine, None, Duration::ZERO),
            "this process is alive"
        );
        let pid = std::process::id();
        let start = start_time(pid).expect("this process's start time");
        assert_eq!(mine, format!("{pid}.{start}@{}", host()));
        // A restarted container's run: this PID and host, another start.
        let earlier = format!("{pid}.{}@{}", start.wrapping_sub(1), host());
        assert!(is_gone(&earlier, None, Duration::from_secs(3600)));
        assert!(
            !is_gone(&format!("{pid}@{}", host()), None, Duration::ZERO),
            "an owner without a start time is judged by its PID"
        );
        let unreadable = format!("{pid}.soon@{}", host());
        assert!(!is_gone(
            &unreadable,
            Some(Duration::from_secs(60)),
            Duration::from_secs(3600)
        ));
        assert!(is_gone(
            &unreadable,
            Some(Duration::from_secs(7200)),
            Duration::from_secs(3600)
        ));
        let dead = format!("2147483647@{}", host());
        assert!(is_gone(&dead, None, Duration::from_secs(3600)));
        let dead = format!("2147483647.5@{}", host());
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

    /// A killed child not reaped yet is a zombie: its PID and start time are still in
    /// `/proc`, but it runs nothing.
    #[test]
    fn a_killed_process_not_reaped_yet_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = start_time(pid).expect("a live child's start time");
        let named = format!("{pid}.{start}@{}", host());
        let bare = format!("{pid}@{}", host());
        assert!(!is_gone(&named, None, Duration::ZERO));
        assert!(!is_gone(&bare, None, Duration::ZERO));
        child.kill().unwrap();
        let state = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
        };
        while state() != 'Z' {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(is_gone(&named, None, Duration::ZERO));
        assert!(is_gone(&bare, None, Duration::ZERO));
        child.wait().unwrap();
    }
}
