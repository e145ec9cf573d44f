mod support;
use support::cli::{blob_names as names, Dist};
use support::fake::{FakeRegistry, Fault};

#[test]
fn explore_pull_kill() {
    let reg = FakeRegistry::start();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = reg.blob("team/app", config);
    let mut layers = Vec::new();
    for (i, len) in [3usize << 20, 2 << 20, 4000, (3 << 20) + 7]
        .iter()
        .enumerate()
    {
        let data = support::cli::bytes(200 + i as u64, *len);
        let d = reg.blob("team/app", &data);
        reg.set_fault_for_every(
            &d,
            Fault::Paced {
                bytes_per_sec: 1 << 20,
                first_byte: std::time::Duration::ZERO,
            },
        );
        layers.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len}));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers,
    }).to_string();
    reg.manifest(
        "team/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        manifest.clone(),
    );
    reg.manifest(
        "team/app",
        "v2",
        "application/vnd.oci.image.manifest.v1+json",
        manifest,
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let dist = Dist::new();
    let i1 = format!("{}/team/app:v1", reg.host());
    let i2 = format!("{}/team/app:v2", reg.host());
    let mut a = dist.start(&["pull", &i1, "-o", d]);
    let b = dist.start(&["pull", &i2, "-o", d]);
    let on_disk = || -> u64 {
        std::fs::read_dir(dir.path().join("blobs/sha256"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    support::wait::until("written", || on_disk() >= 3 << 20);
    a.kill().unwrap();
    a.wait().unwrap();
    eprintln!("after kill: {:?}", names(dir.path()));
    let out = b.wait_with_output().unwrap();
    eprintln!(
        "b: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    reg.clear_faults();
    let out = dist.run(&["pull", &i1, "-o", d], b"");
    eprintln!(
        "c: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("after c: {:?}", names(dir.path()));
    let root: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    eprintln!(
        "root: {root:?}\n{}",
        std::fs::read_to_string(dir.path().join("index.json")).unwrap()
    );
}
