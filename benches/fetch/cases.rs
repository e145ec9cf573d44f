//! The cases. Each starts the servers it needs, fills them, measures dist against its
//! baselines in the same run, stops the servers, and returns a detail section plus
//! summary rows.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::data::{
    distinct_tags, missing_digests, pull_token, push_all, push_file, small_blobs, write_big_file,
    write_curl_config, write_lines, write_static_tree, GIB, MIB,
};
use crate::measure::{cpu_seconds, rusage, sh_quote, Plan, Runner, Sample, Stats, Variant};
use crate::report::{details, Measured, Row, Target};
use crate::servers::{start_registry, DelayLine, StaticServer};
use crate::support::registry::Mode;

/// Number of small blobs in the small-object cases.
const SMALL_COUNT: usize = 1000;
/// The worker's and the baselines' concurrency.
const JOBS: usize = 10;
/// How long each `many-lines` run of distinct objects may take before it is made shorter.
const LINES_BUDGET_SECS: f64 = 60.0;
/// See [`Ctx::fast_plan`].
const FAST_CASE_RUNS: usize = 5;

/// Everything the cases share.
pub struct Ctx {
    /// A tmpfs directory (else a temp dir) for every file a case writes.
    pub work: PathBuf,
    /// The binary under test.
    pub dist: PathBuf,
    /// Measured runs per variant, after one warm-up.
    pub runs: usize,
}

/// What a case hands back.
pub struct CaseReport {
    pub details: String,
    pub rows: Vec<Row>,
}

impl Ctx {
    fn plan(&self) -> Plan {
        Plan {
            warmups: 1,
            runs: self.runs,
        }
    }

    /// For a case whose runs take about a tenth of a second: `FAST_CASE_RUNS` times the
    /// runs. A few milliseconds of scheduling noise is a large share of such a run: with
    /// 7 runs, the same build's CPU ratio to curl came out anywhere from 1.02x to 1.19x.
    /// The extra runs cost seconds.
    fn fast_plan(&self) -> Plan {
        Plan {
            warmups: 1,
            runs: self.runs * FAST_CASE_RUNS,
        }
    }

    /// A fresh directory for one case, named after it (`main` removes it afterwards).
    fn case_dir(&self, case: &str) -> PathBuf {
        let dir = self.work.join(case);
        fs::create_dir_all(dir.join("logs")).expect("create case dir");
        dir
    }

    fn runner(&self, dir: &Path, server_pids: Option<Vec<u32>>) -> Runner {
        let docker_config = dir.join("docker-config");
        fs::create_dir_all(&docker_config).expect("create DOCKER_CONFIG dir");
        Runner {
            docker_config,
            log_dir: dir.join("logs"),
            server_pids,
        }
    }

    /// `exec dist ARGS` with the arguments quoted.
    fn dist_cmd(&self, args: &[&str]) -> String {
        let mut cmd = format!("exec {}", q(&self.dist));
        for arg in args {
            cmd.push(' ');
            cmd.push_str(&sh_quote(arg));
        }
        cmd
    }
}

/// The peak RSS the measuring chain reports for `true` (see `measure.rs`).
pub fn rss_floor(ctx: &Ctx) -> u64 {
    let dir = ctx.case_dir("rss-floor");
    crate::measure::rss_floor(&ctx.runner(&dir, None))
}

fn q(path: &Path) -> String {
    sh_quote(path.to_str().expect("UTF-8 path"))
}

fn wipe(dir: &Path) {
    if dir.exists() {
        fs::remove_dir_all(dir).expect("wipe output dir");
    }
}

/// `curl --parallel` over a `-K` config of `url`/`output` pairs, in one process. (curl
/// 7.88 draws its parallel progress meter despite `-s`, hence `--no-progress-meter`.)
fn curl_parallel(config: &Path) -> String {
    format!(
        "exec curl -sSf --no-progress-meter --parallel --parallel-max {JOBS} -K {}",
        q(config)
    )
}

/// Checks that a `-o` run stored `count` objects (a run that exits 0 but stores nothing
/// would otherwise look very fast).
fn assert_stored(out: &Path, count: usize) {
    let stored = fs::read_dir(out.join("blobs/sha256"))
        .map(|d| d.filter(|e| e.is_ok()).count())
        .unwrap_or(0);
    assert_eq!(stored, count, "objects stored in {}", out.display());
}

/// Issue 3 and 5a: 1000 small blobs behind token auth. The registry is the bottleneck,
/// so dist should be about as fast as one curl with one token, and far faster than a
/// process (and a token) per blob.
pub fn worker_small(ctx: &Ctx) -> CaseReport {
    const REPO: &str = "bench/small";
    let dir = ctx.case_dir("worker-small");
    let blobs = small_blobs(SMALL_COUNT);
    let server = start_registry(Mode::Token);
    eprintln!("  [worker-small] pushing {SMALL_COUNT} blobs");
    push_all(&server.registry, REPO, &blobs);

    let digests = dir.join("digests.txt");
    write_lines(&digests, blobs.iter().map(|b| &b.digest));
    // One token up front, as a client that knows the protocol would do. The header goes
    // in the config file (`header =` is `-H` there) to keep the printed command short.
    let token = pull_token(&server.registry, REPO);
    let config = dir.join("curl.cfg");
    let urls = blobs
        .iter()
        .map(|b| format!("{}/v2/{REPO}/blobs/{}", server.registry.url(), b.digest));
    write_curl_config(
        &config,
        Some(&format!("Authorization: Bearer {token}")),
        urls,
        None,
    );

    let loc = format!("{}/{REPO}", server.registry.host());
    let out = dir.join("out");
    let jobs = JOBS.to_string();
    let digests_q = q(&digests);
    let variants = [
        Variant::new(
            "dist worker -o DIR",
            format!(
                "{} < {digests_q} > /dev/null",
                ctx.dist_cmd(&["fetch", &loc, "-", "-o", out.to_str().unwrap(), "-j", &jobs])
            ),
        )
        .prepare(|| wipe(&out)),
        Variant::new(
            "dist worker framed",
            format!(
                "{} < {digests_q} > /dev/null",
                ctx.dist_cmd(&["fetch", &loc, "-", "-j", &jobs])
            ),
        ),
        Variant::new(
            "xargs -P10 dist fetch",
            format!(
                "xargs -P{JOBS} -n1 {} fetch {} < {digests_q} > /dev/null",
                q(&ctx.dist),
                sh_quote(&loc)
            ),
        ),
        Variant::new("curl --parallel", curl_parallel(&config)),
    ];
    let runner = ctx.runner(&dir, Some(vec![server.pid]));
    let stats = runner.measure("worker-small", &variants, ctx.plan());
    assert_stored(&out, SMALL_COUNT);

    let [to_dir, framed, xargs, curl] = stats;
    CaseReport {
        details: details(
            "worker-small",
            &format!(
                "{SMALL_COUNT} blobs of 4-64 KiB in a `docker-registry` with bearer-token auth \
                 (token issuer in the bench process), {JOBS} at a time. Server CPU is the \
                 registry's plus the token issuer's."
            ),
            &Measured::of(&variants, &stats),
        ),
        rows: vec![
            Row::new("worker-small", "worker -o DIR", to_dir)
                .against("xargs -P10 dist fetch", xargs)
                .target(Target::Wall(0.125)),
            Row::new("worker-small", "worker -o DIR", to_dir)
                .against("curl --parallel", curl)
                .target(Target::Wall(1.1)),
            Row::new("worker-small", "worker framed", framed)
                .against("curl --parallel", curl)
                .target(Target::Wall(1.1)),
        ],
    }
}

/// Issue 5b: the same blobs from a static file server, where the client is the
/// bottleneck.
pub fn static_small(ctx: &Ctx) -> CaseReport {
    const REPO: &str = "bench/small";
    let dir = ctx.case_dir("static-small");
    let blobs = small_blobs(SMALL_COUNT);
    let root = dir.join("root");
    write_static_tree(&root, REPO, &blobs);
    let server = StaticServer::start(&root, &dir);
    eprintln!("  [static-small] serving with {}", server.describe());

    let digests = dir.join("digests.txt");
    write_lines(&digests, blobs.iter().map(|b| &b.digest));
    let urls = || {
        blobs
            .iter()
            .map(|b| format!("http://{}/v2/{REPO}/blobs/{}", server.addr(), b.digest))
    };
    let config = dir.join("curl.cfg");
    write_curl_config(&config, None, urls(), None);
    // What `-o DIR` does, done by curl: one file per blob (no verification, no fsync).
    let files = dir.join("curl-files");
    let files_config = dir.join("curl-files.cfg");
    write_curl_config(&files_config, None, urls(), Some(&files));

    let loc = format!("{}/{REPO}", server.addr());
    let out = dir.join("out");
    let jobs = JOBS.to_string();
    let digests_q = q(&digests);
    let variants = [
        Variant::new(
            "dist worker framed",
            format!(
                "{} < {digests_q} > /dev/null",
                ctx.dist_cmd(&["fetch", &loc, "-", "-j", &jobs])
            ),
        ),
        Variant::new(
            "dist worker -o DIR",
            format!(
                "{} < {digests_q} > /dev/null",
                ctx.dist_cmd(&["fetch", &loc, "-", "-o", out.to_str().unwrap(), "-j", &jobs])
            ),
        )
        .prepare(|| wipe(&out)),
        Variant::new("curl --parallel", curl_parallel(&config)),
        Variant::new("curl --parallel to files", curl_parallel(&files_config)).prepare(|| {
            wipe(&files);
            fs::create_dir_all(&files).expect("create curl's output dir");
        }),
    ];
    let runner = ctx.runner(&dir, Some(server.pids()));
    let stats = runner.measure("static-small", &variants, ctx.fast_plan());
    assert_stored(&out, SMALL_COUNT);
    let curl_stored = fs::read_dir(&files).map(|d| d.count()).unwrap_or(0);
    assert_eq!(curl_stored, SMALL_COUNT, "curl stored {curl_stored} files");

    let [framed, to_dir, curl, curl_files] = stats;
    CaseReport {
        details: details(
            "static-small",
            &format!(
                "The same {SMALL_COUNT} blobs as plain files from {}, laid out as \
                 `/v2/REPO/blobs/sha256:<hex>`. dist's reachability check \
                 (`GET /v2/REPO/tags/list?n=1`) gets a 404 here, which it accepts.",
                server.describe()
            ),
            &Measured::of(&variants, &stats),
        ),
        rows: vec![
            Row::new("static-small", "worker framed", framed)
                .against("curl --parallel", curl)
                .target(Target::Wall(1.5))
                .target(Target::Cpu(1.0)),
            // `-o DIR` also creates, fsyncs and renames a file per blob: its fair baseline
            // is curl writing one file per blob too. No CPU target: publishing each blob
            // atomically (temporary file, rename) and skipping blobs already stored (a
            // lookup per blob) are work curl does not do, about 10 µs of kernel time per
            // file here (README, Performance).
            Row::new("static-small", "worker -o DIR", to_dir).against("curl --parallel", curl),
            Row::new("static-small", "worker -o DIR", to_dir)
                .against("curl --parallel to files", curl_files)
                .target(Target::Wall(1.5)),
        ],
    }
}

/// Issue 5c/5d: one 1 GiB blob. dist must move and hash it about as fast as the slower of
/// "just transfer it" and "just hash it", in constant memory.
pub fn big(ctx: &Ctx) -> CaseReport {
    const REPO: &str = "bench/big";
    let dir = ctx.case_dir("big");
    let file = dir.join("blob.bin");
    eprintln!("  [big] writing and uploading a 1 GiB blob");
    let digest = write_big_file(&file, GIB, 0xB16);
    let server = start_registry(Mode::Anonymous);
    push_file(&server.registry, REPO, &file, &digest);

    let loc = format!("{}/{REPO}", server.registry.host());
    let url = format!("{}/v2/{REPO}/blobs/{digest}", server.registry.url());
    let out = dir.join("out");
    let openssl_out = dir.join("openssl.out");
    let copy = dir.join("copy.bin");
    let tee_file = dir.join("teed.bin");
    let teed_out = dir.join("teed-openssl.out");
    let variants = [
        Variant::new(
            "dist fetch DIGEST -o DIR",
            format!(
                "{} > /dev/null",
                ctx.dist_cmd(&["fetch", &loc, &digest, "-o", out.to_str().unwrap()])
            ),
        )
        .prepare(|| wipe(&out)),
        Variant::new(
            "dist fetch DIGEST to stdout",
            format!("{} > /dev/null", ctx.dist_cmd(&["fetch", &loc, &digest])),
        ),
        Variant::new(
            "curl piped to openssl dgst",
            format!(
                "curl -sSf {} | openssl dgst -sha256 > {}",
                sh_quote(&url),
                q(&openssl_out)
            ),
        ),
        Variant::new(
            "curl -o /dev/null",
            format!("exec curl -sSf -o /dev/null {}", sh_quote(&url)),
        ),
        Variant::new(
            "openssl dgst FILE",
            format!("exec openssl dgst -sha256 {} > /dev/null", q(&file)),
        ),
        // Not part of the ceiling: what writing 1 GiB into a tmpfs file costs by itself.
        Variant::new(
            "curl -o FILE",
            format!("exec curl -sSf -o {} {}", q(&copy), sh_quote(&url)),
        )
        .prepare(|| {
            let _ = fs::remove_file(&copy);
        }),
        // The same job as `-o` with the peers: keep the file and hash what was received.
        Variant::new(
            "curl piped through tee FILE to openssl dgst",
            format!(
                "curl -sSf {} | tee {} | openssl dgst -sha256 > {}",
                sh_quote(&url),
                q(&tee_file),
                q(&teed_out)
            ),
        )
        .prepare(|| {
            let _ = fs::remove_file(&tee_file);
        }),
    ];
    let runner = ctx.runner(&dir, Some(vec![server.pid]));
    let stats = runner.measure("big", &variants, ctx.plan());
    assert_stored(&out, 1);
    let hex = digest.trim_start_matches("sha256:");
    for said in [&openssl_out, &teed_out] {
        let said = fs::read_to_string(said).unwrap_or_default();
        assert!(said.contains(hex), "curl | openssl saw other bytes: {said}");
    }

    let [to_dir, to_stdout, piped, transfer, hash, transfer_to_file, teed] = stats;
    // The ceiling: whichever of the two necessary jobs is slower. Its CPU is both jobs'.
    let ceiling = Stats {
        wall: transfer.wall.max(hash.wall),
        cpu: transfer.cpu + hash.cpu,
        ..Stats::default()
    };
    // The same with the transfer also writing a file, as `-o` must.
    let ceiling_with_write = Stats {
        wall: transfer_to_file.wall.max(hash.wall),
        cpu: transfer_to_file.cpu + hash.cpu,
        ..Stats::default()
    };
    CaseReport {
        details: details(
            "big",
            "One 1 GiB blob from an anonymous `docker-registry` (storage on tmpfs). The \
             ceiling is max(curl -o /dev/null, openssl dgst FILE): transfer alone, or \
             hashing alone, whichever is slower; its CPU is the sum of both. `curl -o FILE` \
             shows what writing 1 GiB into tmpfs costs, which `-o` pays on top; `curl | tee \
             FILE | openssl dgst` does the whole job of `-o` with the peers.",
            &Measured::of(&variants, &stats),
        ),
        rows: vec![
            Row::new("big (1 GiB)", "fetch -o DIR", to_dir)
                .against("ceiling: max(curl, openssl)", ceiling)
                .target(Target::Wall(1.25))
                .target(Target::RssMib(16.0)),
            Row::new("big (1 GiB)", "fetch -o DIR", to_dir)
                .against("max(curl -o FILE, openssl)", ceiling_with_write),
            Row::new("big (1 GiB)", "fetch -o DIR", to_dir)
                .against("curl piped to openssl dgst", piped),
            Row::new("big (1 GiB)", "fetch -o DIR", to_dir)
                .against("curl piped through tee FILE to openssl dgst", teed),
            Row::new("big (1 GiB)", "fetch to stdout", to_stdout)
                .against("curl piped to openssl dgst", piped)
                .target(Target::RssMib(16.0)),
        ],
    }
}

/// Issue 5d: the worker's memory must not grow with its input.
pub fn many_lines(ctx: &Ctx) -> CaseReport {
    const REPO: &str = "bench/lines";
    const LINES: usize = 1_000_000;
    const DISTINCT: usize = 1_000_000;
    let dir = ctx.case_dir("many-lines");
    let blobs = small_blobs(SMALL_COUNT);
    let server = start_registry(Mode::Anonymous);
    eprintln!("  [many-lines] pushing {SMALL_COUNT} blobs");
    push_all(&server.registry, REPO, &blobs);
    // The distinct objects are asked of nginx: docker-registry spends about 1 ms of CPU on
    // each answer, so a million of them would take half an hour, and what this case
    // measures is dist's memory. Distinct tags, each answered by the same small manifest,
    // are fetched and remembered: the set that skips duplicates grows by each. Distinct
    // missing digests fail, and a failed object is forgotten (a line naming it again
    // fetches it again), so those show memory under a flood of failures instead.
    let tags_root = dir.join("tags-root");
    fs::create_dir_all(&tags_root).expect("create a root for nginx");
    fs::write(
        tags_root.join("manifest.json"),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
            blobs[0].digest,
            blobs[0].data.len()
        ),
    )
    .expect("write the tags' manifest");
    let tags_server = StaticServer::start(&tags_root, &dir.join("tags"));
    let empty = dir.join("empty-root");
    fs::create_dir_all(&empty).expect("create an empty root for nginx");
    let missing_server = StaticServer::start(&empty, &dir.join("missing"));
    let mut pids = vec![server.pid];
    pids.extend(tags_server.pids());
    pids.extend(missing_server.pids());
    let runner = ctx.runner(&dir, Some(pids));
    let loc = format!("{}/{REPO}", server.registry.host());
    let tags_loc = format!("{}/{REPO}", tags_server.addr());
    let missing_loc = format!("{}/{REPO}", missing_server.addr());

    // A million lines, but only the first 1000 are new: duplicates are skipped without a
    // request, so this measures the input path, not the network.
    let million = dir.join("million.txt");
    write_lines(
        &million,
        blobs.iter().map(|b| &b.digest).cycle().take(LINES),
    );
    let budget = |name: &str, lines: Vec<String>, loc: &str, status: i32| {
        lines_within_budget(ctx, &runner, &dir, name, lines, loc, status, DISTINCT)
    };
    // Distinct tags, each fetched (one request each).
    let (tag_count, tag_note) = budget(
        "distinct tags",
        distinct_tags(PROBE_LINES).collect(),
        &tags_loc,
        0,
    );
    let tags = dir.join("tags.txt");
    write_lines(&tags, distinct_tags(tag_count));
    // Distinct digests that all 404 (blobs, then manifests: two requests each).
    let (missing_count, missing_note) = budget(
        "distinct missing digests",
        missing_digests(PROBE_LINES).collect(),
        &missing_loc,
        1,
    );
    let missing = dir.join("missing.txt");
    write_lines(&missing, missing_digests(missing_count));

    let framed = |loc: &str, input: &Path| {
        format!(
            "{} < {} > /dev/null",
            ctx.dist_cmd(&["fetch", loc, "-"]),
            q(input)
        )
    };
    let variants = [
        Variant::new("1,000,000 lines, 1000 distinct", framed(&loc, &million)),
        Variant::new(
            &format!("{tag_count} distinct tags (nginx)"),
            framed(&tags_loc, &tags),
        ),
        // A line of stderr per missing digest would write 250 MB into the log.
        Variant::new(
            &format!("{missing_count} distinct missing digests (nginx)"),
            framed(&missing_loc, &missing) + " 2>/dev/null",
        )
        .expect_status(1),
    ];
    // Peak RSS is what this case is about: one run each, no warm-up (the pushes warmed
    // the registry).
    let stats = runner.measure(
        "many-lines",
        &variants,
        Plan {
            warmups: 0,
            runs: 1,
        },
    );

    let [dups, distinct, misses] = stats;
    let count = |n: usize, what: &str| match n {
        n if n % 1_000_000 == 0 => format!("{}M {what}", n / 1_000_000),
        n => format!("{}k {what}", n / 1000),
    };
    CaseReport {
        details: details(
            "many-lines",
            &format!(
                "Worker (framed output to /dev/null) against an anonymous `docker-registry`. \
                 One run each: this case is about peak RSS. The distinct tags are asked of \
                 nginx answering each with the same manifest, and are remembered to skip \
                 duplicates; the distinct missing digests are asked of nginx serving an \
                 empty directory, and are forgotten once they failed.{tag_note}{missing_note}"
            ),
            &Measured::of(&variants, &stats),
        ),
        rows: vec![
            Row::new("many-lines", "1M lines (1000 distinct)", dups).target(Target::RssMib(64.0)),
            Row::new("many-lines", &count(tag_count, "distinct tags"), distinct)
                .target(Target::RssMib(64.0)),
            Row::new(
                "many-lines",
                &count(missing_count, "distinct missing"),
                misses,
            )
            .target(Target::RssMib(64.0)),
        ],
    }
}

/// Lines the `many-lines` probes time: how many fit in the time budget is worked out from
/// these.
const PROBE_LINES: usize = 10_000;

/// Times `lines` (the first [`PROBE_LINES`] of such input) against `loc`, which must exit
/// with `status`, and returns how many lines of it fit in the time budget (at most
/// `wanted`), with a note saying so if that is fewer than wanted.
#[allow(clippy::too_many_arguments)]
fn lines_within_budget(
    ctx: &Ctx,
    runner: &Runner,
    dir: &Path,
    name: &str,
    lines: Vec<String>,
    loc: &str,
    status: i32,
    wanted: usize,
) -> (usize, String) {
    let probe = dir.join("probe.txt");
    write_lines(&probe, lines.iter());
    let variant = Variant::new(
        "probe",
        format!(
            "{} < {} > /dev/null 2>/dev/null",
            ctx.dist_cmd(&["fetch", loc, "-"]),
            q(&probe)
        ),
    )
    .expect_status(status);
    let per_line = runner.run(&variant).wall / lines.len() as f64;
    let fits = ((LINES_BUDGET_SECS / per_line) as usize / 1000 * 1000).max(lines.len());
    if fits >= wanted {
        (wanted, String::new())
    } else {
        let note = format!(
            " The input of {name} was cut from {wanted} to {fits} lines: a probe of {} took \
             {:.3} ms per line, so {wanted} would take about {:.0} s.",
            lines.len(),
            per_line * 1e3,
            per_line * wanted as f64
        );
        (fits, note)
    }
}

/// Issue 5: SHA-256 throughput of the `sha2` crate (as dist uses it) against openssl, over
/// the same 1 GiB file read in 1 MiB chunks.
pub fn sha(ctx: &Ctx) -> CaseReport {
    let dir = ctx.case_dir("sha");
    let file = dir.join("sha.bin");
    let digest = write_big_file(&file, GIB, 0x5A);
    let plan = ctx.plan();

    let mut samples = Vec::new();
    for round in 0..plan.warmups + plan.runs {
        let (sample, got) = hash_file_in_process(&file);
        assert_eq!(got, digest, "sha2 over {}", file.display());
        if round >= plan.warmups {
            samples.push(sample);
        }
    }
    let sha2 = Stats::from_samples(&samples);

    let variants = [Variant::new(
        "openssl dgst -sha256 FILE",
        format!("exec openssl dgst -sha256 {} > /dev/null", q(&file)),
    )];
    let [openssl] = ctx.runner(&dir, None).measure("sha", &variants, plan);

    let gbps = |s: &Stats| GIB as f64 / 1e9 / s.wall;
    let mut lines = vec![Measured {
        name: "sha2 crate (in the bench process)".into(),
        command: "read 1 MiB chunks into one buffer, Sha256::update each".into(),
        stats: sha2,
    }];
    lines.extend(Measured::of(&variants, &[openssl]));
    CaseReport {
        details: details(
            "sha",
            &format!(
                "SHA-256 of a 1 GiB file on tmpfs: sha2 {:.2} GB/s, openssl {:.2} GB/s \
                 (GB = 10^9 bytes). The CPU has SHA extensions: {}.",
                gbps(&sha2),
                gbps(&openssl),
                if cpu_has_sha_ni() { "yes" } else { "no" }
            ),
            &lines,
        ),
        rows: vec![Row::new(
            "sha (1 GiB)",
            &format!("sha2 {:.2} GB/s", gbps(&sha2)),
            sha2,
        )
        .against(&format!("openssl {:.2} GB/s", gbps(&openssl)), openssl)],
    }
}

/// Hashes `path` with `sha2` in 1 MiB reads; CPU is this thread's user + system time.
fn hash_file_in_process(path: &Path) -> (Sample, String) {
    use std::io::Read;
    let mut file = fs::File::open(path).expect("open sha file");
    let mut buffer = vec![0u8; MIB];
    let cpu_before = cpu_seconds(&rusage(libc::RUSAGE_THREAD));
    let start = Instant::now();
    let mut hasher = Sha256::new();
    loop {
        let n = file.read(&mut buffer).expect("read sha file");
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let hash = hasher.finalize();
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&rusage(libc::RUSAGE_THREAD)) - cpu_before;
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    let sample = Sample {
        wall,
        cpu,
        rss_kib: 0,
        server_cpu: f64::NAN,
    };
    (sample, format!("sha256:{hex}"))
}

fn cpu_has_sha_ni() -> bool {
    fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.split_whitespace().any(|w| w == "sha_ni"))
        .unwrap_or(false)
}

/// Issue 5: HTTP/2 flow-control windows, over TLS from nginx (a CA made for the run, HTTP/2
/// chosen by ALPN): one 256 MiB blob to stdout (verified) and the 1000 small blobs through
/// the worker, on loopback and through a delay line with a 20 ms round trip, with dist's
/// default window, hyper's adaptive one and smaller fixed ones, against curl (not hashing).
/// On loopback the bandwidth-delay product is tiny, so there the window's own costs show;
/// 20 ms away, how fast a window lets a transfer start.
pub fn h2(ctx: &Ctx) -> CaseReport {
    const REPO: &str = "bench/h2";
    const ROUND_TRIP: Duration = Duration::from_millis(20);
    let dir = ctx.case_dir("h2");
    let root = dir.join("root");
    let small = small_blobs(SMALL_COUNT);
    write_static_tree(&root, REPO, &small);
    let staged = dir.join("blob.bin");
    let digest = write_big_file(&staged, 256 * MIB, 0x2);
    fs::rename(
        &staged,
        root.join("v2").join(REPO).join("blobs").join(&digest),
    )
    .expect("place the blob");
    let (tls, ca) = make_tls(&dir);
    let Some(server) = StaticServer::start_tls(&root, &dir, &tls) else {
        return CaseReport {
            details: details("h2", "SKIPPED: nginx is not installed.", &[]),
            rows: Vec::new(),
        };
    };
    let far = DelayLine::start(server.addr(), ROUND_TRIP / 2);
    let (near, far) = (server.addr().port(), far.addr().port());
    let digests = dir.join("digests.txt");
    write_lines(&digests, small.iter().map(|b| &b.digest));
    let ca_arg = ca.to_str().unwrap().to_string();
    let jobs = JOBS.to_string();
    let dist = |port: u16, object: &str, window: Option<&str>| {
        let loc = format!("https://localhost:{port}/{REPO}");
        let mut args = vec!["fetch", &loc, object, "--ca-file", &ca_arg];
        if object == "-" {
            args.extend(["-j", &jobs]);
        }
        if let Some(w) = window {
            args.extend(["--http2-window", w]);
        }
        let input = if object == "-" {
            format!(" < {}", q(&digests))
        } else {
            String::new()
        };
        format!("{}{input} > /dev/null", ctx.dist_cmd(&args))
    };
    let curl_big = |port: u16| {
        let url = format!("https://localhost:{port}/v2/{REPO}/blobs/{digest}");
        format!(
            "exec curl -sSf --http2 --cacert {} -o /dev/null {}",
            q(&ca),
            sh_quote(&url)
        )
    };
    let curl_small = |port: u16| {
        let config = dir.join(format!("curl-{port}.cfg"));
        let urls = small
            .iter()
            .map(|b| format!("https://localhost:{port}/v2/{REPO}/blobs/{}", b.digest));
        write_curl_config(&config, None, urls, None);
        format!(
            "exec curl -sSf --no-progress-meter --http2 --cacert {} --parallel \
             --parallel-max {JOBS} -K {}",
            q(&ca),
            q(&config)
        )
    };
    let big_variants = [
        Variant::new("dist, 16 MiB window (default)", dist(near, &digest, None)),
        Variant::new(
            "dist, adaptive window",
            dist(near, &digest, Some("adaptive")),
        ),
        Variant::new("dist, 64 KiB window", dist(near, &digest, Some("65535"))),
        Variant::new("dist, 1 MiB window", dist(near, &digest, Some("1048576"))),
        Variant::new("curl --http2", curl_big(near)),
        Variant::new("dist, default, 20 ms away", dist(far, &digest, None)),
        Variant::new(
            "dist, adaptive, 20 ms away",
            dist(far, &digest, Some("adaptive")),
        ),
        Variant::new("curl --http2, 20 ms away", curl_big(far)),
    ];
    let small_variants = [
        Variant::new("dist worker, default window", dist(near, "-", None)),
        Variant::new(
            "dist worker, adaptive window",
            dist(near, "-", Some("adaptive")),
        ),
        Variant::new("curl --parallel --http2", curl_small(near)),
        Variant::new("dist worker, default, 20 ms away", dist(far, "-", None)),
        Variant::new(
            "dist worker, adaptive, 20 ms away",
            dist(far, "-", Some("adaptive")),
        ),
        Variant::new("curl --parallel --http2, 20 ms away", curl_small(far)),
    ];
    let runner = ctx.runner(&dir, Some(server.pids()));
    let big = runner.measure("h2", &big_variants, ctx.plan());
    let many = runner.measure("h2", &small_variants, ctx.plan());
    let [default, adaptive, small_window, medium, curl, far_default, far_adaptive, far_curl] = big;
    let [many_default, many_adaptive, many_curl, far_many_default, far_many_adaptive, far_many_curl] =
        many;
    let big_case = "h2 (256 MiB)";
    let far_big_case = "h2 (256 MiB, 20 ms away)";
    let many_case = "h2 (1000 small blobs)";
    let far_many_case = "h2 (1000 small blobs, 20 ms away)";
    let mut about = details(
        "h2",
        &format!(
            "One 256 MiB blob from nginx over TLS with HTTP/2 chosen by ALPN, to stdout \
             (verified), and curl to /dev/null (not hashed); \"20 ms away\" goes through a \
             delay line on the bench's own thread that holds every byte for 10 ms each way \
             (its CPU counts as the server's). A fixed window is each stream's and the \
             connection's. The {SMALL_COUNT} small blobs follow."
        ),
        &Measured::of(&big_variants, &big),
    );
    about.push_str(&details(
        "h2, small blobs",
        &format!(
            "The {SMALL_COUNT} blobs of 4-64 KiB from the same nginx, {JOBS} at a time: \
             the worker's streams share one connection, as curl's do."
        ),
        &Measured::of(&small_variants, &many),
    ));
    CaseReport {
        details: about,
        rows: vec![
            Row::new(big_case, "16 MiB window (default)", default).against("curl --http2", curl),
            Row::new(big_case, "adaptive window", adaptive).against("curl --http2", curl),
            Row::new(big_case, "64 KiB window", small_window).against("curl --http2", curl),
            Row::new(big_case, "1 MiB window", medium).against("curl --http2", curl),
            Row::new(far_big_case, "default window", far_default).against("curl --http2", far_curl),
            Row::new(far_big_case, "default window", far_default)
                .against("adaptive window", far_adaptive),
            Row::new(far_big_case, "adaptive window", far_adaptive)
                .against("curl --http2", far_curl),
            Row::new(many_case, "default window", many_default)
                .against("curl --parallel --http2", many_curl),
            Row::new(many_case, "default window", many_default)
                .against("adaptive window", many_adaptive),
            Row::new(far_many_case, "default window", far_many_default)
                .against("curl --parallel --http2", far_many_curl),
            Row::new(far_many_case, "default window", far_many_default)
                .against("adaptive window", far_many_adaptive),
        ],
    }
}

/// Issue 5: parallel ranged fetch. One 96 MiB blob from the in-process registry, whose every
/// response is capped at 32 MiB/s with a 20 ms wait for the first byte: a link where each
/// connection is throttled (object stores, CDNs), with a round trip. The cap is paced from
/// the first byte on; nginx's `limit_rate` lets one second's worth of each request through
/// at once, which would make small ranges look free.
pub fn ranged(ctx: &Ctx) -> CaseReport {
    use crate::support::fake::{FakeRegistry, Fault};
    const REPO: &str = "bench/ranged";
    const SIZE: usize = 96 * MIB;
    const RATE: u64 = 32 << 20;
    /// Blobs fetched at once by the worker, to show that their parts share one budget.
    const AT_ONCE: u64 = 4;
    let dir = ctx.case_dir("ranged");
    let registry = FakeRegistry::start();
    let digests: Vec<String> = (0..AT_ONCE)
        .map(|b| {
            let content: Vec<u8> = (0..(SIZE / MIB) as u64)
                .flat_map(|i| crate::support::cli::bytes(0x5A + (b << 16) + i, MIB))
                .collect();
            let digest = registry.blob(REPO, &content);
            let fault = Fault::Paced {
                bytes_per_sec: RATE,
                first_byte: std::time::Duration::from_millis(20),
            };
            registry.set_fault_for_every(&digest, fault);
            digest
        })
        .collect();
    let digest = &digests[0];
    let list = dir.join("digests.txt");
    fs::write(&list, digests.join("\n") + "\n").expect("write the digest list");
    let out = dir.join("out");

    let loc = format!("{}/{REPO}", registry.host());
    let url_of = |d: &str| format!("{}/v2/{REPO}/blobs/{d}", registry.url());
    let url = url_of(digest);
    let curl_all: Vec<String> = digests
        .iter()
        .map(|d| format!("-o /dev/null {}", sh_quote(url_of(d))))
        .collect();
    let dist_with = |streams: &str| {
        let args = [
            "fetch",
            &loc,
            digest,
            "--plain-http",
            "--range-streams",
            streams,
        ];
        format!("{} > /dev/null", ctx.dist_cmd(&args))
    };
    let variants = [
        Variant::new("dist, 4 streams (default)", dist_with("4")),
        Variant::new("dist, 1 stream", dist_with("1")),
        Variant::new("dist, 8 streams", dist_with("8")),
        Variant::new(
            "curl -o /dev/null",
            format!("exec curl -sSf -o /dev/null {}", sh_quote(&url)),
        ),
        Variant::new(
            "worker, 4 blobs at once, -o DIR",
            format!(
                "{} < {} > /dev/null",
                ctx.dist_cmd(&[
                    "fetch",
                    &loc,
                    "-",
                    "--plain-http",
                    "-j",
                    "4",
                    "-o",
                    out.to_str().unwrap()
                ]),
                q(&list)
            ),
        )
        .prepare(|| wipe(&out)),
        Variant::new(
            "curl --parallel, 4 blobs",
            format!(
                "exec curl -sSf --parallel --parallel-immediate --parallel-max 4 {}",
                curl_all.join(" ")
            ),
        ),
    ];
    // The registry runs inside the bench process: its CPU is not measured.
    let runner = ctx.runner(&dir, None);
    let stats = runner.measure("ranged", &variants, ctx.plan());
    assert_stored(&out, AT_ONCE as usize);
    let [four, one, eight, curl, worker, curl_parallel] = stats;
    let case = "ranged (96 MiB, 32 MiB/s per connection)";
    CaseReport {
        details: details(
            "ranged",
            "One 96 MiB blob from the in-process registry; every response is paced to \
             32 MiB/s with its first byte after 20 ms. dist writes to stdout (verified) \
             with 4 (default), 1 and 8 range streams; curl to /dev/null is one stream, not \
             hashed. Then four such blobs at once: the worker with 4 jobs into `-o DIR` \
             (their parts share one budget of 4 parts), and curl with one stream each.",
            &Measured::of(&variants, &stats),
        ),
        rows: vec![
            Row::new(case, "dist, 4 streams", four).against("dist, 1 stream", one),
            Row::new(case, "dist, 4 streams", four).against("curl (one stream)", curl),
            Row::new(case, "dist, 8 streams", eight).against("curl (one stream)", curl),
            Row::new(case, "worker, 4 blobs at once", worker)
                .against("curl --parallel, 4 blobs", curl_parallel),
        ],
    }
}

/// A CA and a `localhost` certificate it signed, made with the openssl command: the TLS
/// server's certificate and key, and the CA's PEM for the clients.
fn make_tls(dir: &Path) -> (crate::servers::Tls, PathBuf) {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    let ext = dir.join("server.ext");
    fs::write(
        &ext,
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the certificate extensions");
    let (ca_key, ca_pem) = (ca_key.to_str().unwrap(), ca.to_str().unwrap());
    let (key_pem, csr_pem) = (key.to_str().unwrap(), csr.to_str().unwrap());
    let (cert_pem, ext_file) = (cert.to_str().unwrap(), ext.to_str().unwrap());
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let steps = [
        format!("req -x509 {ec} -days 2 -subj /CN=dist-bench-CA -keyout {ca_key} -out {ca_pem}"),
        format!("req {ec} -subj /CN=localhost -keyout {key_pem} -out {csr_pem}"),
        format!(
            "x509 -req -days 2 -in {csr_pem} -CA {ca_pem} -CAkey {ca_key} -CAcreateserial \
             -extfile {ext_file} -out {cert_pem}"
        ),
    ];
    // The paths are under the bench's own work directory: no spaces.
    for step in steps {
        let args: Vec<&str> = step.split_whitespace().collect();
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("run openssl (scripts/bench.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (crate::servers::Tls { cert, key }, ca)
}
