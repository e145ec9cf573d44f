//! The user-facing surface: progress on a terminal (and only there), `-q`, JSON logs that
//! never carry secrets, `--shard`, shell completions and the manual page.

mod support;

use std::collections::BTreeMap;

use base64::Engine as _;
use support::cli::{blob_file, blob_names, bytes, json_lines, parse_frames, Dist, Running};
use support::fake::{Auth, FakeRegistry, Fault};

fn fill(reg: &FakeRegistry, n: usize) -> BTreeMap<String, Vec<u8>> {
    (0..n)
        .map(|i| {
            let data = bytes(500 + i as u64, 3000 + i * 17);
            (reg.blob("team/app", &data), data)
        })
        .collect()
}

fn input(blobs: &BTreeMap<String, Vec<u8>>) -> String {
    blobs.keys().map(|d| format!("{d}\n")).collect()
}

/// A pseudo-terminal: its controlling side, and the file its other side is for the
/// process that writes to it.
fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut controller, mut terminal) = (-1, -1);
    // SAFETY: openpty writes two descriptors it opened, which each `File` then owns.
    let ok = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    } == 0;
    assert!(ok, "openpty: {}", std::io::Error::last_os_error());
    unsafe {
        (
            std::fs::File::from_raw_fd(controller),
            std::fs::File::from_raw_fd(terminal),
        )
    }
}

/// A pseudo-terminal stopped as Ctrl-S stops it, whose buffer is full: the terminal's side
/// takes no more output until Ctrl-Q is written to the controlling side.
fn stopped_terminal() -> (std::fs::File, std::fs::File) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let (mut controller, terminal) = pty();
    // Ctrl-S, as typed: the terminal takes no more output until Ctrl-Q.
    controller.write_all(&[0x13]).unwrap();
    // SAFETY: fcntl on a descriptor the `File` owns.
    unsafe {
        let flags = libc::fcntl(terminal.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(
            terminal.as_raw_fd(),
            libc::F_SETFL,
            flags | libc::O_NONBLOCK,
        );
    }
    support::wait::until("the terminal to stop", || {
        (&terminal)
            .write(b" ")
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock)
    });
    unsafe {
        let flags = libc::fcntl(terminal.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(
            terminal.as_raw_fd(),
            libc::F_SETFL,
            flags & !libc::O_NONBLOCK,
        );
    }
    (controller, terminal)
}

/// Runs the worker on `list` into `out_dir` with its stderr on a stopped terminal, waits
/// for every blob in `good` to be stored meanwhile, then starts the terminal again; its
/// exit status and what the terminal showed.
fn worker_on_a_stopped_terminal(
    reg: &FakeRegistry,
    good: &[String],
    list: &std::path::Path,
    out_dir: &std::path::Path,
) -> (std::process::ExitStatus, String) {
    use std::io::Write;
    let (mut controller, terminal) = stopped_terminal();
    let mut child = Running::new(
        Dist::new()
            .command(&[
                "fetch",
                &format!("{}/team/app", reg.host()),
                "-",
                "-o",
                out_dir.to_str().unwrap(),
            ])
            .stdin(std::fs::File::open(list).unwrap())
            .stdout(std::fs::File::create(out_dir.with_extension("jsonl")).unwrap())
            .stderr(terminal)
            .spawn()
            .unwrap(),
    );
    let stored = |d: &String| blob_file(out_dir, d).is_file();
    // Stuck on the stopped terminal if this fails, dist is killed by its guard.
    support::wait::until("every blob stored while the terminal is stopped", || {
        good.iter().all(stored)
    });
    // Ctrl-Q, and what the terminal shows read, for the summary line to get through.
    controller.write_all(&[0x11]).unwrap();
    let reader = std::thread::spawn(move || {
        let mut shown = Vec::new();
        // The terminal's side closed at the exit ends the read with EIO.
        let _ = std::io::Read::read_to_end(&mut controller, &mut shown);
        shown
    });
    let status = support::wait::exit_within(&mut child, std::time::Duration::from_secs(30), "dist");
    let shown = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    // Without the spaces written to fill the terminal's buffer before dist started.
    (status, shown.trim_start_matches(' ').to_string())
}

/// A terminal that stops taking output (Ctrl-S, an ssh link that stalls) stops the
/// progress line, not the batch: the line was written by the runtime's one thread, which
/// waited in the write, and every fetch with it.
#[test]
fn a_stopped_terminal_stops_no_fetch() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 40);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("in.txt");
    std::fs::write(&list, input(&blobs)).unwrap();
    let good: Vec<String> = blobs.keys().cloned().collect();
    let (status, shown) = worker_on_a_stopped_terminal(&reg, &good, &list, &dir.path().join("out"));
    assert!(status.success());
    assert!(shown.contains("40 objects, "), "{shown:?}");
}

/// Nor do the messages of a batch with failed lines, nor the warnings it logs: they were
/// written by the runtime's thread, and the first failed line held every fetch until the
/// terminal took output again. Once it does, every message is shown, in its order, each
/// on a row of its own, and the summary after them.
#[test]
fn a_stopped_terminal_holds_no_fetch_of_a_batch_with_errors() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 40);
    // Fetched again, with a warning logged.
    let corrupt = blobs.keys().nth(3).unwrap().clone();
    reg.push_fault(&corrupt, Fault::CorruptByte(10));
    // Failed lines first, and among the good ones.
    let mut lines: String = (0..5).map(|i| format!("bad!{i}\n")).collect();
    for (i, digest) in blobs.keys().enumerate() {
        lines.push_str(&format!("{digest}\n"));
        if i % 10 == 0 {
            let missing = support::fake::digest_of(format!("missing {i}").as_bytes());
            lines.push_str(&format!("{missing}\n"));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("in.txt");
    std::fs::write(&list, &lines).unwrap();
    let good: Vec<String> = blobs.keys().cloned().collect();
    let (status, shown) = worker_on_a_stopped_terminal(&reg, &good, &list, &dir.path().join("out"));
    assert_eq!(status.code(), Some(1), "{shown:?}");
    // What the terminal shows of each row: the text after its last carriage return.
    let rows: Vec<&str> = shown
        .split('\n')
        .map(|l| l.trim_end_matches('\r').rsplit('\r').next().unwrap())
        .map(|l| l.trim_start_matches("\u{1b}[K"))
        .collect();
    let errors: Vec<&&str> = rows
        .iter()
        .filter(|r| r.starts_with("dist: line "))
        .collect();
    let mut said: Vec<u32> = errors
        .iter()
        .map(|r| {
            r["dist: line ".len()..]
                .split(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    said.sort();
    assert_eq!(
        said,
        [1, 2, 3, 4, 5, 7, 18, 29, 40],
        "every failed line is said, on a row of its own: {shown:?}"
    );
    assert!(
        rows.iter().any(|r| r.contains("content did not verify")),
        "the warning logged is shown: {shown:?}"
    );
    let summary = rows.iter().position(|r| r.starts_with("49 objects, "));
    let last_error = rows.iter().rposition(|r| r.starts_with("dist: line "));
    assert!(summary > last_error, "the summary comes last: {shown:?}");
    assert!(rows[summary.unwrap()].ends_with("9 failed"), "{shown:?}");
}

/// A batch done, with its summary still waiting for a stopped terminal, ends on Ctrl-C (or
/// SIGTERM), as any program waiting for its terminal does: the runtime's handler caught it
/// and no one heard it any more, so only SIGKILL or Ctrl-Q ended the run.
#[test]
fn a_run_waiting_for_a_stopped_terminal_at_its_end_ends_on_ctrl_c() {
    use std::os::unix::process::ExitStatusExt;
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 3);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("in.txt");
    std::fs::write(&list, input(&blobs)).unwrap();
    let (_controller, terminal) = stopped_terminal();
    let out_dir = dir.path().join("out");
    let mut child = Running::new(
        Dist::new()
            .command(&[
                "fetch",
                &format!("{}/team/app", reg.host()),
                "-",
                "-o",
                out_dir.to_str().unwrap(),
            ])
            .stdin(std::fs::File::open(&list).unwrap())
            .stdout(std::fs::File::create(dir.path().join("out.jsonl")).unwrap())
            .stderr(terminal)
            .spawn()
            .unwrap(),
    );
    // Done with the run: its runtime and output threads gone, the thread that writes
    // stderr left waiting for the terminal beside the main one.
    let tasks = format!("/proc/{}/task", child.id());
    let threads = || -> Vec<String> {
        std::fs::read_dir(&tasks)
            .map(|d| {
                d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    support::wait::until("the run to end but for its stderr", || {
        let t = threads();
        t.len() == 2 && t.iter().any(|c| c == "stderr")
    });
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    // Ctrl-C until it ends: the last of the runtime's threads goes a moment before the
    // main thread gives the signal back, and one sent meanwhile is caught as before.
    let mut status = None;
    support::wait::until("dist to end on Ctrl-C", || {
        // SAFETY: kill(2) of the child this test started and has not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().signal(), Some(libc::SIGINT), "{status:?}");
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 40);
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("in.txt");
    std::fs::write(&list, input(&blobs)).unwrap();
    let out_dir = dir.path().join("out");
    // `script` gives the command a pseudo-terminal; stdout goes to a file, so what the
    // terminal shows is stderr alone.
    let line = format!(
        "{} fetch {}/team/app - -o {} < {} > {}",
        Dist::bin().display(),
        reg.host(),
        out_dir.display(),
        list.display(),
        dir.path().join("out.jsonl").display()
    );
    let shown = dist.on_terminal(&line);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(screen.contains("40 objects, "), "summary line: {screen:?}");
    assert!(screen.contains("0 failed"), "{screen:?}");
    let lines = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 40, "the data stays on stdout");

    // Not a terminal: nothing on stderr.
    let quiet = dist.run(
        &[
            "fetch",
            &format!("{}/team/app", reg.host()),
            "-",
            "-o",
            out_dir.to_str().unwrap(),
        ],
        input(&blobs).as_bytes(),
    );
    assert!(quiet.status.success());
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
}

/// A registry holding a blob of `slow_len` bytes served at 1 MB/s, which keeps a progress
/// line drawn, and a small one (seed `seed + 1`), and a list in a temporary directory
/// naming the slow one first. Returns the registry, the small blob's digest, the directory
/// and the list.
fn a_slow_blob_then_a_small_one(
    seed: u64,
    slow_len: usize,
) -> (FakeRegistry, String, tempfile::TempDir, std::path::PathBuf) {
    let reg = FakeRegistry::start();
    let slow = reg.blob("team/app", bytes(seed, slow_len));
    let small = reg.blob("team/app", bytes(seed + 1, 5000));
    reg.set_fault_for_every(
        &slow,
        Fault::Paced {
            bytes_per_sec: 1_000_000,
            first_byte: std::time::Duration::ZERO,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("in.txt");
    std::fs::write(&list, format!("{slow}\n{small}\n")).unwrap();
    (reg, small, dir, list)
}

/// What a terminal shows of the worker fetching `list` from `reg` one at a time, its
/// frames going to a file in `dir`, after the shell commands in `before`; it must succeed.
fn worker_on_terminal(
    before: &str,
    reg: &FakeRegistry,
    list: &std::path::Path,
    dir: &std::path::Path,
) -> String {
    let line = format!(
        "{before}{} fetch {}/team/app - -j 1 < {} > {}",
        Dist::bin().display(),
        reg.host(),
        list.display(),
        dir.join("frames").display()
    );
    let shown = Dist::new().on_terminal(&line);
    let screen = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(shown.status.success(), "{screen:?}");
    screen
}

/// A warning logged while the progress line is drawn (content that did not verify, fetched
/// again) starts on a line of its own, not glued to the end of the progress line.
#[test]
fn a_warning_clears_the_progress_line_first() {
    // The slow blob keeps the line drawn for half a second before the other one starts.
    let (reg, corrupt, dir, list) = a_slow_blob_then_a_small_one(41, 600_000);
    reg.push_fault(&corrupt, Fault::CorruptByte(10));
    let screen = worker_on_terminal("", &reg, &list, dir.path());
    let warning = screen
        .split('\n')
        .find(|l| l.contains("content did not verify"))
        .unwrap_or_else(|| panic!("the warning is shown: {screen:?}"));
    // What the terminal shows of that line: what follows the last carriage return.
    let visible = warning.trim_end_matches('\r').rsplit('\r').next().unwrap();
    assert!(
        !visible.contains("objects,"),
        "the warning is glued to the progress line: {visible:?}"
    );
    assert!(screen.contains("2 objects, "), "summary line: {screen:?}");
}

/// On a narrow terminal each frame of the progress line stays within one row: a frame
/// that wraps is redrawn from its last row only, leaving a copy of the rows above behind
/// at every redraw.
#[test]
fn the_progress_line_fits_a_narrow_terminal() {
    let (reg, _, dir, list) = a_slow_blob_then_a_small_one(45, 800_000);
    let screen = worker_on_terminal("stty cols 40 && ", &reg, &list, dir.path());
    let frames: Vec<&str> = screen
        .split('\r')
        .filter_map(|f| f.strip_prefix("\x1b[K"))
        // Frames, not the summary line, which is written once.
        .filter(|f| f.contains(" objects,") && !f.contains(" failed"))
        .collect();
    assert!(!frames.is_empty(), "the line is drawn: {screen:?}");
    for frame in frames {
        assert!(frame.chars().count() < 40, "{frame:?} wraps at 40 columns");
    }
}

/// The rate shown is that of the last seconds: a connection that stalls reads 0 B/s once
/// the window has passed, not the average since the start, which only slowly decays.
#[test]
fn a_stall_shows_no_rate() {
    let reg = FakeRegistry::start();
    let blob = reg.blob("team/app", bytes(47, 1_000_000));
    reg.push_fault(
        &blob,
        Fault::StallAfter(600_000, std::time::Duration::from_millis(6500)),
    );
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("in.txt");
    std::fs::write(&list, format!("{blob}\n")).unwrap();
    let line = format!(
        "{} fetch {}/team/app - < {} > {}",
        Dist::bin().display(),
        reg.host(),
        list.display(),
        dir.path().join("frames").display()
    );
    let shown = dist.on_terminal(&line);
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{screen:?}");
    assert!(
        screen.contains("600.0 kB, 0 B/s"),
        "the stall shows as such: {screen:?}"
    );
}

/// With stdout on the terminal the progress line is drawn on (`dist fetch LOC - -o DIR <
/// list`), each JSON line goes above the progress line, not after its text.
#[test]
fn output_on_the_terminal_goes_above_the_progress_line() {
    let (reg, _, dir, list) = a_slow_blob_then_a_small_one(43, 600_000);
    let dist = Dist::new();
    let line = format!(
        "{} fetch {}/team/app - -j 1 -o {} < {}",
        Dist::bin().display(),
        reg.host(),
        dir.path().join("out").display(),
        list.display()
    );
    let shown = dist.on_terminal(&line);
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{screen:?}");
    assert_json_rows_stand_alone(&screen, 2);
}

/// What a terminal shows of `screen`'s rows (the text after each row's last carriage
/// return) holds `count` JSON lines, each at the start of its row: none glued to the
/// progress line's text.
fn assert_json_rows_stand_alone(screen: &str, count: usize) {
    let rows: Vec<&str> = screen
        .split('\n')
        .map(|l| l.trim_end_matches('\r').rsplit('\r').next().unwrap())
        .map(|l| l.trim_start_matches("\u{1b}[K"))
        .collect();
    let json: Vec<&&str> = rows.iter().filter(|r| r.contains("\"line\":")).collect();
    assert_eq!(json.len(), count, "{screen:?}");
    for row in json {
        assert!(
            row.starts_with("{\"line\":"),
            "a JSON line glued to the progress line: {row:?}"
        );
    }
}

/// A stderr whose reader has gone (`2>&1 >frames | grep -m1 error`) loses the messages,
/// not the batch: every object is still fetched and framed, and the exit status still says
/// that lines failed.
#[test]
fn a_stderr_nobody_reads_does_not_end_the_batch() {
    use std::io::Write;
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 20);
    let corrupt = blobs.keys().next().unwrap().clone();
    // Fetched again, with a warning logged.
    reg.push_fault(&corrupt, Fault::CorruptByte(10));
    let mut lines: String = (0..50).map(|i| format!("bad!{i}\n")).collect();
    lines.push_str(&input(&blobs));
    let dist = Dist::new();
    let mut child = dist.start(&["fetch", &format!("{}/team/app", reg.host()), "-", "-j", "2"]);
    drop(child.stderr.take());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    let frames = parse_frames(&out.stdout);
    assert_eq!(frames.len(), 70);
    let fetched: BTreeMap<String, Vec<u8>> = frames
        .into_iter()
        .filter_map(|f| f.result.ok())
        .map(|(digest, _, body)| (digest, body))
        .collect();
    let missing: Vec<&String> = blobs
        .iter()
        .filter(|(d, data)| fetched.get(*d) != Some(*data))
        .map(|(d, _)| d)
        .collect();
    assert!(missing.is_empty(), "not framed whole: {missing:?}");
}

/// A usage error dist explains in its own words, with stderr's reader gone, is still a
/// usage error (status 2): written with `eprintln!`, it panicked with status 101.
#[test]
fn a_usage_error_with_stderr_gone_is_still_a_usage_error() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let dist = Dist::new();
    for args in [
        vec!["fetch", "127.0.0.1:1/lab/image:latest"],
        vec!["pull", "127.0.0.1:1/lab/image", "v1", "-o", "unused"],
    ] {
        // A pipe whose reader is gone before dist starts.
        let mut fds = [0; 2];
        // SAFETY: pipe(2) writes two descriptors into an array of two.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just created and are owned here alone.
        let (reader, writer) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(reader);
        let status = dist
            .command(&args)
            .stderr(std::process::Stdio::from(writer))
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}

/// A one-shot fetch into a file draws a meter on the terminal, as curl does, once it has
/// run for a second; a short one draws nothing, and `-q` silences it.
/// `dist fetch LOC -` with the terminal as its input waits for typed lines: it says so and
/// how to end them, and draws no progress line over what is being typed.
#[test]
fn a_worker_reading_a_terminal_says_so_and_draws_no_progress() {
    let reg = FakeRegistry::start();
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    // script(1) gives stdin and stderr the pseudo-terminal and ends the input (Ctrl-D)
    // when its own, empty, stdin does.
    let line = format!(
        "{} fetch {}/team/app - > {}",
        Dist::bin().display(),
        reg.host(),
        dir.path().join("out").display()
    );
    let shown = dist.on_terminal(&line);
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{screen:?}");
    assert!(
        screen.contains("reading objects from the terminal, one per line")
            && screen.contains("end with Ctrl-D"),
        "{screen:?}"
    );
    assert!(
        !screen.contains("in flight") && !screen.contains("0 failed"),
        "no progress line: {screen:?}"
    );
    // With --log-format json it is a JSON line too, as every other line on stderr is: it
    // was the one text line there.
    let err = dir.path().join("err");
    let line = format!(
        "{} --log-format json fetch {}/team/app - > {} 2> {}",
        Dist::bin().display(),
        reg.host(),
        dir.path().join("out").display(),
        err.display()
    );
    let shown = dist.on_terminal(&line);
    assert!(shown.status.success(), "{shown:?}");
    let said = std::fs::read(&err).unwrap();
    let lines = json_lines(&said);
    let notice = lines.iter().find(|l| {
        l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("reading objects from the terminal"))
    });
    let notice = notice.unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&said)));
    // Neither an error nor a warning: a log reader alerting on those is not woken by it.
    assert_eq!(notice["level"], "INFO", "{notice}");
}

/// The framed worker with stdout on the terminal refuses at once, as the one-shot fetch
/// refuses binary content there: frames of layers garbled the terminal. Nothing is read or
/// asked for, and the hint says how to get the objects.
#[test]
fn the_framed_worker_refuses_a_terminal_stdout() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 2);
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("in.txt");
    std::fs::write(&list, input(&blobs)).unwrap();
    let line = format!(
        "{} fetch {}/team/app - < {}",
        Dist::bin().display(),
        reg.host(),
        list.display()
    );
    let shown = dist.on_terminal(&line);
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(shown.status.code(), Some(2), "{screen:?}");
    assert!(
        screen.contains("not written to a terminal") && screen.contains("-o DIR"),
        "{screen:?}"
    );
    assert_eq!(reg.request_count(), 0, "the registry was asked");
    // Redirected, the same batch frames both objects.
    let frames = dir.path().join("frames");
    let shown = dist.on_terminal(&format!("{line} > {}", frames.display()));
    assert!(shown.status.success(), "{:?}", shown);
    assert_eq!(parse_frames(&std::fs::read(&frames).unwrap()).len(), 2);
}

#[test]
fn a_long_download_to_a_file_shows_a_meter() {
    let reg = FakeRegistry::start();
    let data = bytes(77, 3_000_000);
    let digest = reg.blob("team/app", &data);
    let small = reg.blob("team/app", b"small");
    // Paced at 1 MB/s: about three seconds, so several frames.
    reg.set_fault_for_every(
        &digest,
        Fault::Paced {
            bytes_per_sec: 1_000_000,
            first_byte: std::time::Duration::ZERO,
        },
    );
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    let on_terminal = |object: &str, flags: &str| {
        let line = format!(
            "{} fetch {flags} {}/team/app {object} > {}",
            Dist::bin().display(),
            reg.host(),
            file.display()
        );
        dist.on_terminal(&line)
    };
    let fetch = |object: &str, flags: &str| {
        let shown = on_terminal(object, flags);
        assert!(shown.status.success(), "{shown:?}");
        String::from_utf8_lossy(&shown.stdout).into_owned()
    };

    let screen = fetch(&digest, "");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        data,
        "the data goes to the file"
    );
    assert!(
        screen.contains(" of 3.0 MB ("),
        "a meter with the size: {screen:?}"
    );
    // A rate and the time left: "kB/s" when a loaded machine paces the fake below 1 MB/s.
    assert!(screen.contains("B/s, ETA 0:0"), "{screen:?}");
    assert!(screen.contains("3.0 MB in "), "a summary line: {screen:?}");

    assert_eq!(fetch(&digest, "-q"), "", "-q draws nothing");
    let logged = fetch(&digest, "-v");
    assert!(logged.contains("response"), "-v logs: {logged:?}");
    assert!(
        !logged.contains(" of 3.0 MB"),
        "no meter among log lines: {logged:?}"
    );
    assert_eq!(fetch(&small, ""), "", "a short download draws nothing");
    assert_eq!(std::fs::read(&file).unwrap(), b"small");

    // Cut short by --timeout: the message starts on a line of its own and nothing is
    // drawn after it.
    let shown = on_terminal(&digest, "--timeout 2s");
    assert_eq!(shown.status.code(), Some(124), "{shown:?}");
    let screen = String::from_utf8_lossy(&shown.stdout);
    let tail = screen.rsplit('\r').find(|s| !s.trim().is_empty()).unwrap();
    assert!(
        tail.contains("gave up after the --timeout") && !tail.contains(" of 3.0 MB"),
        "{screen:?}"
    );
}

/// An image reference pasted whole as the locator, with no object after it, gets the
/// spelling that works, not only clap's "required arguments were not provided".
#[test]
fn a_pasted_reference_alone_gets_the_spelling_that_works() {
    // Options with values around it too: their values were taken for words of the
    // command line, and clap's message came instead.
    for args in [
        vec!["fetch", "127.0.0.1:5000/lab/image:latest"],
        vec!["fetch", "127.0.0.1:5000/lab/image:latest", "latest"],
        vec![
            "--timeout",
            "5s",
            "fetch",
            "127.0.0.1:5000/lab/image:latest",
        ],
        vec!["fetch", "-j", "4", "127.0.0.1:5000/lab/image:latest"],
        vec!["fetch", "127.0.0.1:5000/lab/image:latest", "--retries", "3"],
    ] {
        let err = Dist::new().fails(2, &args, b"");
        assert!(
            err.contains("the tag or digest is the next argument: 127.0.0.1:5000/lab/image latest"),
            "{args:?}: {err}"
        );
    }
    // Missing the object of a plain locator is said as clap says it, with what to add.
    let out = Dist::new().run(&["fetch", "127.0.0.1:5000/lab/image"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<OBJECT>"));
}

/// The same for a layout: `oci:./dir:v1`, as `dist pull` takes it, alone after `fetch`
/// (given an object too, the layout check names the spelling).
#[test]
fn a_layout_reference_alone_gets_the_spelling_that_works() {
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for (locator, apart) in [
        ("oci:./app:v1".to_string(), "oci:./app v1".to_string()),
        (
            format!("oci:/srv/a:b/app@{d}"),
            format!("oci:/srv/a:b/app {d}"),
        ),
    ] {
        let err = Dist::new().fails(2, &["fetch", "-o", "out", &locator], b"");
        assert!(
            err.contains(&format!(
                "fetch takes the layout and the object apart: {apart}"
            )),
            "{locator}: {err}"
        );
    }
    let out = Dist::new().run(&["fetch", "oci:./app"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<OBJECT>"));
}

/// An image reference pasted as the locator before an object of its own: `-` (the worker)
/// or another tag or digest. The spelling said was the reference's own object
/// (`host/name v1`), which for the worker dropped its `-` (and fetched a manifest where
/// layers were piped in) and otherwise fetched another object than the one given. Now it
/// keeps the object given, before any network I/O (port 1 refuses) or directory created.
#[test]
fn a_pasted_reference_before_another_object_keeps_that_object() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("app");
    std::fs::create_dir(&layout).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        r#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    let layout = layout.to_str().unwrap();
    let out_dir = dir.path().join("out");
    let out = out_dir.to_str().unwrap();
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let on_layout = format!("oci:{layout}:v1");
    let on_layout_apart = format!("oci:{layout} -");
    let digest_apart = format!("127.0.0.1:1/lab/image {d}");
    for (args, apart) in [
        (
            vec!["fetch", "127.0.0.1:1/lab/image:v1", "-"],
            "127.0.0.1:1/lab/image -",
        ),
        (
            vec!["fetch", "http://127.0.0.1:1/lab/image:v1", "-", "-o", out],
            "http://127.0.0.1:1/lab/image -",
        ),
        (
            vec!["fetch", "127.0.0.1:1/lab/image:v1", d, "-o", out],
            &digest_apart,
        ),
        (vec!["fetch", &on_layout, "-"], &on_layout_apart),
    ] {
        let err = Dist::new().fails(2, &args, b"v1\n");
        assert!(
            err.trim_end().ends_with(&format!(": {apart}")),
            "{args:?}: {err}"
        );
        assert!(!err.contains("connect"), "{args:?}: {err}");
    }
    assert!(!out_dir.exists());
}

/// `dist pull` and `dist resolve` take one reference; the tag written apart, as `dist fetch`
/// takes it, gets the joined spelling, before any network I/O (port 1 refuses) and without
/// creating the output directory.
#[test]
fn a_tag_written_apart_from_a_reference_gets_the_joined_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out_path = out_dir.to_str().unwrap();
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for (args, joined) in [
        (
            vec!["pull", "127.0.0.1:1/lab/image", "v1", "-o", out_path],
            "(127.0.0.1:1/lab/image:v1)".to_string(),
        ),
        (
            vec!["resolve", "127.0.0.1:1/lab/image", d],
            format!("(127.0.0.1:1/lab/image@{d})"),
        ),
    ] {
        let err = Dist::new().fails(2, &args, b"");
        assert!(
            err.contains(&format!("takes one image reference, its tag or digest joined to the name with ':' or '@' {joined}")),
            "{args:?}: {err}"
        );
        assert!(!err.contains("connect"), "{err}");
    }
    assert!(!out_dir.exists());
}

/// A second word after a reference that names its tag or digest already is no tag written
/// apart: `pull host/a:v1 v2` was told to write `host/a:v1:v2`, and `pull host/a@sha256:… v2`
/// `host/a@sha256:…:v2`, neither of which parses (and `oci:./a:v1:v2` is another
/// directory's tag). Two whole references (`pull host/a:v1 host/a:v2`, a mirroring job's
/// list given to one run) were only clap's `unexpected argument`. Each is told that the
/// command takes one image per run, before any network I/O and without creating `-o DIR`.
#[test]
fn a_second_reference_after_a_whole_one_is_told_one_image_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out_path = out_dir.to_str().unwrap();
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let by_digest = format!("127.0.0.1:1/lab/image@{d}");
    for args in [
        vec!["pull", "127.0.0.1:1/lab/image:v1", "v2", "-o", out_path],
        vec!["pull", &by_digest, "v2", "-o", out_path],
        vec!["resolve", "127.0.0.1:1/lab/image:v1", "v2"],
        vec!["pull", "oci:./lab:v1", "v2", "-o", out_path],
        vec![
            "pull",
            "127.0.0.1:1/lab/image:v1",
            "127.0.0.1:1/lab/image:v2",
            "-o",
            out_path,
        ],
    ] {
        let err = Dist::new().fails(2, &args, b"");
        assert!(!err.contains("joined to the name"), "{args:?}: {err}");
        assert!(
            err.contains(&format!("{} takes one image reference", args[0]))
                && err.contains("one image per run"),
            "{args:?}: {err}"
        );
        assert!(err.contains(args[2]), "{args:?}: {err}");
        assert!(!err.contains("connect"), "{err}");
    }
    assert!(!out_dir.exists());
}

/// The joined spelling is no place to show credentials typed into the reference: the
/// password went to stderr (a CI log) whole, where every other message of dist leaves it out.
#[test]
fn a_tag_written_apart_from_a_reference_with_credentials_does_not_show_them() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    for args in [
        vec![
            "pull",
            "https://user:s3cret@127.0.0.1:1/lab/image",
            "v1",
            "-o",
            out_dir.to_str().unwrap(),
        ],
        vec!["resolve", "user:s3cret@127.0.0.1:1/lab/image", "v1"],
    ] {
        let err = Dist::new().fails(2, &args, b"");
        assert!(!err.contains("s3cret"), "{args:?}: {err}");
        assert!(
            err.contains("credentials do not go here"),
            "{args:?}: {err}"
        );
    }
    assert!(!out_dir.exists());
}

/// A command line clap refuses is explained from the arguments as the OS gave them, which
/// need not be UTF-8 (a path in Latin-1): read as strings, they panicked with status 101.
#[test]
fn a_refused_command_line_with_a_path_that_is_not_utf8_is_explained() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join(OsStr::from_bytes(b"caf\xe9"));
    let out_dir = out_dir.as_os_str();
    let with_output = |words: &[&'static str]| -> Vec<&OsStr> {
        let mut args: Vec<&OsStr> = words.iter().map(|w| OsStr::new(*w)).collect();
        args.extend([OsStr::new("-o"), out_dir]);
        args
    };
    let tag_apart = with_output(&["pull", "127.0.0.1:1/lab/image", "v1"]);
    let no_object = with_output(&["fetch", "127.0.0.1:1/lab/image"]);
    for (args, said) in [
        (tag_apart, "(127.0.0.1:1/lab/image:v1); got \"v1\" after it"),
        (no_object, "<OBJECT>"),
    ] {
        let out = Dist::new().command(&[]).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
    }
}

#[test]
fn quiet_drops_per_object_messages_but_not_the_exit_status() {
    let reg = FakeRegistry::start();
    let repo = format!("{}/team/app", reg.host());
    let loud = Dist::new().run(&["fetch", &repo, "-"], b"sha256:bad\n");
    assert_eq!(loud.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&loud.stderr).contains("line 1"));
    let quiet = Dist::new().run(&["fetch", "-q", &repo, "-"], b"sha256:bad\n");
    assert_eq!(quiet.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
    assert!(String::from_utf8_lossy(&quiet.stdout).contains("sha256:bad error"));
    // A retry's warning is a per-object message too.
    let digest = reg.blob("team/app", bytes(3, 5000));
    let line = format!("{digest}\n");
    let run = |args: &[&str]| {
        reg.push_fault(&digest, Fault::CorruptByte(10));
        let out = Dist::new().run(args, line.as_bytes());
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["fetch", &repo, "-"]).contains("dist: warning: "));
    assert_eq!(run(&["fetch", "-q", &repo, "-"]), "");
}

/// At the default verbosity, a warning of the library's (content fetched again) reads as
/// the command's own do, on one line: a batch's stderr had `dist: line 2: …` beside
/// `2026-12-06T02:00:00.123Z  WARN content did not verify; fetching again object=…`.
/// Asked for with `-v`, the log stays a log, stamped and levelled; JSON stays JSON.
#[test]
fn a_library_warning_reads_as_dists_own_messages() {
    let reg = FakeRegistry::start();
    let repo = format!("{}/team/app", reg.host());
    let digest = reg.blob("team/app", bytes(3, 5000));
    let input = format!("{digest}\nsha256:bad\n");
    let run = |args: &[&str]| {
        reg.push_fault(&digest, Fault::CorruptByte(10));
        let out = Dist::new().run(args, input.as_bytes());
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["fetch", &repo, "-"]);
    let said =
        format!("dist: warning: content did not verify; fetching again (object={digest}, error=");
    assert!(err.contains(&said), "{err}");
    for l in err.lines() {
        assert!(
            l.starts_with("dist: "),
            "a line in another style: {l:?}\n{err}"
        );
    }
    let verbose = run(&["-v", "fetch", &repo, "-"]);
    let logged = verbose
        .lines()
        .find(|l| l.contains("content did not verify"))
        .unwrap_or_else(|| panic!("{verbose}"));
    assert!(
        logged.contains(" WARN ") && logged.contains(&format!("object={digest}")),
        "{logged}"
    );
    let json = run(&["--log-format", "json", "fetch", &repo, "-"]);
    let logged = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["fields"]["message"] == "content did not verify; fetching again")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(logged["level"], "WARN", "{json}");
    assert_eq!(logged["fields"]["object"], digest.as_str(), "{json}");
}

#[test]
fn json_logs_parse_and_never_carry_secrets() {
    let reg = FakeRegistry::builder()
        .auth(Auth::basic("alice", "correct-horse-battery"))
        .start();
    let blobs = fill(&reg, 3);
    let dist = Dist::new();
    dist.login(&reg.host(), "alice", "correct-horse-battery");
    let mut dist = dist;
    dist.env("RUST_LOG", "trace");
    // One object is missing: its error is a message of the CLI's own, not a log line,
    // and must parse as JSON too.
    let missing = format!("sha256:{}", "0".repeat(64));
    let out = dist.run(
        &[
            "fetch",
            "--log-format",
            "json",
            &format!("{}/team/app", reg.host()),
            "-",
        ],
        format!("{}{missing}\n", input(&blobs)).as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines = 0;
    let mut told = false;
    for l in stderr.lines() {
        let v = serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"));
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        told |= message.contains(&missing) && message.contains("404");
        // dist's own messages are stamped as the log lines are.
        let stamp = v["timestamp"].as_str().unwrap_or_default();
        assert!(
            stamp.len() > 20 && stamp.ends_with('Z'),
            "no timestamp: {l}"
        );
        lines += 1;
    }
    assert!(told, "the missing object's error, as JSON: {stderr}");
    assert!(lines > 5, "trace logging produced lines: {lines}");
    let encoded = base64::engine::general_purpose::STANDARD.encode("alice:correct-horse-battery");
    assert!(
        !stderr.contains("correct-horse-battery"),
        "password in logs"
    );
    assert!(!stderr.contains(&encoded), "Basic credential in logs");
}

/// With `--log-format json`, a command line dist refuses is a JSON line too, on one line
/// and in the words of text mode: clap's errors, and dist's own explanations of them, were
/// text whatever the format asked for, and broke a reader parsing every line.
#[test]
fn usage_errors_are_json_lines_with_log_format_json() {
    for (args, said) in [
        (
            vec!["--log-format", "json", "fetch", "127.0.0.1:1/a/b"],
            "<OBJECT>",
        ),
        (
            vec!["--log-format=json", "fecth", "127.0.0.1:1/a/b", "v1"],
            "'fecth'",
        ),
        (
            vec![
                "fetch",
                "-j",
                "0",
                "--log-format",
                "json",
                "127.0.0.1:1/a/b",
                "-",
            ],
            "from 1 to 1024",
        ),
        (
            vec!["--log-format", "json", "fetch", "127.0.0.1:1/a/b:v1"],
            "next argument: 127.0.0.1:1/a/b v1",
        ),
        (
            vec![
                "--log-format",
                "json",
                "pull",
                "127.0.0.1:1/a/b",
                "v1",
                "-o",
                "x",
            ],
            "(127.0.0.1:1/a/b:v1)",
        ),
    ] {
        let err = Dist::new().fails(2, &args, b"");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("{args:?}: not JSON: {err}: {e}"));
        assert_eq!(v["level"], "ERROR", "{err}");
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("dist: ") && message.contains(said),
            "{err}"
        );
        assert!(
            !message.contains("error:") && !message.contains("Usage"),
            "{err}"
        );
    }
    let mut dist = Dist::new();
    dist.env("DIST_FETCH_TIMEOUT", "soon");
    let out = dist.run(
        &["--log-format", "json", "fetch", "127.0.0.1:1/a/b", "v1"],
        b"",
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(v["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("DIST_FETCH_TIMEOUT"));
}

#[test]
fn shards_cover_every_object_exactly_once() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 120);
    let mut text = input(&blobs);
    text.push_str("not-a-digest!\n");
    let repo = format!("{}/team/app", reg.host());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut bad_reports = 0;
    for k in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let shard = format!("{k}/4");
        let out = Dist::new().run(
            &[
                "fetch",
                &repo,
                "-",
                "--shard",
                &shard,
                "-o",
                dir.path().to_str().unwrap(),
            ],
            text.as_bytes(),
        );
        for v in json_lines(&out.stdout) {
            if v["status"] == "error" {
                bad_reports += 1;
                continue;
            }
            *seen
                .entry(v["digest"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        let share = seen.values().sum::<usize>();
        assert!(share > 0, "shard {shard} fetched something");
    }
    assert_eq!(seen.len(), 120);
    assert!(seen.values().all(|&n| n == 1), "each object exactly once");
    assert_eq!(bad_reports, 1, "a bad line is reported by one shard only");
    assert_eq!(
        reg.request_count() - 4,
        120,
        "one request per object across shards, plus one check each"
    );
}

#[test]
fn completions_and_manual_come_from_the_real_options() {
    let dist = Dist::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = String::from_utf8(dist.ok(&["completions", shell])).unwrap();
        assert!(
            script.contains("fetch") && script.contains("shard"),
            "{shell}"
        );
    }
    let man = String::from_utf8(dist.ok(&["man"])).unwrap();
    assert!(man.contains(".TH dist 1"));
    // The environment the tool reads is documented where users look for it: every
    // variable README says dist reads, `SSL_CERT_DIR` beside `SSL_CERT_FILE` and the
    // `TMPDIR` that framed output spools to among them.
    let help = String::from_utf8(dist.ok(&["--help"])).unwrap();
    for name in [
        "HTTPS_PROXY",
        "NO_PROXY",
        "REGISTRY_AUTH_FILE",
        "DOCKER_CONFIG",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "TMPDIR",
        "DIST_HOSTS_DIR",
        "DIST_FETCH_TIMEOUT",
        "RUST_LOG",
        "NO_COLOR",
        "CLICOLOR_FORCE",
        "REQUEST_METHOD",
    ] {
        assert!(help.contains(name), "--help names {name}");
        assert!(man.contains(name), "the manual names {name}");
    }
    // `TERM=dumb` turns the progress line off; "TERM" alone is also in SIGTERM.
    assert!(help.contains("\n  TERM "), "--help names TERM");
    assert!(man.contains("\\fBTERM\\fR"), "the manual names TERM");
    // Every subcommand in the one page `dist man` writes, referring to no other.
    assert!(man.contains(".SH \"DIST FETCH\""));
    assert!(!man.contains("dist\\-fetch(1)"));
    assert!(man.contains("shard"));
    // So are the exit statuses scripts branch on: 75, "try again later", among them (the
    // worker's and pull's since they tell an outage from content that is gone).
    for status in ["124", "130, 143", "75"] {
        assert!(
            help.contains(status),
            "--help explains exit status {status}"
        );
        assert!(
            man.contains(status),
            "the manual explains exit status {status}"
        );
    }
}

/// `jq '.layers[].digest'` without `-r` prints each digest in quotes: the line is the
/// user's object, quoted, and its error says to drop the quotes (`jq -r`), where it said
/// `malformed algorithm` for a digest and `neither a digest nor a tag` for a tag. The
/// batch goes on with the next line, and nothing is asked of the registry for either; a
/// one-shot fetch of a quoted object is a usage error that says the same.
#[test]
fn a_quoted_object_is_told_to_go_without_its_quotes() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", b"x");
    let repo = format!("{}/team/app", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let input = format!("\"{digest}\"\n\"v1\" size:3\n{digest}\n");
    let out = Dist::new().run(
        &[
            "fetch",
            &repo,
            "-",
            "-o",
            out_dir.to_str().unwrap(),
            "--ordered",
        ],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines[..2] {
        assert_eq!(line["status"], "error", "{line}");
        let error = line["error"].as_str().unwrap();
        assert!(error.contains("without its quotes"), "{error}");
        assert!(error.contains("jq -r"), "{error}");
    }
    assert!(lines[0]["error"].as_str().unwrap().contains(&digest));
    assert_eq!(lines[2]["status"], "ok");
    assert_eq!(reg.requests_for(&digest), 1);
    // The one-shot fetch of `$(jq .config.digest m.json)`, without `-r`, too.
    let quoted = format!("\"{digest}\"");
    let out = Dist::new().run(&["fetch", &repo, &quoted], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without its quotes") && err.contains("jq -r"),
        "{err}"
    );
    assert_eq!(reg.requests_for(&digest), 1);
}

/// The manual's environment variables and exit statuses are entries of sections of their
/// own, as man pages have them: they were `--help`'s aligned table put in an `EXTRA`
/// section as text, which roff fills, so `man dist` ran the columns together and wrapped
/// a description under the next variable's name.
#[test]
fn the_manual_lists_the_environment_and_exit_statuses_as_entries() {
    let man = String::from_utf8(Dist::new().ok(&["man"])).unwrap();
    assert!(!man.contains(".SH EXTRA"), "{man}");
    let section = |name: &str| {
        let start = man
            .find(&format!(".SH {name}\n"))
            .unwrap_or_else(|| panic!("no section {name}: {man}"));
        let rest = &man[start + 1..];
        rest[..rest.find("\n.SH ").unwrap_or(rest.len())].to_string()
    };
    let env = section("ENVIRONMENT");
    for name in ["DOCKER_CONFIG", "NO_PROXY", "RUST_LOG"] {
        assert!(env.contains(&format!(".TP\n\\fB{name}\\fR\n")), "{env}");
    }
    // A description that goes on over lines is one paragraph, the name not in it.
    assert!(
        env.contains("\\fBREGISTRY_AUTH_FILE\\fR\na credentials file asked before Docker"),
        "{env}"
    );
    let status = section("\"EXIT STATUS\"");
    for code in ["0", "1", "2", "124", "130, 143", "129"] {
        assert!(
            status.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "{status}"
        );
    }
    // Status 1 of `pull` and `resolve` is also a reference that does not resolve (or no
    // platform that matches), which "an object failed" left for the README to say.
    let one = &status[status.find("\\fB1\\fR").unwrap()..];
    let one = &one[..one.find(".TP").unwrap()];
    assert!(
        one.contains("does not resolve") && one.contains("platform"),
        "{one}"
    );
    // No line of text starts with blanks, which roff takes as a break and then fills.
    for roff in [&env, &status] {
        assert!(!roff.lines().any(|l| l.starts_with(' ')), "{roff}");
    }
}

/// An option where it does nothing is a usage error at once, before any request: the
/// worker's options on a one-shot fetch to stdout, hints after `-`.
#[test]
fn misplaced_options_are_refused_not_ignored() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", b"x");
    let repo = format!("{}/team/app", reg.host());
    let dist = Dist::new();
    let out = dist.run(&["fetch", &repo, &digest, "--report", "r.jsonl"], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--report applies to many objects"), "{err}");
    // The one-shot fetch has no pool to bound; `--range-streams` is what splits one object.
    for jobs in [&["-j", "8"][..], &["--jobs=8"]] {
        let mut args = vec!["fetch", &repo, &digest];
        args.extend(jobs);
        let out = dist.run(&args, b"");
        assert_eq!(out.status.code(), Some(2), "{jobs:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--jobs applies to many objects"), "{err}");
        assert!(err.contains("--range-streams"), "{err}");
    }
    let out = dist.run(
        &["fetch", &repo, "-", "size:1"],
        format!("{digest}\n").as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hints go on each input line"), "{err}");
    assert_eq!(reg.request_count(), 0);
}

/// `dist ARGS…` run with its stdout on `/dev/full`, where every write fails (`ENOSPC`).
fn run_onto_a_full_disk(dist: &Dist, args: &[&str]) -> std::process::Output {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    dist.command(args)
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

/// Output that cannot be written (a full disk: `/dev/full`) is an error that says so; for
/// `resolve`, whose status 1 also means "does not resolve", the message tells them apart.
/// Help and version text too: clap drops a failed write of them and exits 0.
#[test]
fn a_stdout_that_cannot_be_written_says_so() {
    let reg = FakeRegistry::start();
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    reg.manifest(
        "team/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        manifest,
    );
    let reference = format!("{}/team/app:v1", reg.host());
    let dist = Dist::new();
    let cases = [
        vec!["resolve", reference.as_str()],
        vec!["man"],
        vec!["--help"],
        vec!["fetch", "-h"],
        vec!["help", "pull"],
        vec!["--version"],
    ];
    for args in cases {
        let out = run_onto_a_full_disk(&dist, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            err.contains("dist: writing to stdout: No space left on device"),
            "{args:?}: {err}"
        );
    }
}

/// `dist pull`'s JSON lines that cannot be written (a full disk: `/dev/full`) are said as
/// stdout's, as every other command's output is: "writing the JSON lines" named no place,
/// beside a `--report` file that may as well have been the one failing.
#[test]
fn a_pulls_stdout_that_cannot_be_written_says_so() {
    let reg = FakeRegistry::start();
    image_without_layers(&reg);
    let reference = format!("{}/team/app:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let out = run_onto_a_full_disk(
        &Dist::new(),
        &["pull", &reference, "-o", layout.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let said = "dist: writing to stdout: No space left on device";
    assert_eq!(err.matches(said).count(), 1, "{err}");
}

/// Puts `team/app:v1` on `reg`: an OCI manifest with a config and no layers. Returns the
/// config's digest.
fn image_without_layers(reg: &FakeRegistry) -> String {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = reg.blob("team/app", config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    reg.manifest("team/app", "v1", manifest_type, manifest.as_bytes());
    config_digest
}

/// A stdout open read-only (`1<file`) or closed (`>&-`) takes nothing: every command says
/// so and fails, as `cat` and `curl` do. Rust's own stdout counts a write there (`EBADF`,
/// or /dev/null, which Rust's runtime opens in place of a closed descriptor 1) as done,
/// and dist exited 0 with the object, the worker's frames and pull's JSON lines gone
/// nowhere.
#[test]
fn a_stdout_that_takes_nothing_is_an_error_not_a_success() {
    let reg = FakeRegistry::start();
    let config_digest = image_without_layers(&reg);
    let repo = format!("{}/team/app", reg.host());
    let reference = format!("{repo}:v1");
    let dir = tempfile::tempdir().unwrap();
    let read_only = dir.path().join("read-only");
    std::fs::write(&read_only, "").unwrap();
    let layout = dir.path().join("layout");
    let layout = layout.to_str().unwrap();
    let dist = Dist::new();
    let bad = "Bad file descriptor";
    let cases = [
        (
            vec!["fetch", &repo, "v1"],
            String::new(),
            format!("dist: v1: writing to stdout: {bad}"),
        ),
        (
            vec!["fetch", &repo, "-"],
            format!("{config_digest}\n"),
            format!("dist: writing to stdout: {bad}"),
        ),
        (
            vec!["pull", &reference, "-o", layout],
            String::new(),
            format!("dist: writing to stdout: {bad}"),
        ),
        (
            vec!["resolve", &reference],
            String::new(),
            format!("dist: writing to stdout: {bad}"),
        ),
    ];
    for closed in [false, true] {
        for (args, input, said) in &cases {
            let command = dist.command(args);
            let out = with_stdout_unusable(command, closed, &read_only, input.as_bytes());
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{args:?}, closed {closed}: {err}"
            );
            assert!(err.contains(said), "{args:?}, closed {closed}: {err}");
        }
    }
}

/// A usage error is status 2 and said, whatever stdout is: with a stdout that takes
/// nothing as well, the worker and `pull` exited 1 saying only that stdout took nothing,
/// and the mistake in the command line (a `-o DIR` that cannot be a layout, `--report -`,
/// a malformed locator) went unsaid until it was fixed. No layout is left behind.
#[test]
fn a_usage_error_is_said_before_a_stdout_that_takes_nothing() {
    let reg = FakeRegistry::start();
    let config_digest = image_without_layers(&reg);
    let repo = format!("{}/team/app", reg.host());
    let reference = format!("{repo}:v1");
    let dir = tempfile::tempdir().unwrap();
    let read_only = dir.path().join("read-only");
    std::fs::write(&read_only, "").unwrap();
    let under_a_file = read_only.join("layout");
    let under_a_file = under_a_file.to_str().unwrap();
    let layout = dir.path().join("layout");
    let l = layout.to_str().unwrap();
    let bad_locator = format!("{}/Team/app", reg.host());
    let not_a_dir = "cannot be a directory for an OCI image layout";
    let report_stdout = "--report -: stdout already carries the output";
    let cases = [
        (vec!["fetch", &repo, "-", "-o", under_a_file], not_a_dir),
        (vec!["pull", &reference, "-o", under_a_file], not_a_dir),
        (
            vec!["fetch", &repo, "-", "-o", l, "--report", "-"],
            report_stdout,
        ),
        (
            vec!["pull", &reference, "-o", l, "--report", "-"],
            report_stdout,
        ),
        (vec!["fetch", &bad_locator, "-", "-o", l], "invalid locator"),
    ];
    let dist = Dist::new();
    let input = format!("{config_digest}\n");
    for closed in [false, true] {
        for (args, said) in &cases {
            let command = dist.command(args);
            let out = with_stdout_unusable(command, closed, &read_only, input.as_bytes());
            let err = String::from_utf8_lossy(&out.stderr);
            let case = format!("{args:?}, closed {closed}: {err}");
            assert_eq!(out.status.code(), Some(2), "{case}");
            assert!(err.contains(said), "{case}");
            assert!(!layout.exists(), "a layout was left: {case}");
        }
    }
}

/// Runs `command` with its stdout closed (`>&-`) if `closed`, else open read-only on
/// `read_only` (`1<file`), feeding it `input`; a command that stops before reading its
/// input may leave some of it unwritten.
fn with_stdout_unusable(
    mut command: std::process::Command,
    closed: bool,
    read_only: &std::path::Path,
    input: &[u8],
) -> std::process::Output {
    if closed {
        // SAFETY: only close(2), async-signal-safe, runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::close(libc::STDOUT_FILENO);
                Ok(())
            });
        }
    } else {
        command.stdout(std::fs::File::open(read_only).unwrap());
    }
    let mut child = Running::new(
        command
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    use std::io::Write as _;
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

/// A bad line's object is reported as written: in the JSON report as it is, in a frame's
/// header with its white space and control characters as `_`. A descriptor whose `digest`
/// held a space was reported as `-` in both, as if it named none, where a one-word one
/// (an `ESC` and all) kept its text.
#[test]
fn a_bad_descriptor_s_digest_is_reported_as_written() {
    let reg = FakeRegistry::start();
    let repo = format!("{}/team/app", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.jsonl");
    let input = "{\"digest\":\"sha256:a b\",\"size\":3}\n\
                 {\"digest\":\"sha256:a\\u001bb\",\"size\":3}\n";
    let out = Dist::new().run(
        &["fetch", &repo, "-", "--report", report.to_str().unwrap()],
        input.as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let objects: Vec<_> = json_lines(&std::fs::read(&report).unwrap())
        .into_iter()
        .map(|v| v["object"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(objects, ["sha256:a b", "sha256:a\u{1b}b"], "{err}");
    let frames = String::from_utf8_lossy(&out.stdout);
    assert!(frames.starts_with("sha256:a_b error "), "{frames:?}");
    assert!(frames.contains("\nsha256:a_b error "), "{frames:?}");
}

/// A pull's JSON lines go to stdout, as the worker's do: with a stdout that takes nothing
/// (closed, `>&-`, or open read-only, `1<file`) the run is refused before it asks the
/// registry or writes anything. A pull stored the image's index blob and an empty
/// `index.json`, a layout half-made, and failed at its first JSON line; the worker
/// fetched and stored every object first.
#[test]
fn a_run_whose_stdout_takes_nothing_leaves_no_layout() {
    let reg = FakeRegistry::start();
    let config_digest = image_without_layers(&reg);
    let reference = format!("{}/team/app:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let read_only = dir.path().join("read-only");
    std::fs::write(&read_only, "").unwrap();
    let layout = dir.path().join("layout");
    let o = layout.to_str().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let cases = [
        (vec!["pull", &reference, "-o", o], "writing to stdout"),
        // The worker's JSON lines too: it stored every object, then failed.
        (vec!["fetch", &repo, "-", "-o", o], "writing to stdout"),
    ];
    for ((args, what), closed) in cases.iter().flat_map(|c| [(c, true), (c, false)]) {
        let command = Dist::new().command(args);
        let line = format!("{config_digest}\n");
        let out = with_stdout_unusable(command, closed, &read_only, line.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} closed {closed}: {err}"
        );
        let said = format!("dist: {what}: Bad file descriptor");
        assert_eq!(
            err.matches(&said).count(),
            1,
            "{args:?} closed {closed}: {err}"
        );
        assert!(
            !layout.exists(),
            "{args:?} closed {closed}: a layout was made"
        );
        assert_eq!(reg.request_count(), 0, "{args:?} closed {closed}");
    }
}

/// A pull whose stdout is a pipe its reader has left already (`dist pull … | true`, the
/// reader done first) leaves no layout either: it is stopped as a reader that goes away
/// mid-pull stops it, before anything is stored.
#[test]
fn a_pull_whose_reader_is_gone_at_the_start_leaves_no_layout() {
    let reg = FakeRegistry::start();
    image_without_layers(&reg);
    let reference = format!("{}/team/app:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let args = ["pull", &reference, "-o", layout.to_str().unwrap()];
    for _ in 0..5 {
        let (read, write) = std::io::pipe().unwrap();
        drop(read);
        let out = Dist::new()
            .command(&args)
            .stdin(std::process::Stdio::null())
            .stdout(write)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(!layout.exists(), "a layout was made: {err}");
    }
}

/// A pull or a batch whose `--report` cannot be written (a full disk: `/dev/full`) says
/// that of the report, once, naming the file: it was said as "writing the JSON lines",
/// stdout's, and then again; and as "writing the report", which left a job with several
/// files to find which one.
#[test]
fn a_report_that_cannot_be_written_is_named_once() {
    let reg = FakeRegistry::start();
    let config = image_without_layers(&reg);
    let reference = format!("{}/team/app:v1", reg.host());
    let repo = format!("{}/team/app", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let l = layout.to_str().unwrap();
    let line = format!("{config}\n");
    for (args, stdin) in [
        (
            vec!["pull", &reference, "-o", l, "--report", "/dev/full"],
            "",
        ),
        (
            vec!["fetch", &repo, "-", "-o", l, "--report", "/dev/full"],
            &line,
        ),
    ] {
        let err = Dist::new().fails(1, &args, stdin.as_bytes());
        let said = "dist: writing the report /dev/full: No space left on device";
        assert_eq!(err.matches(said).count(), 1, "{args:?}: {err}");
        assert!(!err.contains("JSON lines"), "{args:?}: {err}");
    }
}

/// A pull whose objects failed only for the moment (a 503 past the retries, a connection
/// closed unanswered) exits 75 (`EX_TEMPFAIL`), as the worker's batch does: it exited 1,
/// as for an object that is gone, which a cron job could not tell from it. A line that
/// could not be written (stdout or `--report` on a full disk) makes it 1, as a failed
/// write does: `max` kept the 75.
#[test]
fn a_pull_that_failed_only_for_the_moment_exits_75() {
    for fault in [Fault::Status(503), Fault::CloseUnanswered] {
        let reg = FakeRegistry::start();
        let config = image_without_layers(&reg);
        reg.set_fault_for_every(&config, fault.clone());
        let reference = format!("{}/team/app:v1", reg.host());
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        let l = layout.to_str().unwrap();
        let err = Dist::new().fails(75, &["--retries", "0", "pull", &reference, "-o", l], b"");
        assert!(err.contains(&config), "{fault:?}: {err}");
        let args = [
            "--retries",
            "0",
            "pull",
            &reference,
            "-o",
            l,
            "--report",
            "/dev/full",
        ];
        let err = Dist::new().fails(1, &args, b"");
        assert!(err.contains("/dev/full"), "{fault:?}: {err}");
        let out = run_onto_a_full_disk(
            &Dist::new(),
            &["--retries", "0", "pull", &reference, "-o", l],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{fault:?}: {err}");
    }
}

/// A config or layer a pull fails on is said on stderr, once, and its JSON line says why,
/// in the report file as on stdout: the error was dropped on its way to the line unless
/// an index named the object's platform, and the pull exited 1 without a word.
#[test]
fn a_pulls_failed_blob_is_said_and_reported() {
    let reg = FakeRegistry::start();
    let config_digest = image_without_layers(&reg);
    reg.set_fault_for_every(&config_digest, Fault::Status(404));
    let reference = format!("{}/team/app:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let (layout, report) = (dir.path().join("layout"), dir.path().join("report.jsonl"));
    let args = [
        "pull",
        &reference,
        "-o",
        layout.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    let out = Dist::new().run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let said = format!("/blobs/{config_digest}: registry answered 404");
    assert_eq!(err.matches(&said).count(), 1, "{err}");
    let failed: Vec<_> = json_lines(&out.stdout)
        .into_iter()
        .filter(|v| v["status"] == "error")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let why = failed[0]["error"].as_str().unwrap_or_default();
    assert!(why.contains(&said), "{failed:?}");
    assert!(err.contains(why), "stderr says what the line says: {err}");
    assert_eq!(std::fs::read(&report).unwrap(), out.stdout);
}

/// A registry that passes the check before a pull and then breaks on the tag (every
/// connection closed unanswered, past the retries) is status 75, for the moment, for
/// `pull` as for `resolve`, in the same words: it was 1, an image that is not there, for
/// `pull` alone (and then 2 for both, which retrying cannot cure).
#[test]
fn a_registry_broken_at_the_tag_is_status_75_for_pull_as_for_resolve() {
    let reg = FakeRegistry::start();
    image_without_layers(&reg);
    reg.set_fault_for_every("manifests/v1", Fault::CloseUnanswered);
    let reference = format!("{}/team/app:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let said = |args: &[&str]| {
        let out = Dist::new().run(args, b"");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(75), "{args:?}: {err}");
        err
    };
    let resolved = said(&["--retries", "1", "resolve", &reference]);
    let pulled = said(&[
        "--retries",
        "1",
        "pull",
        &reference,
        "-o",
        layout.to_str().unwrap(),
    ]);
    assert!(resolved.contains("/manifests/v1: "), "{resolved}");
    assert_eq!(resolved, pulled);
}

/// A non-distributable layer a pull leaves out is a warning on stderr (`WARN` in JSON), not
/// an error: the pull succeeds without it, and it was said at level `ERROR`.
#[test]
fn a_skipped_foreign_layer_is_a_warning() {
    let reg = FakeRegistry::start();
    let config = br#"{"architecture":"amd64","os":"windows"}"#;
    let config_digest = reg.blob("team/app", config);
    let foreign = format!("sha256:{}", "f".repeat(64));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"{foreign}","size":5,"urls":["https://example.invalid/layer"]}}]}}"#,
        config.len()
    );
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    reg.manifest("team/app", "v1", manifest_type, manifest.as_bytes());
    let reference = format!("{}/team/app:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let layout = layout.to_str().unwrap();
    let text = Dist::new().run(&["pull", &reference, "-o", layout], b"");
    let err = String::from_utf8_lossy(&text.stderr);
    assert_eq!(text.status.code(), Some(0), "{err}");
    let said = format!("dist: warning: {foreign}: non-distributable layer, not fetched");
    assert!(err.contains(&said), "{err}");
    let json = Dist::new().run(
        &["--log-format", "json", "pull", &reference, "-o", layout],
        b"",
    );
    let err = String::from_utf8_lossy(&json.stderr);
    let skip = err
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["fields"]["message"].as_str().unwrap().contains(&foreign))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(skip["level"], "WARN", "{err}");
}

/// As curl does, binary content is not dumped on a terminal; text is, and anything goes to
/// a file or pipe.
#[test]
fn binary_content_is_not_written_to_a_terminal() {
    let reg = FakeRegistry::start();
    let binary = reg.blob("team/app", b"\x1f\x8b\x08\x00\x00\x00\x00\x00layer");
    let text = reg.blob("team/app", br#"{"architecture":"amd64"}"#);
    let dist = Dist::new();
    let fetch = |digest: &str| {
        format!(
            "{} fetch {}/team/app {digest}",
            Dist::bin().display(),
            reg.host()
        )
    };
    let shown = dist.on_terminal(&fetch(&binary));
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(shown.status.code(), Some(2), "{screen}");
    assert!(screen.contains("not written to a terminal"), "{screen}");
    assert!(!screen.contains("layer"), "{screen}");

    let shown = dist.on_terminal(&fetch(&text));
    assert!(shown.status.success());
    assert!(String::from_utf8_lossy(&shown.stdout).contains(r#"{"architecture":"amd64"}"#));

    let piped = dist.run(
        &["fetch", &format!("{}/team/app", reg.host()), &binary],
        b"",
    );
    assert!(piped.status.success());
    assert!(piped.stdout.ends_with(b"layer"));
}

/// `-o DIR` on a directory with an `index.json` of its own (a web project's) is refused
/// before anything is fetched or written, by the worker and by `pull`: merging image
/// entries into that file would leave neither a layout nor the user's file.
#[test]
fn a_directory_that_is_not_a_layout_is_left_alone() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 3);
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let theirs = r#"{"name":"my web app","version":"1.0.0"}"#;
    std::fs::write(dir.path().join("index.json"), theirs).unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let pull_ref = format!("{repo}:latest");
    let lines = input(&blobs);
    let said = ["is not an OCI image layout: its index.json is not an OCI image index"];
    refused_by_worker_and_pull(&dist, (&repo, &lines), &pull_ref, out_dir, &said, |args| {
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["index.json"], "{args:?}");
        let kept = std::fs::read_to_string(dir.path().join("index.json")).unwrap();
        assert_eq!(kept, theirs);
    });
    assert_eq!(reg.requests().len(), 0, "nothing was fetched");
}

/// Runs the worker on `worker.0`, fed the lines `worker.1`, and `pull` of `pull_ref`,
/// each with `-o out_dir`: both must be refused as usage errors whose message holds each
/// of `said`; `after` checks what each run (its arguments given) left behind.
fn refused_by_worker_and_pull(
    dist: &Dist,
    worker: (&str, &str),
    pull_ref: &str,
    out_dir: &str,
    said: &[&str],
    after: impl Fn(&[&str]),
) {
    let (repo, lines) = worker;
    let runs: [(&[&str], &[u8]); 2] = [
        (&["fetch", repo, "-", "-o", out_dir], lines.as_bytes()),
        (&["pull", pull_ref, "-o", out_dir], b""),
    ];
    for (args, stdin) in runs {
        let err = dist.fails(2, args, stdin);
        for words in said {
            assert!(err.contains(words), "{args:?}: {err}");
        }
        after(args);
    }
}

/// `-o DIR/blobs` (or `DIR/blobs/sha256`), a slip for the layout `DIR` itself, made a
/// second layout inside the first one's blob store: `oci-layout`, `index.json` and
/// `blobs/` among its blobs, and every object stored at `DIR/blobs/blobs/sha256/…`, where
/// no reader of `DIR` looks. Refused, naming the layout, before anything is fetched or
/// written, by the worker and by `pull`.
#[test]
fn a_directory_inside_a_layouts_blobs_is_refused() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 2);
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let lines = input(&blobs);
    let repo = format!("{}/team/app", reg.host());
    dist.ok_fed(
        &["fetch", &repo, "-", "-o", layout.to_str().unwrap()],
        lines.as_bytes(),
    );
    let before = reg.requests().len();
    let listing = |p: &std::path::Path| {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let store = layout.join("blobs");
    let (top, sha) = (listing(&store), listing(&store.join("sha256")));
    let pull_ref = format!("{repo}:latest");
    for inside in [store.clone(), store.join("sha256"), store.join("new")] {
        let out_dir = inside.to_str().unwrap();
        let give = format!("-o {}", layout.display());
        let said = ["inside the blobs of the OCI image layout", give.as_str()];
        refused_by_worker_and_pull(&dist, (&repo, &lines), &pull_ref, out_dir, &said, |args| {
            assert_eq!(listing(&store), top, "{args:?}");
            assert_eq!(listing(&store.join("sha256")), sha, "{args:?}");
        });
    }
    // `-o .` in `DIR/blobs` names no `blobs`, and is no less inside it.
    let out = dist
        .command(&["pull", &pull_ref, "-o", "."])
        .current_dir(&store)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("inside the blobs"), "{err}");
    assert_eq!(listing(&store), top);
    assert_eq!(reg.requests().len(), before, "nothing was fetched");
}

/// Regression: `--report /dev/stderr` (or the log's own name) with stderr going to a
/// file emptied that log as the batch began, and the report's lines, written from
/// their own offset, overwrote dist's messages there. Refused as stdout's file is.
#[test]
fn a_report_into_the_file_stderr_goes_to_is_refused() {
    let reg = FakeRegistry::start();
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let layout = dir.path().join("out");
    let pull_ref = format!("{repo}:latest");
    let log = dir.path().join("job.log");
    for report in ["/dev/stderr", log.to_str().unwrap()] {
        for args in [
            vec![
                "fetch",
                &repo,
                "-",
                "-o",
                layout.to_str().unwrap(),
                "--report",
                report,
            ],
            vec![
                "pull",
                &pull_ref,
                "-o",
                layout.to_str().unwrap(),
                "--report",
                report,
            ],
        ] {
            std::fs::write(&log, "earlier lines of the job\n").unwrap();
            let stderr = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            let out = dist
                .command(&args)
                .stdin(std::process::Stdio::piped())
                .stderr(stderr)
                .output()
                .unwrap();
            let said = std::fs::read_to_string(&log).unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
            assert!(
                said.starts_with("earlier lines of the job\n"),
                "{args:?}: {said}"
            );
            assert!(
                said.contains("stderr already writes to this file"),
                "{said}"
            );
        }
    }
    assert_eq!(reg.requests().len(), 0, "nothing was fetched");
}

/// `--report` truncates its file, so one that names what the run reads or writes (the
/// input, the file stdout goes to, the layout's index) is refused before anything is
/// touched or fetched; a report beside the index is fine.
#[test]
fn a_report_that_would_destroy_input_or_layout_is_refused() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 3);
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let list = dir.path().join("in.txt");
    std::fs::write(&list, input(&blobs)).unwrap();
    let list_s = list.to_str().unwrap();
    let layout = dir.path().join("out");
    let layout_s = layout.to_str().unwrap();
    let index = layout.join("index.json");
    let index_s = index.to_str().unwrap();
    let pull_ref = format!("{repo}:latest");
    let refused = |args: &[&str], needle: &str| {
        let stdout = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let out = dist
            .command(args)
            .stdin(std::fs::File::open(&list).unwrap())
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    refused(
        &["fetch", &repo, "-", "-o", layout_s, "--report", list_s],
        "is the input being read",
    );
    assert_eq!(std::fs::read_to_string(&list).unwrap(), input(&blobs));
    refused(
        &["fetch", &repo, "-", "-o", layout_s, "--report", index_s],
        "the layout's index.json",
    );
    refused(
        &["pull", &pull_ref, "-o", layout_s, "--report", index_s],
        "the layout's index.json",
    );
    let stdout_file = dir.path().join("stdout");
    refused(
        &[
            "fetch",
            &repo,
            "-",
            "--report",
            stdout_file.to_str().unwrap(),
        ],
        "stdout already writes to this file",
    );
    // Stdout a pipe, named through /dev/stdout: the lines would land among the frames.
    for args in [
        vec!["fetch", &repo, "-", "--report", "/dev/stdout"],
        vec!["pull", &pull_ref, "-o", layout_s, "--report", "/dev/stdout"],
    ] {
        let out = dist.run(&args, input(&blobs).as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("this is stdout"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // `-`, stdout to curl and tar, was created as a file of that name where dist ran.
    for args in [
        vec!["fetch", &repo, "-", "--report", "-"],
        vec!["pull", &pull_ref, "-o", layout_s, "--report", "-"],
    ] {
        let out = dist
            .command(&args)
            .current_dir(dir.path())
            .stdin(std::fs::File::open(&list).unwrap())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--report -: stdout already carries"), "{err}");
        assert!(!dir.path().join("-").exists(), "{args:?}");
    }
    // Each refused run created the layout, and took it back.
    assert!(!layout.exists());
    assert_eq!(reg.requests().len(), 0, "nothing was fetched");

    let beside = layout.join("report.jsonl");
    let out = dist.run(
        &[
            "fetch",
            &repo,
            "-",
            "-o",
            layout_s,
            "--report",
            beside.to_str().unwrap(),
        ],
        input(&blobs).as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0));
    let report = std::fs::read_to_string(&beside).unwrap();
    assert_eq!(report.lines().count(), blobs.len());
}

/// A run that cannot start its batch (the registry down, here) keeps the previous run's
/// report, often what tells why, and leaves none it created: the report was truncated as
/// it was opened, before the registry check. The worker's and a pull's alike.
#[test]
fn a_run_that_cannot_start_keeps_the_previous_report() {
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let old = dir.path().join("old.jsonl");
    let new = dir.path().join("new.jsonl");
    std::fs::write(&old, "{\"line\":1}\n").unwrap();
    let (l, o, n) = (
        layout.to_str().unwrap(),
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    );
    let nowhere = "127.0.0.1:1/team/app";
    let pull_nowhere = format!("{nowhere}:v1");
    for report in [o, n] {
        for args in [
            vec!["fetch", "--retries", "0", nowhere, "-", "--report", report],
            vec![
                "fetch",
                "--retries",
                "0",
                nowhere,
                "-",
                "-o",
                l,
                "--report",
                report,
            ],
            vec![
                "pull",
                "--retries",
                "0",
                &pull_nowhere,
                "-o",
                l,
                "--report",
                report,
            ],
        ] {
            // Refused connections: for the moment.
            dist.fails(75, &args, b"latest\n");
        }
    }
    assert_eq!(std::fs::read_to_string(&old).unwrap(), "{\"line\":1}\n");
    assert!(!new.exists(), "a report was left by runs that never began");
}

/// Shards given the same `--report` wrote each from its own offset over the other's
/// lines. While one run writes a report, another given it is refused before it fetches
/// anything, and the first one's report is whole.
#[test]
fn a_report_another_run_writes_is_refused() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 4);
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let report = dir.path().join("report.jsonl");
    let repo = format!("{}/team/app", reg.host());
    let (l, r) = (layout.to_str().unwrap(), report.to_str().unwrap());
    let first_args = ["fetch", &repo, "-", "-o", l, "--report", r];
    let mut first = dist.start(&first_args);
    let mut first_in = first.stdin.take().unwrap();
    {
        use std::io::{BufRead, Write};
        first_in.write_all(input(&blobs).as_bytes()).unwrap();
        first_in.flush().unwrap();
        // Its batch has fetched everything once it has said so; its input stays open.
        let mut said = std::io::BufReader::new(first.stdout.as_mut().unwrap());
        for _ in &blobs {
            let mut line = String::new();
            said.read_line(&mut line).unwrap();
            assert!(line.contains("\"status\":\"ok\""), "{line:?}");
        }
    }
    let requests = reg.request_count();
    let second = dist.run(
        &[
            "fetch", &repo, "-", "-o", l, "--report", r, "--shard", "1/2",
        ],
        input(&blobs).as_bytes(),
    );
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(err.contains("another run is writing this report"), "{err}");
    assert_eq!(
        reg.request_count(),
        requests,
        "the refused run asked for something"
    );
    drop(first_in);
    let status = first.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let lines = json_lines(&std::fs::read(&report).unwrap());
    assert_eq!(lines.len(), blobs.len());
    assert!(lines.iter().all(|v| v["status"] == "ok"), "{lines:?}");
}

/// A run that fails before storing anything (a mistyped reference, a registry it cannot
/// use) takes back the layout directory it created, and the layout it made in an empty
/// directory the user made for it (`mkdir out`), which stays, empty; a directory that held
/// something before, or that holds what the run stored, stays as it is.
#[test]
fn a_failed_run_leaves_no_empty_layout_behind() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 2);
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh");
    let fresh_s = fresh.to_str().unwrap();
    let nowhere = "127.0.0.1:1/team/app";
    let pull_nowhere = format!("{nowhere}:v1");
    let missing = format!("{}/team/app:nosuchtag", reg.host());
    let runs: [(&[&str], &[u8], i32); 3] = [
        (
            &["pull", "--retries", "0", &pull_nowhere, "-o", fresh_s],
            b"",
            75,
        ),
        (&["pull", &missing, "-o", fresh_s], b"", 1),
        (
            &["fetch", "--retries", "0", nowhere, "-", "-o", fresh_s],
            b"sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
            75,
        ),
    ];
    for (args, stdin, code) in runs {
        let out = dist.run(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(!fresh.exists(), "{args:?} left {fresh:?}");
    }

    // One blob stored, one missing: the run fails, and what it stored stays.
    let mut lines = input(&blobs);
    lines.push_str("sha256:1111111111111111111111111111111111111111111111111111111111111111\n");
    let repo = format!("{}/team/app", reg.host());
    let out = dist.run(&["fetch", &repo, "-", "-o", fresh_s], lines.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    for digest in blobs.keys() {
        assert!(blob_file(&fresh, digest).exists());
    }

    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    let existing_s = existing.to_str().unwrap();
    for (args, stdin, code) in runs {
        let args: Vec<&str> = args
            .iter()
            .map(|&a| if a == fresh_s { existing_s } else { a })
            .collect();
        let out = dist.run(&args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(existing.is_dir(), "{args:?} removed the user's directory");
        let left: Vec<_> = std::fs::read_dir(&existing).unwrap().collect();
        assert!(left.is_empty(), "{args:?} left {left:?} in {existing:?}");
    }
    std::fs::write(existing.join("notes.txt"), b"the user's").unwrap();
    let out = dist.run(
        &["pull", "--retries", "0", &pull_nowhere, "-o", existing_s],
        b"",
    );
    assert_eq!(out.status.code(), Some(75));
    assert!(
        existing.join("oci-layout").exists(),
        "not this run's to remove"
    );
}

/// A failed run into the working directory, empty, named through a `..` after a name not
/// there (`-o x/..`, no `x`) leaves it empty, as `-o .` does: judged where the path leads,
/// it was an empty path, no directory at all, and taken for one the run created, whose
/// removal through `x/..` could only fail: the layout was put back, with the `x` made on
/// the way to `x/..`.
#[test]
fn a_failed_run_into_the_working_directory_named_through_dot_dot_leaves_it_empty() {
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "pull",
        "--retries",
        "0",
        "127.0.0.1:1/team/app:v1",
        "-o",
        "x/..",
    ];
    let out = dist
        .command(&args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Port 1 refuses: down for the moment.
    assert_eq!(out.status.code(), Some(75), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left {left:?}");
}

/// A registry that is not there is named with the system's own words, without the HTTP
/// client's wrapper ("client error (Connect)") between them and dist's.
#[test]
fn a_registry_that_is_not_there_is_named_plainly() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let locator = format!("127.0.0.1:{port}/team/app");
    let out = Dist::new().run(&["fetch", "--retries", "0", &locator, "latest"], b"");
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "dist: latest: http://127.0.0.1:{port}/v2/team/app/manifests/latest: cannot connect: "
    );
    assert!(err.starts_with(&expected), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!err.contains("client error"), "{err}");
}

/// A registry that takes the connection and never answers is one dist cannot use for the
/// moment, status 75, for a one-shot fetch and `resolve` as for the worker, whose check
/// says so, and as over TLS, where the handshake times out: it was status 1, an object
/// that failed, which a script reads as "not there" rather than "try again later" (and
/// then 2, which a cron job alerts on as a usage error).
#[test]
fn a_registry_that_never_answers_cannot_be_used() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let locator = format!("{}/team/app", silent.local_addr().unwrap());
    let reference = format!("{locator}:latest");
    let quick = ["--idle-timeout", "300ms", "--retries", "0"];
    let dist = Dist::new();
    for (args, input) in [
        (vec!["fetch", &locator, "latest"], ""),
        (vec!["resolve", &reference], ""),
        (vec!["fetch", &locator, "-"], "latest\n"),
    ] {
        let args = [&args[..], &quick[..]].concat();
        let err = dist.fails(75, &args, input.as_bytes());
        assert!(
            err.contains("no response headers within 300ms (--idle-timeout)"),
            "{args:?}: {err}"
        );
    }
    drop(silent);
}

/// A digest's hex pasted without its algorithm is a valid tag, so it is asked for as one;
/// when no such tag exists, the message gives the digest's spelling, in one-shot fetches,
/// in the worker's lines and in `resolve`.
#[test]
fn a_bare_digest_not_found_as_a_tag_gets_the_digest_spelling() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(77, 2000));
    let hex = &digest["sha256:".len()..];
    let repo = format!("{}/team/app", reg.host());
    let dist = Dist::new();
    let hint = format!("if a digest was meant, write it {digest}");
    let out = dist.run(&["fetch", &repo, hex], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&hint), "{err}");
    let out = dist.run(&["fetch", &repo, "-"], format!("{hex}\n").as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&hint), "{err}");
    let out = dist.run(&["resolve", &format!("{repo}:{hex}")], b"");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&hint), "{err}");
    // A tag that merely is not there gets no such advice.
    let out = dist.run(&["fetch", &repo, "v9"], b"");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("if a digest was meant"));
}

/// Empty input, as a failed `jq` upstream leaves it, succeeds with nothing to do and says
/// so; input of comments only is taken as meant, and `-q` silences the warning.
#[test]
fn empty_input_succeeds_with_a_warning() {
    let reg = FakeRegistry::start();
    let repo = format!("{}/team/app", reg.host());
    let dist = Dist::new();
    let out = dist.run(&["fetch", &repo, "-"], b"");
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the input was empty: no objects to fetch"),
        "{err}"
    );
    for (args, input) in [
        (vec!["fetch", &repo, "-"], &b"# nothing today\n"[..]),
        (vec!["-q", "fetch", &repo, "-"], &b""[..]),
    ] {
        let out = dist.run(&args, input);
        assert_eq!(out.status.code(), Some(0));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("input was empty"), "{args:?}: {err}");
    }
}

/// Input of blank lines only is empty input too: `dist fetch LOC - <<< "$digests"` and
/// `echo "$digests" | dist fetch LOC -` send one line ending when what filled `digests`
/// failed, and a Windows editor's empty file is its byte order mark. Each succeeded with
/// nothing to do and said nothing, as if the list had been fetched.
#[test]
fn input_of_blank_lines_only_warns_as_empty_input() {
    let reg = FakeRegistry::start();
    let repo = format!("{}/team/app", reg.host());
    let dist = Dist::new();
    for input in [
        &b"\n"[..],
        b"\r\n",
        b" \t\n\n",
        b"\xef\xbb\xbf",
        b"\xef\xbb\xbf\r\n\r\n",
    ] {
        let out = dist.run(&["fetch", &repo, "-"], input);
        assert_eq!(out.status.code(), Some(0), "{input:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("the input was empty: no objects to fetch"),
            "{input:?}: {err}"
        );
    }
}

/// Empty input into `-o DIR` leaves no layout made for it: the warning says the feeding
/// command most often failed, and the empty layout left behind (`oci-layout`, an
/// `index.json` without entries) looked like that job's finished output. A directory the
/// user made stays, as empty as it was; a layout already there stays whole; input of
/// comments alone, taken as meant, keeps the layout it made.
#[test]
fn empty_input_leaves_no_layout_made_for_it() {
    let reg = FakeRegistry::start();
    let repo = format!("{}/team/app", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let dist = Dist::new();
    let fresh = dir.path().join("a/b/out");
    let report = dir.path().join("report.jsonl");
    let out = dist.run(
        &[
            "fetch",
            &repo,
            "-",
            "-o",
            fresh.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
        b"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("the input was empty"), "{err}");
    assert!(!dir.path().join("a").exists(), "{err}");
    // The report, the run's record, says it handled nothing.
    assert_eq!(std::fs::read(&report).unwrap(), b"");
    let made = dir.path().join("made");
    std::fs::create_dir(&made).unwrap();
    dist.ok_fed(&["fetch", &repo, "-", "-o", made.to_str().unwrap()], b"");
    assert_eq!(std::fs::read_dir(&made).unwrap().count(), 0);
    // A layout with a blob in it is no layout made for nothing.
    let blob = reg.blob("team/app", bytes(93, 100));
    let full = dir.path().join("full");
    dist.ok_fed(
        &["fetch", &repo, "-", "-o", full.to_str().unwrap()],
        format!("{blob}\n").as_bytes(),
    );
    dist.ok_fed(&["fetch", &repo, "-", "-o", full.to_str().unwrap()], b"");
    assert!(full.join("oci-layout").is_file() && full.join("index.json").is_file());
    assert_eq!(blob_names(&full), [blob["sha256:".len()..].to_string()]);
    let comments = dir.path().join("comments");
    dist.ok_fed(
        &["fetch", &repo, "-", "-o", comments.to_str().unwrap()],
        b"# nothing today\n",
    );
    assert!(comments.join("oci-layout").is_file());
}

/// A list whose lines end in a carriage return alone (a classic Mac file, `tr '\n' '\r'`)
/// is one line to the worker. It was told `a digest where a hint goes …: objects go one to
/// a line`, which each was, to the user's eye; and a list that began with a comment was
/// one comment, skipped whole: the batch fetched nothing and succeeded.
#[test]
fn lines_ended_by_a_carriage_return_alone_are_told_so() {
    let reg = FakeRegistry::start();
    let repo = format!("{}/team/app", reg.host());
    let a = reg.blob("team/app", bytes(91, 100));
    let b = reg.blob("team/app", bytes(92, 200));
    let dist = Dist::new();
    for input in [
        format!("{a}\r{b}\r"),
        format!("# today's layers\r{a}\r{b}\r"),
        "v1\rv2\r".to_string(),
    ] {
        let out = dist.run(&["fetch", &repo, "-"], input.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{input:?}: {err}");
        assert!(
            err.contains("line 1: ") && err.contains("carriage return"),
            "{input:?}: {err}"
        );
        let frames = parse_frames(&out.stdout);
        assert_eq!(frames.len(), 1, "{input:?}");
        assert!(frames[0].result.is_err(), "{input:?}");
    }
    // Before white space it is white space still: `paste -d' '` of a list with `\r\n`
    // endings and a list of hints.
    let out = dist.run(
        &["fetch", &repo, "-"],
        format!("{a}\r size:100\n").as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(parse_frames(&out.stdout).len(), 1);
}

/// A worker started with stdin closed (`<&-`, a daemon's job run with no descriptor 0) has
/// no input to read: that is an error, as `cat <&-` says, not an empty batch. Rust's
/// runtime opens /dev/null in place of the closed descriptor, and the worker read it as
/// empty input, warned, and exited 0.
#[test]
fn a_worker_started_without_stdin_fails_the_read() {
    let reg = FakeRegistry::start();
    let repo = format!("{}/team/app", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    for args in [
        vec!["fetch", &repo, "-"],
        vec!["fetch", &repo, "-", "-o", layout.to_str().unwrap()],
    ] {
        let mut command = Dist::new().command(&args);
        // SAFETY: only close(2), async-signal-safe, runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::close(libc::STDIN_FILENO);
                Ok(())
            });
        }
        let out = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("reading stdin: Bad file descriptor"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("input was empty"), "{args:?}: {err}");
    }
    // Nor does a stdin that is a directory (`< /tmp`), where the read fails at once; its
    // message said `stdin: i/o: Is a directory`, the error's kind in the place of what
    // failed.
    let out = Dist::new()
        .command(&["fetch", &repo, "-"])
        .stdin(std::fs::File::open(dir.path()).unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("reading stdin: Is a directory"), "{err}");
    assert!(!err.contains("i/o"), "{err}");
}

/// Two digests given on the command line: the second, where a hint goes, was told to go
/// "one to a line of input", which the user had typed none of. It says how to give
/// several instead, to stdout and into a layout alike, as the usage error it is.
#[test]
fn a_second_digest_on_the_command_line_is_not_told_of_input_lines() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 2);
    let d: Vec<&String> = blobs.keys().collect();
    let repo = format!("{}/team/app", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    for extra in [&[][..], &["-o", layout.to_str().unwrap()][..]] {
        let mut args = vec!["fetch", &repo, d[0], d[1]];
        args.extend_from_slice(extra);
        let err = Dist::new().fails(2, &args, b"");
        assert!(
            err.contains("a digest where a hint goes"),
            "{extra:?}: {err}"
        );
        assert!(
            err.contains("a command takes one object; give several as lines on stdin"),
            "{extra:?}: {err}"
        );
        assert!(!err.contains("line of input"), "{extra:?}: {err}");
    }
}

/// Digests joined onto one line (`paste -s`, a `jq` without `[]`) were read as one object
/// and hints, and every digest after the first was skipped in silence. Now the line fails
/// and says why; a misspelt hint key (`Size:`) is ignored as unknown keys are, with one
/// warning for the whole batch.
#[test]
fn digests_joined_on_a_line_fail_it_and_a_misspelt_hint_is_told_once() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 4);
    let d: Vec<&String> = blobs.keys().collect();
    let input = format!(
        "{} {}\n{} Size:{}\n{} Size:{}\n",
        d[0],
        d[1],
        d[2],
        blobs[d[2]].len(),
        d[3],
        blobs[d[3]].len()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Dist::new().run(
        &[
            "fetch",
            &format!("{}/team/app", reg.host()),
            "-",
            "-o",
            dir.path().to_str().unwrap(),
        ],
        input.as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines = json_lines(&out.stdout);
    let status = |digest: &str| {
        lines
            .iter()
            .find(|l| l["object"] == digest)
            .map(|l| l["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status(d[2]).as_deref(), Some("ok"), "{lines:?}");
    assert_eq!(status(d[3]).as_deref(), Some("ok"), "{lines:?}");
    assert_eq!(status(d[1]), None, "the second digest is not fetched alone");
    assert!(
        err.contains("a digest where a hint goes")
            && err.contains("objects go one to a line of input"),
        "{err}"
    );
    assert_eq!(
        err.matches("ignoring the hint key \"Size\"").count(),
        1,
        "{err}"
    );
    assert!(err.contains("was \"size\" meant?"), "{err}");
}

/// `dist pull --report FILE` writes each line to the file as it writes it to stdout: a
/// pull killed part-way (SIGKILL, the OOM killer) leaves a report of what it finished,
/// and a long pull can be watched through it.
#[test]
fn a_pull_s_report_line_reaches_its_file_as_the_object_is_done() {
    use std::io::BufRead;
    let reg = FakeRegistry::start();
    paced_image(&reg);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.jsonl");
    let mut child = Dist::new().start(&[
        "pull",
        &format!("{}/team/app:v1", reg.host()),
        "-o",
        dir.path().join("out").to_str().unwrap(),
        "-j",
        "1",
        "--report",
        report.to_str().unwrap(),
    ]);
    drop(child.stdin.take());
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let first = first.trim_end().to_string();
    assert!(first.starts_with('{'), "{first:?}");
    // The report is written right after stdout: watched until the line is there or the
    // pull has ended. A fixed moment to wait can pass first on a loaded machine.
    let (in_file, running) = loop {
        let text = std::fs::read_to_string(&report).unwrap();
        // Asked after the read: running now, it was running when the file held `text`.
        let running = child.try_wait().unwrap().is_none();
        if text.lines().any(|l| l == first) || !running {
            break (text, running);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let rest: Vec<String> = stdout.lines().map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success());
    assert!(
        in_file.lines().any(|l| l == first),
        "the first line {first:?} was not in the report while the pull ran: {in_file:?}"
    );
    assert!(
        running,
        "the pull was still running when its report was read"
    );
    assert_eq!(rest.len(), 3, "{rest:?}");
}

/// `team/app:v1`: an image whose two layers of 300 kB arrive at 200 kB/s each, so a pull
/// with `-j 1` runs on for about three seconds after its first line.
fn paced_image(reg: &FakeRegistry) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = reg.blob("team/app", config);
    let layers: Vec<(String, usize)> = (0..2u64)
        .map(|i| {
            let data = bytes(60 + i, 300_000);
            let digest = reg.blob("team/app", &data);
            reg.set_fault_for_every(
                &digest,
                Fault::Paced {
                    bytes_per_sec: 200_000,
                    first_byte: std::time::Duration::ZERO,
                },
            );
            (digest, data.len())
        })
        .collect();
    let layer_json: Vec<String> = layers
        .iter()
        .map(|(d, n)| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{n}}}"#
            )
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        layer_json.join(",")
    );
    reg.manifest(
        "team/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );
}

/// With stdout on the terminal the progress line is drawn on, `dist pull`'s JSON lines go
/// above that line, as the worker's do.
#[test]
fn a_pull_s_output_on_the_terminal_goes_above_the_progress_line() {
    let reg = FakeRegistry::start();
    paced_image(&reg);
    let dir = tempfile::tempdir().unwrap();
    let line = format!(
        "{} pull {}/team/app:v1 -j 1 -o {}",
        Dist::bin().display(),
        reg.host(),
        dir.path().join("out").display()
    );
    let shown = Dist::new().on_terminal(&line);
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{screen:?}");
    assert!(
        screen.contains("objects, "),
        "progress was drawn: {screen:?}"
    );
    assert_json_rows_stand_alone(&screen, 4);
}

/// Binary is told by a NUL in the first 8 KiB, however the registry splits them: a server
/// that sends a few bytes of text first (a slow link, a proxy flushing its first read) got
/// the NUL after them past the check, and the layer onto the terminal.
#[test]
fn binary_content_split_after_a_few_bytes_of_text_is_not_written_to_a_terminal() {
    let reg = FakeRegistry::start();
    let binary = reg.blob("team/app", b"text, at first..\x00\x00\x00binary tail");
    reg.push_fault(
        &binary,
        Fault::StallAfter(16, std::time::Duration::from_millis(300)),
    );
    let dist = Dist::new();
    let line = format!(
        "{} fetch {}/team/app {binary}",
        Dist::bin().display(),
        reg.host()
    );
    let shown = dist.on_terminal(&line);
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(shown.status.code(), Some(2), "{screen}");
    assert!(screen.contains("not written to a terminal"), "{screen}");
    assert!(!screen.contains("binary tail"), "{screen}");
}

/// Log lines are coloured as clap colours its help and usage errors: on a terminal whose
/// `TERM` is set and not `dumb` (Emacs' shell, some CI log viewers), never with `NO_COLOR`
/// (no-color.org) set and not empty or `CLICOLOR=0`, and anywhere with `CLICOLOR_FORCE`.
/// A rule of dist's own coloured them where clap did not (`TERM` unset or `dumb`,
/// `CLICOLOR=0`), and not for a CI log viewer that asked for it (`CLICOLOR_FORCE=1`).
#[test]
fn log_lines_are_coloured_as_clap_colours_its_help() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", b"plain text");
    let dist = Dist::new();
    // A misspelt hint key is a warning logged, in colour on a terminal (with `-v`: at the
    // default verbosity it is a plain `dist: warning:` line, as the command's own are).
    // Each case starts from a colour terminal, whatever the test's own environment says.
    let line = |env: &str| {
        format!(
            "env -u NO_COLOR -u CLICOLOR -u CLICOLOR_FORCE -u CI TERM=xterm {env} {} -v \
             fetch {}/team/app {digest} Size:10 > /dev/null",
            Dist::bin().display(),
            reg.host()
        )
    };
    let coloured = |env: &str| {
        let shown = dist.on_terminal(&line(env));
        let screen = String::from_utf8_lossy(&shown.stdout).into_owned();
        assert!(shown.status.success(), "{env}: {screen}");
        assert!(screen.contains("WARN"), "{env}: {screen:?}");
        screen.contains('\x1b')
    };
    for env in ["", "env NO_COLOR=", "env TERM=dumb CLICOLOR_FORCE=1"] {
        assert!(coloured(env), "coloured with {env:?}");
    }
    for env in [
        "env NO_COLOR=1",
        "env NO_COLOR=0",
        "env TERM=dumb",
        "env -u TERM",
        "env CLICOLOR=0",
    ] {
        assert!(!coloured(env), "plain with {env:?}");
    }
    let plain = line("").replace(" -v ", " ");
    let shown = dist.on_terminal(&plain);
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(
        screen.contains("dist: warning: ignoring the hint key") && !screen.contains("WARN"),
        "{screen:?}"
    );
    // Off a terminal too, when forced.
    let repo = format!("{}/team/app", reg.host());
    let forced = dist
        .command(&["-v", "fetch", &repo, &digest])
        .env("CLICOLOR_FORCE", "1")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert!(String::from_utf8_lossy(&forced.stderr).contains("\x1b["));
}

/// An empty `RUST_LOG` (a job template's `RUST_LOG=${RUST_LOG}`) counts as unset, as an
/// empty `DIST_FETCH_TIMEOUT` does: it was read as a filter of nothing, which silenced
/// every warning (and `-v`), and it took the progress line away as a log filter would.
#[test]
fn an_empty_rust_log_counts_as_unset() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 3);
    let digest = blobs.keys().next().unwrap();
    let mut dist = Dist::new();
    dist.env("RUST_LOG", "");
    let repo = format!("{}/team/app", reg.host());
    // A misspelt hint key is a warning.
    let out = dist.run(&["fetch", &repo, digest, "Size:10"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("dist: warning: ") && err.contains("\"Size\""),
        "{err:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("in.txt");
    std::fs::write(&list, input(&blobs)).unwrap();
    let line = format!(
        "{} fetch {repo} - -o {} < {} > /dev/null",
        Dist::bin().display(),
        dir.path().join("out").display(),
        list.display(),
    );
    let shown = dist.on_terminal(&line);
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{screen}");
    assert!(screen.contains("3 objects, "), "summary line: {screen:?}");
}

/// A malformed `RUST_LOG` (`dist=degub`, a level misspelt) is a usage error naming it, as a
/// malformed `DIST_FETCH_TIMEOUT` is, before any request: the logger went on with its
/// default filter, so the debug lines asked for never came and nothing said why.
#[test]
fn a_malformed_rust_log_is_a_usage_error_naming_it() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 1);
    let digest = blobs.keys().next().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let requests = reg.request_count();
    let mut dist = Dist::new();
    dist.env("RUST_LOG", "dist=degub");
    for args in [
        vec!["fetch", &repo, digest],
        vec!["fetch", &repo, digest, "--log-format", "json"],
    ] {
        let out = dist.run(&args, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        // In JSON the value's quotes are escaped.
        assert!(
            err.contains("dist: RUST_LOG: invalid log filter ") && err.contains("dist=degub"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(reg.request_count(), requests);
}

/// A digest in a hash dist does not verify, written whole (`sha384:` and its 96 hex
/// digits, the README's example), is refused as that alone: it was also offered as an
/// image reference, "the object is <96 hex digits> alone", which no one meant. A word
/// that may be either (`md5:x`, `app:v1`) still names both readings. Hex in capitals is
/// a whole digest too: `md5:` and 32 of them was offered as a reference.
#[test]
fn a_whole_digest_in_another_algorithm_is_not_offered_as_an_image_reference() {
    let dist = Dist::new();
    let sha384 = format!("sha384:{}", "ab".repeat(48));
    let blake3 = format!("blake3:{}", "cd".repeat(32));
    // Hex in capitals, as Windows' Get-FileHash and certutil print an MD5.
    let md5 = format!("md5:{}", "EF".repeat(16));
    for (object, reference) in [
        (sha384.as_str(), false),
        (blake3.as_str(), false),
        (md5.as_str(), false),
        ("md5:x", true),
    ] {
        // Port 1 refuses connections: the refusal comes before any.
        let out = dist.run(&["fetch", "127.0.0.1:1/x", object], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{object}: {err}");
        assert!(
            err.contains("unsupported digest algorithm") && !err.contains("connect"),
            "{object}: {err}"
        );
        assert_eq!(
            err.contains("image reference"),
            reference,
            "{object}: {err}"
        );
    }
}

/// A sha256 digest cut short as user interfaces show one (`sha256:4f6c…`, the README's
/// own placeholder) or left empty is told what a sha256 digest is: it was "malformed
/// encoded part", the grammar's words, which say nothing of the 64 hex digits missing.
#[test]
fn a_shortened_digest_is_told_its_length() {
    let dist = Dist::new();
    for (object, needs) in [
        ("sha256:4f6c…", "sha256 needs 64 lowercase hex characters"),
        ("sha256:", "sha256 needs 64 lowercase hex characters"),
        ("sha512:ab.cd", "sha512 needs 128 lowercase hex characters"),
    ] {
        // Port 1 refuses connections: the refusal comes before any.
        let out = dist.run(&["fetch", "127.0.0.1:1/x", object], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{object}: {err}");
        assert!(
            err.contains(&format!("invalid digest {object:?}: {needs}")),
            "{object}: {err}"
        );
    }
}

/// `-o oci:./out`, as skopeo names a layout it writes (`skopeo copy … oci:./out:v1`) and
/// dist names one it reads, made a directory named `oci:.` with the layout `out` inside
/// it, and reported success. Refused with the spelling that works, before anything is
/// created or fetched, by the worker and by `pull`.
#[test]
fn an_oci_reference_given_as_the_output_directory_is_refused() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 1);
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let pull_ref = format!("{repo}:latest");
    let lines = input(&blobs);
    for (out_dir, give) in [
        ("oci:./out", "-o ./out"),
        ("oci:out", "-o out"),
        ("oci:./out:v1", "-o ./out"),
        ("oci:/tmp/x/out@sha256:abc", "-o /tmp/x/out"),
    ] {
        let runs: [(&[&str], &[u8]); 2] = [
            (&["fetch", &repo, "-", "-o", out_dir], lines.as_bytes()),
            (&["pull", &pull_ref, "-o", out_dir], b""),
        ];
        for (args, stdin) in runs {
            let mut child = Running::piped(dist.command(args).current_dir(dir.path()));
            // Refused before its input is read, dist may be gone before the write ends
            // (EPIPE), as `Dist::run` allows.
            let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin);
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(give), "{args:?}: {err}");
            let made: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert!(made.is_empty(), "{args:?} made {made:?}");
        }
    }
    assert_eq!(reg.requests().len(), 0, "nothing was fetched");
}

/// `-o -`, stdout to curl (`curl -o -`) and tar, made a layout in a directory named `-`
/// and reported success, from a one-shot fetch as from the worker and `pull`. Refused,
/// saying how to write to stdout (which a pull cannot: it says what goes there), before
/// anything is created or fetched, as `--report -` is.
#[test]
fn a_dash_given_as_the_output_directory_is_refused() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 1);
    let digest = blobs.keys().next().unwrap();
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let pull_ref = format!("{repo}:latest");
    let lines = input(&blobs);
    let runs: [(&[&str], &[u8]); 3] = [
        (&["fetch", &repo, digest, "-o", "-"], b""),
        (&["fetch", &repo, "-", "-o", "-"], lines.as_bytes()),
        (&["pull", &pull_ref, "-o", "-"], b""),
    ];
    for (args, stdin) in runs {
        let mut child = Running::piped(dist.command(args).current_dir(dir.path()));
        // Refused before its input is read, dist may be gone before the write ends
        // (EPIPE), as `Dist::run` allows.
        let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("./-"), "{args:?}: {err}");
        // A pull has no output to stdout in place of its layout: told to leave `-o` out,
        // it is then refused for want of `--output`.
        assert_eq!(
            err.contains("leave -o out"),
            args[0] == "fetch",
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        let made: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(made.is_empty(), "{args:?} made {made:?}");
    }
    assert_eq!(reg.requests().len(), 0, "nothing was fetched");
}

/// The registry API's URL pasted as the locator (`host/v2/team/app`, or a whole
/// `http://host/v2/team/app/manifests/v1` copied from curl): dist asked for
/// `/v2/v2/team/app/…`, and the 404 read as if the image were not there. `v2/team/app` is
/// a valid repository name, so it is still asked for; when it is not found, the error ends
/// with the locator and object meant. A blob's URL, which is no locator, was read as a
/// reference and told to use the repository `…/blobs/sha256`.
#[test]
fn a_pasted_api_url_is_told_the_locator_when_not_found() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", b"layer");
    let dist = Dist::new();
    let host = reg.host();
    let meant = format!("{host}/team/app");
    // The blob's URL is no locator (`sha256:…` is no path component): a usage error.
    for (locator, object, said, code) in [
        (
            format!("{host}/v2/team/app"),
            digest.as_str(),
            format!("{meant} {digest}"),
            1,
        ),
        (
            format!("http://{host}/v2/team/app/blobs/{digest}"),
            digest.as_str(),
            format!("{meant} {digest}"),
            2,
        ),
        (
            format!("http://{host}/v2/team/app/manifests/v1"),
            "v1",
            format!("{meant} v1"),
            1,
        ),
        // The tag listing's URL, as curl is given it to see the tags: its repository is
        // `team/app`, not `team/app/tags/list`.
        (
            format!("http://{host}/v2/team/app/tags/list"),
            "v1",
            format!("{meant} v1"),
            1,
        ),
    ] {
        let out = dist.run(&["fetch", &locator, object], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{locator}: {err}");
        assert!(err.contains(&format!("write {said}")), "{locator}: {err}");
    }
    let out = dist.run(
        &["fetch", &format!("{host}/v2/team/app"), "-"],
        format!("{digest}\n").as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("write {meant} {digest}")), "{err}");
    // A repository that is named so and found is fetched as any other.
    let digest = reg.blob("v2/team/app", b"named so");
    let out = dist.ok(&["fetch", &format!("{host}/v2/team/app"), &digest]);
    assert_eq!(out, b"named so");
}

/// A registry API URL pasted alone, as curl is given it (`dist fetch
/// http://host/v2/team/app/blobs/sha256:…`, no object after it): a blob's URL was told to
/// use the repository `…/blobs/sha256` with the digest's hex as a tag, and a manifest's to
/// add an object after the URL. The URL names the object: it is told the locator and
/// object meant, with exit status 2, before anything is asked.
#[test]
fn a_pasted_api_url_alone_is_told_the_locator_and_object() {
    let reg = FakeRegistry::start();
    let dist = Dist::new();
    let host = reg.host();
    let digest = format!("sha256:{}", "a".repeat(64));
    let meant = format!("{host}/team/app");
    for (locator, said) in [
        (
            format!("http://{host}/v2/team/app/blobs/{digest}"),
            format!("{meant} {digest}"),
        ),
        (
            format!("{host}/v2/team/app/blobs/{digest}"),
            format!("{meant} {digest}"),
        ),
        (
            format!("http://{host}/v2/team/app/manifests/v1"),
            format!("{meant} v1"),
        ),
    ] {
        let err = dist.fails(2, &["fetch", &locator], b"");
        assert!(err.contains(&format!("write {said}")), "{locator}: {err}");
        assert!(!err.contains("blobs/sha256 "), "{locator}: {err}");
    }
    assert_eq!(reg.requests().len(), 0, "nothing was fetched");
}

/// A registry API URL pasted as `dist pull`'s or `dist resolve`'s reference
/// (`http://host/v2/team/app/manifests/v1`, as curl is given it) was asked for as the
/// repository `v2/team/app/manifests/v1`, and its 404 told the spelling `dist fetch` takes
/// (`host/team/app v1`), which these commands refuse; a blob's URL was read as the tag
/// `<hex>` of a repository `…/blobs/sha256`, and told `host/team/app sha256`. Each is
/// refused at once with the reference meant (or, for a blob, the fetch that gets it).
#[test]
fn a_pasted_api_url_as_a_reference_is_told_the_reference_meant() {
    let reg = FakeRegistry::start();
    let dist = Dist::new();
    let host = reg.host();
    let digest = format!("sha256:{}", "a".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    for (reference, said) in [
        (
            format!("http://{host}/v2/team/app/manifests/v1"),
            format!("write {host}/team/app:v1"),
        ),
        (
            format!("{host}/v2/team/app/manifests/{digest}"),
            format!("write {host}/team/app@{digest}"),
        ),
        (
            format!("http://{host}/v2/team/app/blobs/{digest}"),
            format!("dist fetch {host}/team/app {digest}"),
        ),
    ] {
        for args in [
            vec!["pull", reference.as_str(), "-o", out],
            vec!["resolve", reference.as_str()],
        ] {
            let err = dist.fails(2, &args, b"");
            assert!(err.contains(&said), "{args:?}: {err}");
        }
    }
    assert_eq!(reg.requests().len(), 0, "nothing was fetched");
    assert!(!dir.path().join("out").exists(), "no layout was made");
    // A layout's directory may be named so: it is read as one.
    let out = dist
        .command(&["resolve", "oci:x/v2/team/app/manifests/v1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not an OCI image layout"), "{err}");
    // What no URL ends in (`v1:latest`) is no URL's object: read as the reference it is.
    let out = dist.run(
        &[
            "resolve",
            &format!("{host}/v2/team/app/manifests/v1:latest"),
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("not a reference"), "{err}");
}

/// A reference spelt with the API's `/v2/` (`dist pull host/v2/team/app:v1`) names a
/// valid repository, `v2/team/app`, and is asked for; its 404 told the spelling `dist
/// fetch` takes (`write host/team/app v1`), which pull and resolve refuse. They are told
/// the reference meant.
#[test]
fn a_v2_reference_not_found_is_told_the_reference_meant() {
    let reg = FakeRegistry::start();
    let dist = Dist::new();
    let host = reg.host();
    let digest = format!("sha256:{}", "a".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    for (reference, said) in [
        (
            format!("{host}/v2/team/app:v1"),
            format!("write {host}/team/app:v1"),
        ),
        (
            format!("{host}/v2/team/app@{digest}"),
            format!("write {host}/team/app@{digest}"),
        ),
    ] {
        for args in [
            vec!["pull", reference.as_str(), "-o", out],
            vec!["resolve", reference.as_str()],
        ] {
            let err = dist.fails(1, &args, b"");
            assert!(err.contains(&said), "{args:?}: {err}");
            assert!(!err.contains("team/app v1"), "{args:?}: {err}");
        }
    }
}

/// A registry API URL pasted with its login (`https://me:s3cret@host/v2/…`, as curl is
/// given it) is refused without the login in the message, as any locator holding one is:
/// told as an API URL, the spelling meant carried the password to the terminal.
#[test]
fn a_pasted_api_url_with_a_login_is_refused_without_it() {
    let digest = format!("sha256:{}", "a".repeat(64));
    for locator in [
        format!("https://me:s3cret@127.0.0.1:9/v2/team/app/blobs/{digest}"),
        "me:s3cret@127.0.0.1:9/v2/team/app/manifests/v1".to_string(),
    ] {
        for object in ["v1", "-"] {
            let err = Dist::new().fails(2, &["fetch", &locator, object], b"");
            assert!(!err.contains("s3cret"), "{locator}: {err}");
            assert!(
                err.contains("credentials do not go here"),
                "{locator}: {err}"
            );
        }
    }
}

/// A registry URL pasted with its query (a pre-signed link's `X-Amz-Signature`, a
/// `?token=…`), as a locator or a reference: refused without the query in the message,
/// and, for an API URL, with the spelling meant, which has none. Before, the refusal
/// printed the query whole, the object meant included (`write host/team/app
/// v1?token=…`).
#[test]
fn a_locator_with_a_query_is_refused_without_it() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let api = format!("https://127.0.0.1:9/v2/team/app/blobs/{digest}?X-Amz-Signature=s3cret");
    let tagged = "http://127.0.0.1:9/v2/team/app/manifests/v1?token=s3cret".to_string();
    let plain = "127.0.0.1:9/team/app?token=s3cret".to_string();
    for (args, said) in [
        (
            vec!["fetch", &api, "v1"],
            format!("write 127.0.0.1:9/team/app {digest}"),
        ),
        (
            vec!["fetch", &tagged, "-"],
            "write 127.0.0.1:9/team/app -".to_string(),
        ),
        (
            vec!["resolve", &tagged],
            "write 127.0.0.1:9/team/app:v1".to_string(),
        ),
        (
            vec!["fetch", &plain, "v1"],
            "a URL's query has no place here".to_string(),
        ),
        (
            vec!["resolve", &plain],
            "a URL's query has no place here".to_string(),
        ),
    ] {
        let err = Dist::new().fails(2, &args, b"");
        assert!(!err.contains("s3cret"), "{args:?}: {err}");
        assert!(err.contains(&said) && err.contains("?…"), "{args:?}: {err}");
    }
}

/// `jq -r` prints `null` for a field that is missing (`.config.digest` of an index, a
/// misspelt key), and `null` is a valid tag: asked for, its 404 read as if an image were
/// not there. The error says where the word most likely came from, one-shot and in the
/// worker.
#[test]
fn a_null_from_jq_is_told_where_it_came_from() {
    let reg = FakeRegistry::start();
    let dist = Dist::new();
    let repo = format!("{}/team/app", reg.host());
    for (object, input) in [("null", &b""[..]), ("-", &b"null\n"[..])] {
        let err = dist.fails(1, &["fetch", &repo, object], input);
        assert!(
            err.contains("jq -r prints null for a missing field"),
            "{object}: {err}"
        );
    }
}

/// `jq -r '.layers[].digest' m.json | dist fetch LOC`, the worker's `-` forgotten, got
/// clap's "<OBJECT> not provided", which says nothing of the objects piped in. It is told
/// to add `-` (or an object), with exit status 2, before anything is fetched.
#[test]
fn a_locator_alone_is_told_to_add_an_object_or_a_dash() {
    let reg = FakeRegistry::start();
    let dist = Dist::new();
    let repo = format!("{}/team/app", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("out");
    for args in [
        vec!["fetch", &repo],
        vec!["fetch", &repo, "-o", layout.to_str().unwrap()],
        vec!["fetch", "-j", "4", &repo],
    ] {
        let err = dist.fails(2, &args, b"v1\n");
        assert!(
            err.contains(&format!("dist fetch {repo} -")),
            "{args:?}: {err}"
        );
    }
    assert!(!layout.exists());
    assert_eq!(reg.requests().len(), 0, "nothing was fetched");
}

/// A negative number or duration (`--retries -1`, `--timeout -5s`, `-j -2`) was read as an
/// option of its own: "unexpected argument '-1' found", with clap's tip to write `-- -1`,
/// which passes it as a locator instead. It is told as the option's invalid value.
#[test]
fn a_negative_option_value_is_told_as_an_invalid_value() {
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let repo = "127.0.0.1:9/team/app";
    let reference = "127.0.0.1:9/team/app:v1";
    for (args, option) in [
        (vec!["fetch", "--retries", "-1", repo, "v1"], "--retries"),
        (vec!["fetch", "--timeout", "-5s", repo, "v1"], "--timeout"),
        (
            vec!["fetch", "--connect-timeout", "-1", repo, "v1"],
            "--connect-timeout",
        ),
        (
            vec!["fetch", "--idle-timeout", "-1s", repo, "v1"],
            "--idle-timeout",
        ),
        (
            vec!["fetch", "--range-streams", "-1", repo, "v1"],
            "--range-streams",
        ),
        (
            vec!["fetch", "--http2-window", "-1", repo, "v1"],
            "--http2-window",
        ),
        (vec!["fetch", repo, "-", "-j", "-1"], "--jobs"),
        (vec!["pull", reference, "-o", out, "-j", "-2"], "--jobs"),
    ] {
        let err = dist.fails(2, &args, b"");
        assert!(
            err.contains("invalid value '-") && err.contains(option),
            "{args:?}: {err}"
        );
        assert!(!err.contains("use '-- -"), "{args:?}: {err}");
    }
}

/// The summary of a batch of one read "1 objects, 1 B in …": one object, and one byte,
/// are said in the singular.
#[test]
fn a_summary_of_one_object_is_in_the_singular() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", b"x");
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list");
    std::fs::write(&list, format!("{digest}\n")).unwrap();
    let screen = worker_on_terminal("", &reg, &list, dir.path());
    // The summary, not the progress line drawn before it when the fetch is slow enough
    // (`1/1 objects, 0 in flight`, a count of the total's objects).
    let summary = screen
        .split('\r')
        .find(|frame| frame.contains(" in ") && frame.contains("failed"))
        .unwrap_or_else(|| panic!("a summary: {screen:?}"));
    assert!(summary.contains("1 object, 1 B in "), "{screen:?}");
    assert!(!summary.contains("1 objects"), "{screen:?}");
}

/// A password with a `/` pasted unencoded (`http://user:s3/cret@host/…`) ended the URL's
/// authority before its `@`: no login was seen, and the refusal (`bad port "s3"`,
/// `invalid digest`) went to stderr with the input whole, password included.
#[test]
fn a_login_whose_password_holds_a_slash_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let report = dir.path().join("report.json");
    let out = out_dir.to_str().unwrap();
    let locator = "http://user:s3/cret@127.0.0.1:1/team/app";
    let reference = format!("{locator}:v1");
    let digest = format!("sha256:{}", "a".repeat(64));
    let with_digest = format!("{locator}@{digest}");
    let dist = Dist::new();
    for args in [
        vec!["fetch", locator, "v1"],
        vec!["fetch", locator],
        vec!["fetch", locator, "-"],
        vec!["fetch", &reference],
        vec!["fetch", &with_digest],
        vec!["pull", &reference, "-o", out],
        vec!["pull", locator, "v1", "-o", out],
        vec!["resolve", &reference],
        vec!["resolve", locator, "v1"],
    ] {
        let err = dist.fails(2, &args, b"");
        assert!(!err.contains("cret"), "{args:?}: {err}");
        assert!(!err.contains("user"), "{args:?}: {err}");
        assert!(
            err.contains("credentials do not go here"),
            "{args:?}: {err}"
        );
    }
    assert!(!out_dir.exists());
    // A worker's input line holding one is an error of its own, told without it, on
    // stderr, in its frame and in the report.
    let reg = FakeRegistry::start();
    let repo = format!("{}/team/app", reg.host());
    let line = "user:s3/cret@reg.example/team/app\n";
    let run = dist.run(
        &["fetch", &repo, "-", "--report", report.to_str().unwrap()],
        line.as_bytes(),
    );
    let err = String::from_utf8_lossy(&run.stderr);
    let said = format!(
        "{err}{}{}",
        String::from_utf8_lossy(&run.stdout),
        std::fs::read_to_string(&report).unwrap()
    );
    assert!(said.contains("credentials do not go here"), "{said}");
    assert!(!said.contains("cret"), "{said}");
    assert!(!said.contains("user"), "{said}");
}

/// A second word clap does not expect was echoed whole in its refusal (`unexpected
/// argument 'http://u:s3cret@h/x' found`), a login pasted in it included.
#[test]
fn an_unexpected_word_holding_a_login_is_not_shown() {
    for word in [
        "http://me:s3cret@h.example/x",
        "http://me:s3/cret@h.example/x",
    ] {
        let err = Dist::new().fails(2, &["resolve", "127.0.0.1:1/team/app:v1", word], b"");
        assert!(!err.contains("cret"), "{word}: {err}");
        assert!(err.contains("credentials do not go here"), "{word}: {err}");
    }
}

/// A hint holding a login (a registry's URL pasted after the object) was shown whole:
/// an unknown key's hint in `-v`'s log (`ignoring unknown hint key hint=http://me:…`),
/// a `size:` hint's value in its error, on stderr, in the frame and in the report.
#[test]
fn a_hint_holding_a_login_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let reg = FakeRegistry::start();
    let repo = format!("{}/team/app", reg.host());
    let lines = format!(
        "sha256:{} http://me:s3cret@reg.example/team/app\nsha256:{} size:me:s3cret@reg.example\n\
         sha256:{} annotation:x=me@example.com\n",
        "a".repeat(64),
        "b".repeat(64),
        "c".repeat(64)
    );
    let run = Dist::new().run(
        &[
            "-v",
            "fetch",
            &repo,
            "-",
            "--report",
            report.to_str().unwrap(),
        ],
        lines.as_bytes(),
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("invalid size hint"), "{err}");
    assert!(err.contains("unknown hint"), "{err}");
    let said = format!(
        "{err}{}{}",
        String::from_utf8_lossy(&run.stdout),
        std::fs::read_to_string(&report).unwrap()
    );
    assert!(!said.contains("s3cret"), "{said}");
    assert!(!said.contains("me:"), "{said}");
    // A hint whose value has a login's shape is logged by its key, the value's login left
    // out, not as its host alone (`example.com`), which read as some other hint.
    assert!(said.contains("annotation:…@example.com"), "{said}");
    assert!(!said.contains("me@"), "{said}");
}

/// A reference typed without its command (`dist http://me:s3cret@host/app:v1`) was
/// refused in clap's words, `unrecognized subcommand '…'`, login and all, as was an
/// option's value clap refuses; a word without one keeps clap's message whole.
#[test]
fn a_word_clap_refuses_is_shown_without_its_login() {
    let dist = Dist::new();
    for args in [
        vec!["http://me:s3cret@h.example/team/app:v1"],
        vec!["me:s3/cret@h.example/team/app:v1"],
        vec![
            "--log-format",
            "json",
            "http://me:s3cret@h.example/team/app:v1",
        ],
        vec![
            "fetch",
            "-j",
            "me:s3cret@h.example",
            "h.example/team/app",
            "v1",
        ],
        // A password with a space in it: clap quotes the word, which reads as two.
        vec!["http://me:s3 cret@h.example/team/app:v1"],
        vec![
            "fetch",
            "-j",
            "me:s3 cret@h.example",
            "h.example/team/app",
            "v1",
        ],
    ] {
        let err = dist.fails(2, &args, b"");
        assert!(!err.contains("cret"), "{args:?}: {err}");
        assert!(!err.contains("me:"), "{args:?}: {err}");
        assert!(err.contains("h.example"), "{args:?}: {err}");
    }
    let err = dist.fails(2, &["resolv", "h.example/team/app:v1"], b"");
    assert!(err.contains("unrecognized subcommand 'resolv'"), "{err}");
    assert!(err.contains("resolve"), "{err}");
}

/// An option's value forgotten (`--timeout --retries 3`) is said as a missing value naming
/// the option that followed, for every option that takes a value: the durations, which
/// take words starting with `-` (a negative one is their invalid value), refused the next
/// option as `invalid duration "--retries"`.
#[test]
fn a_forgotten_value_is_said_missing_not_invalid() {
    let dist = Dist::new();
    let repo = "127.0.0.1:1/team/app";
    for option in ["--timeout", "--connect-timeout", "--idle-timeout"] {
        for next in ["--retries", "-v"] {
            let mut args = vec!["fetch", option, next];
            if next == "--retries" {
                args.push("3");
            }
            args.extend([repo, "v1"]);
            let err = dist.fails(2, &args, b"");
            assert!(
                err.contains(&format!("a value is required for '{option} <DURATION>'"))
                    && err.contains(&format!("'{next}' after it is an option")),
                "{args:?}: {err}"
            );
            assert!(!err.contains("invalid duration"), "{args:?}: {err}");
        }
    }
    // A negative duration is a value, and an invalid one; so is one joined to its option.
    let err = dist.fails(2, &["fetch", "--timeout", "-1", repo, "v1"], b"");
    assert!(err.contains(r#"invalid duration "-1""#), "{err}");
    let err = dist.fails(2, &["fetch", "--timeout=--retries", repo, "v1"], b"");
    assert!(err.contains(r#"invalid duration "--retries""#), "{err}");
    // The other options that take a value say so too.
    for args in [
        &["fetch", "--retries", "--timeout", "3s", repo, "v1"][..],
        &["fetch", repo, "-", "-j", "--ordered"],
        &["fetch", repo, "-", "--range-streams", "-v"],
        &["fetch", repo, "-", "-o", "--ordered"],
        &["pull", repo, "--platform", "-o", "x"],
    ] {
        let err = dist.fails(2, args, b"");
        assert!(err.contains("a value is required for '"), "{args:?}: {err}");
    }
}

/// A word after a duration's option that is no option at all (`--timeout --bogus`) is
/// refused as every other option that takes a value refuses it (`--retries --bogus`): an
/// unexpected argument. It was said to be an option whose value was forgotten.
#[test]
fn an_unknown_word_after_a_duration_s_option_is_no_option() {
    let dist = Dist::new();
    let repo = "127.0.0.1:1/team/app";
    for option in [
        "--timeout",
        "--connect-timeout",
        "--idle-timeout",
        "--retries",
    ] {
        for word in ["--bogus", "-Z"] {
            let args = ["fetch", option, word, repo, "v1"];
            let err = dist.fails(2, &args, b"");
            assert!(
                err.contains(&format!("unexpected argument '{word}' found")),
                "{args:?}: {err}"
            );
            assert!(!err.contains("is an option"), "{args:?}: {err}");
        }
    }
}

/// A word after `--` is a value, the user's own: a shell's name refused there
/// (`dist completions -- -zsh`) is refused as that value, not said to be an option whose
/// value was forgotten; and `--` after a duration's option (`--timeout -- …`) ends the
/// options, which is no option either.
#[test]
fn a_word_after_double_dash_is_no_forgotten_value() {
    let dist = Dist::new();
    let err = dist.fails(2, &["completions", "--", "-zsh"], b"");
    assert!(err.contains("invalid value '-zsh'"), "{err}");
    assert!(!err.contains("a value is required"), "{err}");
    let err = dist.fails(
        2,
        &["fetch", "--timeout", "--", "127.0.0.1:1/team/app", "v1"],
        b"",
    );
    assert!(
        err.contains("a value is required for '--timeout <DURATION>'"),
        "{err}"
    );
    assert!(!err.contains("is an option"), "{err}");
    assert!(err.contains("'--' after it ends the options"), "{err}");
}

/// `dist pull oci:DIR -o DIR --verify-existing`, a layout pulled into itself with its
/// objects hashed again, one of which does not verify: warned about once, by the check of
/// what is stored, then its error. The read of it from the layout was warned about too
/// (`content did not verify; fetching again`), and read again, as a registry's content
/// corrupted on its way is fetched again: a file is read again as it is.
#[test]
fn a_layout_pulled_into_itself_with_verify_existing_is_said_once() {
    let reg = FakeRegistry::start();
    let config = image_without_layers(&reg);
    let reference = format!("{}/team/app:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().to_str().unwrap();
    let dist = Dist::new();
    let out = dist.run(&["pull", &reference, "-o", o], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = blob_file(dir.path(), &config);
    std::fs::write(&config, br#"{"architecture":"amd64","os":"linuX"}"#).unwrap();
    let own = format!("oci:{o}:v1");
    let out = dist.run(&["pull", &own, "-o", o, "--verify-existing"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("dist: warning: stored blob does not match"),
        "{err}"
    );
    assert!(lines[1].contains("digest mismatch"), "{err}");
}

/// Retries after a passing fault (a 503, a dropped connection, a body cut short and
/// resumed) are quiet at the default level and one line each at `-v`: a batch of
/// thousands of layers through a flaky network would bury the errors that remain under
/// them. Content that did not verify, fetched again, is a warning without `-v`: no
/// passing fault of the network.
#[test]
fn retries_show_at_v_and_a_refetch_without_it() {
    for (fault, at_v) in [
        (Fault::Status(503), "retrying"),
        (Fault::CloseUnanswered, "retrying"),
        (Fault::DropAfter(100), "resuming body"),
    ] {
        let reg = FakeRegistry::start();
        let data = bytes(1, 5000);
        let digest = reg.blob("team/app", &data);
        // Twice: a connection closed unanswered is sent again once before it counts.
        reg.push_fault(&digest, fault.clone());
        reg.push_fault(&digest, fault.clone());
        let repo = format!("{}/team/app", reg.host());
        let dist = Dist::new();
        let out = dist.run(&["fetch", &repo, &digest], b"");
        assert_eq!(out.stdout, data, "{fault:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{fault:?}");
        reg.push_fault(&digest, fault.clone());
        reg.push_fault(&digest, fault.clone());
        let out = dist.run(&["fetch", "-v", &repo, &digest], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.stdout, data, "{fault:?}");
        assert!(err.contains(at_v), "{fault:?}: {err}");
    }
    let reg = FakeRegistry::start();
    let data = bytes(2, 5000);
    let digest = reg.blob("team/app", &data);
    reg.push_fault(&digest, Fault::CorruptByte(10));
    let repo = format!("{}/team/app", reg.host());
    let out = Dist::new().run(&["fetch", &repo, &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.stdout, data, "{err}");
    assert!(
        err.starts_with("dist: warning: content did not verify; fetching again"),
        "{err}"
    );
}

/// A descriptor line with `urls` names a non-distributable layer (a Windows base layer),
/// which a registry need not hold: one that keeps it only at its URLs answers 404. `dist fetch LOC v1 | jq -c '.layers[]' | dist fetch LOC -
/// -o DIR` failed it with the registry's `BLOB_UNKNOWN` alone, which reads as a registry
/// that lost a layer; the error now says what the layer is, and where the manifest says
/// it is. A plain layer's 404 says nothing more.
#[test]
fn a_missing_layer_whose_descriptor_lists_urls_is_said_to_be_non_distributable() {
    let reg = FakeRegistry::start();
    let missing = support::cli::sha256(b"far away");
    let foreign = format!(
        r#"{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{missing}","size":8,"urls":["https://far.example/layer"]}}"#
    );
    let plain = format!(
        r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{missing}","size":9}}"#
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let repo = format!("{}/team/app", reg.host());
    let args = ["fetch", &repo, "-", "-o", out.to_str().unwrap()];
    let run = Dist::new().run(&args, format!("{foreign}\n{plain}\n").as_bytes());
    assert_eq!(run.status.code(), Some(1));
    let lines = json_lines(&run.stdout);
    let error_of = |size: u64| {
        let line = lines
            .iter()
            .find(|l| l["line"] == if size == 8 { 1 } else { 2 });
        line.unwrap()["error"].as_str().unwrap().to_string()
    };
    let said = error_of(8);
    assert!(
        said.contains("404")
            && said.contains("non-distributable")
            && said.contains("https://far.example/layer"),
        "{said}"
    );
    // In the library's words, which a `worker::run` caller reads too: no `dist pull`.
    assert!(said.contains("(a pull skips such layers)"), "{said}");
    let said = error_of(9);
    assert!(
        said.contains("404") && !said.contains("non-distributable"),
        "{said}"
    );
}

/// The note on a non-distributable layer is for the blob's own 404 (`BLOB_UNKNOWN`, or a
/// 404 that names no code): a repository that does not exist (`NAME_UNKNOWN`) holds no
/// blob at all, and "a registry need not hold" it sent the reader after the wrong cause.
#[test]
fn a_missing_repository_is_not_said_to_lack_a_non_distributable_layer() {
    let reg = FakeRegistry::start();
    let missing = support::cli::sha256(b"far away");
    let foreign = format!(
        r#"{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{missing}","size":8,"urls":["https://far.example/layer"]}}"#
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let repo = format!("{}/team/gone", reg.host());
    let args = ["fetch", &repo, "-", "-o", out.to_str().unwrap()];
    let said = |fault: Fault| {
        reg.set_fault_for_every(&missing, fault);
        let run = Dist::new().run(&args, format!("{foreign}\n").as_bytes());
        assert_eq!(run.status.code(), Some(1));
        let lines = json_lines(&run.stdout);
        let line = lines.iter().find(|l| l["line"] == 1).unwrap();
        line["error"].as_str().unwrap().to_string()
    };
    let unknown_name = said(Fault::Page {
        status: 404,
        content_type: "application/json",
        body: r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#.into(),
    });
    assert!(
        unknown_name.contains("NAME_UNKNOWN") && !unknown_name.contains("non-distributable"),
        "{unknown_name}"
    );
    let no_code = said(Fault::Status(404));
    assert!(
        no_code.contains("404") && no_code.contains("non-distributable"),
        "{no_code}"
    );
}

/// A layer whose type alone marks it non-distributable (no `urls`) gets its note on the
/// blob's `BLOB_UNKNOWN`, and not on a repository's `NAME_UNKNOWN`.
#[test]
fn a_missing_layer_of_a_non_distributable_type_is_said_to_be_one_only_for_its_blob() {
    let reg = FakeRegistry::start();
    let missing = support::cli::sha256(b"typed far away");
    let typed = format!(
        r#"{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{missing}","size":8}}"#
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let repo = format!("{}/team/app", reg.host());
    let args = ["fetch", &repo, "-", "-o", out.to_str().unwrap()];
    let said = || {
        let run = Dist::new().run(&args, format!("{typed}\n").as_bytes());
        assert_eq!(run.status.code(), Some(1));
        let lines = json_lines(&run.stdout);
        let line = lines.iter().find(|l| l["line"] == 1).unwrap();
        line["error"].as_str().unwrap().to_string()
    };
    let blob_unknown = said();
    assert!(
        blob_unknown.contains("BLOB_UNKNOWN")
            && blob_unknown.contains("its media type marks a non-distributable layer"),
        "{blob_unknown}"
    );
    reg.set_fault_for_every(
        &missing,
        Fault::Page {
            status: 404,
            content_type: "application/json",
            body: r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#.into(),
        },
    );
    let unknown_name = said();
    assert!(
        unknown_name.contains("NAME_UNKNOWN") && !unknown_name.contains("non-distributable"),
        "{unknown_name}"
    );
}
