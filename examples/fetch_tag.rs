use dist::transport::{Transport, TransportOptions};
use dist::{auth::CredentialSource, registry::RegistryRemote, retry::RetryPolicy};
use dist::{Hints, Object, Remote};

#[tokio::main]
async fn main() -> dist::Result<()> {
    let mut args = std::env::args().skip(1);
    let repo = args
        .next()
        .unwrap_or("localhost:5000/team/app".into())
        .parse()?;
    let transport = Transport::new(TransportOptions::default())?;
    let remote = RegistryRemote::new(
        repo,
        transport,
        CredentialSource::None,
        RetryPolicy::default(),
    );
    let object: Object = args.next().unwrap_or("v1".into()).parse()?;
    let mut download = remote.fetch(&object, &Hints::default()).await?;
    let mut size = 0;
    while let Some(chunk) = download.chunk().await? {
        // Use the chunk; the content is verified once chunk() returned Ok(None) (a tag
        // answered without Docker-Content-Digest is only hashed: nothing names its digest).
        size += chunk.len();
    }
    println!("{size} bytes, {:?}", download.digest());
    Ok(())
}
