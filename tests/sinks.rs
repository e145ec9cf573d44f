//! The output side of the worker and of `pull`, as a batch mirroring job meets it: framed
//! stdout read by an independent parser, temporary space that runs out, descriptor limits.

mod support;

use std::path::{Path, PathBuf};

use support::cli::{blob_file, bytes, frame_media_types, json_lines, Dist, Running};
use support::fake::{FakeRegistry, Fault, Gate};

fn repo(reg: &FakeRegistry) -> String {
    format!("{}/team/app", reg.host())
}

/// Framed output, checked byte for byte against the README's grammar rather than through
/// the shared parser: `<object> SP <digest> SP <size> SP <mediatype> LF <content> LF`, and
/// `<object> SP error SP <reason> LF` for a failure.
///
/// An object past 1 MiB waits for its frame in a temporary file under `TMPDIR`. When that
/// cannot be written (a small `/tmp` filled up, as in many containers), the error must say
/// where: "i/o: No space left on device" sent users looking for room where the output
/// goes. The batch goes on.
#[test]
fn a_spool_that_cannot_be_written_names_its_directory() {
    let reg = FakeRegistry::start();
    let small = bytes(1, 1000);
    let small_digest = reg.blob("team/app", &small);
    let large = bytes(2, (1 << 20) + 4096);
    let large_digest = reg.blob("team/app", &large);
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("no-such-tmp");
    let mut dist = Dist::new();
    dist.env("TMPDIR", missing.to_str().unwrap());
    let input = format!("{small_digest}\n{large_digest}\n");
    let out = dist.run(&["fetch", &repo(&reg), "-", "--ordered"], input.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");

    let mut want = format!("{small_digest} {small_digest} 1000 -\n").into_bytes();
    want.extend_from_slice(&small);
    want.push(b'\n');
    assert!(
        out.stdout.starts_with(&want),
        "the small object's frame first: {:?}",
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(200)])
    );
    let rest = std::str::from_utf8(&out.stdout[want.len()..]).expect("an error line is text");
    let reason = rest
        .strip_prefix(&format!("{large_digest} error "))
        .and_then(|r| r.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("one error line for the large object: {rest:?}"));
    assert!(!reason.contains('\n'), "{reason:?}");
    for message in [reason, &stderr] {
        assert!(
            message.contains(&format!("temporary file in {}", missing.display())),
            "{message}"
        );
        assert!(message.contains("No such file or directory"), "{message}");
    }
}

/// A spool that fills its directory only with its last bytes, which wait in its buffer
/// until the frame is written (a limit on file size fails them as a full disk does): the
/// object fails, naming the spool's directory, and the batch goes on. The failure came
/// out of the frame's writing, after its header: "writing to stdout: File too large", a
/// header without its content, and the batch stopped there.
#[test]
fn a_spool_that_fills_its_directory_at_its_end_fails_alone() {
    let reg = FakeRegistry::start();
    let small = reg.blob("team/app", bytes(3, 1000));
    let large = bytes(4, (1 << 20) + 100_000);
    let large_digest = reg.blob("team/app", &large);
    let after = reg.blob("team/app", bytes(5, 1000));
    let scratch = tempfile::tempdir().unwrap();
    let mut dist = Dist::new();
    dist.env("TMPDIR", scratch.path().to_str().unwrap());
    let input = format!("{small}\n{large_digest}\n{after}\n");
    let out = run_with_limit(
        &dist,
        &["fetch", &repo(&reg), "-", "--ordered"],
        input.as_bytes(),
        libc::RLIMIT_FSIZE,
        large.len() as u64 - 1,
        libc::RLIM_INFINITY,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("stdout"), "{stderr}");
    let frames = support::cli::parse_frames(&out.stdout);
    let objects: Vec<_> = frames.iter().map(|f| f.object.as_str()).collect();
    assert_eq!(objects, [&small, &large_digest, &after], "{stderr}");
    assert!(
        frames[0].result.is_ok() && frames[2].result.is_ok(),
        "{stderr}"
    );
    let reason = frames[1].result.as_ref().unwrap_err();
    assert!(
        reason.contains(&format!("temporary file in {}", scratch.path().display()))
            && reason.contains("File too large"),
        "{reason}"
    );
}

/// A `--report` whose disk fills (here a limit on file size, which fails a write as a full
/// disk does) keeps its whole lines: it ended in the part of a line the disk took, and a
/// reader of the report (`jq`) failed on it, or read it cut short where no key is missing
/// (`"ms":13` for `"ms":1342`). The worker's, framed and with `-o`, and the pull's.
#[test]
fn a_report_whose_disk_fills_ends_with_a_whole_line() {
    let reg = FakeRegistry::start();
    let layers: Vec<String> = (0..6)
        .map(|i| reg.blob("team/app", bytes(40 + i, 100)))
        .collect();
    let manifest = reg.image("team/app", "v1", &layers, 100);
    let (repo, reference) = (repo(&reg), format!("{}/team/app:v1", reg.host()));
    let input = layers.join("\n") + "\n";
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.jsonl");
    let (r, layout) = (report.to_str().unwrap(), dir.path().join("layout"));
    let l = layout.to_str().unwrap();
    // Report lines are about 250 bytes long, and the files of the layout no longer than
    // the manifest: the report fills first, part-way through one of its lines.
    let cases: [&[&str]; 3] = [
        &["fetch", &repo, "-", "--report", r],
        &["fetch", &repo, "-", "-o", l, "--report", r],
        &["pull", &reference, "-o", l, "--report", r],
    ];
    for args in cases {
        let _ = std::fs::remove_dir_all(&layout);
        let limit = manifest.len() as u64 + 200;
        let out = run_with_limit(
            &Dist::new(),
            args,
            input.as_bytes(),
            libc::RLIMIT_FSIZE,
            limit,
            libc::RLIM_INFINITY,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("writing the report {r}: File too large")),
            "{args:?}: {stderr}"
        );
        let written = std::fs::read(&report).unwrap();
        assert!(
            !written.is_empty() && written.ends_with(b"\n"),
            "{args:?}: {}",
            String::from_utf8_lossy(&written)
        );
        let lines = json_lines(&written);
        assert!(
            lines.iter().all(|l| l["ms"].is_u64()),
            "{args:?}: {lines:?}"
        );
    }
}

/// `dist ARGS…` with `stdin`, under a limit on open files of `soft` (and `hard`).
fn run_with_file_limit(
    dist: &Dist,
    args: &[&str],
    stdin: &[u8],
    soft: u64,
    hard: u64,
) -> std::process::Output {
    run_with_limit(dist, args, stdin, libc::RLIMIT_NOFILE, soft, hard)
}

/// `dist ARGS…` with `stdin`, under a limit of `soft` (and `hard`) on `resource`. The
/// signal a write past `RLIMIT_FSIZE` raises keeps its default, which kills a process that
/// does not catch it: dist does, and such a write fails as one on a full disk does.
fn run_with_limit(
    dist: &Dist,
    args: &[&str],
    stdin: &[u8],
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
) -> std::process::Output {
    let mut command = dist.command(args);
    limit(&mut command, resource, soft, hard);
    let child = spawn_fed(command, stdin);
    child.wait_with_output().expect("wait for dist")
}

/// Sets a limit of `soft` (and `hard`) on `resource` for `command`'s process.
fn limit(
    command: &mut std::process::Command,
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            if libc::setrlimit(resource, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `command` started with stdout and stderr piped and `stdin` as its whole input.
fn spawn_fed(mut command: std::process::Command, stdin: &[u8]) -> Running {
    use std::io::Write;
    let mut child = Running::piped(&mut command);
    // A dist that stops before reading its input (refusing to start) closes the pipe.
    let fed = child.stdin.take().unwrap().write_all(stdin);
    if let Err(e) = fed {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "feed dist: {e}");
    }
    child
}

/// `dist ARGS…` as a user no process runs as ([`idle_uid`]), allowed `threads` threads in
/// all (`ulimit -u`; a cgroup's `pids.max` refuses them the same way), and killed if it
/// runs a minute: a hang shows as SIGKILL. Fails the test unless it runs as root, who alone
/// can switch users, and whom the limit does not bind.
fn run_with_thread_limit(
    dist: &Dist,
    args: &[&str],
    stdin: &[u8],
    threads: u64,
) -> std::process::Output {
    let child = start_with_thread_limit(dist, args, stdin, threads);
    let pid = child.id() as libc::pid_t;
    let (ended, end) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if end
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_err()
        {
            // SAFETY: kill only sends a signal; the child is not reaped before `ended`.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().expect("wait for dist");
    drop(ended);
    watchdog.join().unwrap();
    out
}

/// [`run_with_thread_limit`]'s `dist ARGS…`, started and fed `stdin`, left running.
fn start_with_thread_limit(dist: &Dist, args: &[&str], stdin: &[u8], threads: u64) -> Running {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // Failed, not skipped: a test that returned here passed having checked nothing, its
    // notice captured by the harness.
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "not root: this test runs dist as another user under a limit on threads, which \
         only root can"
    );
    std::fs::set_permissions(dist.config_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let uid = idle_uid();
    let mut command = dist.command(args);
    // SAFETY: only setgid, setuid and setrlimit, async-signal-safe, run between fork and
    // exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: threads as libc::rlim_t,
                rlim_max: threads as libc::rlim_t,
            };
            if libc::setgid(65534) != 0
                || libc::setuid(uid) != 0
                || libc::setrlimit(libc::RLIMIT_NPROC, &limit) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn_fed(command, stdin)
}

/// A user id that no process runs as, a new one each call. The limit on threads counts
/// every thread of the user's: run as `nobody`, dist shared it with the services that run
/// as `nobody` too (nginx's workers, on a machine with a web server) and with another
/// test's run, and had fewer threads than the test gave it.
fn idle_uid() -> libc::uid_t {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(61_000);
    let in_use = |uid: libc::uid_t| {
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read_to_string(entry.path().join("status")).is_ok_and(|status| {
                status.lines().any(|l| {
                    l.strip_prefix("Uid:")
                        .is_some_and(|ids| ids.split_whitespace().any(|id| id == uid.to_string()))
                })
            })
        })
    };
    loop {
        let uid = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !in_use(uid) {
            return uid;
        }
    }
}

/// A batch with more jobs than open files allow (`-j 64` under `ulimit -n 64`: a
/// connection and a file each) lost most of its objects to "Too many open files". Now it
/// raises the soft limit as far as the hard one allows and, where that is not enough,
/// runs fewer jobs at once, says so, and stores every object.
#[test]
fn a_low_open_file_limit_slows_the_batch_instead_of_failing_it() {
    let reg = FakeRegistry::start();
    let blobs: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| {
            let data = bytes(100 + i, 2000 + i as usize * 31);
            (reg.blob("team/app", &data), data)
        })
        .collect();
    let input: String = blobs.iter().map(|(d, _)| format!("{d}\n")).collect();
    for (soft, hard, slowed) in [(64, 64, true), (64, 4096, false)] {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("layout");
        let out = run_with_file_limit(
            &Dist::new(),
            &[
                "fetch",
                &repo(&reg),
                "-",
                "-j",
                "64",
                "-o",
                out_dir.to_str().unwrap(),
            ],
            input.as_bytes(),
            soft,
            hard,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "limit {soft}/{hard}: {stderr}");
        assert_eq!(
            stderr.contains("-j 64 needs up to") && stderr.contains("the limit is 64"),
            slowed,
            "limit {soft}/{hard}: {stderr}"
        );
        for (digest, data) in &blobs {
            let path = blob_file(&out_dir, digest);
            assert!(
                std::fs::read(&path).is_ok_and(|stored| stored == *data),
                "{digest} stored under limit {soft}/{hard}"
            );
        }
    }
}

/// A batch whose blobs are each redirected to a host of their own (a store per blob, 50
/// of them) under `ulimit -n 64`: the pool kept each host's connection idle for 90 s,
/// where the limit on open files counted one connection per job, and the batch failed
/// its later objects with "Too many open files" (31 of 50 stored, the rest failing or
/// waiting for a connection). Idle connections now count against that budget, and the
/// one idle the longest is closed to make room. The descriptors held once the batch is
/// done (stdin still open) are printed, for the record: 45, where 77 without the limit.
#[test]
fn redirects_to_many_hosts_fit_a_low_open_file_limit() {
    redirected_to_many_hosts(false);
}

/// As [`redirects_to_many_hosts_fit_a_low_open_file_limit`], half the blobs coming from a
/// mirror, whose client has a pool of its own: each client kept to the budget on its own,
/// and the two together went past it (24 of 50 stored, 65 descriptors; now all, 45).
#[test]
fn redirects_to_many_hosts_from_a_mirror_and_the_registry_fit_a_low_open_file_limit() {
    redirected_to_many_hosts(true);
}

/// `--range-streams 64` under `ulimit -n 20`: the cap on connections in all was never
/// below one host's (`-j` + `--range-streams` - 1, here 64), far past the descriptors
/// the limit leaves, and a slow large blob split into parts opened connections until
/// "Too many open files" (8 at once, then each further part's connect failed and was
/// retried; with `--retries 0` the object failed). The range streams are cut to what the
/// limit leaves, and a warning says so. `-vv` shows each failed connect.
#[test]
fn range_streams_fit_a_low_open_file_limit() {
    let reg = FakeRegistry::start();
    // 16 parts of 8 MiB, each slow enough that all would be under way at once.
    let data = bytes(41, 128 << 20);
    let digest = reg.blob("team/app", &data);
    reg.set_fault_for_every(
        &digest,
        Fault::Paced {
            bytes_per_sec: 16 << 20,
            first_byte: std::time::Duration::ZERO,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let args = [
        "-vv",
        "--range-streams",
        "64",
        "fetch",
        &repo(&reg),
        "-",
        "-j",
        "1",
        "-o",
        out_dir.to_str().unwrap(),
    ];
    let input = format!("{digest}\n");
    let out = run_with_file_limit(&Dist::new(), &args, input.as_bytes(), 20, 20);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let ranged = reg.requests().iter().filter(|r| r.range.is_some()).count();
    eprintln!(
        "{ranged} ranged requests, {} connections, at most {} at once",
        reg.connections(),
        reg.max_open_connections(),
    );
    assert!(ranged > 0, "not split: the test shows nothing\n{stderr}");
    assert!(!stderr.contains("Too many open files"), "{stderr}");
    assert!(
        stderr.contains("--range-streams 64 needs up to 64 connections"),
        "{stderr}"
    );
    let path = blob_file(&out_dir, &digest);
    let stored = std::fs::read(path);
    assert!(stored.is_ok_and(|stored| stored == data), "{stderr}");
}

/// A one-shot fetch with `--range-streams 64` under a soft limit of 20 and a hard one of
/// 4096: the soft limit was raised only to the 32 every run needs, and the streams were cut
/// to 15 with a warning naming 32 as `ulimit -n`, where raising it further, as a worker
/// does for its jobs, leaves room for all 64.
#[test]
fn range_streams_raise_a_soft_open_file_limit_the_hard_one_allows() {
    let reg = FakeRegistry::start();
    let data = bytes(43, 3000);
    let digest = reg.blob("team/app", &data);
    let args = ["--range-streams", "64", "fetch", &repo(&reg), &digest];
    let out = run_with_file_limit(&Dist::new(), &args, b"", 20, 4096);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), out.stdout), (Some(0), data), "{stderr}");
    assert!(!stderr.contains("--range-streams 64 needs"), "{stderr}");
}

/// Under `ulimit -n 17` the limit leaves one connection beside the job's file: a blob is
/// not split at all, and the warning says so, where it said "splitting a blob into 1 at
/// most". The one job asked for runs, and nothing says it was cut: a warning said "-j 1
/// needs up to 38 open files … fetching 1 at a time".
#[test]
fn range_streams_cut_to_one_say_blobs_are_not_split() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(42, 5000));
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let args = [
        "fetch",
        &repo(&reg),
        "-",
        "-j",
        "1",
        "-o",
        out_dir.to_str().unwrap(),
    ];
    let input = format!("{digest}\n");
    let out = run_with_file_limit(&Dist::new(), &args, input.as_bytes(), 17, 17);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "dist: warning: --range-streams 4 needs up to 4 connections and the limit on \
             open files is 17 (ulimit -n): not splitting blobs"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("-j 1 needs"), "{stderr}");
}

/// Under `ulimit -Hn 20` the default 4 range streams are cut to 3: `resolve` and a fetch
/// by tag, which fetch a manifest and never split a blob, said so all the same. A fetch by
/// digest, which may be of a large blob, still does.
#[test]
fn range_streams_cut_are_said_only_by_commands_that_fetch_blobs() {
    let reg = FakeRegistry::start();
    let media = "application/vnd.oci.image.manifest.v1+json";
    let manifest = br#"{"schemaVersion":2}"#;
    let digest = reg.manifest("team/app", "v1", media, manifest);
    let image = format!("{}:v1", repo(&reg));
    let warning = "--range-streams 4 needs up to 4 connections and the limit on open files \
                   is 20 (ulimit -n): splitting a blob into 3 at most";
    for args in [vec!["resolve", &image], vec!["fetch", &repo(&reg), "v1"]] {
        let out = run_with_file_limit(&Dist::new(), &args, b"", 20, 20);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("--range-streams"), "{args:?}: {stderr}");
    }
    let args = ["fetch", &repo(&reg), &digest];
    let out = run_with_file_limit(&Dist::new(), &args, b"", 20, 20);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), &out.stdout[..]),
        (Some(0), &manifest[..]),
        "{stderr}"
    );
    assert!(stderr.contains(warning), "{stderr}");
}

/// `-j 16 --range-streams 8` under `ulimit -n 40`: the job count was worked out with all
/// 8 range streams counted, `(40 - 32 - 8) / 2`, and the batch ran one job at a time,
/// though the range streams are cut to what the jobs leave (here none need be: 4 jobs
/// leave 20 connections). One split of the budget now gives both: 4 jobs, counted as
/// requests held at the registry at once.
#[test]
fn range_streams_leave_the_jobs_that_fit_a_low_open_file_limit() {
    let reg = FakeRegistry::start();
    let held = Gate::default();
    /// Lets the held bodies go however the test ends, so that dist ends too.
    struct Opens(Gate);
    impl Drop for Opens {
        fn drop(&mut self) {
            self.0.open();
        }
    }
    let opens = Opens(held.clone());
    let blobs: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| {
            let data = bytes(700 + i, 3000 + i as usize * 17);
            let digest = reg.blob("team/app", &data);
            reg.set_fault_for_every(&digest, Fault::HeldAfter(100, held.clone()));
            (digest, data)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("layout");
    let args = [
        "--range-streams",
        "8",
        "fetch",
        &repo(&reg),
        "-",
        "-j",
        "16",
        "-o",
        out_dir.to_str().unwrap(),
    ];
    let mut command = Dist::new().command(&args);
    limit(&mut command, libc::RLIMIT_NOFILE, 40, 40);
    let input: String = blobs.iter().map(|(d, _)| format!("{d}\n")).collect();
    let child = spawn_fed(command, input.as_bytes());
    let blob_requests = || {
        let requests = reg.requests();
        requests
            .iter()
            .filter(|r| r.path.contains("/blobs/"))
            .count()
    };
    // Each body is held until the gate opens: the requests seen are fetches at once.
    support::wait::until("4 blobs fetched at once", || blob_requests() >= 4);
    drop(opens);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("-j 16 needs up to") && stderr.contains("fetching 4 at a time"),
        "{stderr}"
    );
    for (digest, data) in &blobs {
        let path = blob_file(&out_dir, digest);
        assert!(
            std::fs::read(&path).is_ok_and(|stored| stored == *data),
            "{digest}: {stderr}"
        );
    }
}

/// Fetches 50 blobs, each redirected to a store of its own, under `ulimit -n 64`; with
/// `mirror`, the odd ones from a mirror, which redirects them to their stores.
fn redirected_to_many_hosts(mirror: bool) {
    let reg = FakeRegistry::start();
    let mirror = mirror.then(FakeRegistry::start);
    let stores: Vec<FakeRegistry> = (0..50).map(|_| FakeRegistry::start()).collect();
    let blobs: Vec<(String, Vec<u8>)> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let data = bytes(900 + i as u64, 2000 + i * 31);
            let digest = reg.blob("team/app", &data);
            store.blob("team/app", &data);
            let location = format!("{}/v2/team/app/blobs/{digest}", store.url());
            let from = match &mirror {
                Some(mirror) if i % 2 == 1 => {
                    mirror.blob("team/app", &data);
                    mirror
                }
                _ => &reg,
            };
            from.set_fault_for_every(
                &digest,
                Fault::Redirect {
                    status: 307,
                    location,
                },
            );
            (digest, data)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("layout");
    let mut args = vec!["fetch".to_string(), repo(&reg), "-".into(), "-o".into()];
    args.push(out_dir.to_str().unwrap().into());
    if let Some(mirror) = &mirror {
        args.extend(["--mirror".to_string(), mirror.url()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = Dist::new().command(&args);
    limit(&mut command, libc::RLIMIT_NOFILE, 64, 64);
    let mut child = Running::piped(&mut command);
    let mut stdin = child.stdin.take().unwrap();
    let input: String = blobs.iter().map(|(d, _)| format!("{d}\n")).collect();
    std::io::Write::write_all(&mut stdin, input.as_bytes()).unwrap();
    let settled = |child: &mut std::process::Child| {
        child.try_wait().unwrap().is_some()
            || blobs
                .iter()
                .all(|(digest, _)| blob_file(&out_dir, digest).exists())
    };
    support::wait::until("the batch to end or store every blob", || {
        settled(&mut child)
    });
    let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id())).map(|d| d.count());
    eprintln!("descriptors held at the batch's end: {fds:?}");
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for (digest, data) in &blobs {
        let path = blob_file(&out_dir, digest);
        assert!(
            std::fs::read(&path).is_ok_and(|stored| stored == *data),
            "{digest}: {stderr}"
        );
    }
}

/// Under a limit on open files too low to start (`ulimit -n 6`, soft and hard), tokio's
/// signal set-up panicked (status 101, "failed to create UnixStream") and at 8 the
/// runtime failed to start with no word of the limit. dist now says what the limit is and
/// what it needs, with the usage status, for a one-shot fetch and a worker alike; at the
/// minimum it runs.
#[test]
fn an_open_file_limit_too_low_to_run_is_named() {
    let reg = FakeRegistry::start();
    let data = bytes(7, 3000);
    let digest = reg.blob("team/app", &data);
    let line = format!("{digest}\n");
    for limit in [6, 8, 15] {
        for args in [
            vec!["fetch", &repo(&reg), &digest],
            vec!["fetch", &repo(&reg), "-"],
        ] {
            let out = run_with_file_limit(&Dist::new(), &args, line.as_bytes(), limit, limit);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "limit {limit} {args:?}: {stderr}"
            );
            assert!(
                stderr.contains(&format!("the limit on open files is {limit} (ulimit -n)"))
                    && stderr.contains("at least 16"),
                "limit {limit} {args:?}: {stderr}"
            );
            assert!(out.stdout.is_empty(), "limit {limit} {args:?}");
        }
    }
    let out = run_with_file_limit(&Dist::new(), &["fetch", &repo(&reg), &digest], b"", 16, 16);
    assert_eq!(
        (out.status.code(), out.stdout),
        (Some(0), data),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Shards started at once into one new `-o DIR` (the README's Indexed Job): one whose
/// objects all fail removes the directory it created, as a run that stored nothing does,
/// while another is still fetching into it. The other shard then stored every blob, exited
/// 0, and left a directory with `blobs/` but no `oci-layout` or `index.json`, which no
/// tool reads as a layout (about one time in two). Whatever the timing, the layout the
/// successful shard leaves is whole now.
#[test]
fn a_failing_shard_does_not_take_the_layout_from_one_still_fetching() {
    let reg = FakeRegistry::start();
    let blobs: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            let data = bytes(300 + i, 3000 + i as usize * 17);
            (reg.blob("team/app", &data), data)
        })
        .collect();
    let input: String = blobs.iter().map(|(d, _)| format!("{d}\n")).collect();
    let missing = format!("sha256:{}\n", "0".repeat(64));
    let dist = Dist::new();
    for round in 0..10 {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("layout");
        let dir = dir.to_str().unwrap();
        let args = ["fetch", &repo(&reg), "-", "-o", dir];
        let failing = dist.spawn(&args, missing.as_bytes());
        let out = dist.run(&args, input.as_bytes());
        let failed = failing.wait_with_output().unwrap();
        assert_eq!(failed.status.code(), Some(1), "round {round}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "round {round}: {stderr}");
        let layout = std::path::Path::new(dir);
        assert_eq!(
            std::fs::read_to_string(layout.join("oci-layout"))
                .ok()
                .as_deref(),
            Some(r#"{"imageLayoutVersion":"1.0.0"}"#),
            "round {round}"
        );
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"], serde_json::json!([]), "round {round}");
        for (digest, data) in &blobs {
            let path = blob_file(layout, digest);
            assert!(
                std::fs::read(&path).is_ok_and(|stored| stored == *data),
                "round {round}: {digest}"
            );
        }
    }
}

/// An empty file under a blob's name (a `touch`, another tool's cut copy) is fetched over
/// even without a `size:` hint; it would otherwise stand for the blob for ever.
#[test]
fn an_empty_file_under_a_blob_s_name_is_fetched_over() {
    let reg = FakeRegistry::start();
    let blob = bytes(91, 5000);
    let digest = reg.blob("team/app", &blob);
    let dir = tempfile::tempdir().unwrap();
    let path = blob_file(dir.path(), &digest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"").unwrap();
    let out = Dist::new().run(
        &[
            "fetch",
            &repo(&reg),
            "-",
            "-o",
            dir.path().to_str().unwrap(),
        ],
        format!("{digest}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&path).unwrap(), blob);
}

/// Something in the way of a blob that no fetch can replace is named, before the blob is
/// fetched: a file where `blobs/sha256` must be a directory was told as "reading
/// DIR/blobs/sha256/<hex>: Not a directory", the blob's place rather than the file at
/// fault; a directory at the blob's place had the blob fetched whole, every run, before
/// its rename failed ("Is a directory"). The batch goes on for the others.
#[test]
fn what_stands_in_a_blob_s_way_is_named_before_it_is_fetched() {
    let reg = FakeRegistry::start();
    let blob = bytes(95, 5000);
    let digest = reg.blob("team/app", &blob);
    let hex = &digest["sha256:".len()..];
    let fetch = |dir: &std::path::Path| {
        Dist::new().run(
            &["fetch", &repo(&reg), "-", "-o", dir.to_str().unwrap()],
            format!("{digest}\n").as_bytes(),
        )
    };

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
    let sha256 = dir.path().join("blobs/sha256");
    std::fs::write(&sha256, b"").unwrap();
    let out = fetch(dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let words = format!("{} is a file, not a directory", sha256.display());
    assert!(err.contains(&words), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let place = dir.path().join("blobs/sha256").join(hex);
    std::fs::create_dir_all(&place).unwrap();
    let before = reg.requests_for(&digest);
    let out = fetch(dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let words = format!("{} is a directory, where the blob belongs", place.display());
    assert!(err.contains(&words), "{err}");
    assert_eq!(reg.requests_for(&digest), before, "not fetched");
    assert!(place.is_dir(), "left as it was");
}

/// A symbolic link at a blob's place that leads to other content (`--verify-existing` finds
/// it wrong) is replaced by the blob, a file of its own: the file it led to, outside the
/// layout, is never written.
#[test]
fn a_link_at_a_blob_s_place_is_replaced_not_written_through() {
    let reg = FakeRegistry::start();
    let blob = bytes(96, 5000);
    let digest = reg.blob("team/app", &blob);
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    let mut wrong = blob.clone();
    wrong[10] ^= 1;
    std::fs::write(&victim, &wrong).unwrap();
    let place = blob_file(dir.path(), &digest);
    std::fs::create_dir_all(place.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, &place).unwrap();
    let out = Dist::new().run(
        &[
            "fetch",
            &repo(&reg),
            "-",
            "--verify-existing",
            "-o",
            dir.path().to_str().unwrap(),
        ],
        format!("{digest}\n").as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(std::fs::symlink_metadata(&place).unwrap().is_file());
    assert_eq!(std::fs::read(&place).unwrap(), blob);
    assert_eq!(std::fs::read(&victim).unwrap(), wrong, "left as it was");
}

/// A blob store shared by several layouts: `DIR/blobs/sha256` a symbolic link to a
/// directory elsewhere is written through, as README says, its blobs landing there with
/// nothing of the run's left beside them, and found there by the next run.
#[test]
fn a_linked_blob_directory_is_written_through() {
    let reg = FakeRegistry::start();
    let blob = bytes(97, 5000);
    let digest = reg.blob("team/app", &blob);
    let dir = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("blobs")).unwrap();
    std::os::unix::fs::symlink(shared.path(), dir.path().join("blobs/sha256")).unwrap();
    let fetch = || {
        Dist::new().ok_fed(
            &[
                "fetch",
                &repo(&reg),
                "-",
                "-o",
                dir.path().to_str().unwrap(),
            ],
            format!("{digest}\n").as_bytes(),
        )
    };
    assert_eq!(json_lines(&fetch())[0]["status"], "ok");
    let hex = &digest["sha256:".len()..];
    let there: Vec<_> = std::fs::read_dir(shared.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(there, [hex], "the blob alone");
    assert_eq!(std::fs::read(shared.path().join(hex)).unwrap(), blob);
    assert!(std::fs::symlink_metadata(dir.path().join("blobs/sha256"))
        .unwrap()
        .is_symlink());
    assert_eq!(json_lines(&fetch())[0]["status"], "exists");
}

/// A new `-o DIR` whose layout files cannot be written (a full disk; here a limit on file
/// size, which fails writes the same way) is refused with exit status 2, and the
/// directory it began is taken away again rather than left as an empty `blobs/`, with
/// the directories made on the way to it (they were left behind).
#[test]
fn a_layout_that_cannot_be_written_is_not_left_half_made() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(92, 3000));
    let parent = tempfile::tempdir().unwrap();
    for (dir, first_made) in [("new", "new"), ("a/b/new", "a")] {
        let (dir, first_made) = (parent.path().join(dir), parent.path().join(first_made));
        let out = run_with_limit(
            &Dist::new(),
            &["fetch", &repo(&reg), "-", "-o", dir.to_str().unwrap()],
            format!("{digest}\n").as_bytes(),
            libc::RLIMIT_FSIZE,
            0,
            libc::RLIM_INFINITY,
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("oci-layout"), "{err}");
        assert!(
            !first_made.exists(),
            "left behind: {:?}",
            std::fs::read_dir(&first_made).map(|d| d.count())
        );
    }
}

/// A blob past a limit on file size (`ulimit -f`, systemd's `LimitFSIZE=`) fails alone,
/// saying why, as on a full disk: the others are stored and reported, and nothing of it is
/// kept. The limit's signal killed the whole batch silently (status 153, no line written),
/// and left a temporary file that every later run carried on past the limit, and died of.
/// The error names the blob and the directory that wants room: it named the random
/// temporary file, deleted by the time anyone read the message, and then the blob's path,
/// a file that does not exist.
#[test]
fn a_blob_past_the_file_size_limit_fails_alone() {
    let reg = FakeRegistry::start();
    let small = reg.blob("team/app", bytes(94, 3000));
    let large = reg.blob("team/app", bytes(95, 3 << 20));
    let small_after = reg.blob("team/app", bytes(96, 3000));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().to_str().unwrap();
    let input = format!("{small}\n{large}\n{small_after}\n");
    for run in 0..2 {
        let out = run_with_limit(
            &Dist::new(),
            &["fetch", &repo(&reg), "-", "-o", layout, "--ordered"],
            input.as_bytes(),
            libc::RLIMIT_FSIZE,
            2 << 20,
            libc::RLIM_INFINITY,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "run {run}: {err}");
        let lines = json_lines(&out.stdout);
        let statuses: Vec<_> = lines
            .iter()
            .map(|l| l["status"].as_str().unwrap())
            .collect();
        let want = if run == 0 { "ok" } else { "exists" };
        assert_eq!(statuses, [want, "error", want], "run {run}: {err}");
        let error = lines[1]["error"].as_str().unwrap();
        assert!(error.contains("File too large"), "run {run}: {error}");
        // The blob and the directory that wants room; not the blob's path, a file that
        // never came to be.
        let place = dir.path().join("blobs/sha256");
        assert!(
            error.starts_with(&format!(
                "{large}: writing into {}: File too large",
                place.display()
            )),
            "run {run}: {error}"
        );
        assert!(
            !error.contains(".dist-tmp") && !err.contains(".dist-tmp"),
            "run {run}: {err}"
        );
        assert!(
            err.contains(&large) && err.contains("File too large"),
            "{err}"
        );
        let mut left: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut stored = [&small, &small_after].map(|d| d.strip_prefix("sha256:").unwrap());
        stored.sort();
        assert_eq!(left, stored, "run {run}");
    }
}

/// A failed line says what its input line asked for, however far the fetch got: the
/// digest the line names, its size and type if it gave them, and no path. Cut short by a
/// full disk (here a limit on file size) a blob's line had none of them, while one whose
/// disk filled at its rename had the digest and size received.
#[test]
fn a_failed_line_says_what_its_line_asked_for() {
    let reg = FakeRegistry::start();
    let missing = format!("sha256:{}", "e".repeat(64));
    let large = bytes(97, 3 << 20);
    let large_digest = reg.blob("team/app", &large);
    let bare = reg.blob("team/app", bytes(98, 3 << 20));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().to_str().unwrap();
    let layer = "application/vnd.oci.image.layer.v1.tar";
    let input = format!(
        "{missing} size:5 mediatype:application/vnd.example.a\n\
         {{\"digest\":\"{large_digest}\",\"size\":{},\"mediaType\":\"{layer}\"}}\n\
         {bare}\n",
        large.len()
    );
    let out = run_with_limit(
        &Dist::new(),
        &["fetch", &repo(&reg), "-", "-o", layout, "--ordered"],
        input.as_bytes(),
        libc::RLIMIT_FSIZE,
        2 << 20,
        libc::RLIM_INFINITY,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines = json_lines(&out.stdout);
    let null = serde_json::Value::Null;
    let want = [
        (
            missing.as_str(),
            serde_json::json!(5),
            serde_json::json!("application/vnd.example.a"),
        ),
        (
            &large_digest,
            serde_json::json!(large.len()),
            serde_json::json!(layer),
        ),
        (&bare, null.clone(), null.clone()),
    ];
    assert_eq!(lines.len(), want.len(), "{err}");
    for (line, (digest, size, media_type)) in lines.iter().zip(want) {
        assert_eq!(line["status"], "error", "{line}");
        assert_eq!(line["digest"], digest, "{line}");
        assert_eq!(line["size"], size, "{line}");
        assert_eq!(line["mediaType"], media_type, "{line}");
        assert_eq!(line["path"], null, "{line}");
    }
}

/// A failed tag line is told apart in the report by `object`, the line's object as
/// written (`tag@digest` being the digest it fetches, as README says): a tag names no
/// digest (`null`), `tag@digest` and a digest name theirs. A script that keys on
/// `digest` alone sees no tag; one that keys on `object` (or `line`) sees every line.
#[test]
fn a_failed_tag_line_is_reported_by_its_object_as_written() {
    let reg = FakeRegistry::start();
    let (one, two) = (
        format!("sha256:{}", "e".repeat(64)),
        format!("sha256:{}", "f".repeat(64)),
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().to_str().unwrap();
    let input = format!("nosuchtag\nv9@{one}\n{two}\n");
    let args = ["fetch", &repo(&reg), "-", "-o", layout, "--ordered"];
    let out = Dist::new().run(&args, input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let reported: Vec<(String, serde_json::Value)> = json_lines(&out.stdout)
        .iter()
        .map(|l| {
            assert_eq!(l["status"], "error", "{l}");
            (
                l["object"].as_str().unwrap().to_string(),
                l["digest"].clone(),
            )
        })
        .collect();
    let want = vec![
        ("nosuchtag".to_string(), serde_json::Value::Null),
        (one.clone(), serde_json::json!(one)),
        (two.clone(), serde_json::json!(two)),
    ];
    assert_eq!(reported, want, "{err}");
}

/// An image in the fake registry under `tag`: a config and one layer; returns the
/// manifest's digest.
fn small_image(reg: &FakeRegistry, tag: &str) -> String {
    small_image_of(reg, tag, 93)
}

/// [`small_image`] whose layer is `bytes(seed, 3000)`: another seed, another image.
fn small_image_of(reg: &FakeRegistry, tag: &str, seed: u64) -> String {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = reg.blob("team/app", config);
    let layer = bytes(seed, 3000);
    let layer_digest = reg.blob("team/app", &layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    });
    reg.manifest(
        "team/app",
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string(),
    )
}

/// Every blob of a pull in place, and `index.json` that cannot be written (a full disk;
/// here a limit on file size, which fails writes the same way): the pull fails naming
/// `index.json` and the cause. It named the random temporary file instead, twice over
/// (`tempfile` appends its path), and never the file the user has to look at.
#[test]
fn an_index_json_that_cannot_be_written_is_named() {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().to_str().unwrap();
    let dist = Dist::new();
    dist.ok(&["pull", &format!("{}:v1", repo(&reg)), "-o", layout]);
    let before = std::fs::read(dir.path().join("index.json")).unwrap();
    // The same image under a second tag: nothing to fetch, one more entry to write.
    small_image(&reg, "v2");
    let out = run_with_limit(
        &dist,
        &["pull", &format!("{}:v2", repo(&reg)), "-o", layout],
        b"",
        libc::RLIMIT_FSIZE,
        before.len() as u64,
        libc::RLIM_INFINITY,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let index = dir.path().join("index.json");
    assert!(
        err.contains(&format!("writing {}: File too large", index.display())),
        "{err}"
    );
    assert!(
        !err.contains(".dist-tmp") && !err.contains("at path"),
        "{err}"
    );
    assert_eq!(std::fs::read(&index).unwrap(), before, "index.json changed");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".dist-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Pulling an image again that is all in place, its `index.json` entry included, writes
/// nothing, so it succeeds where nothing may be written (a full disk, here a limit on file
/// size of 0; a layout mounted read-only). It rewrote `index.json` unchanged, and failed.
#[test]
fn pulling_again_what_is_in_place_writes_nothing() {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().to_str().unwrap();
    let dist = Dist::new();
    let image = format!("{}:v1", repo(&reg));
    dist.ok(&["pull", &image, "-o", layout]);
    let index = dir.path().join("index.json");
    let before = std::fs::read(&index).unwrap();
    let out = run_with_limit(
        &dist,
        &["pull", &image, "-o", layout],
        b"",
        libc::RLIMIT_FSIZE,
        0,
        libc::RLIM_INFINITY,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let statuses: Vec<_> = json_lines(&out.stdout)
        .iter()
        .map(|l| l["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["exists"; 3], "{err}");
    assert_eq!(std::fs::read(&index).unwrap(), before);
}

/// A limit on threads (`ulimit -u`, a cgroup's `pids.max`, as in a container) leaves
/// dist fewer threads than a large object's hashing and writing want: they are done on the
/// runtime's thread instead, slower but whole. A fetch of a 9 MiB blob to stdout with one
/// thread to spare hung for good (its writer queued behind its hasher on tokio's blocking
/// pool, and the hasher waited for what the writer was to be sent), and with none
/// panicked; a worker that could not start its output thread panicked (status 101)
/// instead of saying why.
#[test]
fn a_limit_on_threads_slows_fetches_instead_of_hanging_them() {
    let reg = FakeRegistry::start();
    let large = bytes(97, 9 << 20);
    let digest = reg.blob("team/app", &large);
    for threads in [1, 2, 3] {
        let args = ["fetch", &repo(&reg), &digest];
        let out = run_with_thread_limit(&Dist::new(), &args, b"", threads);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{threads} threads: {err}");
        assert!(out.stdout == large, "{threads} threads: not the blob");
    }

    let (blobs, input) = large_blobs(&reg, 6, 9 << 20, 200);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let layout = dir.path().join("layout");
    let repo = repo(&reg);
    let args = [
        "fetch",
        &repo,
        "-",
        "-j",
        "6",
        "-o",
        layout.to_str().unwrap(),
    ];
    let out = run_with_thread_limit(&Dist::new(), &args, input.as_bytes(), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot start the output thread") && err.contains("ulimit -u"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = run_with_thread_limit(&Dist::new(), &args, input.as_bytes(), 6);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_stored(&layout, &blobs);
}

/// A worker that cannot start its output thread runs no batch, and so leaves the previous
/// run's `--report` as it was, as a run that fails its registry check does: the report was
/// emptied before the thread was asked for, and the record of the last run was lost.
#[test]
fn a_worker_without_an_output_thread_keeps_the_previous_report() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(96, 5000));
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let report = dir.path().join("report.jsonl");
    std::fs::write(&report, "previous run\n").unwrap();
    std::fs::set_permissions(&report, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let repo = repo(&reg);
    let args = ["fetch", &repo, "-", "--report", report.to_str().unwrap()];
    let input = format!("{digest}\n");
    let out = run_with_thread_limit(&Dist::new(), &args, input.as_bytes(), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot start the output thread"), "{err}");
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "previous run\n");
}

/// Under a limit on threads that leaves none at all (`ulimit -u` at the threads dist has
/// when it starts), a worker given `-o DIR` or `--report` says it cannot start a thread,
/// status 2, as it says of its output thread, leaving the previous report and making no
/// layout: the layout's or report's open went to tokio's blocking pool, which had no
/// thread and could start none, and tokio panicked (status 101).
#[test]
fn a_worker_without_a_thread_for_its_first_steps_says_so() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(96, 5000));
    let dir = tempfile::tempdir().unwrap();
    let mode = |mode| std::os::unix::fs::PermissionsExt::from_mode(mode);
    std::fs::set_permissions(dir.path(), mode(0o777)).unwrap();
    let report = dir.path().join("report.jsonl");
    std::fs::write(&report, "previous run\n").unwrap();
    std::fs::set_permissions(&report, mode(0o666)).unwrap();
    let out = dir.path().join("out");
    let repo = repo(&reg);
    let input = format!("{digest}\n");
    for given in [
        ["--report", report.to_str().unwrap()],
        ["-o", out.to_str().unwrap()],
    ] {
        let args = ["fetch", &repo, "-", given[0], given[1]];
        let run = run_with_thread_limit(&Dist::new(), &args, input.as_bytes(), 1);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{given:?}: {err}");
        assert!(!err.contains("panicked"), "{given:?}: {err}");
        assert!(
            err.contains("cannot start a thread") && err.contains("ulimit -u"),
            "{given:?}: {err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "previous run\n");
    assert!(!out.exists(), "a layout was made");
}

/// A limit on address space (`ulimit -v`, as batch schedulers set it) of 512 MiB, for a
/// batch whose memory in use stays near 40 MiB: glibc reserved 64 MiB of address space for
/// each of up to eight arenas per core, one for each hashing and writing thread of the
/// large blobs, and the batch aborted ("memory allocation of 417792 bytes failed",
/// SIGABRT) with all of its output lost.
#[test]
fn a_limit_on_address_space_leaves_a_batch_of_large_blobs_whole() {
    large_blobs_under_limit(32, 9 << 20, 300, &[], libc::RLIMIT_AS, 512 << 20);
}

/// A limit on data (`ulimit -d`; `ulimit -v` the same) of 360 MiB, for `-j 64` blobs of
/// 8 MiB or more, each hashed and written by a thread of its own: with Rust's default
/// stack of 2 MiB those 128 threads took 256 MiB of it before any content, and under a
/// limit of 300 MiB the batch aborted ("memory allocation of 417792 bytes failed",
/// SIGABRT) with all its output, in some runs. The batch needs about 190 MiB now; the
/// limit leaves room for a loaded machine, where more chunks wait in the queues.
#[test]
fn a_limit_on_data_leaves_a_wide_batch_of_large_blobs_whole() {
    large_blobs_under_limit(
        64,
        8 << 20,
        400,
        &["-j", "64"],
        libc::RLIMIT_DATA,
        360 << 20,
    );
}

/// A batch of `count` blobs of `size` bytes and more (`seed` onwards), fetched with
/// `options` into a layout under `limit` on `resource`: every one is reported and stored.
fn large_blobs_under_limit(
    count: u64,
    size: usize,
    seed: u64,
    options: &[&str],
    resource: libc::__rlimit_resource_t,
    limit: u64,
) {
    let reg = FakeRegistry::start();
    let (blobs, input) = large_blobs(&reg, count, size, seed);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let repo = repo(&reg);
    let mut args = vec!["fetch", &repo, "-", "-o", layout.to_str().unwrap()];
    args.extend_from_slice(options);
    let out = run_with_limit(
        &Dist::new(),
        &args,
        input.as_bytes(),
        resource,
        limit,
        limit,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{:?}: {err}", out.status);
    assert_eq!(json_lines(&out.stdout).len(), blobs.len(), "{err}");
    assert_stored(&layout, &blobs);
}

/// `count` blobs of `size` bytes and more (contents from `seed` on) in `reg`: each digest
/// with its content, and the worker's input naming them all.
fn large_blobs(
    reg: &FakeRegistry,
    count: u64,
    size: usize,
    seed: u64,
) -> (Vec<(String, Vec<u8>)>, String) {
    let blobs: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| {
            let data = bytes(seed + i, size + i as usize);
            (reg.blob("team/app", &data), data)
        })
        .collect();
    let input = blobs.iter().map(|(d, _)| format!("{d}\n")).collect();
    (blobs, input)
}

/// Every one of `blobs` is stored in the layout at `layout`, whole.
fn assert_stored(layout: &std::path::Path, blobs: &[(String, Vec<u8>)]) {
    for (digest, data) in blobs {
        let stored = std::fs::read(blob_file(layout, digest)).unwrap();
        assert!(stored == *data, "{digest}");
    }
}

/// A `mediatype:` range (`*/*`) widens `Accept` and says nothing of what arrives: a blob
/// fetched with one is of no known type (`-`), not of type `*/*`; a type beside it is the
/// blob's, without the parameters written to steer `Accept`.
#[test]
fn a_media_type_range_is_no_media_type_of_the_content() {
    let reg = FakeRegistry::start();
    let a = reg.blob("team/app", b"one");
    let b = reg.blob("team/app", b"two");
    let input = format!(
        "{a} mediatype:*/*\n{b} mediatype:*/* mediatype:application/vnd.oci.image.layer.v1.tar;q=0.9\n"
    );
    let dist = Dist::new();
    let out = dist.ok_fed(&["fetch", &repo(&reg), "-", "--ordered"], input.as_bytes());
    let types = frame_media_types(&out);
    assert_eq!(types, ["-", "application/vnd.oci.image.layer.v1.tar"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dist.ok_fed(
        &[
            "fetch",
            &repo(&reg),
            "-",
            "-o",
            dir.path().to_str().unwrap(),
            "--ordered",
        ],
        input.as_bytes(),
    );
    let lines = json_lines(&out);
    assert_eq!(lines[0]["mediaType"], serde_json::Value::Null);
    assert_eq!(
        lines[1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
}

/// The file operations of `dist ARGS…` on paths under `under`, in the order they ended, as
/// `strace` saw them: `("fsync", path)` for an fsync of a file or directory there, and
/// `("rename", to)` with the path renamed from as `from`. Fails the test where `strace`
/// cannot run ([`strace_cannot_run`]).
fn traced_file_operations(dist: &Dist, args: &[&str], under: &Path) -> Vec<FileOp> {
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = traced(dist, args, log.path(), &[])
        .output()
        .unwrap_or_else(|e| strace_cannot_run(&e.to_string()));
    let text = std::fs::read_to_string(log.path()).unwrap();
    if text.is_empty() {
        strace_cannot_run(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    file_operations(&text, under)
}

/// Fails the test where `TMPDIR`, which holds its layouts, is in memory (tmpfs, ramfs):
/// dist syncs nothing there, having nothing to make durable, and the tests that watch its
/// syncs under `strace` failed for want of them without saying why ("blobs not synced",
/// a status 0 where a held sync should have stopped the run).
fn temp_dir_on_a_disk() {
    use std::os::unix::ffi::OsStrExt;
    // statfs(2)'s f_type of tmpfs and ramfs (linux/magic.h), as dist tells them.
    const IN_MEMORY: [u32; 2] = [0x0102_1994, 0x8584_58f6];
    let dir = std::env::temp_dir();
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: `path` is a NUL-terminated string and `fs` a statfs for the call to fill.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    let found = unsafe { libc::statfs(path.as_ptr(), &mut fs) };
    assert_eq!(found, 0, "statfs {}", dir.display());
    assert!(
        !IN_MEMORY.contains(&(fs.f_type as u32)),
        "TMPDIR ({}) is in memory (tmpfs), where dist syncs nothing and this test, which \
         watches its syncs, has nothing to check: point TMPDIR at a disk",
        dir.display()
    );
}

/// Fails the test, saying `why`: `strace` (which scripts/test.sh installs) cannot run here,
/// not installed or not allowed to trace in this container. These tests returned early
/// instead, and passed having checked nothing, their notice captured by the harness.
fn strace_cannot_run(why: &str) -> ! {
    panic!(
        "strace cannot run here, and this test needs it: {why}\n\
         (install it: scripts/install-missing.sh strace; in a container, allow ptrace)"
    )
}

/// [`traced`] run to its end; fails the test where strace cannot run.
fn traced_output(dist: &Dist, args: &[&str], log: &Path, options: &[&str]) -> std::process::Output {
    traced_output_to(dist, args, log, options, None)
}

/// [`traced_output`], its stdout `stdout` when given (else captured).
fn traced_output_to(
    dist: &Dist,
    args: &[&str],
    log: &Path,
    options: &[&str],
    stdout: Option<std::process::Stdio>,
) -> std::process::Output {
    let mut command = traced(dist, args, log, options);
    let captured = stdout.is_none();
    command
        .stdin(std::process::Stdio::null())
        .stdout(stdout.unwrap_or_else(std::process::Stdio::piped))
        .stderr(std::process::Stdio::piped());
    let mut child = Running::new(
        command
            .spawn()
            .unwrap_or_else(|e| strace_cannot_run(&e.to_string())),
    );
    let read_all = |from: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut from) = from {
                from.read_to_end(&mut bytes).unwrap();
            }
            bytes
        })
    };
    let stdout = read_all(captured.then(|| Box::new(child.stdout.take().unwrap()) as _));
    let stderr = read_all(Some(Box::new(child.stderr.take().unwrap())));
    let status = traced_exit(&mut child, log);
    let out = std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    let err = String::from_utf8_lossy(&out.stderr);
    if err.starts_with("strace: ") {
        strace_cannot_run(&err);
    }
    out
}

/// The exit status of the `dist` that `strace` (its `child`, logging to `log`) traces, as
/// soon as it exits. A call `strace` holds up (`delay_enter`) holds the thread that made
/// it past dist's exit, and `strace` with it: each held run took the whole delay, 10 or
/// 20 s, where dist gave up seconds before. The first thread to exit with a status other
/// than 0 gives dist's (only `exit_group` gives one: a thread's own exit is 0, and these
/// runs start no other program); `strace` is then killed by its PID (SIGTERM waits out a
/// held call), which lets go of the thread it held, to die with the rest; its log keeps
/// what it wrote by then, the held call's start among it. A run that exits 0 is waited
/// for to its end.
fn traced_exit(child: &mut std::process::Child, log: &Path) -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let exited = text.lines().find_map(|line| {
            let code = line.split_once("+++ exited with ")?.1;
            let code: i32 = code.strip_suffix(" +++")?.parse().ok()?;
            (code != 0).then_some(code)
        });
        if let Some(code) = exited {
            let pid = i32::try_from(child.id()).unwrap();
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            child.wait().unwrap();
            return std::process::ExitStatus::from_raw(code << 8);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `dist ARGS…` (with a `--timeout`) under `strace`, every `fsync` of the directory `held`
/// held up 20 s, well past that timeout: its `strace` log and its stderr, once it was seen
/// to reach such an `fsync` and to give up with status 124.
fn timed_out_in_fsync(args: &[&str], held: &str) -> (String, String) {
    let (text, out) = timed_out_in_fsync_output(args, held);
    (text, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// As [`timed_out_in_fsync`], with the whole of its output: its stdout too.
fn timed_out_in_fsync_output(args: &[&str], held: &str) -> (String, std::process::Output) {
    timed_out_in_fsync_to(args, held, None)
}

/// [`timed_out_in_fsync_output`], its stdout `stdout` when given (else captured).
fn timed_out_in_fsync_to(
    args: &[&str],
    held: &str,
    stdout: Option<std::process::Stdio>,
) -> (String, std::process::Output) {
    let options = ["-P", held, "-e", "inject=fsync:delay_enter=20000000"];
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = traced_output_to(&Dist::new(), args, log.path(), &options, stdout);
    let text = std::fs::read_to_string(log.path()).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("fsync("),
        "no fsync of {held} was held up: {text}"
    );
    assert_eq!(out.status.code(), Some(124), "{err}");
    (text, out)
}

/// `dist ARGS…` under `strace`, its file operations logged to `log` (see
/// [`file_operations`]), with `strace`'s own `options` too. The log keeps the threads'
/// exits (`-q`, not `-qq`): [`traced_exit`] reads dist's status there.
fn traced(dist: &Dist, args: &[&str], log: &Path, options: &[&str]) -> std::process::Command {
    temp_dir_on_a_disk();
    let mut command = std::process::Command::new("strace");
    command
        .args(["-f", "-y", "-q", "-s", "4096", "-o"])
        .arg(log)
        .args(["-e", "trace=fsync,fdatasync,rename,renameat,renameat2"])
        .args(options)
        .arg("--")
        .arg(Dist::bin())
        .args(args);
    let traced = dist.command(args);
    for (key, value) in traced.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
}

/// The file operations in the `strace` log `text` on paths under `under` (see
/// [`traced_file_operations`]).
fn file_operations(text: &str, under: &Path) -> Vec<FileOp> {
    // A call another thread's interrupted is split over two lines: `<pid> fsync(… <unfinished
    // ...>` and `<pid> <... fsync resumed>) = 0`; it counts where it ended.
    let mut pending = std::collections::HashMap::new();
    let mut ops = Vec::new();
    for line in text.lines() {
        // strace pads short PIDs: `123  fsync(…`.
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let call = if let Some(begun) = call.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_string(), begun.to_string());
            continue;
        } else if let Some(rest) = call.strip_prefix("<... ") {
            let begun = pending.remove(pid).unwrap_or_default();
            format!(
                "{begun}{}",
                rest.split_once(" resumed>").map_or("", |(_, r)| r)
            )
        } else {
            call.to_string()
        };
        if !call.ends_with("= 0") {
            continue;
        }
        let quoted: Vec<&str> = call.split('"').skip(1).step_by(2).collect();
        let op = if call.starts_with("fsync(") || call.starts_with("fdatasync(") {
            let path = call.split_once('<').and_then(|(_, r)| r.split_once('>'));
            path.map(|(p, _)| FileOp::Sync(PathBuf::from(p)))
        } else if call.starts_with("rename") && quoted.len() == 2 {
            Some(FileOp::Rename(quoted[0].into(), quoted[1].into()))
        } else {
            None
        };
        match op {
            Some(FileOp::Sync(p)) if p.starts_with(under) => ops.push(FileOp::Sync(p)),
            Some(FileOp::Rename(from, to)) if to.starts_with(under) => {
                ops.push(FileOp::Rename(from, to))
            }
            _ => {}
        }
    }
    ops
}

#[derive(Debug, Clone, PartialEq)]
enum FileOp {
    Sync(PathBuf),
    Rename(PathBuf, PathBuf),
}

/// Each file renamed into the layout was fsync'd first: written and renamed without, a
/// power loss soon after could leave it empty under its name. The new layout's
/// `oci-layout` and `index.json` were not, and an empty `index.json` had every later run
/// refuse the directory as no layout.
fn assert_synced_before_renamed(ops: &[FileOp]) {
    for (i, op) in ops.iter().enumerate() {
        if let FileOp::Rename(from, to) = op {
            assert!(
                ops[..i].contains(&FileOp::Sync(from.clone())),
                "{} renamed to {} unsynced: {ops:#?}",
                from.display(),
                to.display()
            );
        }
    }
}

/// The position after which `dir` is fsync'd following every rename into it up to `until`
/// (or the end): the renames are durable by then.
fn dir_synced_after_renames(ops: &[FileOp], dir: &Path, until: usize) -> bool {
    let last = ops[..until]
        .iter()
        .rposition(|op| matches!(op, FileOp::Rename(_, to) if to.parent() == Some(dir)));
    let Some(last) = last else {
        return true;
    };
    ops[last..until].contains(&FileOp::Sync(dir.to_path_buf()))
}

/// What `-o DIR` and `pull` report stored is on disk when they exit, whatever the
/// filesystem orders: each file's content before its name, the blobs' names (their
/// directory fsync'd once, not per blob) before `index.json` names them, `index.json`
/// itself, and a new layout's own name. Only the files' content was synced: a power loss after a run that said done
/// could take the names back, and leave an `index.json` naming blobs that were not there.
/// The directories `-o` made above a new layout are synced too: only the one right above
/// it was, so a power loss could take the layout back with the directory made for it.
#[test]
fn what_the_layout_says_is_stored_is_synced_to_disk() {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let parent = tempfile::tempdir().unwrap();
    let layout = parent.path().join("made/for/new");
    let dist = Dist::new();
    let image = format!("{}:v1", repo(&reg));
    let args = ["pull", &image, "-o", layout.to_str().unwrap()];
    let ops = traced_file_operations(&dist, &args, parent.path());
    assert_synced_before_renamed(&ops);
    let blobs = layout.join("blobs/sha256");
    let index = layout.join("index.json");
    let entry = ops
        .iter()
        .rposition(|op| matches!(op, FileOp::Rename(_, to) if *to == index))
        .expect("index.json written");
    assert!(
        dir_synced_after_renames(&ops, &blobs, entry),
        "blobs not synced before index.json names them: {ops:#?}"
    );
    assert!(
        dir_synced_after_renames(&ops, &layout, ops.len()),
        "index.json not synced: {ops:#?}"
    );
    // The new layout's own name, in the directory it was created in, and those of the
    // directories made for it, up to the one that was there: made at the start, they are
    // synced once, before `index.json` names what they hold.
    for above in ["made/for", "made", ""] {
        let above = FileOp::Sync(parent.path().join(above).components().collect());
        assert!(
            ops[..entry].contains(&above),
            "{above:?} not synced: {ops:#?}"
        );
    }

    let more = reg.blob("team/app", bytes(98, 5000));
    let args = ["fetch", &repo(&reg), &more, "-o", layout.to_str().unwrap()];
    let ops = traced_file_operations(&dist, &args, &layout);
    assert_synced_before_renamed(&ops);
    assert!(
        ops.iter()
            .any(|op| matches!(op, FileOp::Rename(_, to) if to.parent() == Some(&*blobs))),
        "{ops:#?}"
    );
    assert!(
        dir_synced_after_renames(&ops, &blobs, ops.len()),
        "blobs not synced before exit: {ops:#?}"
    );
}

/// A pull killed (`kill -9`) as it stored a manifest left its temporary file, which the
/// next run turned into the manifest's partial download; that run stored the manifest from
/// the bytes it fetched (manifests are held in memory, never carried on) and left the
/// partial beside it, a stray in the layout for a day. A blob stored takes its partial
/// download with it.
#[test]
fn a_pull_leaves_no_partial_download_of_a_manifest_it_stored() {
    let reg = FakeRegistry::start();
    let manifest = small_image(&reg, "v1");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let hex = manifest.strip_prefix("sha256:").unwrap();
    let partial = layout
        .join("blobs/sha256")
        .join(format!(".dist-partial-{hex}"));
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, br#"{"schemaVersion":2,"#).unwrap();
    let image = format!("{}:v1", repo(&reg));
    Dist::new().ok(&["pull", &image, "-o", layout.to_str().unwrap()]);
    let left: Vec<String> = std::fs::read_dir(partial.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(layout.join("blobs/sha256").join(hex).is_file());
}

/// A pull killed (`kill -9`) while it held `index.json`'s lock, once `index.json` named its
/// image, left the lock file: the kernel drops the lock, but nothing removed the file, since
/// the same pull run again finds its entry in place and takes no lock. It stayed in the
/// layout for good. A run opening the layout removes it unless a live run holds it.
#[test]
fn an_index_lock_file_a_killed_run_left_goes_with_the_next_run() {
    use std::os::fd::AsRawFd;
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = format!("{}:v1", repo(&reg));
    let pull = || Dist::new().ok(&["pull", &image, "-o", layout.to_str().unwrap()]);
    pull();
    let lock = layout.join(".dist-index.lock");
    std::fs::write(&lock, b"").unwrap();
    pull();
    assert!(!lock.exists(), "the killed run's lock file stayed");

    // One a live run holds stays.
    let held = std::fs::File::create(&lock).unwrap();
    // SAFETY: flock on a descriptor this test owns; it touches no memory.
    let locked = unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(locked, 0, "{}", std::io::Error::last_os_error());
    pull();
    assert!(lock.exists(), "a held lock file went");
}

/// A layout another run made (a shard into the same `-o DIR` that started first, its
/// `mkdir`s not synced yet) holds what this run stores only once the directories above it
/// are durable too: only the run that created the layout synced those, and a shard that
/// finished first exited 0 with its blobs' names hanging on directory entries a power
/// loss could take back.
#[test]
fn the_directories_above_a_layout_another_run_made_are_synced() {
    let reg = FakeRegistry::start();
    let blob = reg.blob("team/app", bytes(97, 5000));
    let parent = tempfile::tempdir().unwrap();
    let layout = parent.path().join("made/for/new");
    // Another shard's doing, as far as it got.
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let args = ["fetch", &repo(&reg), &blob, "-o", layout.to_str().unwrap()];
    let ops = traced_file_operations(&Dist::new(), &args, parent.path());
    let blobs = layout.join("blobs/sha256");
    assert!(
        dir_synced_after_renames(&ops, &blobs, ops.len()),
        "blobs not synced before exit: {ops:#?}"
    );
    for above in ["made/for", "made", ""] {
        let above = FileOp::Sync(parent.path().join(above).components().collect());
        assert!(ops.contains(&above), "{above:?} not synced: {ops:#?}");
    }
}

/// `dist fetch LOC - -o DIR` under `strace` with its `options`, fed through a pipe left open:
/// the child (stderr piped), its stdin, its stdout (kept open: a worker whose reader is gone
/// stops), and its first line there, the JSON line of `blob`, fed first. `None` where
/// `strace` cannot run.
fn traced_worker(
    dist: &Dist,
    reg: &FakeRegistry,
    layout: &Path,
    log: &Path,
    options: &[&str],
    blob: &str,
) -> (
    Running,
    std::process::ChildStdin,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    use std::io::{BufRead, Write};
    use std::process::Stdio;
    let repo = repo(reg);
    let args = ["fetch", &repo, "-", "-o", layout.to_str().unwrap()];
    let mut child = Running::new(
        traced(dist, &args, log, options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| strace_cannot_run(&e.to_string())),
    );
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{blob}").unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    if line.is_empty() {
        // `strace` could not trace, and ran nothing.
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            std::fs::read_to_string(log).unwrap().is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        strace_cannot_run(&String::from_utf8_lossy(&out.stderr));
    }
    (child, stdin, stdout, line)
}

/// A worker fed by `tail -f queue` never reaches the end of its batch, where the directories
/// its blobs were renamed into are fsync'd: the names of the blobs it reported stored hours
/// ago were never made durable, and a power loss could take them back. Here one blob is fed
/// through a pipe that stays open; its directory must be fsync'd after its rename all the
/// same, within a bound (one second; the deadline here is only a guard against a hang).
#[test]
fn a_worker_that_keeps_running_makes_what_it_stored_durable() {
    let reg = FakeRegistry::start();
    let blob = reg.blob("team/app", bytes(97, 5000));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let blobs = layout.join("blobs/sha256");
    let log = tempfile::NamedTempFile::new().unwrap();
    let dist = Dist::new();
    let (child, stdin, stdout, line) = traced_worker(&dist, &reg, &layout, log.path(), &[], &blob);
    let reported: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reported["status"], "ok", "{line}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ops = loop {
        let text = std::fs::read_to_string(log.path()).unwrap();
        let ops = file_operations(&text, &layout);
        let renamed = ops
            .iter()
            .any(|op| matches!(op, FileOp::Rename(_, to) if to.parent() == Some(&*blobs)));
        if renamed && dir_synced_after_renames(&ops, &blobs, ops.len())
            || std::time::Instant::now() > deadline
        {
            break ops;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let still_running = child.id();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    drop(stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir_synced_after_renames(&ops, &blobs, ops.len()),
        "{} not synced while {still_running} ran: {ops:#?}",
        blobs.display()
    );
}

/// Copies the layout at `from` to `to` file by file, syncing no directory: what a run
/// between its renames and its sync leaves (another shard, another pull of an image that
/// shares layers), or `cp -r`.
fn copy_unsynced(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_unsynced(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// `team/app:v1`, an image whose second layer the registry does not have (404); returns
/// the digest of its first, which it has.
fn image_missing_a_layer(reg: &FakeRegistry) -> String {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = reg.blob("team/app", config);
    let layer = bytes(92, 3000);
    let layer_digest = reg.blob("team/app", &layer);
    let missing = format!("sha256:{}", "0".repeat(64));
    let layers: Vec<_> = [(&layer_digest, layer.len()), (&missing, 10)]
        .into_iter()
        .map(|(digest, size)| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                               "digest": digest, "size": size})
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": layers,
    });
    let media = "application/vnd.oci.image.manifest.v1+json";
    reg.manifest("team/app", "v1", media, manifest.to_string());
    layer_digest
}

/// A pull that fails on one layer (gone from the registry) has stored the others, and said
/// so (`ok` lines): their names are made durable before it exits, as those of a pull that
/// names its image. It returned before its only sync, which comes with `index.json`, so a
/// power loss after it could take back blobs its report said were stored.
#[test]
fn a_pull_that_failed_on_a_layer_syncs_what_it_stored() {
    let reg = FakeRegistry::start();
    let layer_digest = image_missing_a_layer(&reg);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let image = format!("{}:v1", repo(&reg));
    let args = ["pull", &image, "-o", layout.to_str().unwrap()];
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = traced_output(&Dist::new(), &args, log.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let ops = file_operations(&std::fs::read_to_string(log.path()).unwrap(), &layout);
    let blobs = layout.join("blobs/sha256");
    assert!(blob_file(&layout, &layer_digest).is_file(), "{err}");
    assert!(
        dir_synced_after_renames(&ops, &blobs, ops.len()),
        "{} not synced before the pull exited: {ops:#?}",
        blobs.display()
    );
}

/// A run that finds every blob it needs already stored, by a process that may not have
/// synced their directory yet, syncs it itself before it relies on them: before
/// `index.json` names them, and before a fetch exits saying the blob is there. It synced
/// nothing, having renamed nothing, so a power loss could leave `index.json` naming blobs
/// whose names never reached the disk, or a script told by exit status 0 that a blob was
/// stored that was not.
#[test]
fn blobs_another_process_stored_are_synced_before_a_run_relies_on_them() {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    // The same image under another tag: nothing to fetch, only a name to add.
    small_image(&reg, "v2");
    let layer = reg.blob("team/app", bytes(93, 3000));
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let dist = Dist::new();
    let image = format!("{}:v1", repo(&reg));
    dist.ok(&["pull", &image, "-o", first.to_str().unwrap()]);
    let layout = dir.path().join("mirror");
    copy_unsynced(&first, &layout);
    let (l, blobs) = (layout.to_str().unwrap(), layout.join("blobs/sha256"));

    let image = format!("{}:v2", repo(&reg));
    let ops = traced_file_operations(&dist, &["pull", &image, "-o", l], &layout);
    assert!(
        !ops.iter()
            .any(|op| matches!(op, FileOp::Rename(_, to) if to.parent() == Some(&*blobs))),
        "nothing was to be stored: {ops:#?}"
    );
    let index = layout.join("index.json");
    let entry = ops
        .iter()
        .position(|op| matches!(op, FileOp::Rename(_, to) if *to == index))
        .expect("index.json written");
    for synced in [&blobs, &layout.join("blobs")] {
        assert!(
            ops[..entry].contains(&FileOp::Sync(synced.to_path_buf())),
            "{} not synced before index.json names its blobs: {ops:#?}",
            synced.display()
        );
    }

    let args = ["fetch", &repo(&reg), &layer, "-o", l];
    let ops = traced_file_operations(&dist, &args, &layout);
    assert!(
        ops.contains(&FileOp::Sync(blobs.clone())),
        "{} not synced before the fetch said the blob was there: {ops:#?}",
        blobs.display()
    );
}

/// A worker that keeps running (`tail -f queue`) and finds a blob already stored by a
/// process that may not have synced its directory makes that name durable within a second
/// of its `exists` line, as it does a blob it stored: it waited for the end of its batch,
/// which a worker fed by `tail -f` never reaches.
#[test]
fn a_worker_that_keeps_running_makes_what_it_found_durable() {
    let reg = FakeRegistry::start();
    let blob = reg.blob("team/app", bytes(91, 5000));
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let dist = Dist::new();
    dist.ok(&["fetch", &repo(&reg), &blob, "-o", first.to_str().unwrap()]);
    let layout = dir.path().join("mirror");
    copy_unsynced(&first, &layout);
    let blobs = layout.join("blobs/sha256");
    let log = tempfile::NamedTempFile::new().unwrap();
    let (child, stdin, stdout, line) = traced_worker(&dist, &reg, &layout, log.path(), &[], &blob);
    let reported: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reported["status"], "exists", "{line}");
    // The deadline only guards against a hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ops = loop {
        let text = std::fs::read_to_string(log.path()).unwrap();
        let ops = file_operations(&text, &layout);
        if ops.contains(&FileOp::Sync(blobs.clone())) || std::time::Instant::now() > deadline {
            break ops;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let still_running = child.id();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    drop(stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ops.contains(&FileOp::Sync(blobs.clone())),
        "{} not synced while {still_running} ran: {ops:#?}",
        blobs.display()
    );
}

/// A run stopped while it opens its layout (the disk holds the directory's open) says what
/// is true then: nothing was fetched, and what it made of the layout goes again. It said
/// "objects reported so far are complete; downloads cut short … are kept", of a run that
/// had fetched nothing. The worker's and a pull's alike.
#[test]
fn a_run_stopped_opening_its_layout_says_nothing_was_fetched() {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let (repo, image) = (repo(&reg), format!("{}:v1", repo(&reg)));
    for pull in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("mirror");
        // `strace -P` needs the path to be there to match it: a directory the user made for
        // the output, empty, whose reading (is it empty?) the disk holds up.
        std::fs::create_dir(&layout).unwrap();
        let l = layout.to_str().unwrap();
        let args: Vec<&str> = if pull {
            vec!["--timeout", "3s", "pull", &image, "-o", l]
        } else {
            vec!["--timeout", "3s", "fetch", &repo, "-", "-o", l]
        };
        let options = [
            "-P",
            l,
            "-e",
            "trace=openat",
            "-e",
            "inject=openat:delay_enter=10000000",
        ];
        let log = tempfile::NamedTempFile::new().unwrap();
        let requests = reg.request_count();
        let out = traced_output(&Dist::new(), &args, log.path(), &options);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(124), "pull {pull}: {err}");
        assert!(
            err.contains(&format!(
                "dist: gave up after the --timeout of 3s while opening the layout {l}; \
                 nothing was fetched"
            )),
            "pull {pull}: {err}"
        );
        assert!(!err.contains("reported so far"), "pull {pull}: {err}");
        assert!(!err.contains("downloads cut short"), "pull {pull}: {err}");
        assert_eq!(
            reg.request_count(),
            requests,
            "pull {pull}: nothing asked for"
        );
    }
}

/// A directory whose fsync fails while the worker runs (EIO from a failing disk) is named
/// with the system's error on stderr as the blobs' names may not be durable, and the batch
/// ends with status 1, as when the sync at its end fails; the objects still coming are
/// fetched meanwhile.
#[test]
fn a_directory_sync_that_fails_while_the_worker_runs_is_named() {
    use std::io::{BufRead, Write};
    let reg = FakeRegistry::start();
    let first = reg.blob("team/app", bytes(95, 5000));
    let second = reg.blob("team/app", bytes(96, 5000));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let blobs = layout.join("blobs/sha256");
    // `strace -P` needs the path to be there to match it.
    std::fs::create_dir_all(&blobs).unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let dist = Dist::new();
    let options = [
        "-P",
        blobs.to_str().unwrap(),
        "-e",
        "inject=fsync:error=EIO",
    ];
    let (mut child, mut stdin, mut stdout, line) =
        traced_worker(&dist, &reg, &layout, log.path(), &options, &first);
    assert!(line.contains(r#""status":"ok""#), "{line}");
    // Read on a thread of its own: a worker that says nothing must fail the test, not hang it.
    let stderr = child.stderr.take().unwrap();
    let (tx, said) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let said = said
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_default();
    if said.is_empty() {
        drop(stdin);
        let _ = child.wait();
        panic!("nothing said of {} while the worker ran", blobs.display());
    }
    assert!(
        said.contains(&format!("syncing {}", blobs.display()))
            && said.contains("Input/output error"),
        "{said}"
    );
    writeln!(stdin, "{second}").unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let lines = json_lines(&rest);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["status"], "ok");
    assert_eq!(status.code(), Some(1));
}

/// The sync at the end of a batch into a layout waits on the disk like any other work, and
/// a disk that takes long to answer it (an NFS server gone, a journal flushing gigabytes)
/// must not hold off `--timeout` or a signal. It ran once the batch's stop was no longer
/// watched: with the layout's fsync held up, `--timeout 3s` exited 0 when the disk
/// answered, and SIGTERM was caught and ignored until then.
#[test]
fn the_sync_at_the_end_of_a_batch_does_not_hold_off_its_timeout() {
    let reg = FakeRegistry::start();
    let blob = reg.blob("team/app", bytes(90, 5000));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    // `strace -P` needs the path to be there to match it.
    std::fs::create_dir_all(&layout).unwrap();
    let (repo, l) = (repo(&reg), layout.to_str().unwrap());
    // 6 s: the fetch itself must end well before it, under strace on a loaded machine
    // too, and the held-up fsync (10 s) well after.
    let args = ["--timeout", "6s", "fetch", &repo, &blob, "-o", l];
    // The layout's own directory is fsync'd once, in the sync at the end; the blob's file
    // is synced as it is stored, and is not held up.
    let options = ["-P", l, "-e", "inject=fsync:delay_enter=10000000"];
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = traced_output(&Dist::new(), &args, log.path(), &options);
    let err = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(log.path()).unwrap();
    assert!(log.contains("fsync("), "no fsync of {l} was held up: {log}");
    assert_eq!(out.status.code(), Some(124), "{err}");
    assert!(err.contains("gave up after the --timeout of 6s"), "{err}");
    // Every object was stored: what was not done is the sync, which the message says,
    // where it said "the others were not fetched" of a batch that had none left.
    assert!(!err.contains("were not fetched"), "{err}");
    assert!(
        err.contains(&format!(
            "every object was fetched and stored in {l}, but the sync of its directories did \
             not finish"
        )),
        "{err}"
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["status"], "ok");
    assert!(blob_file(&layout, &blob).is_file());
}

/// The directories above `dir` on its filesystem changed in the last five minutes: the
/// first sync of a layout at `dir` makes their entries durable after `blobs/sha256`,
/// `blobs` and `dir`. The rule reads the clock, as dist's does: compared with the same
/// taken after a run, it tells whether one crossed the five minutes meanwhile, when dist's
/// count, taken in between, may differ.
fn above_on_its_filesystem(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dir = dir.canonicalize().unwrap();
    let dev = std::fs::metadata(&dir).unwrap().dev();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    dir.ancestors()
        .skip(1)
        .take_while(|above| std::fs::metadata(above).unwrap().dev() == dev)
        .filter(|above| std::fs::metadata(above).unwrap().ctime() >= now - 300)
        .map(Path::to_path_buf)
        .collect()
}

/// A pull of an image already in a layout under a second tag, `v2`, stopped by a
/// `--timeout` of 6 s while strace holds up what `options` picks (`held`: given the
/// layout's directory and its `index.json`): with nothing to store, the only rename in the
/// directory is `index.json`'s, and the thread that writes it syncs the blobs it found
/// first (`blobs/sha256`, `blobs`, the directory, those above it), then the new
/// `index.json` and the directory again; no other thread syncs anything.
/// Returns the output, strace's log, `index.json`'s path and the directory holding it.
fn pull_stopped_in_the_index(
    held: impl FnOnce(&str, &str) -> Vec<String>,
) -> (std::process::Output, String, PathBuf, tempfile::TempDir) {
    pull_stopped_before_the_index(93, held)
}

/// [`pull_stopped_in_the_index`], `v2`'s layer `bytes(seed, 3000)`: with another seed than
/// `v1`'s (93), the pull stores a layer and its manifest, and syncs them before it names
/// the image.
fn pull_stopped_before_the_index(
    seed: u64,
    held: impl FnOnce(&str, &str) -> Vec<String>,
) -> (std::process::Output, String, PathBuf, tempfile::TempDir) {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let l = layout.to_str().unwrap();
    let dist = Dist::new();
    dist.ok(&["pull", &format!("{}:v1", repo(&reg)), "-o", l]);
    small_image_of(&reg, "v2", seed);
    let image = format!("{}:v2", repo(&reg));
    let args = ["--timeout", "6s", "pull", &image, "-o", l];
    let index = layout.join("index.json");
    let options = held(l, index.to_str().unwrap());
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = traced_output(&dist, &args, log.path(), &options);
    let log = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, log, index, dir)
}

/// A pull stopped while `index.json`, renamed into place, is being made durable (the sync
/// of the layout's directory held up) says the image is named there, its sync not
/// finished: it said the image was not named in `index.json`, which named it.
#[test]
fn a_pull_stopped_in_the_index_s_sync_says_the_image_is_named() {
    // Held up 10 s, well past the --timeout, which leaves the pull itself time under
    // strace on a loaded machine. The directory's second sync on its thread (strace counts
    // per thread, and only the calls `-P` lets through): its first is the blobs'.
    let held = |layout: &str, _: &str| {
        [
            "-P",
            layout,
            "-e",
            "inject=fsync:delay_enter=10000000:when=2",
        ]
        .map(String::from)
        .to_vec()
    };
    let (out, log, index, _dir) = pull_stopped_in_the_index(held);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("fsync("),
        "no fsync of the layout was held up: {log}"
    );
    assert!(err.contains("gave up after the --timeout of 6s"), "{err}");
    assert!(!err.contains("not named in"), "{err}");
    let said = format!(
        "every object of the image was fetched and stored, and the image is named in {}, \
         but the sync of its directory did not finish: the name may not survive a power loss",
        index.display()
    );
    assert!(err.contains(&said), "{err}");
    let named = std::fs::read_to_string(&index).unwrap();
    assert!(
        named.contains(r#""org.opencontainers.image.ref.name":"v2""#),
        "{named}"
    );
}

/// A pull stopped while `index.json`'s rename into place is held up (a hung filesystem)
/// says so at once, that the name may or may not be there: it waited on the rename (a
/// lock held across it) and only then said the image was named, or never, had the rename
/// hung for good.
#[test]
fn a_pull_stopped_in_the_index_s_rename_does_not_wait_for_it() {
    // Held up 20 s, well past the --timeout and the stop's grace.
    let held = |_: &str, index: &str| {
        let inject = "inject=rename,renameat,renameat2:delay_enter=20000000";
        ["-P", index, "-e", inject].map(String::from).to_vec()
    };
    let (out, log, index, _dir) = pull_stopped_in_the_index(held);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("rename"),
        "no rename to {} was held up: {log}",
        index.display()
    );
    assert!(err.contains("gave up after the --timeout of 6s"), "{err}");
    let said = format!(
        "every object of the image was fetched and stored, and naming it in {} was under \
         way (its rename into place had not returned): it may name the image or not; the \
         same pull again names it without fetching anything",
        index.display()
    );
    assert!(err.contains(&said), "{err}");
}

/// A pull stopped while the blobs it stored are being synced, before it names the image
/// (the sync of `blobs/sha256` held up: a slow disk), says that is what it was doing: it
/// blamed another run's lock of `index.json`, which no run held.
#[test]
fn a_pull_stopped_in_the_sync_of_its_blobs_says_so() {
    let held = |layout: &str, _: &str| {
        let blobs = format!("{layout}/blobs/sha256");
        ["-P", &blobs, "-e", "inject=fsync:delay_enter=20000000"]
            .map(String::from)
            .to_vec()
    };
    let (out, log, index, _dir) = pull_stopped_before_the_index(95, held);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("fsync("),
        "no fsync of the blobs was held up: {log}"
    );
    assert!(err.contains("gave up after the --timeout of 6s"), "{err}");
    assert!(!err.contains("lock"), "{err}");
    let said = format!(
        "every object of the image was fetched and stored, but the image is not named in {} \
         (the sync of the blobs stored, which comes before naming the image, had not \
         finished); the same pull again names it without fetching anything",
        index.display()
    );
    assert!(err.contains(&said), "{err}");
    let named = std::fs::read_to_string(&index).unwrap();
    assert!(!named.contains(r#""v2""#), "{named}");
}

/// A pull stopped while it writes the new `index.json` (the temporary file's fsync held
/// up: with nothing to store, the first on its thread after the syncs of the blobs it
/// found and of the directories above the layout) says the stop came before the rename:
/// it blamed another run's lock, which this run held itself.
#[test]
fn a_pull_stopped_writing_the_index_does_not_blame_a_lock() {
    // A directory above whose change turned five minutes old during the run (or that
    // changed) may have been synced by one count and not the other, and another fsync
    // held: the run is not judged, and runs again. It returned instead, and passed having
    // checked nothing.
    for _ in 0..3 {
        if let Some((out, log, index, named)) = a_pull_stopped_writing_the_index() {
            let err = String::from_utf8_lossy(&out.stderr);
            let dir = index.parent().unwrap().display().to_string();
            assert!(
                log.contains("fsync(") && log.contains(&format!("<{dir}/.dist-tmp")),
                "no fsync of a new index.json in {dir} was held up: {log}"
            );
            assert!(err.contains("gave up after the --timeout of 6s"), "{err}");
            assert!(!err.contains("lock"), "{err}");
            let said = format!(
                "every object of the image was fetched and stored, but the image is not named \
                 in {} (the stop came before its new index was renamed into place); the same \
                 pull again names it without fetching anything",
                index.display()
            );
            assert!(err.contains(&said), "{err}");
            assert!(!named.contains(r#""v2""#), "{named}");
            return;
        }
        eprintln!("a directory above the layout changed its standing during the run; again");
    }
    panic!("a directory above the layout changed its standing during each of three runs");
}

/// [`pull_stopped_in_the_index`] with the fsync of the new `index.json` held up: its
/// output, strace's log, `index.json`'s path (its directory since removed) and text, or
/// `None` where the directories above the layout that the run syncs may have changed
/// during it, and another fsync was held.
fn a_pull_stopped_writing_the_index() -> Option<(std::process::Output, String, PathBuf, String)> {
    let counted = std::cell::RefCell::new(Vec::new());
    let held = |layout: &str, _: &str| {
        let above = above_on_its_filesystem(Path::new(layout));
        let first_round = 3 + above.len();
        *counted.borrow_mut() = above;
        let inject = format!("inject=fsync:delay_enter=20000000:when={}", first_round + 1);
        ["-e".to_string(), inject].to_vec()
    };
    let (out, log, index, _dir) = pull_stopped_in_the_index(held);
    let named = std::fs::read_to_string(&index).unwrap();
    let unchanged = above_on_its_filesystem(index.parent().unwrap()) == *counted.borrow();
    unchanged.then_some((out, log, index, named))
}

/// The report is the record a finished job leaves (the Indexed Job's
/// `report-$JOB_COMPLETION_INDEX.jsonl`): it is synced before the run exits, as the blobs
/// are. It was not, and a power loss soon after could leave it empty, creating it having
/// truncated it. The worker's and a pull's alike.
#[test]
fn the_report_of_a_finished_run_is_synced_to_disk() {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let blob = reg.blob("team/app", bytes(94, 5000));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let report = dir.path().join("report.jsonl");
    let (repo, image) = (repo(&reg), format!("{}:v1", repo(&reg)));
    let (l, r) = (layout.to_str().unwrap(), report.to_str().unwrap());
    let dist = Dist::new();
    for args in [
        vec!["fetch", &repo, &blob, "-o", l, "--report", r],
        vec!["pull", &image, "-o", l, "--report", r],
    ] {
        let ops = traced_file_operations(&dist, &args, dir.path());
        assert!(
            ops.contains(&FileOp::Sync(report.clone())),
            "{args:?}: the report was not synced: {ops:#?}"
        );
        assert!(!std::fs::read_to_string(&report).unwrap().is_empty());
    }
}

/// A report the run created has its name made durable too, not only its lines: its
/// directory is synced. Only the file's data was, and a power loss soon after the run
/// could leave no report at all where the job's record belongs.
#[test]
fn a_report_the_run_created_is_named_durably() {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let blob = reg.blob("team/app", bytes(90, 5000));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    let (repo, image) = (repo(&reg), format!("{}:v1", repo(&reg)));
    let l = layout.to_str().unwrap();
    let dist = Dist::new();
    for (n, command) in [(0, "fetch"), (1, "pull")] {
        let report = reports.join(format!("report-{n}.jsonl"));
        let r = report.to_str().unwrap();
        let args = match command {
            "fetch" => vec!["fetch", &repo, &blob, "-o", l, "--report", r],
            _ => vec!["pull", &image, "-o", l, "--report", r],
        };
        let ops = traced_file_operations(&dist, &args, dir.path());
        assert!(
            ops.contains(&FileOp::Sync(reports.clone())),
            "{command}: the report's directory was not synced: {ops:#?}"
        );
        assert!(!std::fs::read_to_string(&report).unwrap().is_empty());
    }
}

/// A pull whose stdout reader went away (`| head -1`) has stored, and said `ok` of, what
/// came before: those names are made durable before it exits, as the worker makes them.
/// It left at once without a sync, its layer still downloading (held here), so a power
/// loss could take back the manifest a line it wrote had called stored.
#[test]
fn a_pull_whose_reader_went_away_syncs_what_it_stored() {
    use std::io::BufRead;
    use std::process::Stdio;
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let layer = reg.blob("team/app", bytes(93, 3000));
    let gate = Gate::default();
    reg.push_fault(&layer, Fault::HeldAfter(0, gate.clone()));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let image = format!("{}:v1", repo(&reg));
    let args = ["pull", &image, "-o", layout.to_str().unwrap()];
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Running::new(
        traced(&Dist::new(), &args, log.path(), &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    gate.open();
    let text = std::fs::read_to_string(log.path()).unwrap();
    if line.is_empty() && text.is_empty() {
        strace_cannot_run(&String::from_utf8_lossy(&out.stderr));
    }
    let reported: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reported["status"], "ok", "{line}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let ops = file_operations(&text, &layout);
    let blobs = layout.join("blobs/sha256");
    // The name the line said stored. Another object's store, on the blocking pool when
    // the reader went, may still rename its file after that sync: its name was never
    // said, and checking every rename failed 1 run in 20 on a loaded machine.
    let object = reported["object"].as_str().expect("the object reported");
    let named = blobs.join(support::cli::hex(object));
    let stored = ops
        .iter()
        .position(|op| matches!(op, FileOp::Rename(_, to) if *to == named));
    let stored = stored.unwrap_or_else(|| panic!("{object} not stored: {ops:#?}"));
    assert!(
        ops[stored..].contains(&FileOp::Sync(blobs.clone())),
        "{} not synced before the pull exited: {ops:#?}",
        blobs.display()
    );
}

/// A report whose sync fails (EIO from a failing disk) is said, and the run exits 1: what
/// it says may not survive a power loss.
#[test]
fn a_report_that_cannot_be_synced_is_said() {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let blob = reg.blob("team/app", bytes(92, 5000));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let report = dir.path().join("report.jsonl");
    // `strace -P` needs the path to be there to match it.
    std::fs::write(&report, "").unwrap();
    let (repo, image) = (repo(&reg), format!("{}:v1", repo(&reg)));
    let (l, r) = (layout.to_str().unwrap(), report.to_str().unwrap());
    let dist = Dist::new();
    let options = ["-P", r, "-e", "inject=fsync,fdatasync:error=EIO"];
    for args in [
        vec!["fetch", &repo, &blob, "-o", l, "--report", r],
        vec!["pull", &image, "-o", l, "--report", r],
    ] {
        let log = tempfile::NamedTempFile::new().unwrap();
        let out = traced_output(&dist, &args, log.path(), &options);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("dist: syncing the report {r}: Input/output error")),
            "{args:?}: {err}"
        );
    }
}

/// A spool that cannot be read back once its frame has begun (EIO from a failing disk
/// under `TMPDIR`) cuts that frame short, and the batch must stop there: its reader cannot
/// tell where the next frame would start. The message names the object and the spool's
/// directory: it said "writing to stdout: Input/output error", and sent users looking for
/// a fault where the frames go.
#[test]
fn a_spool_that_cannot_be_read_back_is_named() {
    let reg = FakeRegistry::start();
    let first = bytes(80, 3 << 20);
    let first_digest = reg.blob("team/app", &first);
    let second = reg.blob("team/app", bytes(81, 3 << 20));
    let third = reg.blob("team/app", bytes(82, 1000));
    let scratch = tempfile::tempdir().unwrap();
    let mut dist = Dist::new();
    dist.env("TMPDIR", scratch.path().to_str().unwrap());
    let args = ["fetch", &repo(&reg), "-", "--ordered", "-j", "1"];
    let log = tempfile::NamedTempFile::new().unwrap();
    // strace counts each thread's calls apart: only the output thread reads that often,
    // and only spools; each 3 MiB one in 13 reads, so the 20th is in the second's body.
    let options = ["-e", "trace=read", "-e", "inject=read:error=EIO:when=20"];
    let mut command = traced(&dist, &args, log.path(), &options);
    let child = Running::new(
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| strace_cannot_run(&e.to_string())),
    );
    let input = format!("{first_digest}\n{second}\n{third}\n");
    let out = {
        use std::io::Write;
        let mut child = child;
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        child.wait_with_output().unwrap()
    };
    let err = String::from_utf8_lossy(&out.stderr);
    if err.starts_with("strace: ") {
        strace_cannot_run(&err);
    }
    let text = std::fs::read_to_string(log.path()).unwrap();
    let injected: Vec<_> = text.lines().filter(|l| l.contains("INJECTED")).collect();
    assert!(
        injected.len() == 1 && injected[0].contains(&format!("<{}/", scratch.path().display())),
        "the failed read is a spool's: {injected:#?}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    let mut want = format!("{first_digest} {first_digest} {} -\n", first.len()).into_bytes();
    want.extend_from_slice(&first);
    want.push(b'\n');
    assert!(out.stdout.starts_with(&want), "the first frame whole");
    assert!(!err.contains("stdout"), "{err}");
    assert!(
        err.contains(&second)
            && err.contains(&format!("temporary file in {}", scratch.path().display()))
            && err.contains("Input/output error"),
        "{err}"
    );
}

/// Runs `dist ARGS…` with `stdin` as its input and stdout a pipe that another process set
/// non-blocking (Node's child_process, some CI runners share theirs so), read slowly; its
/// status, stderr and what the pipe carried.
fn on_a_non_blocking_pipe(
    dist: &Dist,
    args: &[&str],
    stdin: &[u8],
) -> (std::process::ExitStatus, String, Vec<u8>) {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe(2) writes two descriptors into an array of two.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both are open descriptors of ours, each owned once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_GETFL and F_SETFL on an open descriptor.
    unsafe {
        let flags = libc::fcntl(fds[1], libc::F_GETFL);
        assert_eq!(
            libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK),
            0
        );
    }
    let mut child = Running::new(
        dist.command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin).unwrap();
    let mut pipe = std::fs::File::from(read);
    let mut got = Vec::new();
    let mut buf = vec![0; 16 << 10];
    // Read once the pipe is full, so that dist meets EAGAIN at least there, not after a
    // fixed pause (it was 300 ms), which a loaded machine can end first; or once dist has
    // ended, should its output fit in the pipe.
    // SAFETY: F_GETPIPE_SZ on an open pipe.
    let size = unsafe { libc::fcntl(fds[0], libc::F_GETPIPE_SZ) };
    assert!(
        size > 0,
        "F_GETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    support::wait::until("stdout's pipe full, or dist ended", || {
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int, the bytes waiting in the pipe we hold.
        assert_eq!(
            unsafe { libc::ioctl(fds[0], libc::FIONREAD, &mut queued) },
            0
        );
        queued >= size || child.try_wait().unwrap().is_some()
    });
    // Slower than dist writes, so that the pipe fills again.
    loop {
        match pipe.read(&mut buf).unwrap() {
            0 => break,
            n => got.extend_from_slice(&buf[..n]),
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        got,
    )
}

/// A stdout made non-blocking by the process it is shared with takes less than is written
/// whenever its reader lags (`EAGAIN`): that is no failure, and dist waits for room, as it
/// waits for input on such a stdin. The fetch failed with "Resource temporarily
/// unavailable" after the first 64 KiB.
#[test]
fn a_non_blocking_stdout_is_waited_for_not_failed() {
    let reg = FakeRegistry::start();
    let data = bytes(91, 3 << 20);
    let digest = reg.blob("team/app", &data);
    let dist = Dist::new();
    let repo = format!("{}/team/app", reg.host());
    let (status, err, got) = on_a_non_blocking_pipe(&dist, &["fetch", &repo, &digest], b"");
    assert!(status.success(), "{status}: {err}");
    assert!(got == data, "{} bytes of {}", got.len(), data.len());

    let (status, err, got) = on_a_non_blocking_pipe(
        &dist,
        &["fetch", &repo, "-"],
        format!("{digest}\n").as_bytes(),
    );
    assert!(status.success(), "{status}: {err}");
    let frames = support::cli::parse_frames(&got);
    assert_eq!(frames.len(), 1);
    assert!(frames[0]
        .result
        .as_ref()
        .is_ok_and(|(_, _, body)| *body == data));
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path this test owns.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// A `--report` FIFO is opened as shell redirection opens one: once its reader has. A
/// reader that comes later gets every line; one that never comes is waited for within
/// `--timeout`, and no longer: the open blocked before any stop was watched, and the run
/// hung for ever, before it fetched anything.
#[test]
fn a_report_fifo_is_waited_for_within_the_timeout() {
    let output_within = |mut child: Running, what: &str| {
        support::wait::exit_within(&mut child, std::time::Duration::from_secs(30), what);
        child.wait_with_output().unwrap()
    };
    use std::io::{Read, Write};
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", b"reported");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report");
    mkfifo(&fifo);
    let (repo, fifo_arg) = (repo(&reg), fifo.to_str().unwrap());
    let out = dir.path().join("out");
    let args = [
        "fetch",
        &repo,
        "-",
        "-o",
        out.to_str().unwrap(),
        "--report",
        fifo_arg,
    ];
    let mut child = Dist::new().start(&args);
    let mut input = child.stdin.take().unwrap();
    writeln!(input, "{digest}").unwrap();
    drop(input);
    let mut report = String::new();
    std::fs::File::open(&fifo)
        .unwrap()
        .read_to_string(&mut report)
        .unwrap();
    let run = output_within(child, "the run with a reader");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(json_lines(report.as_bytes())[0]["status"], "ok", "{report}");

    let mut args = args.to_vec();
    args.extend(["--timeout", "1s"]);
    let requests = reg.request_count();
    let child = Dist::new().spawn(&args, format!("{digest}\n").as_bytes());
    let run = output_within(child, "the run without a reader");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(124), "{err}");
    assert!(
        err.contains("--timeout of 1s") && err.contains("reader"),
        "{err}"
    );
    assert_eq!(reg.request_count(), requests, "nothing asked for");
}

/// A signal that comes while a run waits for a reader of its `--report` FIFO stops it as
/// one during its fetches does: exit status 130 or 143, "interrupted" said, and the layout
/// it made for nothing removed. The wait came before dist's handlers were installed, so
/// the signal took its default action: the run died silently with its new layout left.
#[test]
fn a_signal_while_a_report_fifo_waits_stops_the_run_cleanly() {
    let reg = FakeRegistry::start();
    let repo = repo(&reg);
    let image = format!("{repo}:v1");
    for signal in [libc::SIGINT, libc::SIGTERM] {
        for pull in [false, true] {
            let what = format!("signal {signal}, pull {pull}");
            let dir = tempfile::tempdir().unwrap();
            let fifo = dir.path().join("report");
            mkfifo(&fifo);
            let out = dir.path().join("out");
            let (out_arg, fifo_arg) = (out.to_str().unwrap(), fifo.to_str().unwrap());
            let args: Vec<&str> = if pull {
                vec!["pull", &image, "-o", out_arg, "--report", fifo_arg]
            } else {
                vec!["fetch", &repo, "-", "-o", out_arg, "--report", fifo_arg]
            };
            let requests = reg.request_count();
            let mut child = Dist::new().start(&args);
            // The layout is made before the report is opened, whose FIFO has no reader:
            // the run waits there, or is on its way to.
            support::wait::until("the new layout", || out.join("index.json").exists());
            // SAFETY: kill(2) sends a signal to a child this test started and has not reaped.
            assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
            support::wait::exit_within(&mut child, std::time::Duration::from_secs(30), &what);
            let run = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(128 + signal), "{what}: {run:?}");
            assert!(err.contains("interrupted"), "{what}: {err}");
            assert!(!out.exists(), "{what}: the new layout was left");
            assert_eq!(reg.request_count(), requests, "{what}: nothing asked for");
        }
    }
}

/// A FIFO at `fifo` with a reader that never reads (returned: dropped, the reader is
/// gone), and its pipe filled: whatever dist writes to it stays in write(2).
fn a_full_fifo(fifo: &Path) -> std::fs::File {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    mkfifo(fifo);
    let open = |write: bool| {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
            .unwrap()
    };
    let reader = open(false);
    let mut filler = open(true);
    while filler.write(&[b'\n'; 4096]).is_ok() {}
    while filler.write(b"\n").is_ok() {}
    reader
}

/// Waits until one of `pid`'s threads is in write(2) to `fifo`, where it stays.
fn wait_for_a_write_to(pid: u32, fifo: &Path) {
    let writing = |task: std::path::PathBuf| {
        let Ok(call) = std::fs::read_to_string(task.join("syscall")) else {
            return false;
        };
        let mut words = call.split_whitespace();
        // write(2)'s number is the architecture's: 1 on x86_64, 64 on aarch64.
        let write = libc::SYS_write.to_string();
        let (Some(number), Some(fd)) = (words.next(), words.next()) else {
            return false;
        };
        if number != write {
            return false;
        }
        let fd = i64::from_str_radix(fd.trim_start_matches("0x"), 16).unwrap();
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|p| p == fifo)
    };
    support::wait::until("a write to the FIFO", || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten();
        tasks.flatten().any(|t| writing(t.path()))
    });
}

/// A pull of a small image whose `--report` is a FIFO kept full, its reader reading
/// nothing, once the pull is in write(2) to it: what holds the pull's report up. The
/// registry, the directory and the reader go with the test.
fn a_pull_writing_an_unread_report() -> (FakeRegistry, tempfile::TempDir, std::fs::File, Running) {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report");
    let reader = a_full_fifo(&fifo);
    let out = dir.path().join("out");
    let image = format!("{}:v1", repo(&reg));
    let args = ["pull", &image, "-o", out.to_str().unwrap(), "--report"];
    let mut child = Dist::new().start(&[&args[..], &[fifo.to_str().unwrap()]].concat());
    drop(child.stdin.take());
    wait_for_a_write_to(child.id(), &fifo);
    (reg, dir, reader, child)
}

/// A pull whose `--report` is a pipe its reader does not read (a FIFO, `--report >(…)`
/// with a stuck consumer) still stops on a signal. Its lines were written to the report
/// on the runtime's one thread, which the full pipe held in write(2): dist's handler caught
/// SIGINT, but nothing heard it, nor a second one, and the pull hung until killed.
#[test]
fn a_pull_stops_on_a_signal_while_its_report_is_not_read() {
    let (_reg, _dir, _reader, mut child) = a_pull_writing_an_unread_report();
    let pid = child.id();
    // SAFETY: kill(2) sends a signal to a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
    let limit = std::time::Duration::from_secs(30);
    support::wait::exit_within(&mut child, limit, "the pull stopped by SIGINT");
    let run = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
}

/// A pull stopped once it had pulled its image and written its lines to stdout, while the
/// reader of its `--report` FIFO did not read, names the report as what held it up. It
/// blamed "a reader of stdout", which had read every line.
#[test]
fn a_pull_stopped_writing_its_report_names_the_report() {
    let (_reg, dir, _reader, mut child) = a_pull_writing_an_unread_report();
    let (pid, fifo) = (child.id(), dir.path().join("report"));
    // The writer of stdout, started before the report's, ends only once every line is
    // written to stdout (a few, well within its pipe) and the pull is done: what is left
    // is the report.
    support::wait::until("stdout written", || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten();
        !tasks.flatten().any(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "dist-lines")
        })
    });
    // SAFETY: kill(2) sends a signal to a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
    let limit = std::time::Duration::from_secs(30);
    support::wait::exit_within(&mut child, limit, "the pull stopped by SIGINT");
    let run = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(130), "{err}");
    assert!(
        err.contains("every object was handled")
            && err.contains(&format!("the report {}", fifo.display())),
        "{err}"
    );
    assert!(!err.contains("stdout"), "{err}");
}

/// A pull that failed with status 2 (here its tag refused, 401) and whose stdout reader
/// then went while its `--report` FIFO was not read exits 2 still, as README's "Exit
/// status" has it for a remote dist could not use: it exited 1, the reader's going alone.
#[test]
fn a_failed_pull_keeps_its_status_2_when_its_reader_goes_while_its_report_waits() {
    let (code, err) = a_failed_pull_whose_reader_goes_while_its_report_waits(401);
    assert!(err.contains("401"), "{err}");
    assert_eq!(code, Some(2), "{err}");
}

/// A pull whose tag failed only for the moment (503, 75) and whose stdout reader then
/// went exits 1, as the worker's batch does when its reader goes and as the pull does when
/// a write finds its reader gone: it kept the 75 when the stop heard the reader go first,
/// telling a cron job to retry what the write had made 1.
#[test]
fn a_pull_failed_for_the_moment_whose_reader_goes_is_status_1() {
    let (code, err) = a_failed_pull_whose_reader_goes_while_its_report_waits(503);
    assert!(err.contains("503"), "{err}");
    assert_eq!(code, Some(1), "{err}");
}

/// Pulls a tag answered `status`, whose stdout reader goes once the failure's line is in
/// its pipe, while its `--report` FIFO is not read: the exit status and stderr.
fn a_failed_pull_whose_reader_goes_while_its_report_waits(status: u16) -> (Option<i32>, String) {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    reg.set_fault_for_every("manifests/v1", Fault::Status(status));
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report");
    let _reader = a_full_fifo(&fifo);
    let out = dir.path().join("out");
    let image = format!("{}:v1", repo(&reg));
    let args = [
        "pull",
        "--retries",
        "0",
        &image,
        "-o",
        out.to_str().unwrap(),
        "--report",
    ];
    let mut child = Dist::new().start(&[&args[..], &[fifo.to_str().unwrap()]].concat());
    drop(child.stdin.take());
    let pid = child.id();
    wait_for_a_write_to(pid, &fifo);
    // Stdout's writer ends once the failure's line is in its pipe: the report is what is
    // left, and the reader of stdout goes while it waits.
    support::wait::until("stdout written", || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten();
        !tasks.flatten().any(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "dist-lines")
        })
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(&mut stdout, 1), &mut line).unwrap();
    drop(stdout);
    let limit = std::time::Duration::from_secs(30);
    support::wait::exit_within(&mut child, limit, "the pull whose reader went");
    let run = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(line, "{", "the failure's line was written to stdout");
    (run.status.code(), err)
}

/// A worker stopped once it had handled every object, while the reader of its `--report`
/// FIFO did not read, does not blame stdout alone: it said "a reader of stdout", of a
/// frame well within its pipe. One thread writes both in turn (into `-o DIR` the report
/// first, where stdout was not even reached). Framed here: into `-o DIR` the stop could
/// come in the batch's last sync, which says so instead.
#[test]
fn a_worker_stopped_writing_its_report_names_the_report_too() {
    let reg = FakeRegistry::start();
    let blob = reg.blob("team/app", vec![7u8; 100]);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report");
    let _reader = a_full_fifo(&fifo);
    let (repo, report) = (repo(&reg), fifo.to_str().unwrap());
    let args = ["fetch", &repo, "-", "--report", report];
    let mut child = Dist::new().spawn(&args, format!("{blob}\n").as_bytes());
    let pid = child.id();
    wait_for_a_write_to(pid, &fifo);
    // SAFETY: kill(2) sends a signal to a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
    let limit = std::time::Duration::from_secs(30);
    support::wait::exit_within(&mut child, limit, "the worker stopped by SIGINT");
    let run = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(130), "{err}");
    assert!(
        err.contains("every object was handled") && err.contains(&format!("of {report}")),
        "{err}"
    );
}

/// A pull that cannot start its report's writer thread (`ulimit -u`) runs no pull, and
/// leaves the previous run's `--report` as it was, as a worker without its output thread
/// does: the report was emptied before the thread was asked for, and the record of the
/// last run was lost. Each limit either leaves room for the whole pull or keeps the report.
#[test]
fn a_pull_without_a_report_thread_keeps_the_previous_report() {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let image = format!("{}:v1", repo(&reg));
    // The runtime's thread, the blocking pool's kept one and stdout's watcher, then
    // stdout's writer and the report's: one of these limits leaves no room for the last.
    for threads in 3..=6 {
        let dir = tempfile::tempdir().unwrap();
        let mode = |mode| std::os::unix::fs::PermissionsExt::from_mode(mode);
        std::fs::set_permissions(dir.path(), mode(0o777)).unwrap();
        let report = dir.path().join("report.jsonl");
        std::fs::write(&report, "previous run\n").unwrap();
        std::fs::set_permissions(&report, mode(0o666)).unwrap();
        let out = dir.path().join("out");
        let args = [
            "pull",
            &image,
            "-o",
            out.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ];
        let run = run_with_thread_limit(&Dist::new(), &args, b"", threads);
        let err = String::from_utf8_lossy(&run.stderr);
        let now = std::fs::read_to_string(&report).unwrap();
        if run.status.code() == Some(0) {
            assert!(
                now.contains("\"status\":\"ok\""),
                "{threads} threads: {now}"
            );
            continue;
        }
        assert_eq!(run.status.code(), Some(2), "{threads} threads: {err}");
        assert!(err.contains("cannot start the output thread"), "{err}");
        assert_eq!(
            now, "previous run\n",
            "{threads} threads: the report was lost"
        );
    }
}

/// Under a limit on threads that leaves none for waiting on a `--report` FIFO (`ulimit
/// -u`), the wait for its reader still gives way to a signal: it ran on the runtime's own
/// thread, where dist's handler caught SIGINT and nothing heard it, and the run hung until
/// killed (before its handlers were in place so early, SIGINT at least killed it).
#[test]
fn a_signal_while_a_report_fifo_waits_without_a_thread_to_spare_stops_the_run() {
    let reg = FakeRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let fifo = dir.path().join("report");
    mkfifo(&fifo);
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let out = dir.path().join("out");
    let repo = repo(&reg);
    let args = [
        "fetch",
        &repo,
        "-",
        "-o",
        out.to_str().unwrap(),
        "--report",
        fifo.to_str().unwrap(),
    ];
    // The runtime's thread, the blocking pool's one kept and stdout's watcher: none left.
    let mut child = start_with_thread_limit(&Dist::new(), &args, b"", 3);
    support::wait::until("the new layout, or the run's end", || {
        out.join("index.json").exists() || child.try_wait().unwrap().is_some()
    });
    if child.try_wait().unwrap().is_some() {
        panic!("ended unasked: {:?}", child.wait_with_output().unwrap());
    }
    // SAFETY: kill(2) sends a signal to a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let what = "the run stopped by SIGINT";
    support::wait::exit_within(&mut child, std::time::Duration::from_secs(30), what);
    let run = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!out.exists(), "the new layout was left");
}

/// The thread writing stdout runs as `SCHED_BATCH`, so that waking it does not take the
/// core from the runtime's thread in the middle of its turn (the CPU a batch of small
/// blobs costs: see `yield_to_runtime` in src/cmd/output.rs).
#[cfg(target_os = "linux")]
#[test]
fn the_output_thread_does_not_preempt_the_runtime() {
    let reg = FakeRegistry::start();
    let mut child = Dist::new().start(&["fetch", &repo(&reg), "-"]);
    let policy = || output_thread_policy(child.id());
    let mut seen = None;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        support::wait::until("the output thread to set its policy", || {
            seen = policy();
            seen == Some(libc::SCHED_BATCH as u32)
        })
    }));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        waited.is_ok(),
        "policy of dist-output: {seen:?}, not SCHED_BATCH ({})",
        libc::SCHED_BATCH
    );
}

/// The scheduling policy of the thread named `dist-output` in process `pid`, once it has
/// one.
#[cfg(target_os = "linux")]
fn output_thread_policy(pid: u32) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .find_map(|t| {
            let t = t.ok()?.path();
            if std::fs::read_to_string(t.join("comm")).ok()?.trim() != "dist-output" {
                return None;
            }
            let sched = std::fs::read_to_string(t.join("sched")).ok()?;
            let line = sched.lines().find(|l| l.starts_with("policy"))?;
            line.rsplit(':').next()?.trim().parse().ok()
        })
}

/// A run started under another policy than the default (`chrt --idle 0 dist …`, to keep a
/// background mirror out of the way; `chrt --fifo`) keeps it for its output thread: made
/// `SCHED_BATCH` whatever it was, the writer left `SCHED_IDLE` (allowed with
/// `CAP_SYS_NICE`, as root in a container) and competed with the machine's real work.
#[cfg(target_os = "linux")]
#[test]
fn the_output_thread_keeps_a_policy_the_run_was_given() {
    use std::io::{Read, Write};
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", b"a blob to write out");
    let param = libc::sched_param { sched_priority: 0 };
    // The child inherits the policy of the thread that forks it: this test's, set for it
    // alone and put back once the child has started.
    // SAFETY: sched_setscheduler reads `param` only; pid 0 is this thread.
    let idle = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    assert_eq!(idle, 0, "{}", std::io::Error::last_os_error());
    let mut child = Dist::new().start(&["fetch", &repo(&reg), "-"]);
    // SAFETY: as above. Refused without CAP_SYS_NICE: this thread then stays idle.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{digest}\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The frame's first byte is written by the output thread, past the point where it
    // sets its policy.
    let mut first = [0u8; 1];
    let read = child.stdout.as_mut().unwrap().read_exact(&mut first);
    let seen = output_thread_policy(child.id());
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    read.unwrap();
    assert_eq!(seen, Some(libc::SCHED_IDLE as u32), "policy of dist-output");
}

/// A report the run created whose directory cannot be synced (EIO) stops the run with
/// status 2 before anything is fetched, says so naming the report and the directory, and
/// leaves no report behind, as the README says.
#[test]
fn a_report_whose_directory_cannot_be_synced_stops_the_run() {
    let reg = FakeRegistry::start();
    small_image(&reg, "v1");
    let blob = reg.blob("team/app", bytes(89, 5000));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    let (repo, image) = (repo(&reg), format!("{}:v1", repo(&reg)));
    let l = layout.to_str().unwrap();
    let dist = Dist::new();
    let held = reports.to_str().unwrap();
    let options = ["-P", held, "-e", "inject=fsync:error=EIO"];
    for (n, command) in [(0, "fetch"), (1, "pull")] {
        let report = reports.join(format!("report-{n}.jsonl"));
        let r = report.to_str().unwrap();
        let args = match command {
            "fetch" => vec!["fetch", &repo, &blob, "-o", l, "--report", r],
            _ => vec!["pull", &image, "-o", l, "--report", r],
        };
        let log = tempfile::NamedTempFile::new().unwrap();
        let out = traced_output(&dist, &args, log.path(), &options);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        let said = format!("dist: cannot create report {r}: syncing {held}: ");
        assert!(err.contains(&said), "{command}: {err}");
        assert!(err.contains("Input/output error"), "{command}: {err}");
        assert!(!report.exists(), "{command}: the report was left behind");
        assert!(
            !layout.join("blobs/sha256").exists()
                || std::fs::read_dir(layout.join("blobs/sha256"))
                    .unwrap()
                    .next()
                    .is_none(),
            "{command}: something was fetched"
        );
    }
}

/// A run whose new report's directory takes long to sync (a slow or hung disk, held up
/// here) still ends at its `--timeout`, before anything is fetched: the sync ran on the
/// runtime's thread, outside the stop, and the run waited for the disk before it could
/// hear the timeout or a signal.
#[test]
fn a_report_s_directory_sync_does_not_hold_off_the_timeout() {
    let reg = FakeRegistry::start();
    let blob = reg.blob("team/app", bytes(88, 5000));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    let report = reports.join("report.jsonl");
    let (l, r) = (layout.to_str().unwrap(), report.to_str().unwrap());
    let repo = repo(&reg);
    let args = [
        "--timeout",
        "3s",
        "fetch",
        &repo,
        &blob,
        "-o",
        l,
        "--report",
        r,
    ];
    let held = reports.to_str().unwrap();
    let (text, err) = timed_out_in_fsync(&args, held);
    assert!(err.contains("gave up after the --timeout of 3s"), "{err}");
    // strace marks the held call `(DELAYED)` once it returns: the run waited for it.
    assert!(
        !text.contains("(DELAYED)"),
        "the run waited for the held sync of {held} before its --timeout: {text}\n{err}"
    );
    assert!(err.contains("nothing was fetched"), "{err}");
    // Left, empty: removing it would wait on the disk that does not answer.
    let left = std::fs::read(&report).expect("the report created is left");
    assert!(left.is_empty(), "{}", String::from_utf8_lossy(&left));
}

/// A pull that failed on an object, stopped by `--timeout` in its last sync (of the blobs
/// it stored, held up here: a slow disk), says that is what it was doing: it said the
/// objects reported were complete and "the others were not fetched", of a pull that had
/// handled them all.
#[test]
fn a_failed_pull_stopped_in_its_last_sync_says_so() {
    let reg = FakeRegistry::start();
    image_missing_a_layer(&reg);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let image = format!("{}:v1", repo(&reg));
    let args = [
        "--timeout",
        "6s",
        "pull",
        &image,
        "-o",
        layout.to_str().unwrap(),
    ];
    let blobs = layout.join("blobs/sha256");
    let held = blobs.to_str().unwrap();
    let (_, err) = timed_out_in_fsync(&args, held);
    assert!(!err.contains("not fetched"), "{err}");
    let said = format!(
        "dist: gave up after the --timeout of 6s; the objects reported stored are in {}, but \
         the sync of its directories did not finish",
        layout.display()
    );
    assert!(err.contains(&said), "{err}");
}

/// Puts `team/app:v1` on `reg`, an index of one linux/amd64 image, and pulls it into the
/// layout `l`; the reference.
fn pulled_amd64_only(reg: &FakeRegistry, l: &str) -> String {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = reg.blob("team/app", config);
    let layer = bytes(93, 2000);
    let layer_digest = reg.blob("team/app", &layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let media = "application/vnd.oci.image.manifest.v1+json";
    let manifest_digest = reg.manifest("team/app", "amd64", media, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": media, "digest": manifest_digest, "size": manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    });
    let index_media = "application/vnd.oci.image.index.v1+json";
    reg.manifest("team/app", "v1", index_media, index.to_string());
    let image = format!("{}:v1", repo(reg));
    let first = Dist::new().run(&["pull", &image, "-o", l, "--platform", "linux/amd64"], b"");
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    image
}

/// A pull that fails after objects were noted stored, whose sync of them then fails (EIO
/// here: a failing disk), says its own error first, then the sync's: the cause of the
/// failure before what followed it. The sync's came first.
#[test]
fn a_failed_pull_s_error_comes_before_its_sync_s() {
    let reg = FakeRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let l = layout.to_str().unwrap();
    let image = pulled_amd64_only(&reg, l);
    let args = ["pull", &image, "-o", l, "--platform", "linux/s390x"];
    let blobs = layout.join("blobs/sha256");
    let options = [
        "-P",
        blobs.to_str().unwrap(),
        "-e",
        "inject=fsync:error=EIO",
    ];
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = traced_output(&Dist::new(), &args, log.path(), &options);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let failed = err.find("no manifest for linux/s390x in").expect(&err);
    let unsynced = err
        .find(&format!("syncing {}", blobs.display()))
        .expect(&err);
    assert!(failed < unsynced, "{err}");
}

/// A pull that fails after objects were noted stored (here the image's index, found in the
/// layout from a pull before, and no entry for the platform asked for), stopped by
/// `--timeout` in the sync of those objects that follows its error (held up here: a slow
/// disk), says the error that failed it, and that the sync was what was left: the error
/// went with the pull's future, dropped at the stop, and the run said only that "the
/// others were not fetched", never why the pull had failed.
#[test]
fn a_pull_stopped_in_its_sync_after_an_error_says_the_error() {
    let (image, out, err) = failed_pull_stopped_in_its_sync(None);
    assert!(!err.contains("not fetched"), "{err}");
    // Its last line says it too, as a failed pull's does when no stop comes: it was on
    // stderr only.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().expect(&stdout))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(last["status"], "error", "{stdout}");
    assert_eq!(last["object"], image.as_str(), "{stdout}");
    assert_eq!(last["line"], 2, "{stdout}");
    let error = last["error"].as_str().expect(&stdout);
    assert!(error.contains("no manifest for linux/s390x in"), "{stdout}");
}

/// A pull for a platform the image lacks, into a layout a pull before filled (so objects
/// were noted stored), stopped by `--timeout` in the sync of those objects that follows
/// its error (held up: a slow disk), its stdout `stdout` when given: the image asked for,
/// the run's output and its stderr, once seen to say the pull's error and that the sync
/// did not finish.
fn failed_pull_stopped_in_its_sync(
    stdout: Option<std::process::Stdio>,
) -> (String, std::process::Output, String) {
    let reg = FakeRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let l = layout.to_str().unwrap();
    let image = pulled_amd64_only(&reg, l);
    let args = [
        "--timeout",
        "6s",
        "pull",
        &image,
        "-o",
        l,
        "--platform",
        "linux/s390x",
    ];
    let blobs = layout.join("blobs/sha256");
    let (_, out) = timed_out_in_fsync_to(&args, blobs.to_str().unwrap(), stdout);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("no manifest for linux/s390x in"), "{err}");
    let said = format!(
        "dist: gave up after the --timeout of 6s; the objects reported stored are in {}, but \
         the sync of its directories did not finish",
        layout.display()
    );
    assert!(err.contains(&said), "{err}");
    (image, out, err)
}

/// A fetch into a layout (a batch of one) stopped by `--timeout` in its last sync (held
/// up here: a slow disk), its writer stuck behind a reader of stdout that does not read,
/// says its output may end cut short: it said only that the sync did not finish, of an
/// output that ends short of the object it stored.
#[test]
fn a_batch_stopped_in_its_sync_with_its_output_held_says_so() {
    let reg = FakeRegistry::start();
    let blob = reg.blob("team/app", bytes(96, 5000));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    // `strace -P` needs the path to be there to match it.
    std::fs::create_dir_all(&layout).unwrap();
    let (repo, l) = (repo(&reg), layout.to_str().unwrap());
    let args = ["--timeout", "6s", "fetch", &repo, &blob, "-o", l];
    // Held, unread: its line cannot go out. The layout's own directory is fsync'd once,
    // in the sync at the end.
    let (_unread, stdout) = support::full_pipe();
    let (_, out) = timed_out_in_fsync_to(&args, l, Some(stdout.into()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "every object was fetched and stored in {l}, but the sync of its directories did \
             not finish"
        )),
        "{err}"
    );
    assert!(
        err.contains("written whole, and perhaps part of the one being written, cut short"),
        "{err}"
    );
}

/// A failed pull stopped by `--timeout` in its sync (held up here: a slow disk), its last
/// line queued behind a reader of stdout that does not read, says that line may be lost
/// or cut: it said only that the sync did not finish, and a job reading the lines trusted
/// an output that ends short of the pull's error.
#[test]
fn a_failed_pull_stopped_in_its_sync_with_its_line_held_says_so() {
    // Held, unread: its first line cannot go out.
    let (_unread, stdout) = support::full_pipe();
    let (_, _, err) = failed_pull_stopped_in_its_sync(Some(stdout.into()));
    assert!(
        err.contains("written whole, and perhaps part of the one being written, cut short"),
        "{err}"
    );
}

/// A one-shot fetch whose stdout, a file, stops taking bytes past the first MiB (a full
/// disk; here a limit on file size, which fails writes the same way) says how much of the
/// object the file already holds, as a fetch that fails after streaming does: `>
/// layer.tar` is left looking like the object, and "writing to stdout: File too large"
/// alone did not say that its first MiB had gone there.
#[test]
fn a_one_shot_stdout_that_fills_says_what_it_already_holds() {
    use std::os::unix::process::CommandExt;
    let reg = FakeRegistry::start();
    let big = bytes(35, 2 << 20);
    let digest = reg.blob("team/app", &big);
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("layer.tar")).unwrap();
    let mut command = Dist::new().command(&["fetch", &repo(&reg), &digest]);
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: (3 << 20) / 2,
                rlim_max: libc::RLIM_INFINITY,
            };
            match libc::setrlimit(libc::RLIMIT_FSIZE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let out = command
        .stdin(std::process::Stdio::null())
        .stdout(file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("writing to stdout"), "{err}");
    assert!(
        err.contains("1.6 MB already written to stdout are not this object: discard them"),
        "{err}"
    );
}

/// A batch's frames written into a file that stops taking bytes (a full disk; here a limit
/// on file size, which fails writes the same way, and `/dev/full`) name the frame the file
/// ends in and how much of it went there, and the report has a line for each frame before
/// it. The output's unit tests check that of a writer that fills; this, of the process,
/// its stdout a real file.
#[test]
fn a_file_that_fills_under_a_batch_names_the_frame_it_cuts() {
    use std::os::unix::process::CommandExt;
    let reg = FakeRegistry::start();
    const LEN: usize = 10_000;
    let blobs: Vec<String> = (0..30u64)
        .map(|i| reg.blob("team/app", bytes(400 + i, LEN)))
        .collect();
    let input: String = blobs.iter().map(|d| format!("{d}\n")).collect();
    let frame = |digest: &String| format!("{digest} {digest} {LEN} -\n").len() + LEN + 1;
    let five: usize = blobs[..5].iter().map(frame).sum();
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("lines");
    std::fs::write(&lines, &input).unwrap();
    let repo = repo(&reg);
    for (into, limit) in [("file", Some(five + 700)), ("/dev/full", None)] {
        let report = dir.path().join("report");
        let mut command = Dist::new().command(&[
            "fetch",
            &repo,
            "-",
            "--ordered",
            "--report",
            report.to_str().unwrap(),
        ]);
        let stdout = match limit {
            Some(limit) => {
                // SAFETY: only setrlimit, which is async-signal-safe, runs between fork
                // and exec.
                unsafe {
                    command.pre_exec(move || {
                        let limit = libc::rlimit {
                            rlim_cur: limit as libc::rlim_t,
                            rlim_max: libc::RLIM_INFINITY,
                        };
                        match libc::setrlimit(libc::RLIMIT_FSIZE, &limit) {
                            0 => Ok(()),
                            _ => Err(std::io::Error::last_os_error()),
                        }
                    });
                }
                std::fs::File::create(dir.path().join("frames")).unwrap()
            }
            None => std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        };
        let out = command
            .stdin(std::fs::File::open(&lines).unwrap())
            .stdout(stdout)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{into}: {err}");
        let (cut, said, whole) = match limit {
            Some(_) => (
                &blobs[5],
                "cut short after 700 of its bytes: File too large",
                5,
            ),
            None => (&blobs[0], "none of it written: No space left on device", 0),
        };
        let message = format!("dist: {cut}: writing its frame to stdout, {said}");
        assert_eq!(err.matches(&message).count(), 1, "{into}: {err}");
        let reported: Vec<u64> = json_lines(&std::fs::read(&report).unwrap())
            .iter()
            .map(|l| l["line"].as_u64().unwrap())
            .collect();
        assert_eq!(reported, (1..=whole).collect::<Vec<u64>>(), "{into}");
    }
}

/// A layout shared with other tools (skopeo, crane, ORAS): pulling into it changes only
/// the entries of `index.json` the pull replaces or adds. Everything else stays as the
/// other tool wrote it, byte for byte: its layout, its key order, its escapes, and a field
/// dist does not know holding a number past 64 bits. The file was parsed and written out
/// again, its keys sorted, `\u00e9` decoded and `123456789012345678901234567890` turned
/// into `1.2345678901234568e+29`.
#[test]
fn another_tool_s_index_json_keeps_its_text_where_the_pull_changes_nothing() {
    let reg = FakeRegistry::start();
    let digest = small_image(&reg, "v1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    let theirs = format!(
        "    {{\n      \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\",\n      \
         \"size\": 7,\n      \"digest\": \"sha256:{}\",\n      \"annotations\": \
         {{\"org.opencontainers.image.ref.name\": \"other\", \"note\": \"caf\\u00e9\"}},\n      \
         \"x-count\": 123456789012345678901234567890\n    }}",
        "a".repeat(64)
    );
    let head = format!("{{\n  \"schemaVersion\": 2,\n  \"manifests\": [\n{theirs}");
    let tail = "\n  ],\n  \"x-top\": 1.10\n}\n";
    let index = dir.path().join("index.json");
    std::fs::write(&index, format!("{head}{tail}")).unwrap();

    let dist = Dist::new();
    let layout = dir.path().to_str().unwrap();
    dist.ok(&["pull", &format!("{}:v1", repo(&reg)), "-o", layout]);

    let text = String::from_utf8(std::fs::read(&index).unwrap()).unwrap();
    let ours = text
        .strip_prefix(&format!("{head},\n    "))
        .and_then(|rest| rest.strip_suffix(tail))
        .unwrap_or_else(|| panic!("other tool's text changed:\n{text}"));
    // In its fields' order, as the other tools write theirs.
    assert!(ours.starts_with(r#"{"mediaType":"#), "{text}");
    let ours: serde_json::Value = serde_json::from_str(ours).unwrap();
    assert_eq!(ours["digest"], digest.as_str(), "{text}");
    assert_eq!(
        ours["annotations"]["org.opencontainers.image.ref.name"], "v1",
        "{text}"
    );
}

/// A tag and its digest on two lines of a batch into `-o DIR`, as README says: both are
/// fetched or found, neither fails on the other's rename; found stored, a digest without
/// a `mediatype:` hint has no type (the file is not read for it), one with a hint its hint.
#[test]
fn a_tag_and_its_digest_on_two_lines_are_both_stored() {
    let reg = FakeRegistry::start();
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let digest = reg.manifest("team/app", "v1", mt, manifest);
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().to_str().unwrap();
    let args = ["fetch", &repo(&reg), "-", "-o", dir, "-j", "4"];
    let dist = Dist::new();
    for input in [format!("v1\n{digest}\n"), format!("{digest}\nv1\n")] {
        let out = dist.run(&args, input.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        let lines = json_lines(&out.stdout);
        assert_eq!(lines.len(), 2, "{err}");
        for l in &lines {
            assert!(l["status"] == "ok" || l["status"] == "exists", "{l}");
            assert_eq!(l["digest"], digest.as_str(), "{l}");
        }
    }
    let stored = blob_file(out_dir.path(), &digest);
    assert_eq!(std::fs::read(stored).unwrap(), manifest);
    // Stored before either line began: the digest's line finds it, and the tag's asks the
    // registry all the same (README said either line would say `exists`).
    let out = dist.run(&args, format!("v1\n{digest}\n").as_bytes());
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let want = if l["object"] == "v1" { "ok" } else { "exists" };
        assert_eq!(l["status"], want, "{l}");
    }

    let input = format!("{digest}\n{digest} mediatype:{mt}\n");
    let lines = json_lines(&dist.run(&args, input.as_bytes()).stdout);
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["status"], "exists", "{l}");
        let hinted = l["line"] == 2;
        let want = if hinted {
            serde_json::json!(mt)
        } else {
            serde_json::Value::Null
        };
        assert_eq!(l["mediaType"], want, "{l}");
    }
}
