//! Markdown output: a detail table per case as it finishes, and the summary at the end.

use std::fmt::Write as _;

use crate::measure::{Stats, Variant};

/// What a target bounds, always as "dist is at most this".
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// dist wall / baseline wall.
    Wall(f64),
    /// dist CPU / baseline CPU.
    Cpu(f64),
    /// dist peak RSS in MiB.
    RssMib(f64),
}

impl Target {
    /// "wall ≤ 1.1x ok", or `None` when there is nothing to compare with.
    fn verdict(self, dist: &Stats, baseline: Option<&Stats>) -> Option<String> {
        let (label, value, bound) = match self {
            Target::Wall(max) => ("wall", dist.wall / baseline?.wall, max),
            Target::Cpu(max) => ("CPU", dist.cpu / baseline?.cpu, max),
            Target::RssMib(max) => ("RSS", mib(dist.rss_kib), max),
        };
        let unit = if matches!(self, Target::RssMib(_)) {
            " MiB"
        } else {
            "x"
        };
        let met = if value <= bound { "ok" } else { "MISSED" };
        Some(format!("{label} ≤ {bound}{unit}: {met}"))
    }
}

/// One line of the summary: dist against one baseline.
pub struct Row {
    pub case: String,
    pub dist_name: String,
    pub dist: Stats,
    pub baseline_name: String,
    pub baseline: Option<Stats>,
    pub targets: Vec<Target>,
}

impl Row {
    pub fn new(case: &str, dist_name: &str, dist: Stats) -> Row {
        Row {
            case: case.to_string(),
            dist_name: dist_name.to_string(),
            dist,
            baseline_name: String::new(),
            baseline: None,
            targets: Vec::new(),
        }
    }

    pub fn against(mut self, name: &str, baseline: Stats) -> Row {
        self.baseline_name = name.to_string();
        self.baseline = Some(baseline);
        self
    }

    pub fn target(mut self, target: Target) -> Row {
        self.targets.push(target);
        self
    }

    fn verdicts(&self) -> String {
        let verdicts: Vec<String> = self
            .targets
            .iter()
            .filter_map(|t| t.verdict(&self.dist, self.baseline.as_ref()))
            .collect();
        if verdicts.is_empty() {
            "—".to_string()
        } else {
            verdicts.join("; ")
        }
    }
}

/// The summary table.
pub fn summary(rows: &[Row]) -> String {
    let mut out = String::from(
        "| case | dist | dist wall s | baseline | baseline wall s | wall ratio | dist CPU s | baseline CPU s | CPU ratio | dist peak RSS | target |\n\
         |---|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let base = row.baseline.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.case,
            row.dist_name,
            secs(row.dist.wall),
            if row.baseline_name.is_empty() {
                "—"
            } else {
                &row.baseline_name
            },
            base.map_or("—".into(), |b| secs(b.wall)),
            base.map_or("—".into(), |b| ratio(row.dist.wall, b.wall, "faster")),
            secs(row.dist.cpu),
            base.map_or("—".into(), |b| secs(b.cpu)),
            base.map_or("—".into(), |b| ratio(row.dist.cpu, b.cpu, "less")),
            rss(row.dist.rss_kib),
            row.verdicts(),
        );
    }
    out
}

/// One line of a case's detail table.
pub struct Measured {
    pub name: String,
    pub command: String,
    pub stats: Stats,
}

impl Measured {
    /// Pairs each variant with its stats.
    pub fn of(variants: &[Variant], stats: &[Stats]) -> Vec<Measured> {
        variants
            .iter()
            .zip(stats)
            .map(|(v, s)| Measured {
                name: v.name.clone(),
                command: v.script.clone(),
                stats: *s,
            })
            .collect()
    }
}

/// A case's detail table: every variant with its medians, then the commands.
pub fn details(title: &str, about: &str, lines: &[Measured]) -> String {
    let mut out = format!("### {title}\n\n{about}\n\n");
    out.push_str(
        "| variant | wall s | wall s, fastest-slowest | CPU s | peak RSS | server CPU s |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for line in lines {
        let s = &line.stats;
        let _ = writeln!(
            out,
            "| {} | {} | {}-{} | {} | {} | {} |",
            line.name,
            secs(s.wall),
            secs(s.wall_range.0),
            secs(s.wall_range.1),
            secs(s.cpu),
            rss(s.rss_kib),
            secs(s.server_cpu)
        );
    }
    let runs = lines.first().map_or(0, |l| l.stats.runs);
    let _ = writeln!(
        out,
        "\nMedians of {runs} run(s); peak RSS is the largest over the runs.\n\nCommands:\n"
    );
    for line in lines {
        let _ = writeln!(out, "- {}: `{}`", line.name, line.command);
    }
    out
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn secs(s: f64) -> String {
    if s.is_nan() {
        "—".into()
    } else {
        format!("{s:.3}")
    }
}

pub fn rss(kib: u64) -> String {
    if kib == 0 {
        "—".into()
    } else {
        format!("{:.1} MiB", mib(kib))
    }
}

/// `dist / baseline`; when dist needs less, also how many times less, in words:
/// `0.25x (4.0x faster)`.
pub fn ratio(dist: f64, baseline: f64, better: &str) -> String {
    let r = dist / baseline;
    if r.is_nan() {
        "—".into()
    } else if r < 1.0 {
        format!("{r:.2}x ({:.1}x {better})", 1.0 / r)
    } else {
        format!("{r:.2}x")
    }
}
