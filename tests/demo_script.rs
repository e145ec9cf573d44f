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
    assert!(stdout.contains("; 0 failed a second check"), "{stdout}");
    assert!(stdout.ends_with("demo passed\n"), "{stdout}");
}
