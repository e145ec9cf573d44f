//! Running the `dist` binary from tests, isolated from the machine's Docker and podman
//! credentials.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A started `dist` ([`Dist::start`]), used as the [`std::process::Child`] it holds: a
/// test that fails (panics) before it has waited for it kills it by its PID and reaps it,
/// where a dropped `Child` ran on, a batch or a signalled run left behind by the suite.
pub struct Running(Option<std::process::Child>);

impl Running {
    /// [`std::process::Child::wait_with_output`], the process then no longer this guard's.
    pub fn wait_with_output(mut self) -> std::io::Result<Output> {
        self.0.take().expect("a running dist").wait_with_output()
    }

    /// Guards `child`, a `dist` the test started itself (another command line, `strace`
    /// before it).
    pub fn new(child: std::process::Child) -> Running {
        Running(Some(child))
    }

    /// Starts `command` (a `dist`, or what runs one) with stdin, stdout and stderr all
    /// piped, guarded.
    pub fn piped(command: &mut Command) -> Running {
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dist");
        Running::new(child)
    }
}

impl std::ops::Deref for Running {
    type Target = std::process::Child;

    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("a running dist")
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("a running dist")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // Already reaped (waited for), it is left alone: the kill only reaches one
            // still running, and the wait reaps it.
            if let Ok(None) = child.try_wait() {
                kill_children(child.id());
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Kills the children of `pid`, a child of the test not yet reaped, by their PIDs: the
/// `dist` a `strace` runs, which the kill of `strace` alone detaches and leaves running.
/// `pid` is stopped first, so that it cannot reap a child, whose PID could then be
/// another process's, between the listing and the kill.
fn kill_children(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) only sends a signal, to a child of this process that it has not
    // reaped, so still its own.
    if unsafe { libc::kill(pid, libc::SIGSTOP) } != 0 {
        return;
    }
    // A stopped process is seen stopped before its children are listed (`T` in the
    // state): until then, it may still reap one.
    let stat = format!("/proc/{pid}/stat");
    while std::fs::read_to_string(&stat).is_ok_and(|s| {
        let state = s.rsplit_once(") ").map(|(_, rest)| rest.as_bytes()[0]);
        !matches!(state, Some(b'T' | b't' | b'Z'))
    }) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let children = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            let pids: Vec<i32> = list.split_whitespace().flat_map(str::parse).collect();
            pids
        });
    for child in children {
        // SAFETY: as above; `child` cannot be reaped while its parent is stopped.
        unsafe { libc::kill(child, libc::SIGKILL) };
    }
}

/// A `dist` invocation with its own `DOCKER_CONFIG` directory (empty unless a test writes
/// a `config.json` into it), and the containers tools' `auth.json` places under it too, so
/// that nothing from the developer's machine leaks in.
pub struct Dist {
    config_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Default for Dist {
    fn default() -> Self {
        Dist::new()
    }
}

impl Dist {
    /// A fresh invocation context.
    pub fn new() -> Dist {
        Dist {
            config_dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
        }
    }

    /// The directory used as `DOCKER_CONFIG`.
    pub fn config_dir(&self) -> &Path {
        self.config_dir.path()
    }

    /// What runs of dist see as `XDG_RUNTIME_DIR` (podman keeps its logins there).
    pub fn runtime_dir(&self) -> PathBuf {
        self.config_dir.path().join("run")
    }

    /// What runs of dist see as `XDG_CONFIG_HOME`.
    pub fn config_home(&self) -> PathBuf {
        self.config_dir.path().join("config")
    }

    /// The `certs.d` folder (under [`Dist::config_home`]) for registry `host`, created.
    pub fn certs_d(&self, host: &str) -> PathBuf {
        let folder = self.config_home().join("containers/certs.d").join(host);
        std::fs::create_dir_all(&folder).expect("create certs.d folder");
        folder
    }

    /// Writes `config.json` with `content`.
    pub fn docker_config(&self, content: &str) -> &Self {
        std::fs::write(self.config_dir.path().join("config.json"), content)
            .expect("write config.json");
        self
    }

    /// `config.json` with a Basic `auth` entry for `host`.
    pub fn login(&self, host: &str, user: &str, password: &str) -> &Self {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.docker_config(&format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#))
    }

    /// Adds an environment variable to every run.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The binary's path.
    pub fn bin() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_dist"))
    }

    /// A command for `dist ARGS…` in this context.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(Self::bin());
        c.args(args)
            .env("DOCKER_CONFIG", self.config_dir.path())
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("XDG_CONFIG_HOME", self.config_home())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("RUST_LOG")
            .env_remove("DIST_FETCH_TIMEOUT");
        // Proxies are a test's own choice, never the machine's.
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
            c.env_remove(name).env_remove(name.to_lowercase());
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        // dist keeps a signal ignored that it was started with ignored, as `nohup` and a
        // script's `cmd &` start it: a test suite run from such a script would see its
        // signal tests fail. Tests that want one ignored set it after this.
        // SAFETY: only signal(2), async-signal-safe, runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(signal, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        c
    }

    /// Runs the shell command line `line` (which calls `dist` by [`Dist::bin`]) on a
    /// pseudo-terminal made by `script`, in this context's environment. What the terminal
    /// showed comes back as stdout: redirect the command's own stdout to a file in `line`
    /// to see stderr alone.
    pub fn on_terminal(&self, line: &str) -> Output {
        let mut tty = Command::new("script");
        for (k, v) in self.command(&[]).get_envs() {
            match v {
                Some(v) => tty.env(k, v),
                None => tty.env_remove(k),
            };
        }
        tty.args(["-qec", line, "/dev/null"])
            .output()
            .expect("run script(1)")
    }

    /// `dist ARGS…` started with stdin, stdout and stderr all piped, for tests that feed
    /// and read it as it runs; killed by its PID if the test ends before it does.
    pub fn start(&self, args: &[&str]) -> Running {
        Running::piped(&mut self.command(args))
    }

    /// Starts `dist ARGS…` in the background with `stdin` as its whole input (then closed),
    /// stdout and stderr piped, for tests that signal or time it while it runs.
    pub fn spawn(&self, args: &[&str], stdin: &[u8]) -> Running {
        let mut child = self.start(args);
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write dist's input");
        child
    }

    /// Runs `dist ARGS…` with `stdin`, returning its output.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self.start(args);
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait dist");
        writer.join().expect("stdin writer");
        out
    }

    /// `dist ARGS…` fed `stdin`, which must exit with status `code`: its stderr, to look
    /// at what it says.
    #[track_caller]
    pub fn fails(&self, code: i32, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "dist {args:?}: {err}");
        err
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        self.ok_fed(args, b"")
    }

    /// Like [`Dist::ok`], with `stdin` as the whole input.
    pub fn ok_fed(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "dist {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// A credential helper that prints the password kept in `secret` (a cloud's helper hands
/// out an access token that lasts an hour, and a fresh one when asked again), for every
/// registry, as `credsStore`.
pub fn rotating_helper(dist: &mut Dist, secret: &Path) {
    let bin = dist.config_dir().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-rotating");
    // Each run leaves a line in `helper-runs` beside the config, for tests to count.
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho run >> {}\nprintf '{{\"Username\":\"robot\",\"Secret\":\"%s\"}}' \"$(cat {})\"\n",
        dist.config_dir().join("helper-runs").display(),
        secret.display()
    );
    write_program(&helper, &script);
    dist.docker_config(r#"{"credsStore":"rotating"}"#);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    dist.env("PATH", &path);
}

/// Writes `text` into `path` as a program (mode 755), such as a credential helper dist
/// runs. Written by `sh`, not through a descriptor of the test process's: a `dist` another
/// test started meanwhile held a copy of that descriptor until it ran, and the script,
/// open for writing there, could not be run ("Text file busy").
pub fn write_program(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let mut sh = Command::new("sh")
        .args(["-c", "cat > \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = sh.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    drop(stdin);
    assert!(sh.wait().unwrap().success(), "writing {}", path.display());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The sizes of the downloads being written into the layout at `dir` (their temporary
/// files, not the locks they are fetched under); none while there is no layout yet.
pub fn downloads_on_disk(dir: &Path) -> Vec<u64> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".dist-tmp-"))
                .filter_map(|e| Some(e.metadata().ok()?.len()))
                .collect()
        })
        .unwrap_or_default()
}

/// The hex part of a `sha256:` digest, as blob files are named.
pub fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// The file the blob `digest` (`sha256:…`) is stored in, in the layout `dir`.
pub fn blob_file(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(hex(digest))
}

/// The names in the `blobs/sha256` folder of the layout `dir`, sorted.
pub fn blob_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Asserts that the layout `dir` holds the blob `digest` with `data`, and nothing else
/// (no temporary file, partial download or lock) beside it.
pub fn assert_stored_alone(dir: &std::path::Path, digest: &str, data: &[u8]) {
    assert_eq!(
        blob_names(dir),
        vec![hex(digest).to_string()],
        "nothing else left"
    );
    let stored = std::fs::read(blob_file(dir, digest)).unwrap();
    assert!(stored == data, "the stored blob is the content");
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(data);
    let mut s = String::from("sha256:");
    for b in h {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The digest of `data` in the algorithm `digest` names (`None` for one not known here).
fn digest_as(digest: &str, data: &[u8]) -> Option<String> {
    use sha2::Digest as _;
    let hex = |h: &[u8]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
    match digest.split_once(':')?.0 {
        "sha256" => Some(format!("sha256:{}", hex(&sha2::Sha256::digest(data)))),
        "sha512" => Some(format!("sha512:{}", hex(&sha2::Sha512::digest(data)))),
        _ => None,
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Parses JSON lines (the worker's per-object lines, a `--report` file, `pull`'s lines):
/// every line must be one JSON value.
pub fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// One parsed frame of the worker's framed output.
#[derive(Debug)]
pub struct Frame {
    pub object: String,
    /// `Ok((digest, media_type, body))` or `Err(reason)`.
    pub result: Result<(String, String, Vec<u8>), String>,
}

/// The media type in each frame's header of framed output in which every object was
/// fetched (`-` for none known).
pub fn frame_media_types(out: &[u8]) -> Vec<String> {
    parse_frames(out)
        .into_iter()
        .map(|f| f.result.expect("fetched").1)
        .collect()
}

/// Parses framed output strictly: every byte must belong to a well-formed frame.
pub fn parse_frames(mut data: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !data.is_empty() {
        let nl = data
            .iter()
            .position(|&b| b == b'\n')
            .expect("header line ends");
        let header = std::str::from_utf8(&data[..nl]).expect("utf-8 header");
        data = &data[nl + 1..];
        let mut parts = header.splitn(4, ' ');
        let object = parts.next().unwrap().to_string();
        let second = parts.next().expect("second field");
        if second == "error" {
            let a = parts.next().unwrap_or("");
            let b = parts.next().unwrap_or("");
            frames.push(Frame {
                object,
                result: Err(format!("{a} {b}")),
            });
            continue;
        }
        let size: usize = parts.next().expect("size").parse().expect("numeric size");
        let media_type = parts.next().expect("media type").to_string();
        assert!(data.len() > size, "frame body truncated");
        let body = data[..size].to_vec();
        assert_eq!(data[size], b'\n', "frame body must end with a newline");
        // The header's digest is what a reader keys the content by: a test comparing the
        // body alone would pass a frame whose digest names other content.
        assert_eq!(
            digest_as(second, &body).as_deref(),
            Some(second),
            "frame of {object}: the header's digest is the body's"
        );
        data = &data[size + 1..];
        frames.push(Frame {
            object,
            result: Ok((second.to_string(), media_type, body)),
        });
    }
    frames
}
