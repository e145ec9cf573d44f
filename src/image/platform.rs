//! Platforms (`os/arch[/variant]`): parsing what users type, describing this machine, and
//! matching index entries.
//!
//! Architectures are compared after normalisation, because the same machine goes by several
//! names (`x86_64` is `amd64`, `aarch64` is `arm64`) and an absent variant means the
//! architecture's usual one (`arm64` is `arm64/v8`, `arm` is `arm/v7`, `amd64` is `amd64/v1`).
//! What users type follows Docker and containerd, short forms included (`arm64` alone is
//! `linux/arm64`), so that a `--platform` that works there works here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A platform as OCI index entries describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    /// The CPU architecture, by Go's names (`amd64`, `arm64`, …). Empty when an index
    /// entry leaves it out, against the spec: that entry then matches nothing, and the
    /// others are still chosen from, as containerd reads it.
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub architecture: String,
    /// The operating system (`linux`, `windows`); empty when an index entry leaves it out.
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub os: String,
    /// The operating system version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required operating system features.
    #[serde(
        rename = "os.features",
        default,
        deserialize_with = "super::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    /// The CPU variant (`v7`, `v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Platform {
    /// A platform with just OS, architecture and variant.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            os_version: None,
            os_features: Vec::new(),
            variant: variant.map(str::to_string),
            extra: serde_json::Map::new(),
        }
    }

    /// This machine as a container platform: Linux (containers are Linux images almost
    /// everywhere) on the architecture this binary was built for.
    pub fn host() -> Platform {
        let arch = std::env::consts::ARCH;
        let machine = if arch == "arm" { machine() } else { None };
        Platform::host_on(arch, cfg!(target_endian = "little"), machine.as_deref())
    }

    /// [`Platform::host`] for a binary built for `arch` (Rust's name), of that byte order,
    /// on a machine the kernel calls `machine` (`uname -m`). Go's names, which images use,
    /// say the byte order where Rust's leave it to the target (`ppc64` and `ppc64le`,
    /// `mips` and `mipsle`): an IBM POWER8 in big-endian mode runs no `ppc64le` image. One
    /// build for 32-bit Arm runs on ARMv6 CPUs (a Raspberry Pi Zero or 1) as well as later
    /// ones, and an ARMv6 CPU runs no `arm/v7` image: the kernel's `armv6l` says which, as
    /// Docker reads the CPU's own word for it.
    fn host_on(arch: &str, little_endian: bool, machine: Option<&str>) -> Platform {
        let ordered = |little: &'static str, big: &'static str| match little_endian {
            true => little,
            false => big,
        };
        let (arch, variant) = match arch {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" if !little_endian => ("arm64be", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" if !little_endian => ("armbe", None),
            "arm" => {
                let older = machine.and_then(|m| match m.strip_prefix("armv")?.get(..1)? {
                    "5" => Some("v5"),
                    "6" => Some("v6"),
                    _ => None,
                });
                ("arm", Some(older.unwrap_or("v7")))
            }
            "powerpc64" => (ordered("ppc64le", "ppc64"), None),
            "powerpc" => ("ppc", None),
            "mips64" => (ordered("mips64le", "mips64"), None),
            "mips" => (ordered("mipsle", "mips"), None),
            "loongarch64" => ("loong64", None),
            "wasm32" => ("wasm", None),
            // riscv64, s390x, sparc64: the same in both.
            other => (other, None),
        };
        Platform::new("linux", arch, variant)
    }

    /// What `self` asks for, as it is looked for: by the names images use (`linux/aarch64`
    /// is `linux/arm64`), and `linux/arm` is `linux/arm/v7`. (The other usual variants,
    /// `arm64/v8` and `amd64/v1`, go without saying.)
    pub fn as_looked_for(&self) -> Platform {
        let (arch, variant) = normalise(&self.architecture, self.variant.as_deref());
        let mut p = self.clone();
        if arch == "arm" {
            p.variant = variant;
        }
        p.architecture = arch;
        p
    }

    /// Whether an index entry for `candidate` runs where `self` asks for: same OS (and a
    /// build that runs on the Windows build `self` names, if any), same architecture once
    /// both are normalised, and the same variant or an older one of it
    /// (see [`Platform::fit`]).
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.fit(candidate).is_some()
    }

    /// How well an index entry for `candidate` serves what `self` asks for: `None` when it
    /// cannot run there, else a rank, higher for a closer variant and highest
    /// (`u32::MAX`) for the variant asked for. A CPU runs its architecture's older variants
    /// (`arm/v7` runs `arm/v6` and `arm/v5`, `amd64/v3` runs `amd64/v2` and `amd64`,
    /// `arm64/v8.2` runs `arm64/v8`), so an index without the exact variant still has an
    /// image for it, as Docker and containerd pick it. Of the variant asked for, an image
    /// of an older Windows build than the one `self` names (which that host may run, see
    /// [`Platform::matches`]) ranks below one of that build, and above every older variant.
    pub fn fit(&self, candidate: &Platform) -> Option<u32> {
        if !self.os.eq_ignore_ascii_case(&candidate.os) {
            return None;
        }
        let behind = self.builds_behind(candidate)?;
        let (want_arch, want) = normalise(&self.architecture, self.variant.as_deref());
        let (have_arch, have) = normalise(&candidate.architecture, candidate.variant.as_deref());
        if want_arch != have_arch {
            return None;
        }
        if want == have {
            // Its own build first, then the closest older one, as containerd orders
            // them: the index's first that runs was the 2022 image for a 2025 host.
            return Some(u32::MAX - behind.min(u32::from(u16::MAX)));
        }
        older_variant(&want_arch, want.as_deref()?, have.as_deref()?)
    }
}

impl Platform {
    /// How many builds older than the Windows build `self` names (`10.0.17763`, its
    /// revision aside) `candidate`'s is, when a host of that build runs it, as containerd
    /// matches them: the same `major.minor`, and the same build, or from Windows Server
    /// 2022 (build 20348) on, any build from 20348 up to its own (those keep a stable
    /// ABI). `None` when it does not run there; `Some(0)` when a side names no build, or
    /// none that reads as one: that runs anything.
    fn builds_behind(&self, candidate: &Platform) -> Option<u32> {
        const STABLE_ABI: u32 = 20348;
        let build = |p: &Platform| {
            let mut parts = p.os_version.as_deref()?.split('.');
            let mut number = || parts.next()?.parse::<u32>().ok();
            Some((number()?, number()?, number()?))
        };
        let (Some(host), Some(image)) = (build(self), build(candidate)) else {
            return Some(0);
        };
        let runs = match host.2 < STABLE_ABI {
            true => host == image,
            false => {
                host.0 == image.0 && host.1 == image.1 && (STABLE_ABI..=host.2).contains(&image.2)
            }
        };
        runs.then(|| host.2 - image.2)
    }
}

/// The kernel's name for this machine (`uname -m`: `armv6l`, `armv7l`, `x86_64`).
fn machine() -> Option<String> {
    let mut name = std::mem::MaybeUninit::<libc::utsname>::zeroed();
    // SAFETY: uname(2) fills the struct of ours it is given, and only that.
    if unsafe { libc::uname(name.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: on success every field is a NUL-terminated string within the struct.
    let machine = unsafe { std::ffi::CStr::from_ptr(name.assume_init_ref().machine.as_ptr()) };
    Some(machine.to_string_lossy().into_owned())
}

/// How close `have` comes to `want` among the variants of `arch` that a CPU of variant
/// `want` runs: higher for a closer one, `None` for one it does not run and for variants
/// outside the known ranks (matched only exactly). On arm, `v5` < `v6` < `v7` < `v8`; on
/// amd64, `v1` < … < `v4`; on arm64, `v8` < `v8.1` < … < `v8.9`, and `v9.N` runs `v9.0`
/// to `v9.N` and, as containerd has it (`v9.0` grew out of `v8.5`), `v8` to `v8.(N+5)`,
/// its own major version first. No `v8.N` runs a `v9`, which needs more than any `v8.N`.
fn older_variant(arch: &str, want: &str, have: &str) -> Option<u32> {
    let (want_major, want_minor) = variant_number(want)?;
    let (have_major, have_minor) = variant_number(have)?;
    match arch {
        "arm" | "amd64" => {
            let known = if arch == "arm" { 5..=8 } else { 1..=4 };
            let single = |major: u32, minor: u32| minor == 0 && known.contains(&major);
            (single(want_major, want_minor) && single(have_major, have_minor))
                .then_some(have_major)
                .filter(|&have| have <= want_major)
        }
        "arm64" => match (want_major, have_major) {
            (8, 8) if want_minor <= 9 => (have_minor <= want_minor).then_some(have_minor),
            (9, 9) => (have_minor <= want_minor).then_some(have_minor.saturating_add(10)),
            (9, 8) => (have_minor <= want_minor.saturating_add(5).min(9)).then_some(have_minor),
            _ => None,
        },
        _ => None,
    }
}

/// `vN` or `vN.M` as `(N, M)`.
fn variant_number(variant: &str) -> Option<(u32, u32)> {
    let number = variant.strip_prefix('v')?;
    match number.split_once('.') {
        Some((major, minor)) => Some((major.parse().ok()?, minor.parse().ok()?)),
        None => Some((number.parse().ok()?, 0)),
    }
}

/// `(architecture, variant)` under their canonical names, variant filled in where the
/// architecture has a default one.
fn normalise(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant
        .filter(|v| !v.is_empty())
        .map(str::to_ascii_lowercase);
    let (arch, variant) = match arch.as_str() {
        "x86_64" | "x86-64" => ("amd64".to_string(), variant),
        "aarch64" => ("arm64".to_string(), variant),
        "armhf" => ("arm".to_string(), Some("v7".to_string())),
        "armel" => ("arm".to_string(), Some("v6".to_string())),
        // 386 has no variants: containerd drops one given.
        "i386" | "i686" => ("386".to_string(), None),
        _ => (arch, variant),
    };
    let variant = match (arch.as_str(), variant.as_deref()) {
        ("arm64", None | Some("8" | "v8" | "v8.0")) => Some("v8".to_string()),
        ("arm64", Some("9" | "9.0" | "v9.0")) => Some("v9".to_string()),
        ("arm", None) => Some("v7".to_string()),
        ("arm", Some(v)) if v.len() == 1 && v.as_bytes()[0].is_ascii_digit() => {
            Some(format!("v{v}"))
        }
        ("amd64", None) => Some("v1".to_string()),
        (_, v) => v.map(str::to_string),
    };
    (arch, variant)
}

/// Operating systems by Go's names (`GOOS`), which a one-word `--platform` may name.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

/// Architectures by Go's names (`GOARCH`), which a one-word `--platform` may name.
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

impl FromStr for Platform {
    type Err = Error;

    /// Parses what `docker --platform` and containerd take: `os/arch[/variant]`
    /// (`linux/arm64`, `linux/arm/v7`), an operating system alone for it on this
    /// machine's architecture (`linux`, `windows`), or an architecture alone for it on
    /// this machine's operating system, `linux` (`arm64`, `aarch64`, `armhf`). The
    /// operating system may carry a Windows build, as containerd writes it:
    /// `windows(10.0.17763)/amd64` takes only the images that run on that build.
    fn from_str(s: &str) -> Result<Platform> {
        let invalid = |why: &str| {
            Error::invalid(format!(
                "invalid platform {s:?}: {why}; expected os/arch[/variant] (linux/arm64, \
                 linux/arm/v7), an architecture (arm64) or an operating system (linux)"
            ))
        };
        let word = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 3 {
            return Err(invalid("more than three parts"));
        }
        let (os, os_version) = match parts[0].strip_suffix(')').and_then(|p| p.split_once('(')) {
            Some((os, version)) if version.is_empty() || word(version) => (os, Some(version)),
            Some(_) => return Err(invalid("a Windows build reads like (10.0.17763)")),
            None => (parts[0], None),
        };
        if !word(os) || !parts[1..].iter().all(|p| word(p)) {
            return Err(invalid("each part is letters, digits, '.', '_' or '-'"));
        }
        let os = match os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            other => other.to_string(),
        };
        // `arm64/v8`, as `--platform arm64` reads, is `os/arch` by the grammar (containerd
        // reads it so): the operating system `arm64` matched nothing, and the error listed
        // `linux/arm64` among the platforms offered.
        if parts.len() == 2
            && os_version.is_none()
            && !KNOWN_OS.contains(&os.as_str())
            && KNOWN_ARCH.contains(&normalise(&os, None).0.as_str())
        {
            return Err(invalid(&format!(
                "{} is an architecture, not an operating system: {}/{s}",
                parts[0],
                Platform::host().os
            )));
        }
        let lower = |p: &str| p.to_ascii_lowercase();
        let mut p = match parts[1..] {
            [] if KNOWN_OS.contains(&os.as_str()) => Platform {
                os,
                ..Platform::host()
            },
            [] if os_version.is_none() => {
                let (arch, variant) = normalise(&os, None);
                if !KNOWN_ARCH.contains(&arch.as_str()) {
                    return Err(invalid("no operating system or architecture of that name"));
                }
                // `armhf` and `armel` name a variant too; the others' go without saying.
                let variant = variant.filter(|_| arch == "arm");
                Platform::new(&Platform::host().os, &arch, variant.as_deref())
            }
            [] => return Err(invalid("a Windows build needs an operating system")),
            [arch] => Platform::new(&os, &lower(arch), None),
            [arch, variant] => Platform::new(&os, &lower(arch), Some(&lower(variant))),
            _ => unreachable!("at most three parts"),
        };
        if let Some(version) = os_version.filter(|v| !v.is_empty()) {
            p.os_version = Some(version.to_string());
        }
        Ok(p)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The fields come from a registry's JSON: shown, they must stay on one line and
        // carry no terminal escapes.
        let shown = |text: &str| {
            crate::server_text::cut_to(
                crate::server_text::printable(text).into_owned(),
                crate::server_text::MAX_SHOWN,
            )
        };
        write!(f, "{}/{}", shown(&self.os), shown(&self.architecture))?;
        if let Some(v) = &self.variant {
            write!(f, "/{}", shown(v))?;
        }
        // Windows images differ by it alone: without it, two entries read the same.
        if let Some(v) = self.os_version.as_deref().filter(|v| !v.is_empty()) {
            write!(f, " ({})", shown(v))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn a_registrys_fields_print_on_one_line_without_escapes() {
        let mut p = p("linux/arm");
        p.architecture = "arm\u{1b}[2J\nFAKE LINE".into();
        p.variant = Some("v7\u{7}".into());
        assert_eq!(p.to_string(), "linux/arm [2J FAKE LINE/v7 ");
        // A config or index of 4 MiB may spend it all on one field.
        p.os = "x".repeat(4 << 20);
        p.os_version = Some("y".repeat(4 << 20));
        let shown = p.to_string();
        assert!(shown.len() < 1024, "{} bytes", shown.len());
        assert!(
            shown.starts_with("xxx") && shown.ends_with("yyy…)"),
            "{shown}"
        );
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(p("linux/amd64").to_string(), "linux/amd64");
        assert_eq!(p("Linux/ARM/v7").to_string(), "linux/arm/v7");
        let mut windows = p("windows/amd64");
        windows.os_version = Some("10.0.17763.1234".into());
        assert_eq!(windows.to_string(), "windows/amd64 (10.0.17763.1234)");
        // What is looked for: arm's usual variant said, the others going without saying.
        assert_eq!(p("linux/arm").as_looked_for().to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armhf").as_looked_for().to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm64").as_looked_for().to_string(), "linux/arm64");
        assert_eq!(p("linux/amd64").as_looked_for().to_string(), "linux/amd64");
        for bad in [
            "linux/",
            "/amd64",
            "a/b/c/d",
            "linux/am d64",
            "",
            "*",
            "linux/*",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?}");
        }
    }

    /// Docker's and containerd's short forms: an architecture alone is for this
    /// machine's operating system (Linux for dist), an operating system alone for this
    /// machine's architecture, under any of the names they take.
    #[test]
    fn short_forms_name_an_architecture_or_an_operating_system() {
        let looked_for = |s: &str| p(s).as_looked_for().to_string();
        for (short, full) in [
            ("arm64", "linux/arm64"),
            ("aarch64", "linux/arm64"),
            ("amd64", "linux/amd64"),
            ("x86_64", "linux/amd64"),
            ("X86-64", "linux/amd64"),
            ("armhf", "linux/arm/v7"),
            ("armel", "linux/arm/v6"),
            ("arm", "linux/arm/v7"),
            ("i386", "linux/386"),
            ("s390x", "linux/s390x"),
            ("ppc64le", "linux/ppc64le"),
            ("riscv64", "linux/riscv64"),
            ("loong64", "linux/loong64"),
            ("linux/aarch64", "linux/arm64"),
            ("macos/arm64", "darwin/arm64"),
        ] {
            assert_eq!(looked_for(short), full, "{short}");
        }
        assert_eq!(p("linux"), Platform::host());
        let windows = p("windows");
        assert_eq!(windows.os, "windows");
        assert_eq!(windows.architecture, Platform::host().architecture);
        // The usual variant said or not, the same platform.
        for (a, b) in [
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm64/v8.0", "linux/arm64"),
            ("linux/arm64/9", "linux/arm64/v9.0"),
            ("linux/arm/7", "linux/arm"),
            ("linux/amd64/v1", "amd64"),
            ("linux/i386/v7", "linux/386"),
        ] {
            assert_eq!(p(a).fit(&p(b)), Some(u32::MAX), "{a} {b}");
            assert_eq!(p(b).fit(&p(a)), Some(u32::MAX), "{b} {a}");
        }
        // A word that is neither is refused, saying what would do.
        let e = "amd46".parse::<Platform>().unwrap_err().to_string();
        assert!(
            e.contains("\"amd46\"") && e.contains("no operating system or architecture"),
            "{e}"
        );
        assert!(e.contains("linux/arm64") && e.contains("arm64)"), "{e}");
    }

    /// `arm64/v8`, as `--platform arm64` reads: an architecture and its variant, where
    /// `os/arch` goes. Read as the operating system `arm64`, it matched nothing, and the
    /// error listed `linux/arm64` among the platforms it did not match.
    #[test]
    fn an_architecture_where_the_os_goes_is_refused_with_the_spelling() {
        for (given, meant) in [
            ("arm64/v8", "linux/arm64/v8"),
            ("amd64/v3", "linux/amd64/v3"),
            ("aarch64/v8", "linux/aarch64/v8"),
            ("x86_64/v2", "linux/x86_64/v2"),
        ] {
            let e = given.parse::<Platform>().unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "is an architecture, not an operating system: {meant}"
                )),
                "{given}: {e}"
            );
        }
        // An operating system, or a word dist does not know, stays one, as containerd reads it.
        assert_eq!(p("linux/arm64").architecture, "arm64");
        assert_eq!(p("plan9/amd64").os, "plan9");
        assert_eq!(p("myos/amd64").os, "myos");
    }

    /// `windows(BUILD)/arch`, as containerd writes it, takes the images that run on that
    /// Windows build; without one, any build's.
    #[test]
    fn a_windows_build_takes_the_images_that_run_on_it() {
        let image = |version: &str| {
            let mut q = p("windows/amd64");
            q.os_version = Some(version.into());
            q
        };
        let ltsc2019 = p("windows(10.0.17763)/amd64");
        assert_eq!(ltsc2019.os_version.as_deref(), Some("10.0.17763"));
        assert_eq!(ltsc2019.to_string(), "windows/amd64 (10.0.17763)");
        assert!(ltsc2019.matches(&image("10.0.17763.6189")));
        assert!(
            ltsc2019.matches(&p("windows/amd64")),
            "an image naming no build"
        );
        assert!(!ltsc2019.matches(&image("10.0.20348.2655")));
        assert!(!ltsc2019.matches(&image("10.0.14393.7259")));
        // From Windows Server 2022 on, a host runs the builds from 2022's to its own.
        let newer = p("windows(10.0.26100)/amd64");
        assert!(newer.matches(&image("10.0.20348.2655")));
        assert!(newer.matches(&image("10.0.26100.1")));
        assert!(!newer.matches(&image("10.0.17763.6189")));
        assert!(!newer.matches(&image("10.0.26200.1")));
        for any in ["10.0.17763.6189", "10.0.20348.2655", ""] {
            assert!(p("windows/amd64").matches(&image(any)), "{any}");
        }
        assert_eq!(p("windows()/amd64").os_version, None);
        assert_eq!(p("windows(10.0.17763)").os, "windows");
        for bad in [
            "windows(10 0)/amd64",
            "amd64(10.0.17763)",
            "windows(10.0/amd64",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?}");
        }
    }

    /// Of the builds a Windows host runs, its own fits best, then the closest older one,
    /// as containerd orders them: `windows(10.0.26100)/amd64` was handed the 2022 image of
    /// an index that listed it before the 2025 one.
    #[test]
    fn a_windows_build_fits_its_own_build_best() {
        let image = |version: &str| {
            let mut q = p("windows/amd64");
            q.os_version = Some(version.into());
            q
        };
        let ltsc2025 = p("windows(10.0.26100)/amd64");
        let own = ltsc2025.fit(&image("10.0.26100.2894"));
        assert_eq!(own, Some(u32::MAX));
        let older = ltsc2025.fit(&image("10.0.20348.3091"));
        assert!(older.is_some() && older < own, "{older:?}");
        let later = p("windows(10.0.26200)/amd64");
        assert!(later.fit(&image("10.0.26100.1")) > later.fit(&image("10.0.20348.1")));
        // Still above an older CPU variant, and the same for images naming no build.
        assert!(older > p("linux/amd64/v3").fit(&p("linux/amd64/v2")));
        assert_eq!(ltsc2025.fit(&p("windows/amd64")), Some(u32::MAX));
        assert_eq!(
            p("windows/amd64").fit(&image("10.0.20348.1")),
            Some(u32::MAX)
        );
        // A build far past any real one ranks without underflowing.
        let far = p("windows(10.0.4294967295)/amd64");
        assert!(far.fit(&image("10.0.20348.1")).is_some());
    }

    #[test]
    fn matching_normalises_names_and_default_variants() {
        assert!(p("linux/x86_64").matches(&p("linux/amd64")));
        assert!(p("linux/aarch64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/arm64").matches(&p("linux/arm64")));
        assert!(p("linux/arm").matches(&p("linux/arm/v7")));
        assert!(p("linux/arm/7").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v6").matches(&p("linux/arm/v7")));
        assert!(!p("linux/amd64").matches(&p("linux/amd64/v3")));
        assert!(!p("linux/arm64").matches(&p("linux/arm64/v8.2")));
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        // Attestation entries (unknown/unknown) never match a real platform.
        assert!(!p("linux/amd64").matches(&p("unknown/unknown")));
    }

    #[test]
    fn older_variants_fit_below_the_one_asked_for() {
        let fit = |want: &str, have: &str| p(want).fit(&p(have));
        assert_eq!(fit("linux/arm/v7", "linux/arm"), Some(u32::MAX));
        assert!(fit("linux/arm/v7", "linux/arm/v6") > fit("linux/arm/v7", "linux/arm/v5"));
        assert!(fit("linux/arm/v7", "linux/arm/v5").is_some());
        assert!(fit("linux/arm/v8", "linux/arm/v7") > fit("linux/arm/v8", "linux/arm/v6"));
        assert_eq!(fit("linux/arm/v6", "linux/arm/v7"), None);
        assert!(fit("linux/amd64/v3", "linux/amd64") < fit("linux/amd64/v3", "linux/amd64/v2"));
        assert_eq!(fit("linux/amd64/v2", "linux/amd64/v3"), None);
        assert!(fit("linux/arm64/v8.2", "linux/arm64").is_some());
        assert!(fit("linux/arm64/v9.0", "linux/arm64/v8.5").is_some());
        assert_eq!(fit("linux/arm64/v9.0", "linux/arm64/v8.6"), None);
        // A v9 is no older v8.N, whatever its minor version: a v8.6 CPU lacks what every
        // v9 requires. A v9.N CPU takes its own major version before the v8s it runs.
        assert_eq!(fit("linux/arm64/v8.6", "linux/arm64/v9.0"), None);
        assert_eq!(fit("linux/arm64/v8.9", "linux/arm64/v9"), None);
        assert!(
            fit("linux/arm64/v9.1", "linux/arm64/v9.0")
                > fit("linux/arm64/v9.1", "linux/arm64/v8.6")
        );
        assert!(fit("linux/arm64/v9.1", "linux/arm64/v8.6").is_some());
        assert_eq!(fit("linux/arm64/v9.1", "linux/arm64/v8.7"), None);
        // Past v9.4 every v8 runs; the plain arm64 image too.
        assert!(fit("linux/arm64/v9.5", "linux/arm64").is_some());
        assert!(fit("linux/arm64/v9.5", "linux/arm64/v8.9").is_some());
        // Numbers a registry or a user made up rank without overflowing.
        let huge = "linux/arm64/v9.4294967295";
        assert!(fit(huge, "linux/arm64/v9.4294967294").is_some());
        assert!(fit(huge, "linux/arm64/v8.9").is_some());
        // No other architecture, and no variant outside the known ranks.
        assert_eq!(fit("linux/arm64", "linux/arm/v7"), None);
        assert_eq!(fit("linux/amd64", "linux/386"), None);
        assert_eq!(fit("linux/arm/v7", "linux/arm/vfp"), None);
        assert_eq!(fit("linux/riscv64/b", "linux/riscv64/a"), None);
        assert_eq!(fit("windows/arm/v7", "linux/arm/v6"), None);
    }

    #[test]
    fn an_entry_missing_os_or_architecture_matches_nothing() {
        let q: Platform = serde_json::from_str(r#"{"architecture":"amd64"}"#).unwrap();
        assert!(!p("linux/amd64").matches(&q));
        let q: Platform = serde_json::from_str(r#"{"os":"linux"}"#).unwrap();
        assert!(!p("linux/amd64").matches(&q));
        // Go's readers take `null` for absent, and so does dist.
        let q: Platform =
            serde_json::from_str(r#"{"os":"linux","architecture":null,"os.features":null}"#)
                .unwrap();
        assert!(!p("linux/amd64").matches(&q));
    }

    #[test]
    fn an_armv6_machine_asks_for_arm_v6() {
        let on = |machine: Option<&str>| Platform::host_on("arm", true, machine).to_string();
        assert_eq!(on(Some("armv6l")), "linux/arm/v6");
        assert_eq!(on(Some("armv5tel")), "linux/arm/v5");
        // An ARMv7 or ARMv8 CPU runs the usual arm/v7 images, as does one the kernel
        // does not name.
        for machine in [
            Some("armv7l"),
            Some("armv8l"),
            Some("aarch64"),
            Some(""),
            None,
        ] {
            assert_eq!(on(machine), "linux/arm/v7", "{machine:?}");
        }
        assert_eq!(
            Platform::host_on("x86_64", true, Some("x86_64")).to_string(),
            "linux/amd64"
        );
        assert!(!machine().unwrap_or_default().is_empty());
    }

    #[test]
    fn a_hosts_architecture_goes_by_go_s_name_with_its_byte_order() {
        let on = |arch: &str, little: bool| Platform::host_on(arch, little, None).to_string();
        for (arch, little, go) in [
            ("x86", true, "linux/386"),
            ("aarch64", true, "linux/arm64/v8"),
            ("powerpc64", true, "linux/ppc64le"),
            ("powerpc64", false, "linux/ppc64"),
            ("powerpc", false, "linux/ppc"),
            ("mips", true, "linux/mipsle"),
            ("mips", false, "linux/mips"),
            ("mips64", true, "linux/mips64le"),
            ("mips64", false, "linux/mips64"),
            ("s390x", false, "linux/s390x"),
            ("riscv64", true, "linux/riscv64"),
            ("loongarch64", true, "linux/loong64"),
            ("sparc64", false, "linux/sparc64"),
        ] {
            assert_eq!(on(arch, little), go, "{arch}, little-endian {little}");
        }
        // A big-endian host never asks for the little-endian images, nor the reverse.
        let ppc64 = Platform::host_on("powerpc64", false, None);
        assert!(!ppc64.matches(&p("linux/ppc64le")));
        assert!(ppc64.matches(&p("linux/ppc64")));
        assert!(!Platform::host_on("mips", true, None).matches(&p("linux/mips")));
    }

    #[test]
    fn host_is_linux_on_a_known_architecture() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert!(!h.architecture.is_empty());
        assert!(h.matches(&h));
        if std::env::consts::ARCH == "x86_64" {
            assert!(h.matches(&p("linux/amd64")));
        }
    }

    #[test]
    fn deserialises_oci_fields() {
        let q: Platform = serde_json::from_str(
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1","os.features":["win32k"]}"#,
        )
        .unwrap();
        assert_eq!(q.os_version.as_deref(), Some("10.0.17763.1"));
        assert_eq!(q.os_features, vec!["win32k"]);
        let text = serde_json::to_string(&q).unwrap();
        assert!(text.contains("\"os.version\""), "{text}");
    }
}
