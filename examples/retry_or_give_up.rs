//! Decide, per failure, whether a mirroring service tries an object again later or gives it
//! up, from the error's kind alone: the remote has already retried what its
//! [`RetryPolicy`] allows, so a service's own retry is for later (the next sync round).
//!
//! ```text
//! cargo run --example retry_or_give_up -- localhost:5000/team/app v1 sha256:… nosuchtag
//! ```

use std::time::Duration;

use dist::auth::CredentialSource;
use dist::registry::RegistryRemote;
use dist::retry::RetryPolicy;
use dist::transport::{Transport, TransportOptions};
use dist::{Error, ErrorKind, Hints, Object, Remote};

/// What the service does with an object that failed.
enum Verdict {
    /// Try again in the next round, not before this.
    Later(Duration),
    /// Fetch it once more now: what arrived was not what was asked for.
    Again,
    /// Give up on it and tell someone.
    GiveUp,
}

fn verdict(e: &Error) -> Verdict {
    if e.is_corruption() {
        return Verdict::Again;
    }
    if e.is_transient() {
        // A registry that asked for a pause longer than the policy waits says how long.
        return Verdict::Later(e.retry_after().unwrap_or(Duration::from_secs(60)));
    }
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::Denied | ErrorKind::InvalidInput => Verdict::GiveUp,
        // Credentials may be rotated meanwhile.
        ErrorKind::Unauthorized => Verdict::Later(Duration::from_secs(600)),
        // Kinds added in later releases: give up until someone looks.
        _ => Verdict::GiveUp,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let repo = args
        .next()
        .ok_or("usage: retry_or_give_up REPOSITORY OBJECT...")?;
    let policy = RetryPolicy {
        retries: 2,
        ..RetryPolicy::default()
    };
    let remote = RegistryRemote::new(
        repo.parse()?,
        Transport::new(TransportOptions::default())?,
        CredentialSource::None,
        policy,
    );
    for word in args {
        let result = async {
            let object: Object = word.parse()?;
            let mut download = remote.fetch(&object, &Hints::default()).await?;
            while download.chunk().await?.is_some() {}
            Ok::<_, Error>(download.received())
        }
        .await;
        match result {
            Ok(size) => println!("{word}: {size} bytes, verified"),
            Err(e) => {
                let verdict = match verdict(&e) {
                    Verdict::Later(wait) => format!("again in {} s", wait.as_secs()),
                    Verdict::Again => "again now".to_string(),
                    Verdict::GiveUp => "given up".to_string(),
                };
                println!("{word}: {verdict} ({}): {e}", e.kind().as_str());
                println!("  status {:?}, url {:?}", e.status(), e.url());
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    println!("  caused by: {c}");
                    cause = c.source();
                }
            }
        }
    }
    Ok(())
}
