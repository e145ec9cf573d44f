//! A seeded soak of the worker: a few hundred blobs of mixed sizes through the in-process
//! registry with a random fifth of the requests meeting a random fault, into `-o DIR` and to
//! framed stdout, and a batch in which some blobs fail on every attempt.
//!
//! Faults are queued per blob path from the seed before the run starts, so what each blob
//! meets does not depend on how the worker schedules its requests: a failure reproduces
//! with `CHAOS_SEED=<the seed printed>`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use support::cli::{bytes, json_lines, parse_frames, sha256, Dist};
use support::fake::{FakeRegistry, Fault};

const REPO: &str = "team/app";
/// The share of requests that meet a fault.
const P_FAULT: f64 = 0.2;
/// At most this many faults in a row for one blob: with `--retries` well above it, every
/// blob must come in the end.
const MAX_CHAIN: usize = 4;
const RETRIES: &str = "12";
const IDLE_TIMEOUT: &str = "2s";

/// SplitMix64: small, seeded, good enough to pick sizes and faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo) as u64) as usize
    }
}

fn seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00c0_ffee)
}

fn repo(reg: &FakeRegistry) -> String {
    format!("{}/{REPO}", reg.host())
}

/// `n` blobs: most of a few KiB, some of hundreds, a few past the first MiB (which a
/// broken body resumes with `Range` and an interrupted run keeps as a partial download).
fn fill(reg: &FakeRegistry, rng: &mut Rng, n: usize) -> BTreeMap<String, Vec<u8>> {
    let mut blobs = BTreeMap::new();
    while blobs.len() < n {
        let len = match rng.range(0, 100) {
            0..=74 => rng.range(2 << 10, 64 << 10),
            75..=95 => rng.range(64 << 10, 512 << 10),
            _ => rng.range(1 << 20, 3 << 20),
        };
        let data = bytes(rng.next(), len);
        blobs.insert(reg.blob(REPO, &data), data);
    }
    blobs
}

/// Faults that cost time for the whole batch (a host-wide `Retry-After: 1`, a stall the
/// idle timeout must end) are rationed per run.
#[derive(Default)]
struct Rations {
    retry_after_1s: usize,
    idle_stalls: usize,
}

/// One fault for a response whose body is at most `len` bytes. `corrupt_ok` is false once
/// the blob has had its one corruption: content corrupted twice is reported by design.
fn pick(rng: &mut Rng, len: usize, corrupt_ok: &mut bool, rations: &mut Rations) -> Fault {
    let at = rng.range(0, len.max(1));
    loop {
        let fault = match rng.range(0, 22) {
            0 => Fault::Status(500),
            1 => Fault::Status(502),
            2 => Fault::Status(503),
            3 => Fault::Status(504),
            4 => Fault::Status(408),
            5 => Fault::StatusWithRetryAfter(429, "0".into()),
            6 if rations.retry_after_1s < 2 => {
                rations.retry_after_1s += 1;
                Fault::StatusWithRetryAfter(429, "1".into())
            }
            7 => Fault::DropAfter(at),
            8 => Fault::Truncate(at),
            9 => Fault::CloseUnanswered,
            10 if *corrupt_ok => {
                *corrupt_ok = false;
                Fault::CorruptByte(at)
            }
            11 => Fault::SlowBody {
                chunk: len / 3 + 1,
                delay: Duration::from_millis(20),
            },
            12 => Fault::StallAfter(at, Duration::from_millis(150)),
            13 if rations.idle_stalls < 2 => {
                rations.idle_stalls += 1;
                Fault::StallAfter(at, Duration::from_secs(4))
            }
            14 => Fault::IgnoreRange,
            15 => Fault::StatusWithRetryAfter(503, "0".into()),
            16 => Fault::NotHttp,
            17 => Fault::Page {
                status: 502,
                content_type: "text/html",
                body: "<html><body>Bad Gateway</body></html>".into(),
            },
            18 => Fault::Coded("gzip"),
            // A body that is not the content, by its length: a mismatch like corruption.
            19 if *corrupt_ok => {
                *corrupt_ok = false;
                Fault::WrongContentLength(rng.range(1, 100) as i64)
            }
            20 if *corrupt_ok => {
                *corrupt_ok = false;
                Fault::WrongContentLength(-(rng.range(1, 100).min(len) as i64))
            }
            21 if *corrupt_ok => {
                *corrupt_ok = false;
                Fault::LongerBody(rng.range(1, 100))
            }
            _ => continue,
        };
        return fault;
    }
}

/// Queues each blob's faults: each of its requests meets one with probability
/// [`P_FAULT`], up to [`MAX_CHAIN`] in a row. Returns each blob's faults.
fn queue_chaos(
    reg: &FakeRegistry,
    rng: &mut Rng,
    blobs: &BTreeMap<String, Vec<u8>>,
) -> BTreeMap<String, Vec<Fault>> {
    let mut rations = Rations::default();
    let mut plan = BTreeMap::new();
    // The check of the remote before the batch meets faults too.
    for _ in 0..2 {
        if rng.unit() < P_FAULT * 2.0 {
            reg.push_fault("tags/list", Fault::Status(503));
        }
    }
    // Left to chance, a run might break no body past its first MiB: the first large blob
    // always has one broken there, which the resume must carry on.
    let large = blobs.iter().find(|(_, data)| data.len() > 1 << 20);
    for (digest, data) in blobs {
        let mut corrupt_ok = true;
        let mut chain = Vec::new();
        if large.is_some_and(|(d, _)| d == digest) {
            let fault = Fault::DropAfter(rng.range(1 << 20, data.len()));
            reg.push_fault(&format!("blobs/{digest}"), fault.clone());
            chain.push(fault);
        }
        while chain.len() < MAX_CHAIN && rng.unit() < P_FAULT {
            let fault = pick(rng, data.len(), &mut corrupt_ok, &mut rations);
            reg.push_fault(&format!("blobs/{digest}"), fault.clone());
            chain.push(fault);
        }
        if !chain.is_empty() {
            plan.insert(digest.clone(), chain);
        }
    }
    plan
}

/// One line per digest; every other one with a `size:` hint when the size is known.
fn input<'a>(
    digests: impl IntoIterator<Item = &'a String>,
    blobs: &BTreeMap<String, Vec<u8>>,
) -> String {
    let line = |(i, d): (usize, &String)| match blobs.get(d) {
        Some(data) if i % 2 == 1 => format!("{d} size:{}\n", data.len()),
        _ => format!("{d}\n"),
    };
    digests.into_iter().enumerate().map(line).collect()
}

fn run(reg: &FakeRegistry, extra: &[&str], stdin: &str) -> Output {
    let loc = repo(reg);
    let mut args = vec![
        "fetch",
        loc.as_str(),
        "-",
        "-j",
        "16",
        "--retries",
        RETRIES,
        "--idle-timeout",
        IDLE_TIMEOUT,
    ];
    args.extend_from_slice(extra);
    Dist::new().run(&args, stdin.as_bytes())
}

/// The blobs stored under `dir`, each checked against its name; fails on any temporary file
/// or partial download left behind.
fn stored(dir: &Path, ctx: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let sha = dir.join("blobs/sha256");
    for entry in std::fs::read_dir(&sha).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        assert!(!name.starts_with('.'), "{ctx}: file left behind: {name}");
        let data = std::fs::read(entry.path()).unwrap();
        let digest = format!("sha256:{name}");
        assert_eq!(sha256(&data), digest, "{ctx}: unverified content stored");
        out.insert(digest, data);
    }
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        assert!(
            !name.starts_with(".dist-"),
            "{ctx}: file left behind: {name}"
        );
    }
    out
}

fn no_panic(out: &Output, ctx: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{ctx}: dist panicked:\n{err}"
    );
    err
}

/// What the registry saw of `digest`, for failure messages.
fn history(reg: &FakeRegistry, digest: &str) -> String {
    reg.requests()
        .iter()
        .filter(|r| r.path.ends_with(digest))
        .map(|r| {
            let range = r.range.as_deref().unwrap_or("-");
            format!("\n  {} {range} -> {} {:?}", r.method, r.status, r.fault)
        })
        .collect()
}

/// Requests that met a fault, and ranged requests (resumes), since `from`.
fn faults_met(reg: &FakeRegistry, from: usize) -> (usize, usize) {
    let log = reg.requests();
    let log = &log[from.min(log.len())..];
    let faults = log.iter().filter(|r| r.fault.is_some()).count();
    let ranged = log.iter().filter(|r| r.range.is_some()).count();
    (faults, ranged)
}

fn summary(plan: &BTreeMap<String, Vec<Fault>>) -> String {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for fault in plan.values().flatten() {
        let name = format!("{fault:?}");
        let kind = name.split(['(', ' ']).next().unwrap_or("").to_string();
        *kinds.entry(kind).or_default() += 1;
    }
    format!("{} blobs with faults: {kinds:?}", plan.len())
}

#[test]
fn every_blob_comes_whole_through_random_faults() {
    let seed = seed();
    let mut rng = Rng(seed);
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, &mut rng, 240);
    let lines = input(blobs.keys(), &blobs);

    // Into a directory.
    let plan = queue_chaos(&reg, &mut rng, &blobs);
    let ctx = format!("CHAOS_SEED={seed}, -o DIR, {}", summary(&plan));
    eprintln!("{ctx}");
    let dir = tempfile::tempdir().unwrap();
    let out = run(&reg, &["-o", dir.path().to_str().unwrap()], &lines);
    let err = no_panic(&out, &ctx);
    assert_eq!(out.status.code(), Some(0), "{ctx}\n{err}");
    let got = stored(dir.path(), &ctx);
    for (digest, data) in &blobs {
        assert!(
            got.get(digest) == Some(data),
            "{ctx}: {digest} missing or wrong:{}",
            history(&reg, digest)
        );
    }
    assert_eq!(got.len(), blobs.len(), "{ctx}: blobs stored");
    let (faults, ranged) = faults_met(&reg, 0);
    assert!(faults >= plan.len(), "{ctx}: only {faults} faults met");
    assert!(ranged > 0, "{ctx}: no broken body was resumed");
    let mut seen = BTreeSet::new();
    for line in json_lines(&out.stdout) {
        assert_eq!(line["status"], "ok", "{ctx}: {line}");
        let digest = line["digest"].as_str().unwrap().to_string();
        assert!(
            seen.insert(digest.clone()),
            "{ctx}: {digest} reported twice"
        );
    }
    assert_eq!(seen.len(), blobs.len(), "{ctx}: JSON lines");

    // To framed stdout, through other faults.
    reg.clear_faults();
    let plan = queue_chaos(&reg, &mut rng, &blobs);
    let ctx = format!("CHAOS_SEED={seed}, framed, {}", summary(&plan));
    eprintln!("{ctx}");
    let from = reg.request_count();
    let out = run(&reg, &[], &lines);
    let err = no_panic(&out, &ctx);
    assert_eq!(out.status.code(), Some(0), "{ctx}\n{err}");
    let mut seen = BTreeSet::new();
    for frame in parse_frames(&out.stdout) {
        let (digest, _, body) = frame.result.unwrap_or_else(|e| {
            let history = history(&reg, &frame.object);
            panic!("{ctx}: {} failed: {e}{history}", frame.object)
        });
        assert_eq!(frame.object, digest, "{ctx}");
        assert!(blobs.get(&digest) == Some(&body), "{ctx}: {digest} wrong");
        assert!(seen.insert(digest.clone()), "{ctx}: {digest} framed twice");
    }
    assert_eq!(seen.len(), blobs.len(), "{ctx}: frames");
    let (faults, ranged) = faults_met(&reg, from);
    assert!(faults >= plan.len(), "{ctx}: only {faults} faults met");
    assert!(ranged > 0, "{ctx}: no broken body was resumed");
}

/// Every request for these blobs fails: every other one with 404, the rest with their
/// first byte corrupted (offsets count from the start of each response's body, a resumed
/// range's included, so only the first byte is in every one).
fn break_for_good(reg: &FakeRegistry, blobs: &[(usize, String)]) {
    for (i, digest) in blobs {
        let fault = if i % 24 == 5 {
            Fault::Status(404)
        } else {
            Fault::CorruptByte(0)
        };
        reg.set_fault_for_every(digest, fault);
    }
}

#[test]
fn blobs_failing_every_time_are_reported_and_the_rest_stored() {
    let seed = seed();
    let mut rng = Rng(seed ^ 0x5eed);
    let reg = FakeRegistry::start();
    let blobs = fill(&reg, &mut rng, 120);
    // Some stored blobs fail on every attempt, and some digests the registry never had.
    let (failing_stored, healthy): (BTreeMap<_, _>, BTreeMap<_, _>) = blobs
        .iter()
        .enumerate()
        .map(|(i, (d, data))| ((i, d.clone()), data.clone()))
        .partition(|((i, _), _)| i % 12 == 5);
    let failing_stored: Vec<(usize, String)> = failing_stored.into_keys().collect();
    let healthy: BTreeMap<String, Vec<u8>> = healthy
        .into_iter()
        .map(|((_, d), data)| (d, data))
        .collect();
    // A queued fault comes before a persistent one: only the healthy meet passing faults,
    // which might serve a failing blob whole.
    let plan = queue_chaos(&reg, &mut rng, &healthy);
    break_for_good(&reg, &failing_stored);
    let mut failing: BTreeSet<String> = failing_stored.iter().map(|(_, d)| d.clone()).collect();
    for i in 0..3 {
        failing.insert(sha256(format!("never pushed {seed} {i}").as_bytes()));
    }
    let mut all: BTreeSet<String> = blobs.keys().cloned().collect();
    all.extend(failing.iter().cloned());
    let lines = input(&all, &blobs);
    let url = |digest: &str| format!("{}/v2/{REPO}/blobs/{digest}", reg.url());
    let ctx = format!(
        "CHAOS_SEED={seed}, {} failing, {}",
        failing.len(),
        summary(&plan)
    );
    eprintln!("{ctx}");

    let dir = tempfile::tempdir().unwrap();
    let out = run(&reg, &["-o", dir.path().to_str().unwrap()], &lines);
    let err = no_panic(&out, &ctx);
    assert_eq!(out.status.code(), Some(1), "{ctx}\n{err}");
    let got = stored(dir.path(), &ctx);
    let reports: BTreeMap<String, serde_json::Value> = json_lines(&out.stdout)
        .into_iter()
        .map(|l| (l["object"].as_str().unwrap_or("").to_string(), l))
        .collect();
    for digest in &all {
        let want = if failing.contains(digest) {
            None
        } else {
            blobs.get(digest)
        };
        assert!(
            got.get(digest) == want,
            "{ctx}: {digest} stored wrongly ({} bytes stored, {} expected): {}{}",
            got.get(digest).map_or(0, Vec::len),
            want.map_or(0, Vec::len),
            reports
                .get(digest)
                .map(|l| l.to_string())
                .unwrap_or_default(),
            history(&reg, digest)
        );
    }
    let mut seen = BTreeSet::new();
    for line in json_lines(&out.stdout) {
        let object = line["object"].as_str().unwrap().to_string();
        if failing.contains(&object) {
            assert_eq!(line["status"], "error", "{ctx}: {line}");
            let message = line["error"].as_str().unwrap();
            assert!(message.contains(&url(&object)), "{ctx}: {line}");
        } else {
            assert_eq!(line["status"], "ok", "{ctx}: {line}");
        }
        assert!(
            seen.insert(object.clone()),
            "{ctx}: {object} reported twice"
        );
    }
    assert_eq!(seen, all, "{ctx}: one JSON line each");

    // Framed in input order, with fresh transient faults.
    reg.clear_faults();
    queue_chaos(&reg, &mut rng, &healthy);
    break_for_good(&reg, &failing_stored);
    let out = run(&reg, &["--ordered"], &lines);
    let err = no_panic(&out, &ctx);
    assert_eq!(out.status.code(), Some(1), "{ctx}\n{err}");
    let frames = parse_frames(&out.stdout);
    let order: Vec<&String> = frames.iter().map(|f| &f.object).collect();
    assert!(
        order.iter().copied().eq(all.iter()),
        "{ctx}: frames out of order"
    );
    let mut seen = BTreeSet::new();
    for frame in frames {
        match frame.result {
            Ok((digest, _, body)) => {
                assert!(!failing.contains(&digest), "{ctx}: {digest} framed");
                assert!(blobs.get(&digest) == Some(&body), "{ctx}: {digest} wrong");
            }
            Err(reason) => {
                assert!(failing.contains(&frame.object), "{ctx}: {reason}");
                assert!(reason.contains(&url(&frame.object)), "{ctx}: {reason}");
            }
        }
        assert!(seen.insert(frame.object.clone()), "{ctx}: twice");
    }
    assert_eq!(seen, all, "{ctx}: one frame each");
}
