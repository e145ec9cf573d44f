//! Running one shell command at a time and measuring what it cost.
//!
//! Every run is `sh -c SCRIPT`, started by a small helper process: the bench binary
//! itself, re-executed as `fetch --run-one SCRIPT`. The helper spawns the wrapper, reaps it
//! with `wait4(2)` on its PID, and reports:
//!
//! - **wall**: from just before the spawn to `wait4` returning.
//! - **CPU**: user + system time of the whole process tree, as the helper's
//!   `getrusage(RUSAGE_CHILDREN)` delta around the run. The kernel adds a child's time
//!   (which includes the time of every descendant it waited for: xargs' children, the
//!   stages of a pipeline) to its parent's when the parent reaps it.
//! - **peak RSS**: `ru_maxrss` from the rusage that `wait4` returns for the wrapper. Linux
//!   fills it with the maximum of the wrapper's own peak and the peak of the largest
//!   descendant it (transitively) waited for. It is the peak of the **largest single
//!   process** in the tree, not the sum of processes that were alive at the same time. (We
//!   checked: two parallel 100 MiB processes report 113 MiB, and a 200 MiB grandchild
//!   reports 213 MiB.) `RUSAGE_CHILDREN`'s own `ru_maxrss` could not be used per run: it is
//!   the largest child so far.
//!
//! Why the helper: at `execve` the kernel carries the high-water RSS of the process's old
//! address space into its `maxrss` (`exec_mmap` → `setmax_mm_hiwater_rss`). A process
//! spawned straight from the bench starts with the bench's own peak as its floor, which is
//! tens of MiB once the blobs are in memory (every variant read 38.8 MiB). The helper is
//! exec'd fresh and allocates nothing, so its floor is a few MiB. [`rss_floor`] measures that
//! floor, and the report prints it.
//!
//! **Server CPU** is measured by the bench around the helper. It is utime + stime from
//! `/proc/<pid>/stat` of the server processes, plus the bench's own `RUSAGE_SELF` delta. The
//! second part covers servers on the bench's threads: the bearer-token issuer, or the
//! fallback static server. The main thread only waits for the helper meanwhile.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// What one run cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub wall: f64,
    pub cpu: f64,
    pub rss_kib: u64,
    pub server_cpu: f64,
}

/// Summary of the runs of one variant: medians of wall and CPU, the largest peak RSS.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub wall: f64,
    /// The fastest and slowest runs, to read the median against: on a shared VM one run in
    /// several can take twice as long doing the same work.
    pub wall_range: (f64, f64),
    pub cpu: f64,
    pub rss_kib: u64,
    pub server_cpu: f64,
    pub runs: usize,
}

impl Stats {
    pub fn from_samples(samples: &[Sample]) -> Stats {
        Stats {
            wall: median(samples.iter().map(|s| s.wall)),
            wall_range: samples
                .iter()
                .map(|s| (s.wall, s.wall))
                .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
                .unwrap_or((f64::NAN, f64::NAN)),
            cpu: median(samples.iter().map(|s| s.cpu)),
            rss_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
            server_cpu: median(samples.iter().map(|s| s.server_cpu)),
            runs: samples.len(),
        }
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// One command to compare: a shell script, something to do untimed before each run (such
/// as wiping an output directory), and the exit status that counts as success.
pub struct Variant<'a> {
    pub name: String,
    pub script: String,
    pub prepare: Box<dyn Fn() + 'a>,
    pub expect_status: i32,
}

impl<'a> Variant<'a> {
    pub fn new(name: &str, script: String) -> Variant<'a> {
        Variant {
            name: name.to_string(),
            script,
            prepare: Box::new(|| {}),
            expect_status: 0,
        }
    }

    /// Runs `prepare` before each run, outside the timing.
    pub fn prepare(mut self, prepare: impl Fn() + 'a) -> Variant<'a> {
        self.prepare = Box::new(prepare);
        self
    }

    /// Expects this exit status instead of 0 (e.g. 1 for a batch with missing objects).
    pub fn expect_status(mut self, status: i32) -> Variant<'a> {
        self.expect_status = status;
        self
    }
}

/// How often to run each variant.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub warmups: usize,
    pub runs: usize,
}

/// Where the commands run: the environment every run gets, and where stderr goes.
pub struct Runner {
    /// An empty `DOCKER_CONFIG`, so the developer's credentials stay out of it.
    pub docker_config: PathBuf,
    /// Each variant's stderr is kept here (overwritten by every run) for error messages.
    pub log_dir: PathBuf,
    /// PIDs of the external server processes whose CPU counts as "server CPU" (which also
    /// includes servers on the bench's own threads); `None` when nothing serves the case.
    pub server_pids: Option<Vec<u32>>,
}

impl Runner {
    /// Runs every variant `plan.warmups + plan.runs` times, interleaved (A B C, A B C, …)
    /// so that drift in the machine's load hits every variant alike. Warm-up samples are
    /// dropped. Returns one [`Stats`] per variant, in order.
    pub fn measure<const N: usize>(
        &self,
        case: &str,
        variants: &[Variant; N],
        plan: Plan,
    ) -> [Stats; N] {
        let mut samples: [Vec<Sample>; N] = std::array::from_fn(|_| Vec::new());
        for round in 0..plan.warmups + plan.runs {
            let label = if round < plan.warmups {
                "warm-up".to_string()
            } else {
                format!("run {}/{}", round - plan.warmups + 1, plan.runs)
            };
            eprintln!("  [{case}] {label}");
            for i in round_order(round, N) {
                let (variant, samples) = (&variants[i], &mut samples[i]);
                (variant.prepare)();
                let sample = self.run(variant);
                // Every sample, so that a median can be read against the spread around it.
                let server = if sample.server_cpu.is_nan() {
                    String::new()
                } else {
                    format!(", server {:.3} s", sample.server_cpu)
                };
                eprintln!(
                    "    {:.3} s wall, {:.3} s CPU{server}: {}",
                    sample.wall, sample.cpu, variant.name
                );
                if round >= plan.warmups {
                    samples.push(sample);
                }
            }
        }
        samples.map(|s| Stats::from_samples(&s))
    }

    /// One run of `variant` through the helper; panics with the tail of its stderr if it
    /// exits unexpectedly.
    pub fn run(&self, variant: &Variant) -> Sample {
        let log_path = self.log_dir.join(log_name(&variant.name));
        let log = File::create(&log_path).expect("create stderr log");
        let mut command = helper_command(&variant.script);
        command
            .env("DOCKER_CONFIG", &self.docker_config)
            .env_remove("RUST_LOG")
            .env_remove("DIST_FETCH_TIMEOUT")
            .stderr(log);

        let server_before = self.server_cpu();
        let output = command.output().expect("run the measuring helper");
        let server_after = self.server_cpu();

        let report = String::from_utf8_lossy(&output.stdout);
        let (status, mut sample) = parse_report(&report)
            .unwrap_or_else(|| panic!("helper failed ({}): {report:?}", output.status));
        if status != variant.expect_status {
            panic!(
                "{} exited with {status} (expected {}):\n$ {}\n{}",
                variant.name,
                variant.expect_status,
                variant.script,
                tail(&log_path, 4000)
            );
        }
        sample.server_cpu = server_after - server_before;
        sample
    }

    fn server_cpu(&self) -> f64 {
        let Some(pids) = &self.server_pids else {
            return f64::NAN;
        };
        let external: f64 = pids.iter().map(|&pid| process_cpu(pid)).sum();
        external + cpu_seconds(&rusage(libc::RUSAGE_SELF))
    }
}

/// The argument that turns the bench binary into the measuring helper.
pub const HELPER_ARG: &str = "--run-one";

/// `<bench binary> --run-one SCRIPT`, reporting on its stdout.
fn helper_command(script: &str) -> Command {
    let exe = std::env::current_exe().expect("path of the bench binary");
    let mut command = Command::new(exe);
    command
        .arg(HELPER_ARG)
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    command
}

/// The helper's `main`: runs `sh -c SCRIPT` (stdin and stdout on /dev/null, stderr
/// inherited), reaps it with `wait4`, and prints `status wall cpu maxrss_kib`.
pub fn helper_main(script: &str) -> ! {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let children_before = rusage(libc::RUSAGE_CHILDREN);
    let start = Instant::now();
    // Reaped by `wait4` (not `Child::wait`) to get the child's own rusage.
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().expect("spawn sh");
    let (status, own) = wait4(child.id());
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&rusage(libc::RUSAGE_CHILDREN)) - cpu_seconds(&children_before);
    println!("{status} {wall} {cpu} {}", own.ru_maxrss);
    std::process::exit(0)
}

fn parse_report(report: &str) -> Option<(i32, Sample)> {
    let mut fields = report.split_whitespace();
    let status = fields.next()?.parse().ok()?;
    let wall = fields.next()?.parse().ok()?;
    let cpu = fields.next()?.parse().ok()?;
    let rss_kib = fields.next()?.parse().ok()?;
    let sample = Sample {
        wall,
        cpu,
        rss_kib,
        server_cpu: f64::NAN,
    };
    Some((status, sample))
}

/// Peak RSS the measuring chain itself reports for a command that allocates nothing
/// (`true`): the floor under every peak RSS in the report.
pub fn rss_floor(runner: &Runner) -> u64 {
    runner
        .run(&Variant::new("rss-floor", "true".into()))
        .rss_kib
}

/// Waits for `pid` with `wait4`, returning its exit status (128 + signal if killed) and
/// its rusage. The `Child` handle is then stale: it must not be waited for again.
fn wait4(pid: u32) -> (i32, libc::rusage) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    let mut status = 0;
    // SAFETY: all-zero is a valid `rusage` (plain integers and timevals).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are valid for writes for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::Interrupted,
            "wait4({pid}): {err}"
        );
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (code, usage)
}

pub fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: as in `wait4`; getrusage only writes into `usage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::getrusage(who, &mut usage) };
    assert_eq!(r, 0, "getrusage: {}", std::io::Error::last_os_error());
    usage
}

/// User + system seconds of an rusage.
pub fn cpu_seconds(usage: &libc::rusage) -> f64 {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// utime + stime of a live process from `/proc/<pid>/stat`, in seconds (10 ms resolution).
/// 0 if it is gone.
pub fn process_cpu(pid: u32) -> f64 {
    let Some(fields) = proc_stat(pid) else {
        return 0.0;
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // Fields after the command name, 0-based: state=0, ppid=1, …, utime=11, stime=12.
    (field(11).unwrap_or(0.0) + field(12).unwrap_or(0.0)) / ticks
}

/// PIDs of our direct children whose command name is `comm`: how we find the registry
/// process, whose `Child` handle the test harness keeps private.
pub fn children_named(comm: &str) -> Vec<u32> {
    children_of(std::process::id(), Some(comm))
}

/// PIDs of the live children of `parent`, optionally only those named `comm`.
pub fn children_of(parent: u32, comm: Option<&str>) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let name = stat
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
                .map(|(name, _)| name);
            let ppid = proc_stat_fields(&stat).and_then(|f| f.get(1)?.parse::<u32>().ok());
            ppid == Some(parent) && comm.is_none_or(|c| name == Some(c))
        })
        .collect()
}

/// The space-separated fields after `pid (comm) ` of `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    proc_stat_fields(&stat)
}

fn proc_stat_fields(stat: &str) -> Option<Vec<String>> {
    // The command name may contain spaces and parentheses: split after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn log_name(variant: &str) -> String {
    let safe: String = variant
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{safe}.stderr")
}

fn tail(path: &Path, max: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// Quotes `s` for a POSIX shell.
pub fn sh_quote(s: impl AsRef<str>) -> String {
    format!("'{}'", s.as_ref().replace('\'', r"'\''"))
}

/// The order the `n` variants run in during `round`, the same in every bench run. In a
/// fixed order one slot is favoured: a binary timed against itself in alternate runs came
/// out 2.6% cheaper in the second slot (86 of 150 pairs, docs/performance-notes.md),
/// enough to tip a ratio near 1. Each block of `n` rounds rotates one shuffled order, so
/// that every variant runs once in every slot per block, and the blocks' shuffles vary
/// which variant runs before which.
fn round_order(round: usize, n: usize) -> Vec<usize> {
    let mut base: Vec<usize> = (0..n).collect();
    // xorshift64*, seeded by the block so that no state is zero.
    let mut state = ((round / n.max(1)) as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..n).rev() {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let j = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % (i + 1);
        base.swap(i, j);
    }
    base.rotate_left(round % n.max(1));
    base
}
