//! Mirror one image's blobs into a directory, as a service embedding `dist` would: resolve
//! a remote, get the manifest a tag names, then fetch its config and layers with at most
//! `JOBS` in flight, each into a file that is renamed to its digest only once verified.
//! Non-distributable layers (those listing `urls`, as Windows base layers do) are skipped,
//! as `dist pull`, skopeo and containerd skip them: registries need not serve them.
//!
//! ```text
//! cargo run --example fetch_layers -- localhost:5000/team/app v1 OUT_DIR
//! ```

use futures::stream::{self, StreamExt};
use tokio::io::AsyncWriteExt;

use dist::auth::CredentialSource;
use dist::image::{Descriptor, Manifest};
use dist::registry::RegistryRemote;
use dist::retry::RetryPolicy;
use dist::transport::{Transport, TransportOptions};
use dist::{Hints, Object, Remote};

/// Blobs fetched at once.
const JOBS: usize = 4;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo, tag, out] = args.as_slice() else {
        return Err("usage: fetch_layers REPOSITORY TAG OUT_DIR".into());
    };
    let remote = RegistryRemote::new(
        repo.parse()?,
        Transport::new(TransportOptions::default())?,
        CredentialSource::None,
        RetryPolicy::default(),
    );

    let fetched = dist::image::fetch_manifest(&remote, &tag.parse()?).await?;
    let (config, layers) = match fetched.parse()? {
        Manifest::Image { config, layers } => (*config, layers),
        other => return Err(format!("{tag} is no single image: {other:?}").into()),
    };
    let out = std::path::Path::new(out);
    tokio::fs::create_dir_all(out).await?;
    // Each blob once: an image may list one layer twice (an empty layer, a layer of the
    // same files), and two fetches of one digest would write one `.part` file at once.
    let mut seen = std::collections::HashSet::new();
    // The config is fetched whatever its `urls` say: an image is nothing without it.
    let (foreign, layers): (Vec<Descriptor>, Vec<Descriptor>) =
        layers.into_iter().partition(|d| !d.urls.is_empty());
    let blobs: Vec<Descriptor> = std::iter::once(config)
        .chain(layers)
        .filter(|d| seen.insert(d.digest.clone()))
        .collect();
    // Skipped only when nothing lists it without `urls`, as `dist pull` skips it: a
    // layer listed both ways is fetched, and a foreign one listed twice is said once.
    let foreign: Vec<Descriptor> = foreign
        .into_iter()
        .filter(|d| seen.insert(d.digest.clone()))
        .collect();
    for layer in &foreign {
        // Its URLs are not shown: a pre-signed one carries a credential in its query.
        eprintln!("{}: non-distributable layer, not fetched", layer.digest);
    }
    // Every blob is seen through, failed or not: a fetch dropped half-way (as `try_collect`
    // drops the others at the first error) would leave its `.part` file behind.
    let results: Vec<dist::Result<u64>> = stream::iter(blobs)
        .map(|descriptor| fetch_into(&remote, descriptor, out))
        .buffer_unordered(JOBS)
        .collect()
        .await;
    let (mut bytes, mut failed) = (0, 0);
    for result in &results {
        match result {
            Ok(size) => bytes += size,
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    println!(
        "{} blobs, {bytes} bytes, verified; {} non-distributable layers skipped",
        results.len() - failed,
        foreign.len()
    );
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} blobs failed").into()),
    }
}

/// Streams one blob into `out/.DIGEST.part`, renamed to `out/DIGEST` once it verified.
async fn fetch_into(
    remote: &RegistryRemote,
    descriptor: Descriptor,
    out: &std::path::Path,
) -> dist::Result<u64> {
    // Its size, and its media type for the `Accept` header.
    let hints = Hints::for_descriptor(&descriptor)?;
    let object = Object::Digest(descriptor.digest.clone());
    let mut download = remote.fetch(&object, &hints).await?;
    let name = descriptor.digest.to_string().replace(':', "-");
    let part = out.join(format!(".{name}.part"));
    let written = async {
        let mut file = tokio::fs::File::create(&part).await?;
        while let Some(chunk) = download.chunk().await? {
            file.write_all(&chunk).await?;
        }
        // Only now, after `chunk` returned `Ok(None)`, has the content matched its digest.
        file.sync_all().await?;
        tokio::fs::rename(&part, out.join(name)).await?;
        Ok(download.received())
    }
    .await;
    if written.is_err() {
        // Nothing unverified stays behind.
        let _ = tokio::fs::remove_file(&part).await;
    }
    written
}
