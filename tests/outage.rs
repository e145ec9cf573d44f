//! A registry that fails every request of a batch for a while (503s, connections closed
//! unanswered): the worker's tasks wait for one request at a time instead of each spending
//! its own retries on the host, and go on together once it answers again.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::cli::{bytes, parse_frames, Dist};
use support::fake::{FakeRegistry, Fault, Gate};
use support::wait::exit_within;

use dist::registry::RegistryRemote;
use dist::retry::RetryPolicy;
use dist::transport::{Transport, TransportOptions};
use dist::{Hints, Object, Remote};

const OBJECTS: usize = 20;

fn repo(reg: &FakeRegistry) -> String {
    format!("{}/team/app", reg.host())
}

fn fill(reg: &FakeRegistry) -> BTreeMap<String, Vec<u8>> {
    (0..OBJECTS)
        .map(|i| {
            let data = bytes(9100 + i as u64, 5000 + i);
            (reg.blob("team/app", &data), data)
        })
        .collect()
}

fn lines(blobs: &BTreeMap<String, Vec<u8>>) -> String {
    blobs.keys().map(|d| format!("{d}\n")).collect()
}

fn blob_requests(reg: &FakeRegistry) -> usize {
    reg.requests()
        .iter()
        .filter(|r| r.path.contains("/blobs/"))
        .count()
}

/// 20 objects, 4 jobs, 3 retries, every blob request failing: each object used to be
/// asked for 4 times, 80 requests to a host that was already failing. Now a request at a
/// time asks for all the tasks waiting, and every object still fails with its own error.
#[test]
fn a_batch_against_a_failing_registry_asks_it_once_per_pause() {
    for fault in [Fault::Status(503), Fault::CloseUnanswered] {
        let reg = FakeRegistry::start();
        let blobs = fill(&reg);
        for d in blobs.keys() {
            reg.set_fault_for_every(d, fault.clone());
        }
        let mut child = Dist::new().spawn(
            &["fetch", &repo(&reg), "-", "-j", "4", "--retries", "3"],
            lines(&blobs).as_bytes(),
        );
        let status = exit_within(&mut child, Duration::from_secs(60), "the failing batch");
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(75), "{fault:?}: {err}");
        let frames = parse_frames(&out.stdout);
        assert_eq!(frames.len(), OBJECTS, "{fault:?}: {err}");
        assert!(frames.iter().all(|f| f.result.is_err()), "{fault:?}");
        for d in blobs.keys() {
            let line = err
                .lines()
                .find(|l| {
                    l.contains(&format!(
                        "{d}: http://{}/v2/team/app/blobs/{d}: ",
                        reg.host()
                    ))
                })
                .unwrap_or_else(|| panic!("{fault:?}: no error for {d}: {err}"));
            let cause = match fault {
                Fault::Status(_) => "503 Service Unavailable",
                _ => "connection",
            };
            assert!(line.contains(cause), "{fault:?}: {line}");
        }
        let asked = blob_requests(&reg);
        // A request closed unanswered is sent again at once, once: README, "Connections
        // that close".
        let per_request = if matches!(fault, Fault::CloseUnanswered) {
            2
        } else {
            1
        };
        // Each object asked for itself once at least (its error is its own answer), and
        // the rounds between asked once for all: half the 4 requests an object used to
        // cost, and less.
        for d in blobs.keys() {
            assert!(reg.requests_for(d) >= 1, "{fault:?}: {d} never asked for");
        }
        assert!(
            asked < 2 * OBJECTS * per_request,
            "{fault:?}: {asked} blob requests for {OBJECTS} objects"
        );
    }
}

/// A registry gone after the batch's first check (connections closed unanswered, or 503s
/// past the retries) fails every line for the moment: the batch exits 75 (`EX_TEMPFAIL`,
/// "try again later"). It exited 1, as for content that is gone or wrong, which a cron
/// job could not tell from it. One line whose object is missing (404) makes it 1 again.
#[test]
fn a_batch_that_failed_only_for_the_moment_exits_75() {
    for fault in [Fault::CloseUnanswered, Fault::Status(503)] {
        let reg = FakeRegistry::start();
        let blobs = fill(&reg);
        for d in blobs.keys() {
            reg.set_fault_for_every(d, fault.clone());
        }
        let args = ["fetch", &repo(&reg), "-", "--retries", "0"];
        let out = Dist::new().run(&args, lines(&blobs).as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "{fault:?}: {err}");
        let missing = reg.blob("team/app", bytes(9199, 100));
        reg.set_fault_for_every(&missing, Fault::Status(404));
        let input = format!("{}{missing}\n", lines(&blobs));
        let out = Dist::new().run(&args, input.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{fault:?}: {err}");
    }
}

/// So are digests hinted as manifests, whose manifests endpoint is asked first: their
/// first request, made without retries so that a 500 could send them to the blobs
/// endpoint, was each one's last attempt and so its own, and every object asked the
/// failing registry once more than the others.
#[test]
fn a_batch_of_manifests_against_a_failing_registry_asks_it_once_per_pause() {
    const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
    let reg = FakeRegistry::start();
    let blobs = fill(&reg);
    for d in blobs.keys() {
        reg.set_fault_for_every(&format!("manifests/{d}"), Fault::Status(503));
    }
    let input: String = blobs
        .keys()
        .map(|d| format!("{d} mediatype:{OCI}\n"))
        .collect();
    let mut child = Dist::new().spawn(
        &["fetch", &repo(&reg), "-", "-j", "4", "--retries", "3"],
        input.as_bytes(),
    );
    let status = exit_within(&mut child, Duration::from_secs(60), "the failing batch");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(75), "{err}");
    let frames = parse_frames(&out.stdout);
    assert_eq!(frames.len(), OBJECTS, "{err}");
    assert!(frames.iter().all(|f| f.result.is_err()), "{err}");
    let requests = reg.requests();
    let asked = requests.iter().filter(|r| r.path.contains("/manifests/"));
    let asked = asked.count();
    for d in blobs.keys() {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("manifests/{d}: ")));
        let line = line.unwrap_or_else(|| panic!("no error for {d}: {err}"));
        assert!(line.contains("503 Service Unavailable"), "{line}");
    }
    assert_eq!(
        blob_requests(&reg),
        0,
        "a 503 sends none to the blobs endpoint"
    );
    assert!(
        asked < 2 * OBJECTS,
        "{asked} manifest requests for {OBJECTS} objects: {err}"
    );
}

/// The registry fails every request for a while, then answers again: the batch goes on
/// and every object arrives.
#[test]
fn a_batch_goes_on_once_the_registry_answers_again() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg);
    for d in blobs.keys() {
        reg.set_fault_for_every(d, Fault::Status(503));
    }
    let child = Dist::new().spawn(
        &["fetch", &repo(&reg), "-", "-j", "4"],
        lines(&blobs).as_bytes(),
    );
    // Its output is read meanwhile: a full pipe would hold it up.
    let out = std::thread::spawn(move || child.wait_with_output().unwrap());
    support::wait::until("the outage met", || blob_requests(&reg) >= 6);
    reg.clear_faults();
    let out = out.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let frames = parse_frames(&out.stdout);
    assert_eq!(frames.len(), OBJECTS);
    for f in frames {
        let (digest, _, body) = f.result.expect("fetched");
        assert_eq!(body, blobs[&digest]);
    }
}

/// The registry goes away mid-batch (connections refused) and comes back at its address:
/// the tasks held by the outage go on once it answers, and every object arrives.
#[test]
fn a_batch_goes_on_once_a_registry_that_went_away_is_back() {
    let reg = FakeRegistry::start();
    let port = reg.addr().port();
    let blobs = fill(&reg);
    for d in blobs.keys() {
        reg.set_fault_for_every(d, Fault::Status(503));
    }
    let mut child =
        Dist::new().start(&["-v", "fetch", &repo(&reg), "-", "-j", "4", "--retries", "8"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines(&blobs).as_bytes()).unwrap();
    drop(stdin);
    let stderr = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (stderr, pipe) = (stderr.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let line = line.unwrap();
                stderr.lock().unwrap().push_str(&line);
                stderr.lock().unwrap().push('\n');
            }
        })
    };
    let out = std::thread::spawn(move || child.wait_with_output().unwrap());
    support::wait::until("the batch under way", || blob_requests(&reg) >= 1);
    drop(reg);
    let held = "registry failing; one request at a time for all";
    support::wait::until("the outage held", || {
        stderr.lock().unwrap().contains("Connection refused")
            && stderr.lock().unwrap().contains(held)
    });
    let back = FakeRegistry::builder().port(port).start();
    assert_eq!(fill(&back), blobs);
    let out = out.join().unwrap();
    reader.join().unwrap();
    let err = stderr.lock().unwrap().clone();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let frames = parse_frames(&out.stdout);
    assert_eq!(frames.len(), OBJECTS, "{err}");
    assert!(frames.iter().all(|f| f.result.is_ok()), "{err}");
}

/// Objects answered 503 on their own (a pull-through cache whose upstream fails for
/// some blobs) hold the healthy ones beside them for a while, but never fail them: an
/// object's last attempt is its own request, which the registry answers. Failed with the
/// requests sent for them, healthy objects that never went out themselves failed with
/// another object's 503.
#[test]
fn objects_answered_503_on_their_own_do_not_fail_healthy_ones() {
    only_the_sick_fail(503, "1");
}

/// Objects the registry fails on their own (blobs its storage lost, answered 500 each
/// time) are no outage: the healthy objects beside them arrive. Counted as one, 3 in 4
/// objects failing made healthy ones waiting on their requests fail with them.
#[test]
fn objects_failing_on_their_own_do_not_take_healthy_ones_with_them() {
    only_the_sick_fail(500, "2");
}

/// 3 objects in 4 answered `status` every time, with `retries`: those fail, and only those.
fn only_the_sick_fail(status: u16, retries: &str) {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg);
    let sick: Vec<&String> = blobs
        .keys()
        .enumerate()
        .filter(|(i, _)| i % 4 != 0)
        .map(|(_, d)| d)
        .collect();
    for d in &sick {
        reg.set_fault_for_every(d, Fault::Status(status));
    }
    let child = Dist::new().spawn(
        &["fetch", &repo(&reg), "-", "-j", "4", "--retries", retries],
        lines(&blobs).as_bytes(),
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{status}: {err}");
    let frames = parse_frames(&out.stdout);
    assert_eq!(frames.len(), OBJECTS, "{status}: {err}");
    for f in frames {
        let failed = f.result.is_err();
        assert_eq!(
            failed,
            sick.contains(&&f.object),
            "{status} {}: {err}",
            f.object
        );
    }
}

/// Objects the registry serves, each met by a passing fault on its first request, beside
/// many objects it answers 503: their last attempt is their own request, which the
/// registry answers. Having gone out themselves once, they were failed with the requests
/// sent for them, another object's 503 under their own URL, never asked again.
#[test]
fn an_object_that_went_out_itself_still_makes_its_last_attempt_its_own() {
    // Which task asks for all is a race: three batches, for the healthy objects to be
    // held at least once.
    for _ in 0..3 {
        let reg = FakeRegistry::start();
        let blobs = fill(&reg);
        let healthy: Vec<&String> = blobs.keys().take(3).collect();
        for d in blobs.keys() {
            if healthy.contains(&d) {
                reg.push_fault(d, Fault::Status(503));
            } else {
                reg.set_fault_for_every(d, Fault::Status(503));
            }
        }
        let input: String = healthy
            .iter()
            .map(|d| format!("{d}\n"))
            .chain(
                blobs
                    .keys()
                    .filter(|d| !healthy.contains(d))
                    .map(|d| format!("{d}\n")),
            )
            .collect();
        let child = Dist::new().spawn(
            &["fetch", &repo(&reg), "-", "-j", "8", "--retries", "1"],
            input.as_bytes(),
        );
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let frames = parse_frames(&out.stdout);
        assert_eq!(frames.len(), OBJECTS, "{err}");
        for f in frames {
            let failed = f.result.is_err();
            assert_eq!(failed, !healthy.contains(&&f.object), "{}: {err}", f.object);
        }
    }
}

/// The registry answers every request with a redirect to its blob store, which refuses
/// connections: the registry is up (a 503 from the blob store is no outage of it either),
/// and each object fails with the blob store's error, not with a registry said to have
/// failed every request, nor with its requests held behind one another's.
#[test]
fn a_blob_store_down_behind_redirects_is_no_outage_of_the_registry() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg);
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for d in blobs.keys() {
        reg.set_fault_for_every(
            d,
            Fault::Redirect {
                status: 307,
                location: format!("http://127.0.0.1:{gone}/store/{d}"),
            },
        );
    }
    let child = Dist::new().spawn(
        &["-v", "fetch", &repo(&reg), "-", "-j", "4", "--retries", "3"],
        lines(&blobs).as_bytes(),
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert_eq!(parse_frames(&out.stdout).len(), OBJECTS, "{err}");
    assert!(
        !err.contains("the registry failed every request"),
        "the registry answered every request: {err}"
    );
    assert!(
        !err.contains("one request at a time for all"),
        "the registry held: {err}"
    );
}

/// An object that met one passing 503 of its own beside objects answered 503 every time
/// (a pull-through cache slow to fetch it from its upstream, failing others for good)
/// arrives: its last attempt is its own request, not the failure of one sent for it.
/// Before, its one 503, then the failures of requests sent for it, spent its retries,
/// and it failed, named with a URL its last attempts never asked, though the registry
/// served it. Every object is asked at once (`-j` as many), before the registry has
/// failed any.
#[test]
fn an_object_that_met_a_passing_503_is_asked_again_beside_failing_ones() {
    let reg = FakeRegistry::start();
    let blobs = fill(&reg);
    let mut flaky = Vec::new();
    for (i, d) in blobs.keys().enumerate() {
        if i % 5 == 0 {
            reg.push_fault(d, Fault::Status(503));
            flaky.push(d.clone());
        } else {
            reg.set_fault_for_every(d, Fault::Status(503));
        }
    }
    let jobs = OBJECTS.to_string();
    let out = Dist::new().run(
        &["fetch", &repo(&reg), "-", "-j", &jobs, "--retries", "4"],
        lines(&blobs).as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    let frames = parse_frames(&out.stdout);
    assert_eq!(frames.len(), OBJECTS, "{err}");
    for f in frames {
        let failed = f.result.is_err();
        assert_eq!(failed, !flaky.contains(&f.object), "{}: {err}", f.object);
    }
}

/// A tokio clock paused for the test, moved on by a millisecond whenever the runtime has
/// nothing to do: the registry's long `Retry-After` passes at once. It moves on while a
/// request waits for the registry (a real socket, answered on a thread of its own) too,
/// by a millisecond per idle poll: a hundred times as fast as a real clock, or more, so
/// the requests of these tests are given a response timeout ([`NO_TIMEOUT`]) that no
/// registry thread stalled on a loaded machine comes near, and nothing in them waits for
/// one to pass.
fn tick_while_idle() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

/// A response timeout that no request meets on the paused clock of [`tick_while_idle`]:
/// a day, over ten minutes of a registry thread stalled. At 30 s, some 300 ms of one
/// (measured: 110 ms of the ticked clock to a real one) turned a 503 into a timeout.
const NO_TIMEOUT: Duration = Duration::from_secs(86_400);

/// The library's handle on `reg`'s repository, retrying by `policy`, its requests
/// answered within [`NO_TIMEOUT`].
fn library_remote(reg: &FakeRegistry, policy: RetryPolicy) -> RegistryRemote {
    let mut options = TransportOptions::default();
    options.response_timeout = NO_TIMEOUT;
    RegistryRemote::new(
        repo(reg).parse().unwrap(),
        Transport::new(options).unwrap(),
        dist::auth::CredentialSource::None,
        policy,
    )
}

/// Fetches `digest` on a task of its own: whether its download began, or its error.
fn spawn_fetch(
    remote: &RegistryRemote,
    digest: &str,
) -> tokio::task::JoinHandle<Result<(), String>> {
    let (remote, object) = (remote.clone(), digest.parse::<Object>().unwrap());
    tokio::spawn(async move {
        remote
            .fetch(&object, &Hints::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

/// `n` blobs of 3000 bytes and more (seeds from `seed`) in `reg`, each request for which
/// is answered 503 with `Retry-After: after`.
fn blobs_answered_503_with_retry_after(
    reg: &FakeRegistry,
    n: usize,
    seed: u64,
    after: &str,
) -> Vec<String> {
    let blobs: Vec<String> = (0..n)
        .map(|i| reg.blob("team/app", bytes(seed + i as u64, 3000 + i)))
        .collect();
    for d in &blobs {
        reg.set_fault_for_every(d, Fault::StatusWithRetryAfter(503, after.into()));
    }
    blobs
}

async fn all_fail_with_503(remote: &RegistryRemote, digests: &[String]) {
    all_fail_with(remote, digests, "503").await
}

/// Fetches every one of `digests` at once, each on a task of its own, and fails the
/// test unless each fails with `status`.
async fn all_fail_with(remote: &RegistryRemote, digests: &[String], status: &str) {
    let tasks: Vec<_> = digests.iter().map(|d| spawn_fetch(remote, d)).collect();
    for (d, task) in digests.iter().zip(tasks) {
        let e = task.await.unwrap().expect_err("every request failed");
        assert!(e.contains(status), "{d}: {e}");
    }
}

/// The registry answers every request 503 with a `Retry-After` longer than a minute,
/// which a library's policy waits for (`max_delay` of 2 minutes; the command line's
/// `Retry-After: 60` does the same by a hair, on a real clock): every request waits it
/// out, so no request goes to the registry for more than a minute. That wait is the
/// registry's own, not a worker fed slowly: the outage goes on, one request at a time.
/// Taken for "a minute without a request", it forgot the outage after every second
/// round, and each object spent all of its own retries on the registry.
#[tokio::test(start_paused = true)]
async fn a_long_retry_after_is_no_minute_without_a_request() {
    const N: usize = 8;
    const RETRIES: u32 = 5;
    let reg = FakeRegistry::start();
    let blobs = blobs_answered_503_with_retry_after(&reg, N, 9300, "90");
    let policy = RetryPolicy {
        retries: RETRIES,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(120),
    };
    let remote = library_remote(&reg, policy);
    let ticker = tick_while_idle();
    all_fail_with_503(&remote, &blobs).await;
    ticker.abort();
    let asked = blob_requests(&reg);
    for d in &blobs {
        assert!(reg.requests_for(d) >= 1, "{d} never asked for");
    }
    // Each object spending its own retries asks N × (RETRIES + 1) = 48 times; held, the
    // two first rounds (every object), one request a round for all, and each object's
    // own last attempt: 27.
    assert!(
        asked < N * (RETRIES as usize + 1),
        "{asked} blob requests for {N} objects"
    );
}

/// A gateway's 504 may say when to come back too (`Retry-After`), which a request waits
/// for though it pauses no host (only a 429 or a 503 does): longer than its backoff, and
/// than a minute, within a library's `max_delay`. The outage is remembered while its
/// requests wait that out: forgotten a minute after the last failure, as if nothing had
/// asked, the requests woke to a host that seemed well, and each spent its retries again.
#[tokio::test(start_paused = true)]
async fn a_gateway_s_long_retry_after_is_no_minute_without_a_request() {
    const N: usize = 8;
    const RETRIES: u32 = 5;
    let reg = FakeRegistry::start();
    let blobs: Vec<String> = (0..N)
        .map(|i| reg.blob("team/app", bytes(9350 + i as u64, 3000 + i)))
        .collect();
    for d in &blobs {
        reg.set_fault_for_every(d, Fault::StatusWithRetryAfter(504, "90".into()));
    }
    let policy = RetryPolicy {
        retries: RETRIES,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(120),
    };
    let remote = library_remote(&reg, policy);
    let ticker = tick_while_idle();
    all_fail_with(&remote, &blobs, "504").await;
    ticker.abort();
    let asked = blob_requests(&reg);
    // Each object spending its own retries asks 48 times; held, 31 (a 503 pauses the
    // host as well, and is asked 27 times).
    assert!(
        asked < N * (RETRIES as usize + 1),
        "{asked} blob requests for {N} objects"
    );
}

/// Blobs put on `reg`, one for each of the `seeds`, each answered 503 every time.
fn failing(reg: &FakeRegistry, seeds: std::ops::Range<u64>) -> Vec<String> {
    seeds
        .map(|seed| {
            let d = reg.blob("team/app", bytes(seed, 3000 + seed as usize % 100));
            reg.set_fault_for_every(&d, Fault::Status(503));
            d
        })
        .collect()
}

/// Requests that gave up sleep out no backoff: once every object has failed, the outage
/// is forgotten a minute past the host's pause, as nothing asks it, and an object that
/// comes after gets its retries. Each failure was taken for a request that would sleep
/// out the longest backoff, the last attempts too: the outage was remembered that long
/// (160 s here, where the pause ends 80 s after the last failure), and the object that
/// came meanwhile, late to it, failed on one request.
#[tokio::test(start_paused = true)]
async fn an_outage_whose_requests_all_gave_up_is_forgotten_a_minute_past_its_pause() {
    const RETRIES: u32 = 3;
    let reg = FakeRegistry::start();
    let (before, after) = (failing(&reg, 9440..9444), failing(&reg, 9450..9451));
    // The longest backoff 160 s; the host's last pause, the least backoff of the third
    // retry, 80 s.
    let policy = RetryPolicy {
        retries: RETRIES,
        base_delay: Duration::from_secs(40),
        max_delay: Duration::from_secs(300),
    };
    let remote = library_remote(&reg, policy);
    let ticker = tick_while_idle();
    all_fail_with_503(&remote, &before).await;
    tokio::time::sleep(Duration::from_secs(150)).await;
    let got = spawn_fetch(&remote, &after[0]).await.unwrap();
    ticker.abort();
    let e = got.expect_err("answered 503 every time");
    assert_eq!(
        reg.requests_for(&after[0]),
        RETRIES as usize + 1,
        "asked once for each of its attempts: {e}"
    );
}

/// An object that came late to an outage, past the rounds one object may be asked for,
/// is asked once for itself, until the outage ends. Once it has (here forgotten, a
/// minute unasked, as the object comes; an answer ends it as well), the object is late
/// no longer: a new outage that other objects begin while its request is on its way
/// (one the registry holds, then fails) is one it came before, and it spends its
/// retries on it, as those under way do. Still taken for late, it failed on that one
/// request, with `--retries 2`, though the registry served it when asked again.
///
/// The registry holds that request until the new outage is under way, and then answers
/// it: on the paused clock, a request held until the response timeout let the new
/// outage begin after the timeout on a loaded machine, and the test passed without the
/// fix.
#[tokio::test(start_paused = true)]
async fn an_object_late_to_an_outage_that_ended_keeps_its_retries_in_the_next() {
    const RETRIES: u32 = 2;
    let reg = FakeRegistry::start();
    let (before, beside) = (failing(&reg, 9400..9404), failing(&reg, 9410..9414));
    let late = reg.blob("team/app", bytes(9420, 4000));
    let held = Gate::default();
    reg.push_fault(
        &late,
        Fault::HeldHead(held.clone(), Box::new(Fault::Status(503))),
    );
    let policy = RetryPolicy {
        retries: RETRIES,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(60),
    };
    let remote = library_remote(&reg, policy);
    let ticker = tick_while_idle();
    // More rounds failed in a row than one object may be asked for.
    all_fail_with_503(&remote, &before).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    let fetch = spawn_fetch(&remote, &late);
    while reg.requests_for(&late) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Its first request on its way, the registry fails every other request again, more
    // rounds in a row than one object may be asked for, then fails that request too.
    all_fail_with_503(&remote, &beside).await;
    assert!(
        !fetch.is_finished(),
        "its request was answered before the gate opened"
    );
    held.open();
    let got = fetch.await.unwrap();
    ticker.abort();
    got.expect("the registry served it when asked again");
    assert_eq!(reg.requests_for(&late), 2);
}

/// The registry fails every request, one request at a time for all, when the token
/// ends and its token server fails too (Docker Hub's registry and `auth.docker.io` down
/// together): the tasks share the token server's failures, as README's Authentication
/// says. Before, the token was asked for behind the request sent for all: each task in
/// turn asked the token server again after its backoff, for itself alone, until the
/// outage was forgotten a minute on (nothing reached the registry), and 16 objects with
/// 5 retries cost about 20 token requests, where one failing request for all costs 6.
#[tokio::test(start_paused = true)]
async fn a_token_server_down_in_an_outage_is_asked_once_for_all() {
    const N: u64 = 16;
    const RETRIES: u32 = 5;
    let ttl = Duration::from_secs(2);
    let reg = FakeRegistry::builder()
        .auth(support::fake::Auth::bearer(ttl))
        .start();
    let blobs = failing(&reg, 9460..9460 + N);
    let policy = RetryPolicy {
        retries: RETRIES,
        ..RetryPolicy::default()
    };
    let remote = library_remote(&reg, policy);
    let ticker = tick_while_idle();
    let tasks: Vec<_> = blobs.iter().map(|d| spawn_fetch(&remote, d)).collect();
    // Every object failed once, and one more request: the registry fails request after
    // request, and its requests are held.
    let failed = || {
        let requests = reg.requests();
        let failed = requests.iter().filter(|r| r.status == 503);
        failed.count() as u64
    };
    while failed() <= N {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    reg.set_fault_for_every("/token", Fault::Status(503));
    let asked = reg.token_requests();
    // The token ends on the clock a token's expiry is read by, which goes on while
    // this one, the runtime's, stands still.
    std::thread::sleep(ttl + Duration::from_millis(100));
    for (d, task) in blobs.iter().zip(tasks) {
        let e = task.await.unwrap().expect_err("every request failed");
        assert!(e.contains("/token: token request answered 503"), "{d}: {e}");
    }
    ticker.abort();
    let asked = reg.token_requests() - asked;
    assert!(
        asked <= 2 * (RETRIES as usize + 1),
        "{asked} token requests for {N} objects with {RETRIES} retries"
    );
}

/// An outage nobody met for a minute is forgotten when the next object comes (a worker
/// fed slowly), also when its token has ended and the token server fails it then: the
/// object gets its retries, not one request as one late to the outage. Its token failure,
/// asked for before its turn while the outage seemed to hold, slept as the outage's
/// sleeper and kept it remembered: the object, late to it, failed on the registry's one
/// passing 503.
#[tokio::test(start_paused = true)]
async fn an_outage_forgotten_when_the_next_object_finds_its_token_server_failing() {
    const RETRIES: u32 = 2;
    let ttl = Duration::from_secs(2);
    let reg = FakeRegistry::builder()
        .auth(support::fake::Auth::bearer(ttl))
        .start();
    let before = failing(&reg, 9470..9474);
    let next = reg.blob("team/app", bytes(9480, 4000));
    let policy = RetryPolicy {
        retries: RETRIES,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(60),
    };
    let remote = library_remote(&reg, policy);
    let ticker = tick_while_idle();
    // More rounds failed in a row than one object may be asked for, then a minute
    // without a request.
    all_fail_with_503(&remote, &before).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    // The token ends on the clock a token's expiry is read by, which goes on while this
    // one, the runtime's, stands still.
    std::thread::sleep(ttl + Duration::from_millis(100));
    let asked = reg.token_requests();
    reg.push_fault("/token", Fault::Status(503));
    reg.push_fault(&next, Fault::Status(503));
    let got = spawn_fetch(&remote, &next).await.unwrap();
    ticker.abort();
    got.expect("the registry served it when asked again");
    assert_eq!(
        reg.token_requests() - asked,
        2,
        "the token server failed once"
    );
    assert_eq!(reg.requests_for(&next), 2);
}

/// Tokens revoked while the registry fails request after request (a registry restarted
/// with a new key, still failing): the one request sent for all meets the 401, and its
/// new token is the answer it brings back, not the registry's. Taken for the registry
/// answering again, the 401 ended the outage: every held task went at once with the
/// revoked token, drew a 401 each, then a 503 each with the new one.
///
/// The tokens are revoked while the only request on its way is the one sent for all,
/// which the registry holds. Revoked once every object had failed once and one more
/// request with it, as this test did, they could meet other objects' second requests on
/// their way too (a second failure in a row holds nobody yet), each refused: 2 to 15
/// 401s, in about 1 run in 10 on a loaded machine.
#[tokio::test(start_paused = true)]
async fn a_401_in_an_outage_is_answered_by_the_request_sent_for_all_alone() {
    const N: u64 = 16;
    const RETRIES: u32 = 8;
    let reg = FakeRegistry::builder()
        .auth(support::fake::Auth::bearer(Duration::from_secs(3600)))
        .start();
    let blobs = failing(&reg, 9480..9480 + N);
    // Failed twice in a row by its requests alone, the registry is in an outage; the
    // third, the request sent for all, is held.
    let first = failing(&reg, 9479..9480).remove(0);
    let held = Gate::default();
    reg.push_fault(&first, Fault::Status(503));
    reg.push_fault(&first, Fault::Status(503));
    reg.push_fault(
        &first,
        Fault::HeldHead(held.clone(), Box::new(Fault::Status(503))),
    );
    let policy = RetryPolicy {
        retries: RETRIES,
        ..RetryPolicy::default()
    };
    let remote = library_remote(&reg, policy);
    let ticker = tick_while_idle();
    let mut tasks = vec![spawn_fetch(&remote, &first)];
    let failed = |d: &str| {
        let requests = reg.requests();
        let path = format!("/blobs/{d}");
        let failed = requests.iter().filter(|r| r.path.ends_with(&path));
        failed.filter(|r| r.status == 503).count()
    };
    while failed(&first) < 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tasks.extend(blobs.iter().map(|d| spawn_fetch(&remote, d)));
    reg.invalidate_tokens();
    let at = reg.requests().len();
    held.open();
    for (d, task) in std::iter::once(&first).chain(&blobs).zip(tasks) {
        let e = task.await.unwrap().expect_err("every request failed");
        assert!(e.contains("503"), "{d}: {e}");
    }
    ticker.abort();
    let since = &reg.requests()[at..];
    let refused = since.iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 1, "blob requests refused with the revoked token");
    assert_eq!(
        reg.token_requests(),
        2,
        "one token, then one renewed for all"
    );
}

/// ECR's answer to a password past its 12 hours is a 403, which dist answers by asking
/// the credential helper again, as it answers a 401 by renewing a token. Met by the one
/// request sent for all while the registry fails every request, its renewed password is
/// the answer it brings back, not the registry's: taken for the registry answering, the
/// 403 ended the outage, and every held task went at once, each with the expired
/// password, to draw a 403 of its own (and then a 503 each).
#[test]
fn a_403_answered_with_renewed_credentials_in_an_outage_is_the_probe_s_alone() {
    const N: u64 = 12;
    let reg = FakeRegistry::builder()
        .auth(support::fake::Auth::basic("robot", "first"))
        .start();
    reg.forbid_stale_basic();
    let data = |seed: u64| bytes(seed, 3000);
    let first = reg.blob("team/app", data(9600));
    let blobs: Vec<String> = (9601..9601 + N)
        .map(|seed| reg.blob("team/app", data(seed)))
        .collect();
    for d in std::iter::once(&first).chain(&blobs) {
        reg.set_fault_for_every(d, Fault::Status(503));
    }
    // Failed twice in a row by its requests alone, the registry is in an outage; the
    // third, the request sent for all, is held while the other objects come.
    let held = Gate::default();
    reg.push_fault(&first, Fault::Status(503));
    reg.push_fault(&first, Fault::Status(503));
    reg.push_fault(
        &first,
        Fault::HeldHead(held.clone(), Box::new(Fault::Status(503))),
    );
    let mut dist = Dist::new();
    let secret = dist.config_dir().join("secret");
    std::fs::write(&secret, "first").unwrap();
    support::cli::rotating_helper(&mut dist, &secret);
    let jobs = (N + 1).to_string();
    let mut child = dist.start(&["--retries", "8", "fetch", &repo(&reg), "-", "-j", &jobs]);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{first}").unwrap();
    let failed = |d: &str| {
        let path = format!("/blobs/{d}");
        let requests = reg.requests();
        let failed = requests.iter().filter(|r| r.path.ends_with(&path));
        failed.filter(|r| r.status == 503).count()
    };
    support::wait::until("the request sent for all held", || failed(&first) >= 3);
    for d in &blobs {
        writeln!(stdin, "{d}").unwrap();
    }
    drop(stdin);
    // The password expires while the only request on its way is the one sent for all.
    std::fs::write(&secret, "second").unwrap();
    reg.set_auth(support::fake::Auth::basic("robot", "second"));
    let at = reg.requests().len();
    held.open();
    // The next request sent for all meets the 403, and is sent again with the password
    // the helper hands out now; once that one has failed too, the registry is back.
    let after_refusal = || {
        let since = &reg.requests()[at..];
        since
            .iter()
            .position(|r| r.status == 403)
            .is_some_and(|i| since[i + 1..].iter().any(|r| r.status == 503))
    };
    support::wait::until("a 403, and a request after it", after_refusal);
    reg.clear_faults();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(parse_frames(&out.stdout).len(), N as usize + 1, "{err}");
    let refused = reg.requests()[at..]
        .iter()
        .filter(|r| r.status == 403)
        .count();
    assert_eq!(
        refused, 1,
        "blob requests refused with the expired password: {err}"
    );
}

/// What the worker and `dist pull` exit with when their remote fails the check before the
/// batch (a tag listing of one entry), and what they say.
fn at_the_check(locator: &str, reference: &str) -> Vec<(Vec<String>, Option<i32>, String)> {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let runs: [(Vec<&str>, &[u8]); 2] = [
        (vec!["fetch", locator, "-"], b"latest\n"),
        (vec!["pull", reference, "-o", layout.to_str().unwrap()], b""),
    ];
    runs.into_iter()
        .map(|(args, input)| {
            let args = [&args[..], &["--retries", "0"]].concat();
            let out = Dist::new().run(&args, input);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            let args = args.iter().map(|a| a.to_string()).collect();
            (args, out.status.code(), err)
        })
        .collect()
}

/// A registry down for the moment when the worker or `dist pull` starts (connections
/// refused, a restart at 03:00; 503s past the retries) fails the check before the batch:
/// that was status 2, a "usage error" a cron job alerts on, where the same outage a second
/// later, in the batch, was 75, which it retries. Now it is 75 at the check too, said so;
/// so too for a token server down (503) in front of a registry that is up.
#[test]
fn a_registry_down_for_the_moment_at_the_check_exits_75() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let refused = format!("127.0.0.1:{port}/team/app");
    for (args, code, err) in at_the_check(&refused, &format!("{refused}:v1")) {
        assert_eq!(code, Some(75), "refused: {args:?}: {err}");
        assert!(err.contains("Connection refused"), "{args:?}: {err}");
        assert!(err.contains("a later run may succeed"), "{args:?}: {err}");
    }
    let reg = FakeRegistry::start();
    reg.set_fault_for_every("tags/list", Fault::Status(503));
    let unavailable = repo(&reg);
    for (args, code, err) in at_the_check(&unavailable, &format!("{unavailable}:v1")) {
        assert_eq!(code, Some(75), "503: {args:?}: {err}");
        assert!(err.contains("503 Service Unavailable"), "{args:?}: {err}");
        assert!(err.contains("a later run may succeed"), "{args:?}: {err}");
    }
    assert!(reg.requests().iter().all(|r| r.path.contains("tags/list")));
    // The token server down, the registry up: the token cannot be had for the moment.
    let reg = FakeRegistry::builder()
        .auth(support::fake::Auth::bearer(Duration::from_secs(300)))
        .start();
    reg.set_fault_for_every("/token", Fault::Status(503));
    let realm_down = repo(&reg);
    for (args, code, err) in at_the_check(&realm_down, &format!("{realm_down}:v1")) {
        assert_eq!(code, Some(75), "token 503: {args:?}: {err}");
        assert!(
            err.contains("token request answered 503"),
            "{args:?}: {err}"
        );
        assert!(err.contains("a later run may succeed"), "{args:?}: {err}");
    }
}

/// What retrying cannot cure stays status 2 at the check: credentials refused (401), and
/// a host that cannot exist: `10.0.0.256` (a mistyped address, no name TLS can check:
/// refused before any lookup, so on every machine), and a name the resolver says does not
/// exist (one it refuses on every machine: [`support::no_such_host`]). An untrusted
/// certificate: tests/tls.rs.
#[test]
fn a_registry_retrying_cannot_cure_at_the_check_exits_2() {
    let reg = FakeRegistry::start();
    reg.set_auth(support::fake::Auth::basic("user", "secret"));
    let locked = repo(&reg);
    for (args, code, err) in at_the_check(&locked, &format!("{locked}:v1")) {
        assert_eq!(code, Some(2), "401: {args:?}: {err}");
        assert!(err.contains("cannot use"), "{args:?}: {err}");
        assert!(!err.contains("a later run may succeed"), "{args:?}: {err}");
    }
    let mistyped = "10.0.0.256:5000/team/app";
    for (args, code, err) in at_the_check(mistyped, &format!("{mistyped}:v1")) {
        assert_eq!(code, Some(2), "no such host: {args:?}: {err}");
        assert!(
            err.contains("neither an IP address nor a DNS name"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("a later run may succeed"), "{args:?}: {err}");
    }
    // Labels a DNS name may hold, but more bytes than one has: it was said to end in a
    // number, "a mistyped address?".
    let label = "a".repeat(60);
    let long = format!("{label}.{label}.{label}.{label}.{label}:5000/team/app");
    for (args, code, err) in at_the_check(&long, &format!("{long}:v1")) {
        assert_eq!(code, Some(2), "too long a name: {args:?}: {err}");
        assert!(
            err.contains("it is 304 bytes long, and DNS allows at most 253"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("ends in a number"), "{args:?}: {err}");
    }
    let unknown = format!("http://{}/team/app", support::no_such_host());
    for (args, code, err) in at_the_check(&unknown, &format!("{unknown}:v1")) {
        assert_eq!(code, Some(2), "unknown host: {args:?}: {err}");
        assert!(err.contains("Name or service not known"), "{args:?}: {err}");
        assert!(!err.contains("a later run may succeed"), "{args:?}: {err}");
    }
}

/// The answer that ends a request late to an outage holds the registry's other requests
/// for the `Retry-After` it carries, as every other answer's does: it returned before
/// setting the pause, and the next object, sent at once, met the server long before the
/// pause it asked for was over (a worker's next line, a service's next fetch).
#[tokio::test(start_paused = true)]
async fn the_answer_that_ends_a_late_request_holds_the_next_one() {
    let reg = FakeRegistry::start();
    let (remote, late, ticker) = late_to_an_outage(&reg, 7, 9470, "30").await;
    fetch_late(&remote, &late[0]).await;
    let answered = tokio::time::Instant::now();
    let next: Object = late[1].parse().unwrap();
    let e = remote.fetch(&next, &Hints::default()).await.unwrap_err();
    let sent_after = answered.elapsed();
    ticker.abort();
    assert_eq!(reg.requests_for(&late[1]), 1, "{e}");
    // On the paused clock: the pause, not the speed of the machine, decides it.
    assert!(
        sent_after >= Duration::from_secs(30),
        "asked again {sent_after:?} after a 30 s Retry-After"
    );
}

/// An object late to an outage is asked once for itself, and its error carries the
/// `Retry-After` that answer asked for, which nobody waited out: a service scheduling the
/// object again must not come back before it ends, as after a request whose retries ran
/// out ([`dist::Error::retry_after`]). It ended with none, as if no pause had been asked.
#[tokio::test(start_paused = true)]
async fn an_object_late_to_an_outage_is_told_the_pause_its_answer_asked_for() {
    let reg = FakeRegistry::start();
    let (remote, late, ticker) = late_to_an_outage(&reg, 6, 9460, "7").await;
    let e = fetch_late(&remote, &late[0]).await;
    ticker.abort();
    assert_eq!(reg.requests_for(&late[0]), 1, "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)), "{e}");
}

/// `n` blobs of `reg` answered 503 with `Retry-After: after` (seeds from `seed`), the
/// first five asked for at once on the paused clock, more rounds failed in a row than one
/// object may be asked for (two retries): the remote, the blobs late to that outage, and
/// the ticker of the clock ([`tick_while_idle`]), still running.
async fn late_to_an_outage(
    reg: &FakeRegistry,
    n: usize,
    seed: u64,
    after: &str,
) -> (RegistryRemote, Vec<String>, tokio::task::JoinHandle<()>) {
    let mut blobs = blobs_answered_503_with_retry_after(reg, n, seed, after);
    let late = blobs.split_off(5);
    let policy = RetryPolicy {
        retries: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(60),
    };
    let remote = library_remote(reg, policy);
    let ticker = tick_while_idle();
    all_fail_with_503(&remote, &blobs).await;
    (remote, late, ticker)
}

/// Fetches `digest`, late to the outage of [`late_to_an_outage`]: its error, which says
/// so.
async fn fetch_late(remote: &RegistryRemote, digest: &str) -> dist::Error {
    let object: Object = digest.parse().unwrap();
    let e = remote.fetch(&object, &Hints::default()).await.unwrap_err();
    assert!(
        e.to_string().contains("the registry failed every request"),
        "late to the outage: {e}"
    );
    e
}
