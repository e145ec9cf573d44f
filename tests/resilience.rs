//! Surviving the real network: stalls, expiring and revoked tokens, redirect loops,
//! interruption by signals and by `kill -9`, and a batch through random faults.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use support::cli::{
    blob_file, bytes, downloads_on_disk, json_lines, parse_frames, rotating_helper, sha256, Dist,
    Running,
};
use support::fake::{Auth, FakeRegistry, Fault, RandomFaults};
use support::wait::exit_within;

fn repo(reg: &FakeRegistry) -> String {
    format!("{}/team/app", reg.host())
}

fn fill(reg: &FakeRegistry, n: usize, len: usize) -> BTreeMap<String, Vec<u8>> {
    (0..n)
        .map(|i| {
            let data = bytes(7000 + i as u64, len + i);
            (reg.blob("team/app", &data), data)
        })
        .collect()
}

/// Every GET of every blob sends `chunk` bytes, then waits `ms` milliseconds, and so on.
fn slow_down(reg: &FakeRegistry, blobs: &BTreeMap<String, Vec<u8>>, chunk: usize, ms: u64) {
    for d in blobs.keys() {
        let delay = Duration::from_millis(ms);
        reg.set_fault_for_every(d, Fault::SlowBody { chunk, delay });
    }
}

fn lines(blobs: &BTreeMap<String, Vec<u8>>) -> String {
    blobs.keys().map(|d| format!("{d}\n")).collect()
}

/// Waits (up to 30 s) until the registry has answered a blob GET with the blob: the run
/// holds credentials (a token) the registry took, and its batch is under way. A fixed
/// pause before revoking or failing them can end, on a loaded machine, before the run
/// asked for anything, and the change then falls on its first token instead.
fn first_blob_served(reg: &FakeRegistry) {
    let served = |r: &support::fake::RequestRecord| r.path.contains("/blobs/") && r.status == 200;
    support::wait::until("a blob served", || reg.requests().iter().any(served));
}

/// Every file under blobs/ matches its name, and no temporary file or partial download
/// is left.
fn assert_store_clean(dir: &Path) -> usize {
    let sha = dir.join("blobs/sha256");
    let mut n = 0;
    for entry in std::fs::read_dir(&sha).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        assert!(
            !name.starts_with(".dist-tmp-") && !name.starts_with(".dist-partial-"),
            "temporary file left: {name}"
        );
        assert_eq!(
            sha256(&std::fs::read(entry.path()).unwrap()),
            format!("sha256:{name}")
        );
        n += 1;
    }
    n
}

/// After a stop: every object reported is stored, and whatever is stored is verified with
/// no temporary file beside it. The store may hold one or two more than were reported, of
/// objects finishing as the stop came, which the next run finds in place.
fn assert_stored_as_reported(dir: &Path, reported: &[serde_json::Value]) {
    for r in reported {
        assert!(Path::new(r["path"].as_str().unwrap()).exists(), "{r}");
    }
    let stored = assert_store_clean(dir);
    assert!(
        (reported.len()..=reported.len() + 4).contains(&stored),
        "{stored} stored, {} reported",
        reported.len()
    );
}

#[test]
fn stalled_body_is_aborted_and_resumed() {
    let reg = FakeRegistry::start();
    let data = bytes(1, 200_000);
    let digest = reg.blob("team/app", &data);
    // The stall and the bound far apart, and the idle timeout far above the gaps a loaded
    // machine puts in a body that flows: waited out, the stall shows plainly; it does not
    // happen by chance on the resumed request.
    reg.push_fault(&digest, Fault::Stall(Duration::from_secs(60)));
    let started = Instant::now();
    let got = Dist::new().ok(&["fetch", "--idle-timeout", "2s", &repo(&reg), &digest]);
    assert_eq!(got, data);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "did not wait out the stall"
    );
    let ranges: Vec<_> = reg
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/"))
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges.len(), 2);
    assert!(
        ranges[1].as_deref().unwrap().starts_with("bytes="),
        "{ranges:?}"
    );
}

/// A stalled body's connection is still open: resumed while the stalled body was held, the
/// request for the rest waited for a connection to the host, and with one allowed
/// (`--range-streams 1` leaves a one-shot fetch one) it waited for the very one the
/// stalled body held, as long as `--timeout` let it, since waiting for a connection has
/// no other limit. The stalled body is let go before the rest is asked for.
#[test]
fn a_stalled_body_does_not_hold_the_connection_its_resume_needs() {
    let reg = FakeRegistry::start();
    let data = bytes(4, 200_000);
    let digest = reg.blob("team/app", &data);
    reg.push_fault(&digest, Fault::StallAfter(50_000, Duration::from_secs(60)));
    let out = Dist::new().run(
        &[
            "fetch",
            "--range-streams",
            "1",
            "--idle-timeout",
            "1s",
            "--timeout",
            "20s",
            &repo(&reg),
            &digest,
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(out.stdout == data, "{err}");
    let resumed = reg
        .requests()
        .into_iter()
        .any(|r| r.path.contains("/blobs/") && r.range.as_deref() == Some("bytes=50000-"));
    assert!(resumed, "{:?}", reg.requests());
}

/// A body that stalls past `--retries` is a registry that cannot be used for now, status
/// 75 as in a batch, as a connection that keeps breaking is: 1 would say the object is not
/// there, and 2 (as it was) that retrying cannot cure it.
#[test]
fn a_one_shot_fetch_whose_body_keeps_stalling_exits_75() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(3, 200_000));
    reg.set_fault_for_every(&digest, Fault::Stall(Duration::from_secs(5)));
    let err = Dist::new().fails(
        75,
        &[
            "fetch",
            "--idle-timeout",
            "300ms",
            "--retries",
            "0",
            &repo(&reg),
            &digest,
        ],
        b"",
    );
    assert!(
        err.contains("body stalled: nothing for 300ms (--idle-timeout)"),
        "{err}"
    );
}

#[test]
fn expiring_tokens_are_renewed_without_failures() {
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer(Duration::from_secs(1)))
        .start();
    let blobs = fill(&reg, 40, 20_000);
    slow_down(&reg, &blobs, 5000, 80);
    let started = Instant::now();
    let out = Dist::new().run(
        &["fetch", &repo(&reg), "-", "-j", "4"],
        lines(&blobs).as_bytes(),
    );
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = parse_frames(&out.stdout);
    assert_eq!(frames.len(), 40);
    for f in frames {
        let (d, _, body) = f.result.unwrap();
        assert_eq!(blobs[&d], body);
    }
    // Renewed before it ends (a quarter of its life early), a token never meets the
    // registry's 401: only the first request, which has none yet, does. A token left to
    // run out (renewed only on a 401) met one per request in flight, 5 in all, and the
    // batch passed all the same.
    let refused: Vec<_> = reg
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v2/") && r.status == 401)
        .map(|r| r.path)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    // The batch lasts at least 3.2 s (10 rounds of 4 blobs of 320 ms) with 1 s tokens,
    // renewed a quarter early: about one token per 0.75 s it lasts, not one per object.
    // Bounded by the time the batch took, which a loaded machine stretches.
    let tokens = reg.token_requests();
    let most = (took.as_secs_f64() / 0.75).ceil() as usize + 2;
    assert!(
        (2..=most).contains(&tokens) && tokens < blobs.len(),
        "token requests: {tokens} in {took:?}"
    );
}

#[test]
fn revoked_token_mid_batch_is_refreshed_once() {
    let reg = FakeRegistry::with_tokens();
    let blobs = fill(&reg, 60, 10_000);
    slow_down(&reg, &blobs, 5000, 60);
    let child = Dist::new().spawn(
        &["fetch", &repo(&reg), "-", "-j", "6"],
        lines(&blobs).as_bytes(),
    );
    first_blob_served(&reg);
    reg.invalidate_tokens();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(parse_frames(&out.stdout).len(), 60);
    assert_eq!(
        reg.token_requests(),
        2,
        "one token, then one refresh for every task that saw the 401"
    );
}

/// Tokens revoked mid-batch while the token server hangs: the tasks that meet the 401
/// together wait for one token request and share its failure. Asking again one after
/// another behind the lock, 8 jobs took 49 token requests and 15 s of idle timeouts to
/// give up on 24 objects.
#[test]
fn a_hanging_token_server_is_asked_once_for_every_task_waiting() {
    let reg = FakeRegistry::with_tokens();
    let blobs = fill(&reg, 32, 20_000);
    slow_down(&reg, &blobs, 2000, 50);
    let child = Dist::new().spawn(
        &[
            "--retries",
            "1",
            "--idle-timeout",
            "300ms",
            "fetch",
            &repo(&reg),
            "-",
            "-j",
            "8",
        ],
        lines(&blobs).as_bytes(),
    );
    first_blob_served(&reg);
    reg.set_fault_for_every("/token", Fault::Stall(Duration::from_secs(5)));
    reg.invalidate_tokens();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("/token: body stalled"), "{err}");
    assert_eq!(parse_frames(&out.stdout).len(), 32);
    let tokens = reg.token_requests();
    assert!(tokens <= 12, "token requests: {tokens}");
}

/// Tokens revoked mid-batch while the token server fails for a second: the token server
/// is asked again after the retry policy's backoff, once for all the tasks that need a
/// token, not once by each task after its own backoff. Before, 8 jobs asked it about 20
/// times in that second.
#[test]
fn a_failing_token_server_is_asked_again_once_per_backoff() {
    let reg = FakeRegistry::with_tokens();
    let blobs = fill(&reg, 128, 10_000);
    slow_down(&reg, &blobs, 2000, 20);
    let child = Dist::new().spawn(
        &["fetch", &repo(&reg), "-", "-j", "8"],
        lines(&blobs).as_bytes(),
    );
    // Its output is read meanwhile: a full pipe would hold it up.
    let out = std::thread::spawn(move || child.wait_with_output().unwrap());
    first_blob_served(&reg);
    let before = reg.token_requests();
    reg.set_fault_for_every("/token", Fault::Status(503));
    reg.invalidate_tokens();
    // The count starts at the first failed token request, not at the revocation: a loaded
    // machine may send none for a second after it, and a count from there would be 0.
    support::wait::until("a token request failed", || reg.token_requests() > before);
    std::thread::sleep(Duration::from_millis(700));
    let failed = reg.token_requests() - before;
    reg.clear_faults();
    let out = out.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(parse_frames(&out.stdout).len(), 128);
    // At 0, then 100-200 ms, 300-600 ms and 700-1400 ms later: the fifth comes 1.5 s
    // after the first at the earliest, which leaves a loaded machine 800 ms past the
    // 700 ms counted to take the count.
    assert!(
        failed <= 4,
        "{failed} token requests in the 700 ms after the token server first failed"
    );
}

/// Runs a batch of `blobs` from `reg` with `retries`: the first alone, then `between`
/// (whose result it returns beside the batch's output), then the rest.
fn batch_after_the_first_blob<T>(
    reg: &FakeRegistry,
    blobs: &[String],
    retries: usize,
    between: impl FnOnce() -> T,
) -> (std::process::Output, T) {
    let retries = retries.to_string();
    let mut child = Dist::new().start(&["--retries", &retries, "fetch", &repo(reg), "-"]);
    let mut input = child.stdin.take().unwrap();
    writeln!(input, "{}", blobs[0]).unwrap();
    first_blob_served(reg);
    let mark = between();
    for digest in &blobs[1..] {
        writeln!(input, "{digest}").unwrap();
    }
    drop(input);
    (child.wait_with_output().unwrap(), mark)
}

/// Says that each of `digests` failed on the token server's 503, in `err`'s line for it.
fn each_failed_at_the_token_server(digests: &[String], err: &str) {
    for digest in digests {
        let said = err.lines().find(|l| l.contains(digest.as_str()));
        let said = said.unwrap_or_else(|| panic!("{digest}: {err}"));
        assert!(
            said.contains("/token: token request answered 503"),
            "{said}"
        );
    }
}

/// Asserts that of a batch of `blobs`, the second alone failed, on the token server's 503
/// ("try again later": status 75), and every object has its frame; returns stderr.
#[track_caller]
fn the_second_alone_failed_at_the_token_server(
    blobs: &[String],
    out: &std::process::Output,
) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(75), "{err}");
    each_failed_at_the_token_server(&blobs[1..2], &err);
    for digest in &blobs[2..] {
        assert!(!err.contains(digest.as_str()), "{digest}: {err}");
    }
    assert_eq!(parse_frames(&out.stdout).len(), blobs.len(), "{err}");
    err
}

/// A token that ended while the token server fails every request: with `--retries N`,
/// the token server is asked N + 1 times in all, the retries made for every task that
/// needs the token. Before, a task whose own backoff ended after the retry made for all
/// had failed asked once more for itself: 5 token requests for 8 objects with
/// `--retries 3`.
#[test]
fn a_failing_token_server_is_asked_once_per_retry_for_all() {
    const RETRIES: usize = 3;
    let ttl = Duration::from_secs(2);
    let reg = FakeRegistry::builder().auth(Auth::bearer(ttl)).start();
    let blobs: Vec<String> = (0..9)
        .map(|seed| reg.blob("team/app", bytes(9500 + seed, 1000)))
        .collect();
    let (out, asked) = batch_after_the_first_blob(&reg, &blobs, RETRIES, || {
        std::thread::sleep(ttl + Duration::from_millis(100));
        reg.set_fault_for_every("/token", Fault::Status(503));
        reg.token_requests()
    });
    let err = String::from_utf8_lossy(&out.stderr);
    // Every line failed for the moment, the token server's 503s: "try again later".
    assert_eq!(out.status.code(), Some(75), "{err}");
    each_failed_at_the_token_server(&blobs[1..], &err);
    assert_eq!(reg.token_requests() - asked, RETRIES + 1, "{err}");
}

/// Tokens revoked while the token server fails every request: the token the registry
/// refused is not sent again while a new one is pending, but by one request, once, so
/// each object meets the registry's 401 once at most, and one more, and every retry goes
/// to the token server's turn. Before, each attempt sent the refused token first: 32
/// 401s for 8 objects with `--retries 3`.
#[test]
fn a_refused_token_is_not_sent_again_while_its_renewal_fails() {
    const RETRIES: usize = 3;
    let reg = FakeRegistry::with_tokens();
    let blobs: Vec<String> = (0..9)
        .map(|seed| reg.blob("team/app", bytes(9600 + seed, 1000)))
        .collect();
    let (out, seen) = batch_after_the_first_blob(&reg, &blobs, RETRIES, || {
        reg.set_fault_for_every("/token", Fault::Status(503));
        reg.invalidate_tokens();
        reg.requests().len()
    });
    let err = String::from_utf8_lossy(&out.stderr);
    // Every line failed for the moment, the token server's 503s: "try again later".
    assert_eq!(out.status.code(), Some(75), "{err}");
    each_failed_at_the_token_server(&blobs[1..], &err);
    let requests = reg.requests();
    let refused = requests[seen..]
        .iter()
        .filter(|r| r.path.starts_with("/v2/") && r.status == 401)
        .count();
    assert!(
        (1..=blobs.len()).contains(&refused),
        "{refused} requests met the registry's 401: {err}"
    );
}

/// A registry that refuses a good token once (a replica that had not heard of it yet)
/// while its token server fails every request: the object that met the 401 fails on the
/// token server's 503 (`--retries 0`), and the token, still valid, is sent once more
/// when the next object's renewal fails, taken, and sent on. Before, every object after
/// the 401 failed on the token server.
#[test]
fn a_token_refused_once_while_the_token_server_fails_is_sent_again() {
    let reg = FakeRegistry::with_tokens();
    let blobs: Vec<String> = (0..9)
        .map(|seed| reg.blob("team/app", bytes(9800 + seed, 1000)))
        .collect();
    let mut child = Dist::new().start(&["--retries", "0", "fetch", &repo(&reg), "-", "-j", "1"]);
    let mut input = child.stdin.take().unwrap();
    writeln!(input, "{}", blobs[0]).unwrap();
    first_blob_served(&reg);
    reg.set_fault_for_every("/token", Fault::Status(503));
    reg.push_fault(&blobs[1], Fault::Unauthorized);
    let asked = reg.token_requests();
    for digest in &blobs[1..] {
        writeln!(input, "{digest}").unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let err = the_second_alone_failed_at_the_token_server(&blobs, &out);
    // The renewal the 401 asked for, and the next object's, before the token was sent.
    assert_eq!(reg.token_requests() - asked, 2, "{err}");
}

/// The token sent once more (above) goes with a request the registry leaves unanswered:
/// two 503s, after which the request is held behind the registry's outage, asking for
/// its token before it is let go and again after. While the token server asks for more
/// than dist waits (`Retry-After: 3600`), no token request is made to give another
/// resend: that request keeps its own and sends it again, the registry takes it, and
/// the token is sent on. Before, the resend was spent on the 503 (under the outage, on
/// the token asked for before the request was let go), and that object and every later
/// one failed on the token server.
#[test]
fn a_token_sent_once_more_is_kept_by_its_request_through_the_registry_s_503s() {
    let (reg, blobs, asked, out) = a_refused_token_then_two_503s("3", 9850);
    let err = the_second_alone_failed_at_the_token_server(&blobs, &out);
    let requests = reg.requests();
    let sent = |digest: &str| requests.iter().filter(|r| r.path.contains(digest)).count();
    assert_eq!(sent(&blobs[2]), 3, "two 503s and the answer: {err}");
    // The renewal the 401 asked for, and none while the token server asks to wait.
    assert_eq!(reg.token_requests() - asked, 1, "{err}");
}

/// The same, with `--retries 1`: the request that was sending the token once more fails
/// on its two 503s, and gives it back; the next object sends it, the registry takes it,
/// and the rest are served. Before, it stayed spent, and every later object failed on
/// the token server, which asked for an hour before it would issue another.
#[test]
fn a_token_sent_once_more_is_given_back_by_a_request_that_failed_unanswered() {
    let (_reg, blobs, _, out) = a_refused_token_then_two_503s("1", 9870);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    each_failed_at_the_token_server(&blobs[1..2], &err);
    let said = err.lines().find(|l| l.contains(blobs[2].as_str()));
    let said = said.unwrap_or_else(|| panic!("{}: {err}", blobs[2]));
    assert!(said.contains("answered 503"), "{said}");
    assert!(!said.contains("/token"), "{said}");
    for digest in &blobs[3..] {
        assert!(!err.contains(digest.as_str()), "{digest}: {err}");
    }
    assert_eq!(parse_frames(&out.stdout).len(), blobs.len(), "{err}");
}

/// The batch of the two tests above, with `--retries` at `retries`: six blobs, the first
/// served; then the token server asks for an hour before it issues another, the second
/// blob meets a 401 and the third two 503s. Returns the registry, the blobs, the token
/// requests before the faults, and the batch's output.
fn a_refused_token_then_two_503s(
    retries: &str,
    seed: u64,
) -> (FakeRegistry, Vec<String>, usize, std::process::Output) {
    let reg = FakeRegistry::with_tokens();
    let blobs: Vec<String> = (0..6)
        .map(|i| reg.blob("team/app", bytes(seed + i, 1000)))
        .collect();
    let mut child =
        Dist::new().start(&["--retries", retries, "fetch", &repo(&reg), "-", "-j", "1"]);
    let mut input = child.stdin.take().unwrap();
    writeln!(input, "{}", blobs[0]).unwrap();
    first_blob_served(&reg);
    reg.set_fault_for_every(
        "/token",
        Fault::StatusWithRetryAfter(503, "3600".to_string()),
    );
    reg.push_fault(&blobs[1], Fault::Unauthorized);
    reg.push_fault(&blobs[2], Fault::Status(503));
    reg.push_fault(&blobs[2], Fault::Status(503));
    let asked = reg.token_requests();
    for digest in &blobs[1..] {
        writeln!(input, "{digest}").unwrap();
    }
    drop(input);
    (reg, blobs, asked, child.wait_with_output().unwrap())
}

/// A registry that refuses every token its token server issues (a signing key they do not
/// share, a scope it reads otherwise, a clock behind the token's): the refusal, 2 tokens
/// just issued and refused in a row, is established once. Each later object sends its
/// request once, with the token it has, and fails at that 401 as the first did, asking
/// no token; before, each cost 2 token requests and 3 401s. It stands only while the
/// registry says the same: taking the token again, it serves, and challenging for
/// another scope, it gets its tokens asked for again.
#[test]
fn a_registry_refusing_its_token_server_s_tokens_costs_one_round_per_run() {
    let reg = FakeRegistry::with_tokens();
    let blobs: Vec<String> = (0..8)
        .map(|seed| reg.blob("team/app", bytes(9700 + seed, 1000)))
        .collect();
    let challenge = |scope: &str| {
        let realm = format!("{}/token", reg.url());
        Fault::Challenge(format!(
            r#"Bearer realm="{realm}",service="fake",scope="repository:team/app:{scope}",error="invalid_token""#
        ))
    };
    for digest in &blobs[..5] {
        reg.set_fault_for_every(digest, challenge("pull"));
    }
    for digest in &blobs[5..7] {
        reg.set_fault_for_every(digest, challenge("pull,push"));
    }
    let mut child = Dist::new().start(&["fetch", &repo(&reg), "-", "-j", "1"]);
    let mut input = child.stdin.take().unwrap();
    let asked = |digest: &str| reg.requests_for(&format!("blobs/{digest}"));
    writeln!(input, "{}", blobs[0]).unwrap();
    // Its third request, with the second token it was issued.
    support::wait::until("the refusal established", || asked(&blobs[0]) == 3);
    let tokens = reg.token_requests();
    for digest in &blobs[1..5] {
        writeln!(input, "{digest}").unwrap();
    }
    support::wait::until("the fifth object asked for", || asked(&blobs[4]) > 0);
    assert_eq!(
        reg.token_requests(),
        tokens,
        "tokens asked for after the refusal"
    );
    // The registry takes the token again: the next object is served with it.
    reg.clear_faults();
    for digest in &blobs[5..7] {
        reg.set_fault_for_every(digest, challenge("pull,push"));
    }
    for digest in &blobs[5..] {
        writeln!(input, "{digest}").unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for digest in &blobs[1..5] {
        assert_eq!(asked(digest), 1, "{digest}: {err}");
    }
    for digest in &blobs[..7] {
        let said = err.lines().find(|l| l.contains(digest.as_str()));
        let said = said.unwrap_or_else(|| panic!("{digest}: {err}"));
        assert!(
            said.contains(&format!("/v2/team/app/blobs/{digest}")),
            "{said}"
        );
        assert!(
            said.contains("answered 401 Unauthorized")
                && said
                    .contains("it refused 2 tokens in a row, each just issued by its token server"),
            "{said}"
        );
    }
    // Another scope asked for: a token for it, then another, both refused.
    assert_eq!(asked(&blobs[5]), 3, "{err}");
    assert_eq!(asked(&blobs[6]), 1, "{err}");
    assert_eq!(reg.token_requests(), tokens + 2, "{err}");
    assert_eq!(parse_frames(&out.stdout).len(), 8);
    assert!(!err.contains(blobs[7].as_str()), "{err}");
}

/// Runs a batch of 30 slowed blobs from `reg` with credentials from a helper whose
/// password changes to "second" (and the registry's to `changed()`) once the first blob is
/// served; every blob must arrive. Returns the `dist` (its helper still handing out
/// "second") and the blobs.
fn batch_across_a_password_change(
    reg: &FakeRegistry,
    changed: impl Fn() -> Auth,
) -> (Dist, BTreeMap<String, Vec<u8>>) {
    let blobs = fill(reg, 30, 10_000);
    slow_down(reg, &blobs, 5000, 60);
    let mut dist = Dist::new();
    let secret = dist.config_dir().join("secret");
    std::fs::write(&secret, "first").unwrap();
    rotating_helper(&mut dist, &secret);
    let child = dist.spawn(
        &["fetch", &repo(reg), "-", "-j", "4"],
        lines(&blobs).as_bytes(),
    );
    first_blob_served(reg);
    std::fs::write(&secret, "second").unwrap();
    reg.set_auth(changed());
    reg.invalidate_tokens();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(parse_frames(&out.stdout).len(), 30);
    (dist, blobs)
}

/// A helper's credentials may expire within a long run, and the helper then hands out
/// new ones: once refused, it is asked again, and the batch goes on. Asked once per run,
/// its first answer was refused at the next token renewal, and every object after it
/// failed.
#[test]
fn credentials_from_a_helper_are_asked_again_once_refused() {
    for bearer in [true, false] {
        let auth = |pass: &str| match bearer {
            true => Auth::Bearer {
                ttl: Duration::from_secs(1),
                reply: Default::default(),
                credentials: Some(("robot".into(), pass.into())),
            },
            false => Auth::basic("robot", pass),
        };
        let reg = FakeRegistry::builder().auth(auth("first")).start();
        batch_across_a_password_change(&reg, || auth("second"));
    }
}

/// ECR answers a password past its 12 hours with `403 Your authorization token has
/// expired`, not a 401: Basic credentials from a helper are looked up again on a 403 too.
/// A 403 that stays (the same credential again) still fails, without the helper being
/// run for every object.
#[test]
fn an_expired_password_refused_with_403_is_looked_up_again() {
    let reg = FakeRegistry::builder()
        .auth(Auth::basic("robot", "first"))
        .start();
    reg.forbid_stale_basic();
    let (dist, blobs) = batch_across_a_password_change(&reg, || Auth::basic("robot", "second"));

    // The helper keeps handing out the expired password: the 403 is the answer.
    reg.set_auth(Auth::basic("robot", "third"));
    std::fs::remove_file(dist.config_dir().join("helper-runs")).unwrap();
    let out = dist.run(
        &["fetch", &repo(&reg), "-", "-j", "4"],
        lines(&blobs).as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("authorization token has expired"), "{err}");
    let runs = std::fs::read_to_string(dist.config_dir().join("helper-runs")).unwrap_or_default();
    assert!(
        runs.lines().count() <= 4,
        "the helper ran {} times",
        runs.lines().count()
    );
}

/// A password that ECR stops taking within a run (its 12 hours) is answered with a 403,
/// which nothing fresher replaces when it comes from a file: it is remembered as a
/// refused password is, and the rest of the batch fails without sending it again, where
/// each of its objects sent it once more.
#[test]
fn a_password_expired_within_a_batch_is_not_sent_for_every_object() {
    let reg = FakeRegistry::builder()
        .auth(Auth::basic("AWS", "first"))
        .start();
    reg.forbid_stale_basic();
    let blobs = fill(&reg, 30, 10_000);
    slow_down(&reg, &blobs, 5000, 60);
    let dist = Dist::new();
    dist.login(&reg.host(), "AWS", "first");
    let child = dist.spawn(
        &["fetch", &repo(&reg), "-", "-j", "4"],
        lines(&blobs).as_bytes(),
    );
    first_blob_served(&reg);
    reg.set_auth(Auth::basic("AWS", "second"));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    let failed: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("dist: line"))
        .collect();
    assert!(!failed.is_empty(), "{err}");
    for line in failed {
        // Each in the registry's words, not only the first.
        assert!(line.contains("authorization token has expired"), "{line}");
    }
    let refused = reg.requests().iter().filter(|r| r.status == 403).count();
    // Those already on their way when the first 403 came, one per task at most.
    assert!(
        (1..=4).contains(&refused),
        "{refused} requests met the 403: {err}"
    );
}

#[test]
fn redirect_loops_end_after_ten_hops() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", b"x");
    let url = format!("{}/v2/team/app/blobs/{digest}", reg.url());
    reg.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 302,
            location: url,
        },
    );
    let out = Dist::new().run(&["fetch", &repo(&reg), &digest], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than 10 redirects"));
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 11);
}

/// A batch that is slow enough to interrupt: 30 blobs of 20 KB at ~4 KB per 100 ms each.
fn slow_batch() -> (FakeRegistry, BTreeMap<String, Vec<u8>>) {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 30, 20_000);
    slow_down(&reg, &blobs, 4000, 100);
    (reg, blobs)
}

fn start_batch(
    dist: &Dist,
    reg: &FakeRegistry,
    blobs: &BTreeMap<String, Vec<u8>>,
    dir: &Path,
) -> Running {
    let args = [
        "fetch",
        &repo(reg),
        "-",
        "-j",
        "4",
        "-o",
        dir.to_str().unwrap(),
    ];
    dist.spawn(&args, lines(blobs).as_bytes())
}

/// A run after an interrupted one, with default options: `blobs` into `dir`.
fn rerun_into(
    dist: &Dist,
    reg: &FakeRegistry,
    blobs: &BTreeMap<String, Vec<u8>>,
    dir: &Path,
) -> std::process::Output {
    let args = ["fetch", &repo(reg), "-", "-o", dir.to_str().unwrap()];
    dist.run(&args, lines(blobs).as_bytes())
}

/// How long a signalled run may take to exit: far past the milliseconds it takes, so that
/// only a hang fails it on a loaded machine. A run that went on with its downloads is
/// caught without the clock, by what it kept (partials, not whole blobs; some objects
/// reported, not all).
const PROMPTLY: Duration = Duration::from_secs(10);

#[test]
fn sigterm_stops_promptly_and_leaves_only_verified_blobs() {
    let (reg, blobs) = slow_batch();
    let dir = tempfile::tempdir().unwrap();
    let dist = Dist::new();
    let mut child = start_batch(&dist, &reg, &blobs, dir.path());
    // Its first line: some object is done, others are not (a fixed pause could end before
    // the first on a loaded machine).
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    let signalled = Instant::now();
    assert_eq!(unsafe_kill(child.id(), 15), 0);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(signalled.elapsed() < PROMPTLY, "stopped promptly");
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reported = json_lines(&[first.as_bytes(), &rest].concat());
    assert!(
        !reported.is_empty() && reported.len() < 30,
        "some, not all, finished: {}",
        reported.len()
    );
    assert!(reported.iter().all(|r| r["status"] == "ok"));
    assert_stored_as_reported(dir.path(), &reported);
}

/// `n` blobs of 12 MiB, each served at `bytes_per_sec`: downloads that last long enough to
/// be cut while their hashing and writer threads hold files.
fn paced_large_blobs(n: usize, bytes_per_sec: u64) -> (FakeRegistry, BTreeMap<String, Vec<u8>>) {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, n, 12 << 20);
    for d in blobs.keys() {
        let fault = Fault::Paced {
            bytes_per_sec,
            first_byte: Duration::ZERO,
        };
        reg.set_fault_for_every(d, fault);
    }
    (reg, blobs)
}

/// The partial downloads under `dir`'s blobs: digest → bytes kept.
fn partials(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().unwrap();
            let hex = name.strip_prefix(".dist-partial-")?.to_string();
            Some((format!("sha256:{hex}"), std::fs::read(e.path()).unwrap()))
        })
        .collect()
}

/// Asserts that `dir`'s blob folder holds a partial download of each of `blobs` and
/// nothing else, each a prefix of its blob past the first MiB; returns them.
fn assert_only_partials(
    dir: &Path,
    blobs: &BTreeMap<String, Vec<u8>>,
) -> BTreeMap<String, Vec<u8>> {
    let kept = partials(dir);
    let names = std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count();
    assert_eq!(names, kept.len(), "nothing but the partials");
    assert_eq!(kept.len(), blobs.len(), "a partial download per blob");
    for (digest, prefix) in &kept {
        let whole = &blobs[digest];
        assert!(
            prefix.len() > 1 << 20 && prefix.len() < whole.len(),
            "{} of {} bytes",
            prefix.len(),
            whole.len()
        );
        assert!(whole[..prefix.len()] == prefix[..], "a prefix of {digest}");
    }
    kept
}

/// Large objects are hashed and written on threads of their own, which wait for their
/// fetch. Interrupted, the fetches must be dropped before the process waits for those
/// threads: it once sat out a two-second timeout, its temporary files there until the end.
/// What they wrote is kept as partial downloads, which the next run carries on with
/// `Range` instead of fetching again from the first byte.
#[test]
fn sigint_during_large_downloads_stops_promptly_and_keeps_partials_a_rerun_carries_on() {
    let (reg, blobs) = paced_large_blobs(3, 2 << 20);
    let dir = tempfile::tempdir().unwrap();
    let dist = Dist::new();
    let child = start_batch(&dist, &reg, &blobs, dir.path());
    // Past the first MiB of each, the files belong to writer threads.
    assert_eq!(downloads_past_their_first_mib(dir.path(), 3), 3);
    let signalled = Instant::now();
    assert_eq!(unsafe_kill(child.id(), 2), 0);
    let out = child.wait_with_output().unwrap();
    // That it stopped mid-download is shown by the partials below, whatever the clock.
    // The bound is a hang's: the exit takes milliseconds, and the waits at shutdown are
    // capped (main.rs); 2 s was the bug this test came with (the cancelled fetches kept
    // past the blocking pool's timeout), which later writers no longer reproduce, and on
    // two loaded cores a bound that tight failed runs that had done nothing wrong.
    assert!(
        signalled.elapsed() < PROMPTLY,
        "stopped promptly: {:?}",
        signalled.elapsed()
    );
    assert_eq!(out.status.code(), Some(130));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kept for the next run to carry on"), "{err}");
    let kept = assert_only_partials(dir.path(), &blobs);

    reg.clear_faults();
    let before = reg.requests().len();
    let out = rerun_into(&dist, &reg, &blobs, dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(assert_store_clean(dir.path()), 3);
    let rerun = &reg.requests()[before..];
    for (digest, prefix) in &kept {
        let gets: Vec<_> = rerun
            .iter()
            .filter(|r| r.path.ends_with(&format!("/blobs/{digest}")))
            .collect();
        assert_eq!(gets.len(), 1, "{digest}: {gets:?}");
        assert_eq!(
            gets[0].range.as_deref(),
            Some(format!("bytes={}-", prefix.len()).as_str()),
            "only the rest was asked for"
        );
    }
}

/// Waits (up to 30 s) until `n` files being written into the layout at `dir` hold more
/// than their first MiB on disk; returns how many do. Watched, not timed: a fixed pause
/// for the paced downloads to get there can end before they do on a loaded machine.
fn downloads_past_their_first_mib(dir: &Path, n: usize) -> usize {
    let past = || {
        downloads_on_disk(dir)
            .into_iter()
            .filter(|&len| len > 1 << 20)
            .count()
    };
    let waited = Instant::now();
    while past() < n && waited.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    past()
}

/// SIGHUP (the terminal closed, the SSH session dropped) stops a batch as SIGTERM does:
/// status 129, no temporary file, the large downloads kept as partials for the next run.
/// Left to its default, it killed the process with all its temporary files in place.
#[test]
fn sighup_stops_a_batch_as_sigterm_does() {
    let (reg, blobs) = paced_large_blobs(2, 2 << 20);
    let dir = tempfile::tempdir().unwrap();
    let child = start_batch(&Dist::new(), &reg, &blobs, dir.path());
    assert_eq!(downloads_past_their_first_mib(dir.path(), 2), 2);
    assert_eq!(unsafe_kill(child.id(), libc::SIGHUP), 0);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(129), "{:?}: {err}", out.status);
    assert!(err.contains("kept for the next run to carry on"), "{err}");
    assert_only_partials(dir.path(), &blobs);
}

/// A batch into a directory of its own making, stopped before it stored anything, removes
/// the directory again as a failed one does; it was left as an empty layout, the stopped
/// download's temporary file deleted only after the check for an unused layout.
#[test]
fn a_batch_stopped_before_storing_anything_removes_its_new_directory() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(71, 20_000));
    reg.set_fault_for_every(&digest, Fault::StallAfter(5, Duration::from_secs(600)));
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("new");
    let args = ["fetch", &repo(&reg), "-", "-o", dir.to_str().unwrap()];
    let child = Dist::new().spawn(&args, format!("{digest}\n").as_bytes());
    // Stopped with the download's file in the new layout: a fixed pause after the request
    // cost 300 ms, and on a loaded machine could end before the file was made.
    support::wait::within(Duration::from_secs(20), "the download's file", || {
        !downloads_on_disk(&dir).is_empty()
    });
    assert_eq!(unsafe_kill(child.id(), libc::SIGINT), 0);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(!dir.exists(), "an empty layout was left");
}

/// Whether process `pid` has a handler of its own for `signal` (its `SigCgt` mask), or
/// `None` once it has exited.
fn catches(pid: u32, signal: i32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
    let mask = u64::from_str_radix(mask.trim(), 16).unwrap();
    // A zombie has let go of every handler: exited, for this purpose.
    let zombie = status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains('Z'));
    (!zombie).then_some(mask & (1 << (signal - 1)) != 0)
}

/// A batch of framed output to a pipe nobody reads, stuck once the pipe is full, so that a
/// stop waits its while for the output; with dist's handler for SIGINT in place. The
/// pipe's reading end is returned, to be held: closed, the batch would stop on its own.
fn a_batch_stuck_on_its_output(reg: &FakeRegistry) -> (Running, std::process::ChildStdout) {
    let blobs = fill(reg, 40, 200_000);
    let mut child = Dist::new().spawn(
        &["fetch", &repo(reg), "-", "-j", "4"],
        lines(&blobs).as_bytes(),
    );
    let pid = child.id();
    // 8 MB of frames against a pipe nobody reads.
    let out = child.stdout.take().unwrap();
    support::wait::until("stdout's pipe full", || {
        use std::os::fd::AsRawFd;
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int, the bytes waiting in the pipe we hold.
        assert_eq!(
            unsafe { libc::ioctl(out.as_raw_fd(), libc::FIONREAD, &mut queued) },
            0
        );
        queued >= 64 << 10
    });
    support::wait::until("dist's handler for SIGINT", || {
        catches(pid, libc::SIGINT) == Some(true)
    });
    (child, out)
}

/// Sends `signal` to a batch from [`a_batch_stuck_on_its_output`] and waits until its
/// stop has begun (its handler for SIGINT given back); whether dist is still running, as
/// it is for the 2 s its output gets to finish, unless this thread was kept off a core
/// for all of them (a loaded machine), when the caller tries again.
fn begin_stop(pid: u32, signal: i32) -> bool {
    assert_eq!(unsafe_kill(pid, signal), 0);
    support::wait::until("the stop begun", || {
        catches(pid, libc::SIGINT) != Some(true)
    });
    catches(pid, libc::SIGINT) == Some(false)
}

/// Runs `case` (which says whether its second signal reached a stopping dist) until it
/// does, three times at most.
fn within_a_stop(what: &str, mut case: impl FnMut() -> bool) {
    for _ in 0..3 {
        if case() {
            return;
        }
        eprintln!("{what}: dist exited before the second signal; again");
    }
    panic!("{what}: dist exited before the second signal three times");
}

/// A second Ctrl-C ends a stopping batch at once, as Ctrl-C's default does: the first
/// stops it cleanly, which takes a while when the reader of its output does not read (or
/// a disk does not answer), and a second was caught and ignored by the handler the first
/// left in place.
#[test]
fn a_second_sigint_ends_a_stopping_batch_at_once() {
    use std::os::unix::process::ExitStatusExt;
    let reg = FakeRegistry::start();
    within_a_stop("a second SIGINT", || {
        let (mut child, _out) = a_batch_stuck_on_its_output(&reg);
        let pid = child.id();
        let stopping = begin_stop(pid, libc::SIGINT);
        if stopping {
            assert_eq!(unsafe_kill(pid, libc::SIGINT), 0);
        }
        let status = exit_within(&mut child, Duration::from_secs(30), "a second SIGINT");
        if stopping {
            assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
        }
        stopping
    });
}

/// A closed terminal sends SIGHUP twice: the shell passes its own on to its jobs, and the
/// kernel sends another to the foreground job as the shell, the session's leader, exits
/// (systemd's `SendSIGHUP=` sends one right after SIGTERM). The second is no user asking
/// for a quicker end: it killed the stopping batch on the spot, the very loss that
/// handling SIGHUP is there to prevent.
#[test]
fn a_second_sighup_does_not_end_a_stopping_batch() {
    let reg = FakeRegistry::start();
    for first in [libc::SIGHUP, libc::SIGTERM] {
        within_a_stop("a second SIGHUP", || {
            let (mut child, _out) = a_batch_stuck_on_its_output(&reg);
            let pid = child.id();
            let stopping = begin_stop(pid, first);
            if stopping {
                assert_eq!(unsafe_kill(pid, libc::SIGHUP), 0);
            }
            let status = exit_within(&mut child, Duration::from_secs(30), "a stop");
            assert_eq!(status.code(), Some(128 + first), "{first}: {status:?}");
            stopping
        });
    }
}

/// A signal ignored when dist starts stays ignored: `nohup` ignores SIGHUP, a shell running
/// `dist … &` from a script ignores SIGINT, so that closing the terminal or a Ctrl-C meant
/// for the foreground leaves the batch running. dist's own handler for SIGINT stopped it.
#[test]
fn signals_ignored_at_start_stay_ignored() {
    use std::os::unix::process::CommandExt;
    let (reg, blobs) = slow_batch();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "fetch",
        &repo(&reg),
        "-",
        "-j",
        "8",
        "-o",
        dir.path().to_str().unwrap(),
    ];
    let mut command = Dist::new().command(&args);
    // SAFETY: only signal(2), async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            for signal in [libc::SIGINT, libc::SIGHUP] {
                if libc::signal(signal, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = Running::piped(&mut command);
    let input = lines(&blobs);
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    // The first frame: the batch is under way, and its handlers (if any) are set.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    for signal in [libc::SIGINT, libc::SIGHUP] {
        assert_eq!(unsafe_kill(child.id(), signal), 0);
    }
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{:?}: {err}", out.status);
    assert_eq!(json_lines(&rest).len() + 1, blobs.len());
    assert_eq!(assert_store_clean(dir.path()), blobs.len());
}

/// A producer that lives on keeps dist's stdin open; SIGTERM sent to dist alone (as a
/// supervisor does) must not wait for a read of stdin that nothing can cancel. It once
/// waited out the two-second shutdown timeout.
#[test]
fn sigterm_with_stdin_still_open_stops_promptly() {
    use std::io::{Read, Write};
    let reg = FakeRegistry::start();
    let data = bytes(61, 1000);
    let digest = reg.blob("team/app", &data);
    let dist = Dist::new();
    let mut child = dist.start(&["fetch", &repo(&reg), "-"]);
    let mut input = child.stdin.take().unwrap();
    input.write_all(format!("{digest}\n").as_bytes()).unwrap();
    input.flush().unwrap();
    // Its frame on stdout: the input is being read and the signal handlers are set.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    let signalled = Instant::now();
    assert_eq!(unsafe_kill(child.id(), 15), 0);
    let status = child.wait().unwrap();
    let took = signalled.elapsed();
    drop(input);
    // Timed, since only time tells the fault: the shutdown timeout waited out is 2 s
    // before the exit, and nothing else marks it. So the bound is 2 s, the widest that
    // still fails it (a stop takes some milliseconds), for a loaded machine's sake.
    assert!(took < Duration::from_secs(2), "stopped promptly: {took:?}");
    assert_eq!(status.code(), Some(143));
}

/// Regression: lines that start nothing (here the same object, over and over, from a
/// producer that never stops) were read within one poll of the worker's input, so a
/// SIGTERM was not seen until the input ended: never, behind an endless producer.
#[test]
fn sigterm_stops_a_batch_fed_an_endless_run_of_duplicate_lines() {
    use std::io::{BufRead, Write};
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(62, 1000));
    let dir = tempfile::tempdir().unwrap();
    let dist = Dist::new();
    let mut child = dist.start(&[
        "fetch",
        &repo(&reg),
        "-",
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    let mut input = child.stdin.take().unwrap();
    let line = format!("{digest}\n");
    input.write_all(line.as_bytes()).unwrap();
    input.flush().unwrap();
    // Its JSON line: the object is stored, the signal handlers are set.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains(r#""status":"ok""#), "{first}");
    // Written whole only as dist reads it: the duplicates are being read when the
    // signal comes, and go on coming.
    let flood = line.repeat((1 << 20) / line.len());
    input.write_all(flood.as_bytes()).unwrap();
    let producer = std::thread::spawn(move || while input.write_all(flood.as_bytes()).is_ok() {});
    assert_eq!(unsafe_kill(child.id(), 15), 0);
    let status = exit_within(
        &mut child,
        Duration::from_secs(30),
        "SIGTERM amid duplicates",
    );
    assert_eq!(status.code(), Some(143));
    producer.join().unwrap();
}

#[test]
fn after_kill_9_a_rerun_completes_without_refetching() {
    let (reg, blobs) = slow_batch();
    let dir = tempfile::tempdir().unwrap();
    let dist = Dist::new();
    let mut child = start_batch(&dist, &reg, &blobs, dir.path());
    let sha = dir.path().join("blobs/sha256");
    let stored = || -> Vec<String> {
        std::fs::read_dir(&sha)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().into_string().unwrap())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Killed once one blob is stored, not after a fixed pause, which a loaded machine
    // can end before the first.
    support::wait::until("a blob stored", || !stored().is_empty());
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let done = stored();
    assert!(!done.is_empty() && done.len() < 30, "{}", done.len());
    reg.clear_faults();
    let before = reg.request_count();
    let out = rerun_into(&dist, &reg, &blobs, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(assert_store_clean(dir.path()), 30);
    let refetched = reg.requests()[before..]
        .iter()
        .filter(|r| done.iter().any(|d| r.path.ends_with(d.as_str())))
        .count();
    assert_eq!(refetched, 0, "verified blobs are not fetched again");
}

#[test]
fn batch_through_random_faults_completes_with_nothing_corrupted() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 200, 30_000);
    reg.set_random_faults(RandomFaults {
        seed: 42,
        p_503: 0.10,
        p_429_retry_after_1s: 0.01,
        p_drop_mid_body: 0.05,
        p_corrupt: 0.02,
    });
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Dist::new().run(
        &[
            "fetch",
            &repo(&reg),
            "-",
            "-o",
            dir.path().to_str().unwrap(),
            "--retries",
            "8",
        ],
        lines(&blobs).as_bytes(),
    );
    let counts = reg.random_fault_counts();
    eprintln!(
        "faults injected: {counts:?}; requests: {}; wall: {:?}",
        reg.request_count(),
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        counts.status_503 > 0 && counts.drop_mid_body > 0 && counts.corrupt > 0,
        "{counts:?}"
    );
    assert_eq!(assert_store_clean(dir.path()), 200);
    for (d, data) in &blobs {
        assert_eq!(&std::fs::read(blob_file(dir.path(), d)).unwrap(), data);
    }
}

fn unsafe_kill(pid: u32, sig: i32) -> i32 {
    // std has no kill(2) for an arbitrary signal; procps's kill(1) is not on every slim
    // machine, libc's call is.
    // SAFETY: kill(2) with a PID this test spawned and a plain signal number.
    unsafe { libc::kill(pid as libc::pid_t, sig) }
}

/// The figures for the issue's fault mix over 1000 blobs: run by hand with
/// `cargo test --release --test resilience -- --ignored --nocapture soak`.
#[test]
#[ignore = "a measurement (about a minute); run by hand for the figures"]
fn soak_thousand_blobs_through_the_fault_mix() {
    let reg = FakeRegistry::start();
    let blobs: BTreeMap<String, Vec<u8>> = (0..1000)
        .map(|i| {
            let data = bytes(90_000 + i as u64, 4096 + (i * 7919) % (60 << 10));
            (reg.blob("team/app", &data), data)
        })
        .collect();
    let input = lines(&blobs);
    let run = |faults: bool| {
        let dir = tempfile::tempdir().unwrap();
        let before = reg.request_count();
        if faults {
            reg.set_random_faults(RandomFaults {
                seed: 7,
                p_503: 0.10,
                p_429_retry_after_1s: 0.05,
                p_drop_mid_body: 0.05,
                p_corrupt: 0.02,
            });
        } else {
            reg.clear_faults();
        }
        let started = Instant::now();
        let out = Dist::new().run(
            &[
                "fetch",
                &repo(&reg),
                "-",
                "-o",
                dir.path().to_str().unwrap(),
                "--retries",
                "10",
            ],
            input.as_bytes(),
        );
        let wall = started.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stored = assert_store_clean(dir.path());
        let ok = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("\"status\":\"ok\""))
            .count();
        (ok, stored, reg.request_count() - before, wall)
    };
    let (ok0, _, req0, wall0) = run(false);
    let (ok1, stored1, req1, wall1) = run(true);
    let counts = reg.random_fault_counts();
    println!("fault-free: {ok0} objects, {req0} requests, {wall0:?}");
    println!(
        "with faults: {ok1} objects completed, {stored1} verified files, 0 corrupted, {req1} requests, {wall1:?} ({:.1}x the fault-free wall); injected {counts:?}",
        wall1.as_secs_f64() / wall0.as_secs_f64()
    );
    assert_eq!((ok0, ok1, stored1), (1000, 1000, 1000));
}

/// SIGTERM ends a batch whose reader has stopped reading: its output gets 2 s to finish
/// (README), and without the stop the batch waits for the reader for ever.
#[test]
fn sigterm_is_honoured_while_nobody_reads_stdout() {
    let reg = FakeRegistry::start();
    // Stuck on a full pipe, with dist's handlers set: a fixed pause (it was 1 s) could end
    // before either on a loaded machine, and SIGTERM's default then killed dist.
    let (mut child, _out) = a_batch_stuck_on_its_output(&reg);
    assert_eq!(unsafe_kill(child.id(), 15), 0);
    // Not timed: a batch that waits for its reader never ends, and what is proved is that
    // this one does, as a stop says.
    let status = exit_within(
        &mut child,
        Duration::from_secs(30),
        "SIGTERM, a stuck reader",
    );
    assert_eq!(status.code(), Some(143));
}

/// A stderr nobody reads (a pipe to a hung log shipper) does not hold a stopped run for
/// ever: the messages still queued for it are waited for a while, then given up, and
/// SIGTERM and `--timeout` end the run with their status. It waited for stderr without
/// end, the signal its stop had consumed, until a second one (a pod's SIGKILL).
#[test]
fn a_stop_is_honoured_while_nobody_reads_stderr() {
    use std::os::fd::AsRawFd;
    let reg = FakeRegistry::start();
    // The timeout leaves the run time to fill stderr's pipe first, on a loaded machine
    // too: a run that ended before would leave the wait below for a pipe never full.
    for (extra, signal, code) in [(None, Some(15), 143), (Some("8s"), None, 124)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let loc = repo(&reg);
        let mut args = vec!["fetch", &loc, "-", "-o", out.to_str().unwrap()];
        if let Some(t) = extra {
            args.extend(["--timeout", t]);
        }
        // Its JSON lines are read; only stderr's are not.
        let mut child = Running::new(
            Dist::new()
                .command(&args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let pid = child.id();
        // One error line each, far more than a pipe holds; stdin stays open, so the run
        // ends by its stop alone.
        let mut stdin = child.stdin.take().unwrap();
        let bad: String = (0..4000).map(|i| format!("bad!{i}\n")).collect();
        stdin.write_all(bad.as_bytes()).unwrap();
        let err = child.stderr.take().unwrap();
        support::wait::until("stderr's pipe full", || {
            let mut queued: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int, the bytes waiting in the pipe we hold.
            assert_eq!(
                unsafe { libc::ioctl(err.as_raw_fd(), libc::FIONREAD, &mut queued) },
                0
            );
            // Lines a page each do not fill a pipe's 64 KiB to the byte.
            queued >= 32 << 10
        });
        if let Some(signal) = signal {
            support::wait::until("dist's handler for the signal", || {
                catches(pid, signal) == Some(true)
            });
            assert_eq!(unsafe_kill(pid, signal), 0);
        }
        // Not timed: a run that waits for stderr's reader never ends.
        let status = exit_within(&mut child, Duration::from_secs(60), "nobody reads stderr");
        assert_eq!(status.code(), Some(code), "{extra:?} {signal:?}");
        drop((stdin, err));
    }
}

/// `--timeout` of a one-shot fetch or a resolve, which `main` abandons, ends them while
/// nobody reads stderr, as it does a batch: its message to stderr is waited for a while,
/// then given up. Its stop was not recorded, and the run waited for stderr's reader for
/// ever. A pipe another writer filled (a log shipper that hung) holds the first line.
#[test]
fn a_one_shot_timeout_is_honoured_while_nobody_reads_stderr() {
    use std::os::fd::{FromRawFd, OwnedFd};
    // Takes the connection and never answers: only --timeout ends the run.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap();
    let (object, image) = (format!("{host}/team/app"), format!("{host}/team/app:v1"));
    let digest = sha256(b"never sent");
    for args in [vec!["fetch", &object, &digest], vec!["resolve", &image]] {
        let mut fds = [0; 2];
        let page = [b'x'; 4096];
        // SAFETY: pipe(2) writes two new descriptors into `fds`, owned from here on; the
        // rest only sets their flags and writes `page`, memory of its length. Filled
        // without blocking, then blocking again: dist's first line waits.
        let (read, write) = unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let flags = libc::fcntl(fds[1], libc::F_GETFL);
            libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK);
            while libc::write(fds[1], page.as_ptr().cast(), page.len()) > 0 {}
            libc::fcntl(fds[1], libc::F_SETFL, flags);
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        let mut all = args.clone();
        all.extend(["--timeout", "1s", "--idle-timeout", "1h"]);
        let mut child = Running::new(
            Dist::new()
                .command(&all)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::from(write))
                .spawn()
                .unwrap(),
        );
        // Not timed: a run that waits for stderr's reader never ends.
        let status = exit_within(&mut child, Duration::from_secs(60), "nobody reads stderr");
        assert_eq!(status.code(), Some(124), "{args:?}");
        drop(read);
    }
    drop(silent);
}

/// A reader that leaves (`| head -c 10`) stops the batch there, not at the batch's next
/// write: a slow download after what was read is not carried on to its end for nobody.
#[test]
fn a_batch_stops_when_its_reader_leaves() {
    use std::io::Read as _;
    let reg = FakeRegistry::start();
    let small = reg.blob("team/app", bytes(1, 1000));
    let slow = reg.blob("team/app", bytes(2, 4 << 20));
    // A minute at this pace, even in four parts a quarter of that.
    let pace = Fault::Paced {
        bytes_per_sec: 64 << 10,
        first_byte: Duration::ZERO,
    };
    reg.set_fault_for_every(&slow, pace);
    let input = format!("{small}\n{slow}\n");
    let mut child = Dist::new().spawn(&["fetch", &repo(&reg), "-", "--ordered"], input.as_bytes());
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    out.read_exact(&mut first).unwrap();
    assert_eq!(
        &first[..7],
        b"sha256:",
        "the small blob's frame comes first"
    );
    drop(out);
    let status = exit_within(&mut child, Duration::from_secs(10), "the reader left");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(!err.contains("interrupted"), "nothing to explain: {err}");
}

/// The sizes of the spools process `pid` holds, smallest first: its deleted temporary
/// files (a spool is an anonymous file, written out whole once its object is done).
fn spools_of(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut sizes: Vec<u64> = fds
        .flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().ends_with(" (deleted)"))
        })
        // The link's own metadata is the descriptor's; followed, the file's.
        .filter_map(|fd| Some(std::fs::metadata(fd.path()).ok()?.len()))
        .collect();
    sizes.sort_unstable();
    sizes
}

/// Frames over 1 MiB wait in spool files and weigh only their file buffer in the output
/// queue, so every object can be done while two such frames still wait for a reader that
/// does not read.
/// A signal or `--timeout` must end that last phase too.
#[test]
fn a_stop_is_honoured_while_the_last_frames_wait_for_a_reader() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 2, 3_000_000);
    let stopped_within = |extra: &[&str], signal: bool| {
        let loc = repo(&reg);
        let mut args = vec!["fetch", loc.as_str(), "-"];
        args.extend_from_slice(extra);
        let mut child = Dist::new().spawn(&args, lines(&blobs).as_bytes());
        // Every fetch done, both frames waiting in their spools: a fixed pause (it was
        // 2.5 s) could end before on a loaded machine, and the stop then came in the
        // fetches, the phase other tests cover, and passed all the same.
        let mut whole: Vec<u64> = blobs.values().map(|b| b.len() as u64).collect();
        whole.sort_unstable();
        let mut spooled = Vec::new();
        support::wait::until("both frames spooled", || {
            if child.try_wait().unwrap().is_some() {
                return true;
            }
            spooled = spools_of(child.id());
            spooled == whole
        });
        assert_eq!(spooled, whole, "{extra:?}: dist ended first");
        if signal {
            assert_eq!(unsafe_kill(child.id(), 15), 0);
        }
        let what = format!("{extra:?}, a stuck reader");
        exit_within(&mut child, Duration::from_secs(8), &what).code()
    };
    assert_eq!(stopped_within(&[], true), Some(143));
    assert_eq!(stopped_within(&["--timeout", "3s"], false), Some(124));
}

/// `--timeout` ends a batch the way a signal does: whatever was reported is whole and
/// verified, the rest is left out, no temporary file stays, and the exit status (124, as
/// timeout(1) has it) tells a deadline from failed objects.
#[test]
fn a_batch_stops_whole_at_its_timeout() {
    // Some blobs served at once, then blobs that stall for ten minutes: the deadline
    // cannot fall after the last one, however slow the machine, nor before the first
    // unless the machine takes 5 s for a few small blobs.
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 30, 20_000);
    // The first eight in the input are served at once, four at a time.
    for d in blobs.keys().skip(8) {
        reg.set_fault_for_every(d, Fault::StallAfter(1000, Duration::from_secs(600)));
    }
    let dir = tempfile::tempdir().unwrap();
    let dist = Dist::new();
    let to_dir = [
        "--timeout",
        "5s",
        "fetch",
        &repo(&reg),
        "-",
        "-j",
        "4",
        "-o",
        dir.path().to_str().unwrap(),
    ];
    let out = dist.run(&to_dir, lines(&blobs).as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{err}");
    assert!(err.contains("gave up after the --timeout of 5s"), "{err}");
    let reported = json_lines(&out.stdout);
    assert!(
        !reported.is_empty() && reported.len() < blobs.len(),
        "some, not all, finished: {}",
        reported.len()
    );
    assert!(reported.iter().all(|r| r["status"] == "ok"));
    assert_stored_as_reported(dir.path(), &reported);

    // Framed: every frame written is complete.
    let out = dist.run(
        &["--timeout", "5s", "fetch", &repo(&reg), "-", "-j", "4"],
        lines(&blobs).as_bytes(),
    );
    assert_eq!(out.status.code(), Some(124));
    let frames = parse_frames(&out.stdout);
    assert!(!frames.is_empty() && frames.len() < blobs.len());
    for f in &frames {
        let (_, _, body) = f.result.as_ref().expect("only complete, verified frames");
        assert_eq!(body, &blobs[&f.object], "{}", f.object);
    }
}

/// A registry that accepts connections and never answers holds the check made before any
/// object is fetched: `--timeout` ends it there too, for `pull` as for the worker.
#[test]
fn the_timeout_covers_the_check_of_a_registry_that_never_answers() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let image = format!("{host}/team/app:v1");
    let repo = format!("{host}/team/app");
    let runs: [&[&str]; 2] = [
        &["--timeout", "1s", "pull", &image, "-o", out_dir],
        &["--timeout", "1s", "fetch", &repo, "-", "-o", out_dir],
    ];
    for args in runs {
        let mut child = Dist::new().spawn(args, b"latest\n");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(30) {
                child.kill().unwrap();
                panic!("{args:?} still running 30 s after a --timeout of 1 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(124), "{args:?}: {err}");
        assert!(err.contains("gave up after the --timeout of 1s"), "{err}");
    }
    drop(silent);
}

/// `DIST_FETCH_TIMEOUT` is `--timeout` for a job runner that sets the environment (the
/// README and `--help` name it). Without it this run would end otherwise: the registry
/// never answers, and the idle timeout gives up on it after 3 s with no retry.
#[test]
fn the_timeout_may_come_from_the_environment() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let image = format!("{}/team/app:v1", silent.local_addr().unwrap());
    let mut dist = Dist::new();
    dist.env("DIST_FETCH_TIMEOUT", "1s");
    let args = ["resolve", &image, "--idle-timeout", "3s", "--retries", "0"];
    let err = dist.fails(124, &args, b"");
    assert!(err.contains("gave up after the --timeout of 1s"), "{err}");
    drop(silent);
}

/// An empty `DIST_FETCH_TIMEOUT=` or `DIST_HOSTS_DIR=` (a job runner's input left blank)
/// counts as unset, as an empty proxy variable does, where clap refused the run for an
/// empty `--timeout` or `--hosts-dir` nobody typed; a malformed one is refused naming the
/// variable, before any request.
#[test]
fn option_variables_empty_are_unset_and_malformed_are_named() {
    let reg = FakeRegistry::start();
    let data = bytes(31, 1000);
    let digest = reg.blob("team/app", &data);
    let mut dist = Dist::new();
    dist.env("DIST_FETCH_TIMEOUT", "").env("DIST_HOSTS_DIR", "");
    let out = dist.run(&["fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout, data);
    let requests = reg.request_count();
    let mut dist = Dist::new();
    dist.env("DIST_FETCH_TIMEOUT", "soon");
    for args in [
        vec!["fetch", &repo(&reg), &digest],
        vec!["fetch", &repo(&reg), &digest, "--timeout", "1m"],
    ] {
        let err = dist.fails(2, &args, b"");
        assert!(
            err.contains(r#"dist: DIST_FETCH_TIMEOUT (as --timeout): invalid duration "soon""#),
            "{args:?}: {err}"
        );
    }
    assert_eq!(reg.request_count(), requests);
}

/// A `DIST_FETCH_TIMEOUT` that is not UTF-8 is refused naming the variable, as a malformed
/// one is: clap said "invalid UTF-8 was detected in one or more arguments" of a command
/// line whose every word was UTF-8. One typed on the command line is still clap's to say.
#[test]
fn a_timeout_variable_that_is_not_utf8_is_named() {
    use std::os::unix::ffi::OsStrExt;
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", b"data");
    let dist = Dist::new();
    let not_utf8 = std::ffi::OsStr::from_bytes(b"30\xffs");
    let out = dist
        .command(&["fetch", &repo(&reg), &digest])
        .env("DIST_FETCH_TIMEOUT", not_utf8)
        .output()
        .expect("run dist");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(r#"dist: DIST_FETCH_TIMEOUT (as --timeout): "30\xFFs" is not UTF-8"#),
        "{err}"
    );
    let out = dist
        .command(&["fetch", &repo(&reg), &digest, "--timeout"])
        .arg(not_utf8)
        .output()
        .expect("run dist");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("DIST_FETCH_TIMEOUT"), "{err}");
    assert_eq!(reg.request_count(), 0);
}

/// A blank `DIST_FETCH_TIMEOUT=" "` (a job template's `"${TIMEOUT} "`) is no timeout, as an
/// empty one is and a blank `RUST_LOG` is: it was refused as an "empty duration", of a
/// variable whose empty value counts as unset.
#[test]
fn a_blank_timeout_variable_is_unset_as_an_empty_one() {
    let reg = FakeRegistry::start();
    let data = bytes(32, 1000);
    let digest = reg.blob("team/app", &data);
    let mut dist = Dist::new();
    dist.env("DIST_FETCH_TIMEOUT", " \t");
    let out = dist.run(&["fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout, data);
}

/// A timeout too far off to end (`1e19` seconds, past what the clock can count) is no
/// deadline at all, for a one-shot command as for a batch; it panicked (status 101).
#[test]
fn a_timeout_beyond_the_clock_is_none() {
    let reg = FakeRegistry::start();
    let data = bytes(31, 1000);
    let digest = reg.blob("team/app", &data);
    let dir = tempfile::tempdir().unwrap();
    let mut dist = Dist::new();
    dist.env("DIST_FETCH_TIMEOUT", "1e19");
    let out = dist.run(&["fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout, data);
    let args = [
        "fetch",
        &repo(&reg),
        "-",
        "-o",
        dir.path().to_str().unwrap(),
    ];
    let out = dist.run(&args, format!("{digest}\n").as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(assert_store_clean(dir.path()), 1);
}

/// Large objects in flight at the deadline: their writer threads' files become partial
/// downloads (no temporary file stays), and the process does not wait for the downloads
/// (12 s each at this pace) to end. Told by what was kept, not by a clock a loaded machine
/// slows: a process that waited would have stored whole blobs, where the partials hold
/// only what the server had sent by the deadline.
#[test]
fn large_downloads_cut_by_the_timeout_leave_only_partials() {
    let (reg, blobs) = paced_large_blobs(2, 1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let dist = Dist::new();
    let args = [
        "--timeout",
        "2s",
        "fetch",
        &repo(&reg),
        "-",
        "-o",
        dir.path().to_str().unwrap(),
    ];
    let out = dist.run(&args, lines(&blobs).as_bytes());
    assert_eq!(out.status.code(), Some(124));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kept for the next run to carry on"), "{err}");
    assert_only_partials(dir.path(), &blobs);

    // One object to stdout: abandoned at the deadline, named in the message.
    let digest = blobs.keys().next().unwrap();
    let err = dist.fails(
        124,
        &["--timeout", "500ms", "fetch", &repo(&reg), digest],
        b"",
    );
    assert!(
        err.contains(&format!("{digest}: gave up after the --timeout of 500ms")),
        "{err}"
    );
}

/// A connection that closes with no answer (a kept-alive connection the server was
/// closing as the request went out) loses nothing: the request goes again at once on a
/// new connection, with `--retries 0` too, on the same connection's second request as on
/// its first. Only once per request: a server that never answers is a fault, and
/// `--retries 0` then means one request and that resend.
#[test]
fn a_request_lost_with_its_connection_is_sent_again_once() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 2, 3000);
    let mut digests = blobs.keys();
    let (first, second) = (digests.next().unwrap(), digests.next().unwrap());
    reg.push_fault(second, Fault::CloseUnanswered);
    let dist = Dist::new();
    let out_dir = tempfile::tempdir().unwrap();
    let input = format!("{first}\n{second}\n");
    let out = dist.run(
        &[
            "fetch",
            "--retries",
            "0",
            &repo(&reg),
            "-",
            "-o",
            out_dir.path().to_str().unwrap(),
            "--ordered",
            "-j",
            "1",
        ],
        input.as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let gets = |digest: &str| {
        reg.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(digest))
            .collect::<Vec<_>>()
    };
    let lost = gets(second);
    assert_eq!(lost.len(), 2, "sent, lost, sent again");
    assert_ne!(lost[0].connection, lost[1].connection);
    assert_eq!(gets(first)[0].connection, lost[0].connection, "kept alive");

    reg.set_fault_for_every(first, Fault::CloseUnanswered);
    let before = gets(first).len();
    let out = dist.run(&["fetch", "--retries", "0", &repo(&reg), first], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        gets(first).len() - before,
        2,
        "one resend, no retries: {err}"
    );

    // An answer that is not HTTP was an answer: a fault, with no resend of its own.
    reg.set_fault_for_every(second, Fault::NotHttp);
    let before = gets(second).len();
    let out = dist.run(&["fetch", "--retries", "0", &repo(&reg), second], b"");
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(gets(second).len() - before, 1);
}

/// Reads one frame off `out`: its header line, and its body if it has one.
fn next_frame(out: &mut impl std::io::BufRead) -> String {
    let mut header = String::new();
    out.read_line(&mut header).unwrap();
    let size: Option<usize> = header.split(' ').nth(2).and_then(|s| s.parse().ok());
    if let Some(size) = size.filter(|_| !header.contains(" error ")) {
        let mut body = vec![0u8; size + 1];
        out.read_exact(&mut body).unwrap();
    }
    header
}

/// A worker fed slowly keeps its connections in the pool between objects; a load balancer
/// or NAT that dropped them meanwhile, silently, resets each one only as the next request
/// goes out on it. Each such request is lost before an answer, and the next goes out on
/// the next stale connection: resent once, then retried, a batch that had used eight
/// connections failed the first object after the gap with `--retries 2`, though none of
/// its attempts ever reached the registry on a live connection.
#[test]
fn the_first_object_after_an_idle_gap_survives_every_pooled_connection_gone_stale() {
    use std::io::Write;
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, 8, 3000);
    // All eight at once, each on a connection of its own.
    for d in blobs.keys() {
        reg.set_fault_for_every(d, Fault::SlowHead(Duration::from_millis(300)));
    }
    let later = reg.blob("team/app", bytes(77, 5000));
    let dist = Dist::new();
    let args = ["fetch", &repo(&reg), "-", "-j", "8", "--retries", "2"];
    let mut child = dist.start(&[&args[..], &["--timeout", "120s"]].concat());
    let mut input = child.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    input.write_all(lines(&blobs).as_bytes()).unwrap();
    input.flush().unwrap();
    for _ in 0..blobs.len() {
        let header = next_frame(&mut out);
        assert!(!header.contains(" error "), "{header}");
    }
    assert!(reg.connections() >= 8, "{} connections", reg.connections());
    reg.clear_faults();
    reg.forget_connections();

    writeln!(input, "{later}").unwrap();
    input.flush().unwrap();
    let header = next_frame(&mut out);
    drop(input);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        header.starts_with(&format!("{later} {later} 5000 ")),
        "{header}: {err}"
    );
    assert!(status.success(), "{status:?}: {err}");
}

/// A stdin whose descriptor is non-blocking (shared with a wrapper that reads it with
/// asyncio, or a terminal a program left so) has nothing to read at each pause of its
/// producer. That is no end of the input: the batch waits for the next line, as it does on
/// a blocking pipe. It ended with `stdin: Resource temporarily unavailable` instead, at
/// its first pause or before its first line.
#[test]
fn a_non_blocking_stdin_is_waited_on_between_lines() {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let reg = FakeRegistry::start();
    let first = reg.blob("team/app", bytes(81, 3000));
    let second = reg.blob("team/app", bytes(82, 4000));
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array, each owned below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: F_GETFL and F_SETFL on the read end, just made.
    unsafe {
        let flags = libc::fcntl(fds[0], libc::F_GETFL);
        assert_eq!(
            libc::fcntl(fds[0], libc::F_SETFL, flags | libc::O_NONBLOCK),
            0
        );
    }
    // SAFETY: each descriptor is open and owned by nothing else.
    let (read, mut input) = unsafe {
        (
            std::process::Stdio::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    let mut child = Running::new(
        Dist::new()
            .command(&["fetch", &repo(&reg), "-", "--timeout", "120s"])
            .stdin(read)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    // Nothing to read at first, and again between the two lines.
    std::thread::sleep(Duration::from_millis(300));
    writeln!(input, "{first}").unwrap();
    let header = next_frame(&mut out);
    assert!(
        header.starts_with(&format!("{first} {first} 3000 ")),
        "{header}"
    );
    std::thread::sleep(Duration::from_millis(300));
    writeln!(input, "{second}").unwrap();
    let header = next_frame(&mut out);
    assert!(
        header.starts_with(&format!("{second} {second} 4000 ")),
        "{header}"
    );
    drop(input);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(err.is_empty(), "{err}");
}

/// A mirroring job feeding a running batch (`tail -f queue | dist fetch LOC -`) names again
/// the digests that failed: a blob not pushed yet when first asked for, an outage longer
/// than the retries. Such a line fetches it again, and gets its own frame or line; one
/// naming an object fetched already is still skipped. The failed line was remembered as
/// met, and every later line naming it was skipped silently: no fetch, no output, no error.
fn a_failed_object_named_again_is_fetched_again(into_dir: bool) {
    use std::io::{BufRead, Write};
    let reg = FakeRegistry::start();
    let data = bytes(91, 5000);
    let digest = sha256(&data);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.jsonl");
    let store = dir.path().join("layout");
    let repo = repo(&reg);
    // The timeout only ends a run that never answers a line, so that it fails, not hangs.
    let mut args = vec!["fetch", &repo, "-", "--timeout", "120s"];
    args.extend(["--report", report.to_str().unwrap()]);
    if into_dir {
        args.extend(["-o", store.to_str().unwrap()]);
    }
    let mut child = Dist::new().start(&args);
    let mut input = child.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut next = || {
        if into_dir {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line
        } else {
            next_frame(&mut out)
        }
    };
    writeln!(input, "{digest}").unwrap();
    input.flush().unwrap();
    let first = next();
    assert!(first.contains("error") && first.contains("404"), "{first}");
    assert_eq!(reg.blob("team/app", &data), digest);
    writeln!(input, "{digest}").unwrap();
    input.flush().unwrap();
    let second = next();
    let asked = reg.requests_for(&digest);
    // Stored now: named once more, it is a duplicate.
    writeln!(input, "{digest}").unwrap();
    drop(input);
    let status = child.wait().unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut out, &mut rest).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    if into_dir {
        let line = &json_lines(second.as_bytes())[0];
        assert_eq!(line["status"], "ok", "{second}: {err}");
        support::cli::assert_stored_alone(&store, &digest, &data);
    } else {
        assert!(
            second.starts_with(&format!("{digest} {digest} 5000 ")),
            "{second}: {err}"
        );
    }
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert_eq!(
        reg.requests_for(&digest),
        asked,
        "the third line fetched nothing"
    );
    let reported = json_lines(&std::fs::read(&report).unwrap());
    let seen: Vec<(u64, &str)> = reported
        .iter()
        .map(|l| (l["line"].as_u64().unwrap(), l["status"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [(1, "error"), (2, "ok")]);
    assert!(err.contains("line 1: ") && !err.contains("line 2"), "{err}");
    // A line failed: the run says so, whatever came after it.
    assert_eq!(status.code(), Some(1), "{err}");
}

#[test]
fn a_failed_object_named_again_is_fetched_again_as_a_frame() {
    a_failed_object_named_again_is_fetched_again(false);
}

#[test]
fn a_failed_object_named_again_is_fetched_again_into_a_directory() {
    a_failed_object_named_again_is_fetched_again(true);
}

/// An image of 600 layers tagged `v1`, whose pull writes some 600 JSON lines of 250 bytes
/// and more: well past what a 64 KiB pipe holds. Its reference.
fn image_of_many_lines(reg: &FakeRegistry) -> String {
    let layers: Vec<String> = (0..600)
        .map(|i| reg.blob("team/app", bytes(50_000 + i, 100)))
        .collect();
    reg.image("team/app", "v1", &layers, 100);
    format!("{}:v1", repo(reg))
}

/// A pull stopped once it had named its image, while its lines waited for a reader that
/// does not read, says that every object was handled and not all of the output written.
/// It said "objects reported so far are complete; downloads cut short … are kept", of a
/// pull that had nothing left to fetch.
#[test]
fn a_pull_stopped_writing_out_its_lines_says_every_object_was_handled() {
    let reg = FakeRegistry::start();
    let reference = image_of_many_lines(&reg);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    // An image for another platform: the warning that says so comes once the pull has
    // returned, its image named, and before its lines are waited for.
    let l = layout.to_str().unwrap();
    let args = [
        "pull",
        reference.as_str(),
        "-o",
        l,
        "--platform",
        "linux/arm64",
    ];
    let child = Dist::new().spawn(&args, b"");
    let (status, err, _) = stopped_after_its_first_line(child, Duration::from_secs(60), |first| {
        assert!(first.ends_with("pulled as it is"), "{first}");
        assert!(std::fs::read_to_string(layout.join("index.json"))
            .unwrap()
            .contains("\"v1\""));
    });
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(
        err.contains(
            "dist: interrupted; every object was handled, but not all of their output was \
             written"
        ),
        "{err}"
    );
    assert!(!err.contains("reported so far"), "{err}");
}

/// `dist pull` writes a JSON line per object; a reader that stops reading (`| less` left
/// waiting, a stuck `ssh`) fills the pipe. A signal or `--timeout` must still end the pull,
/// as it ends the worker: the lines were written on the runtime's one thread, which then
/// sat in `write` and could not see either.
#[test]
fn a_pull_stops_while_nobody_reads_its_lines() {
    let reg = FakeRegistry::start();
    let reference = image_of_many_lines(&reg);
    for (extra, signal, code) in [(&["--timeout", "4s"][..], false, 124), (&[][..], true, 143)] {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        let mut args = vec!["pull", reference.as_str(), "-o", layout.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut child = Dist::new().spawn(&args, b"");
        // A hundred layers stored: their lines, some 40 KiB, nearly fill the pipe, which
        // the next few dozen do (the writer stopped the pull at about 160). A machine slow
        // enough to store fewer before `--timeout` sees the pull end first: its status is
        // still the one asked of it.
        support::wait::within(Duration::from_secs(30), "layers stored", || {
            (!signal && child.try_wait().unwrap().is_some())
                || std::fs::read_dir(layout.join("blobs/sha256")).is_ok_and(|d| d.count() > 100)
        });
        if signal {
            assert_eq!(unsafe_kill(child.id(), libc::SIGTERM), 0);
        }
        let what = format!("{extra:?}, a reader that does not read");
        let status = exit_within(&mut child, Duration::from_secs(10), &what);
        assert_eq!(status.code(), Some(code), "{what}");
    }
}

/// Holds `child`'s stdout unread (closed, the run would stop on its own), waits up to
/// `limit` for its first line on stderr, checks it with `first` and then stops the run
/// with SIGTERM. Returns its exit status, the lines it said after the first, and its
/// stdout, to read what the pipe held.
fn stopped_after_its_first_line(
    mut child: Running,
    limit: Duration,
    first: impl FnOnce(&str),
) -> (std::process::ExitStatus, String, std::process::ChildStdout) {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, said) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stderr.lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    first(&said.recv_timeout(limit).unwrap());
    assert_eq!(unsafe_kill(child.id(), libc::SIGTERM), 0);
    let status = exit_within(&mut child, Duration::from_secs(30), "a stop");
    reader.join().unwrap();
    let rest: Vec<String> = said.try_iter().collect();
    (status, rest.join("\n"), out)
}

/// A batch stopped while its output is held up after every object was handled says that:
/// all were handled, and not all of the output was written. It said "objects reported so
/// far are complete" (and under `--timeout` "the others were not fetched"), of a batch
/// that had no others left. The frame the writer was stuck in is cut short where the pipe
/// stopped taking it, as README says, and the message says so too: it said the output
/// ended with the last frame written whole.
#[test]
fn a_batch_stopped_writing_out_says_every_object_was_handled() {
    let reg = FakeRegistry::start();
    // Its frame alone is more than a pipe holds: the writer is stuck in it.
    let large = reg.blob("team/app", bytes(72, 300_000));
    let missing = reg.blob("team/app", bytes(73, 100));
    reg.set_fault_for_every(&missing, Fault::Status(404));
    // One at a time: the second line is said failed only once the first was handled.
    let args = ["fetch", &repo(&reg), "-", "-j", "1"];
    let child = Dist::new().spawn(&args, format!("{large}\n{missing}\n").as_bytes());
    let (status, rest, mut out) =
        stopped_after_its_first_line(child, Duration::from_secs(30), |first| {
            assert!(first.starts_with("dist: line 2:"), "{first}");
        });
    assert_eq!(status.code(), Some(143), "{rest}");
    assert!(
        rest.contains(
            "dist: interrupted; every object was handled, but not all of their output was \
             written"
        ),
        "{rest}"
    );
    assert!(!rest.contains("reported so far"), "{rest}");
    let mut held = Vec::new();
    std::io::Read::read_to_end(&mut out, &mut held).unwrap();
    let header = format!("{large} {large} 300000 -\n");
    assert!(held.starts_with(header.as_bytes()), "{held:?}");
    assert!(
        held.len() < header.len() + 300_001,
        "the frame went out whole"
    );
    assert!(
        rest.contains("written whole, and perhaps part of the one being written, cut short"),
        "{rest}"
    );
}

/// A batch stopped while objects are still being fetched, its writer stuck in a frame that
/// a reader stopped reading, says the output may end in part of that frame: it said
/// "objects reported so far are complete" alone, of an output that ends cut short.
#[test]
fn a_batch_stopped_fetching_with_a_frame_cut_says_so() {
    let reg = FakeRegistry::start();
    // Its frame alone is more than a pipe holds: the writer is stuck in it.
    let large = reg.blob("team/app", bytes(77, 300_000));
    // Still being fetched at the stop.
    let stalled = reg.blob("team/app", bytes(78, 100));
    reg.set_fault_for_every(&stalled, Fault::Stall(Duration::from_secs(60)));
    let args = ["fetch", &repo(&reg), "-", "-j", "2"];
    let mut child = Dist::new().spawn(&args, format!("{large}\n{stalled}\n").as_bytes());
    let said = "dist: interrupted; objects reported so far are complete; ";
    stopped_in_a_frame(&mut child, &large, said);
}

/// A batch stopped while its stdin is idle, every line read handled, says it was waiting
/// for input: under `--timeout` it said "objects reported so far are complete, the others
/// were not fetched", of a batch that had no others (none at all, with nothing read).
/// Stopped by `--timeout` with no line sent, and by a signal once its one line was
/// reported; stdin stays open throughout.
#[test]
fn a_batch_stopped_on_idle_input_says_nothing_was_left() {
    use std::io::{BufRead, Write};
    let reg = FakeRegistry::start();
    let blob = reg.blob("team/app", bytes(75, 100));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let repo = repo(&reg);
    let args = [
        "--timeout",
        "2s",
        "fetch",
        &repo,
        "-",
        "-o",
        out.to_str().unwrap(),
    ];
    let mut child = Dist::new().start(&args);
    let _input = child.stdin.take().unwrap();
    let status = exit_within(&mut child, Duration::from_secs(30), "--timeout");
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(124), "{err}");
    assert!(
        err.contains(
            "dist: gave up after the --timeout of 2s while waiting for input; none had come, \
             nothing was fetched"
        ),
        "{err}"
    );
    assert!(!err.contains("were not fetched"), "{err}");

    let args = ["fetch", &repo, "-", "-o", out.to_str().unwrap()];
    let mut child = Dist::new().start(&args);
    let mut input = child.stdin.take().unwrap();
    writeln!(input, "{blob}").unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\""), "{line}");
    assert_eq!(unsafe_kill(child.id(), libc::SIGTERM), 0);
    let status = exit_within(&mut child, Duration::from_secs(30), "a stop");
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(
        err.contains(
            "dist: interrupted while waiting for more input; objects reported so far are \
             complete, and every one read had been handled"
        ),
        "{err}"
    );
}

/// A batch stopped while its stdin is idle, its writer stuck in a frame that a reader
/// stopped reading, says the output may end in part of that frame: it said "objects
/// reported so far are complete" alone, of an output that ends cut short, as a batch
/// stopped while fetching did.
#[test]
fn a_batch_stopped_on_idle_input_with_a_frame_cut_says_so() {
    use std::io::Write;
    let reg = FakeRegistry::start();
    // Its frame alone is more than a pipe holds: the writer is stuck in it.
    let large = reg.blob("team/app", bytes(79, 300_000));
    let mut child = Dist::new().start(&["fetch", &repo(&reg), "-"]);
    // Kept open: the batch waits for more input.
    let mut input = child.stdin.take().unwrap();
    writeln!(input, "{large}").unwrap();
    let said = "dist: interrupted while waiting for more input; ";
    stopped_in_a_frame(&mut child, &large, said);
}

/// Reads the header of the frame of `large` (300,000 bytes, more than a pipe holds) from
/// `child`'s stdout, its writer then stuck in the frame, and stops the run by SIGTERM: it
/// says `said` and that its output may end in part of a frame, which does not go out
/// whole.
fn stopped_in_a_frame(child: &mut std::process::Child, large: &str, said: &str) {
    use std::io::Read;
    let mut out = child.stdout.take().unwrap();
    let header = format!("{large} {large} 300000 -\n");
    let mut read = vec![0; header.len()];
    out.read_exact(&mut read).unwrap();
    assert_eq!(read, header.as_bytes());
    assert_eq!(unsafe_kill(child.id(), libc::SIGTERM), 0);
    let status = exit_within(child, Duration::from_secs(30), "a stop");
    let err = stderr_of(child);
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(err.contains(said), "{err}");
    assert!(
        err.contains("written whole, and perhaps part of the one being written, cut short"),
        "{err}"
    );
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    assert!(rest.len() < 300_000, "the frame went out whole");
}

/// All a child that has exited wrote to its stderr.
fn stderr_of(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut err = String::new();
    let stderr = child.stderr.take().unwrap();
    std::io::BufReader::new(stderr)
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// A run stopped while it checks the registry, before any object is asked for, says that
/// nothing was fetched. It said "objects reported so far are complete; downloads cut short
/// … are kept", of a run that had reported and cut short nothing. A pull's and the
/// worker's alike. Stopped once the check's request is seen held, not by a `--timeout`
/// that a loaded machine could run out while the run still opened its layout.
#[test]
fn a_run_stopped_checking_the_registry_says_nothing_was_fetched() {
    use std::io::Read;
    let reg = FakeRegistry::start();
    let blob = reg.blob("team/app", bytes(74, 100));
    // The check's answer, held until the run is stopped.
    reg.set_fault_for_every("tags/list", Fault::SlowHead(Duration::from_secs(30)));
    let repo = repo(&reg);
    let image = format!("{repo}:v1");
    for pull in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let l = dir.path().join("out");
        let l = l.to_str().unwrap();
        let args: Vec<&str> = if pull {
            vec!["pull", &image, "-o", l]
        } else {
            vec!["fetch", &repo, "-", "-o", l]
        };
        let before = reg.request_count();
        let mut child = Dist::new().spawn(&args, format!("{blob}\n").as_bytes());
        support::wait::until("the check's request", || {
            reg.requests()[before..]
                .iter()
                .any(|r| r.path.ends_with("tags/list"))
        });
        assert_eq!(unsafe_kill(child.id(), libc::SIGTERM), 0);
        let status = exit_within(&mut child, Duration::from_secs(30), "a stop");
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(143), "pull {pull}: {err}");
        assert!(
            err.contains(&format!(
                "dist: interrupted while checking {}/team/app; nothing was fetched",
                reg.host()
            )),
            "pull {pull}: {err}"
        );
        assert!(!err.contains("reported so far"), "pull {pull}: {err}");
        assert!(!err.contains("downloads cut short"), "pull {pull}: {err}");
        assert!(
            !reg.requests()[before..]
                .iter()
                .any(|r| r.path.contains("/blobs/") || r.path.contains("/manifests/")),
            "pull {pull}: nothing asked for"
        );
    }
}
