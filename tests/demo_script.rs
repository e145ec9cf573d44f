//! The README's first command, `scripts/demo.sh`, run with this build's binary: the main
//! job end to end against a `docker-registry` the script starts and fills itself. Without
//! this, the command a new user runs first was checked by nobody but the last person who
//! ran it by hand.

use std::process::Command;

#[test]
fn the_readme_demo_fetches_and_verifies_every_layer() {
    let out = Command::new("scripts/demo.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DIST", env!("CARGO_BIN_EXE_dist"))
        .env("LAYERS", "25")
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The config and 25 layers, each stored and found whole by sha256sum.
    assert!(stdout.contains("fetched 26 objects in "), "{stdout}");
    // The command it shows is the one it runs, the report it reads from included.
    assert!(
        stdout.contains(" - -o OUT --report REPORT > /dev/null\n"),
        "{stdout}"
    );
    assert!(stdout.contains("; 0 failed a second check"), "{stdout}");
    assert!(stdout.ends_with("demo passed\n"), "{stdout}");
}

/// `DIST=PATH` is a path as the caller typed it: relative to where the script was called
/// from, not to the repository the script moves into. It ran the binary from the
/// repository's root, so `DIST=./dist` from elsewhere failed only after the registry was
/// filled.
#[test]
fn the_readme_demo_takes_a_relative_dist_from_where_it_was_called() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_dist"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh");
    let out = Command::new(&script)
        .current_dir(bin.parent().expect("the binary's directory"))
        .env(
            "DIST",
            format!("./{}", bin.file_name().unwrap().to_string_lossy()),
        )
        .env("LAYERS", "1")
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("fetched 2 objects in "), "{stdout}");
    assert!(stdout.ends_with("demo passed\n"), "{stdout}");
}

/// A `DIST` that names no program is said before anything is started or filled.
#[test]
fn the_readme_demo_refuses_a_dist_that_is_not_there_before_it_starts() {
    let out = Command::new("scripts/demo.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DIST", "/nonexistent/dist")
        .env("LAYERS", "1")
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("filling"), "{stdout}");
    assert!(
        stderr.contains("DIST=/nonexistent/dist: no such program"),
        "{stderr}"
    );
}

/// `LAYERS=n` is a count: anything else is said before the registry is started and filled
/// (`LAYERS=1e3` pushed 1000 layers, then failed on the arithmetic at the very end).
#[test]
fn the_readme_demo_refuses_layers_that_are_not_a_count_before_it_starts() {
    for layers in ["1e3", "abc", "-5"] {
        let out = Command::new("scripts/demo.sh")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DIST", env!("CARGO_BIN_EXE_dist"))
            .env("LAYERS", layers)
            .output()
            .expect("run scripts/demo.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{layers:?}: {stdout}\n{stderr}");
        assert!(!stdout.contains("filling"), "{layers:?}: {stdout}");
        assert!(
            stderr.contains(&format!("LAYERS={layers}: not a number of layers")),
            "{layers:?}: {stderr}"
        );
    }
}

/// A demo that fetched fewer objects than it pushed fails: its closing check was the first
/// of an `&&` list, which `set -e` lets fail, so it said "demo passed" with objects missing.
#[test]
fn the_readme_demo_fails_when_an_object_was_not_fetched() {
    // A dist that drops the last object of the list it is given to fetch.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let wrapper = dir.path().join("dist");
    std::fs::write(
        &wrapper,
        format!(
            "#!/usr/bin/env bash\nif [ \"$3\" = - ]; then head -n -1 | {:?} \"$@\"; else {:?} \"$@\"; fi\n",
            env!("CARGO_BIN_EXE_dist"),
            env!("CARGO_BIN_EXE_dist")
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("make the wrapper executable");
    let out = Command::new("scripts/demo.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DIST", &wrapper)
        .env("LAYERS", "2")
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("fetched 2 objects in "),
        "{stdout}\n{stderr}"
    );
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("demo passed"), "{stdout}");
}

/// `LAYERS=08` is eight layers, as `seq` reads it: the closing arithmetic read it as octal
/// and failed on it, after every layer was pushed and fetched.
#[test]
fn the_readme_demo_counts_layers_with_a_leading_zero_in_decimal() {
    let out = Command::new("scripts/demo.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DIST", env!("CARGO_BIN_EXE_dist"))
        .env("LAYERS", "08")
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("fetched 9 objects in "), "{stdout}");
    assert!(!stderr.contains("value too great"), "{stderr}");
    assert!(stdout.ends_with("demo passed\n"), "{stdout}");
}
