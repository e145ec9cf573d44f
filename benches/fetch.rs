//! `dist fetch` against the baselines it has to beat, on servers the bench starts itself.
//!
//! ```sh
//! scripts/bench.sh                        # installs what is missing, then all cases
//! cargo bench --bench fetch -- sha        # cases whose name contains "sha"
//! BENCH_RUNS=9 cargo bench --bench fetch -- small big
//! ```
//!
//! Cases: `worker-small`, `static-small`, `big`, `many-lines`, `sha`, `h2`, `ranged` (see `fetch/cases.rs`).
//! Each variant runs once to warm up and then `BENCH_RUNS` (default 5) times (5x that for
//! `static-small`, whose runs take a tenth of a second), interleaved
//! with the other variants of its case, in an order that changes from round to round (no
//! variant always first, or always after the same one). Medians are reported (see `fetch/measure.rs` for
//! exactly what wall, CPU and peak RSS mean).
//!
//! The binary under test is `target/release/dist`, built by cargo itself: a bench target
//! gets `CARGO_BIN_EXE_dist`, and the bench profile inherits `release`. Every server
//! (`docker-registry`, nginx) runs on 127.0.0.1 and is stopped by its PID. Every file goes to
//! a tmpfs directory `/dev/shm/dist-bench-*`, else a temp dir, removed at the end. That
//! includes the registries' storage, because `TMPDIR` points there. The summary is
//! printed as Markdown and written to `target/bench-report.md`.

// The harness's own `#[cfg(test)]` unit tests compile here without their `#[test]`
// functions (this target has no test harness), which leaves their `use super::*` unused.
#[allow(unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "fetch/cases.rs"]
mod cases;
#[path = "fetch/data.rs"]
mod data;
#[path = "fetch/measure.rs"]
mod measure;
#[path = "fetch/report.rs"]
mod report;
#[path = "fetch/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};

use cases::{CaseReport, Ctx};

type Case = fn(&Ctx) -> CaseReport;

const CASES: [(&str, Case); 7] = [
    ("worker-small", cases::worker_small),
    ("static-small", cases::static_small),
    ("big", cases::big),
    ("many-lines", cases::many_lines),
    ("sha", cases::sha),
    ("h2", cases::h2),
    ("ranged", cases::ranged),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, script] = args.as_slice() {
        if flag == measure::HELPER_ARG {
            measure::helper_main(script);
        }
    }
    // cargo passes `--bench`; any other word picks the cases whose name contains it.
    let filters: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    if let Some(unknown) = filters
        .iter()
        .find(|f| !CASES.iter().any(|(name, _)| name.contains(f.as_str())))
    {
        let names: Vec<&str> = CASES.iter().map(|(name, _)| *name).collect();
        eprintln!("no case matches {unknown:?}; cases: {}", names.join(", "));
        std::process::exit(2);
    }
    let selected = CASES.iter().filter(|(name, _)| {
        filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
    });

    let work = work_dir();
    // The harness's registries (and anything else using a temp dir) land on the tmpfs too.
    std::env::set_var("TMPDIR", work.path());
    let ctx = Ctx {
        work: work.path().to_path_buf(),
        dist: support::cli::Dist::bin(),
        runs: runs(),
    };
    let header = header(&ctx, cases::rss_floor(&ctx));
    println!("{header}");

    let mut sections = Vec::new();
    let mut rows = Vec::new();
    for (name, case) in selected {
        eprintln!("== {name}");
        let report = case(&ctx);
        // Each case keeps its files in `<work>/<name>`; free the tmpfs for the next one.
        let _ = std::fs::remove_dir_all(ctx.work.join(name));
        println!("{}", report.details);
        sections.push(report.details);
        rows.extend(report.rows);
    }

    let summary = report::summary(&rows);
    println!("## Summary\n\n{summary}");
    let path = report_path(&ctx.dist);
    let text = format!(
        "{header}\n## Summary\n\n{summary}\n## Details\n\n{}",
        sections.join("\n")
    );
    match std::fs::write(&path, text) {
        Ok(()) => eprintln!("report written to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

/// `BENCH_RUNS`, default 5.
fn runs() -> usize {
    match std::env::var("BENCH_RUNS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("BENCH_RUNS={v:?} is not a positive number")),
        Err(_) => 5,
    }
}

/// A fresh directory on tmpfs if there is one, so that no case measures a disk.
fn work_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let on_shm = shm
        .is_dir()
        .then(|| {
            tempfile::Builder::new()
                .prefix("dist-bench-")
                .tempdir_in(shm)
        })
        .and_then(Result::ok);
    on_shm.unwrap_or_else(|| {
        tempfile::Builder::new()
            .prefix("dist-bench-")
            .tempdir()
            .expect("create work dir")
    })
}

/// `<target dir>/bench-report.md`, next to the `release/` directory the binary is in.
fn report_path(dist: &Path) -> PathBuf {
    dist.parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .join("bench-report.md")
}

fn header(ctx: &Ctx, rss_floor_kib: u64) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Other work on the machine skews wall times; say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!(
        "# dist fetch benchmark\n\n{cores} cores ({cpu}), load average {load} at the start; \
         binary {}; files in {}; \
         {} measured run(s) per variant after 1 warm-up, medians shown. Peak RSS is that \
         of the largest single process of a command; the measuring chain alone reports \
         {} (for `true`).\n",
        ctx.dist.display(),
        ctx.work.display(),
        ctx.runs,
        report::rss(rss_floor_kib),
    )
}
