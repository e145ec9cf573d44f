//! `dist`: distribution primitives for pulling content out of OCI container registries.
//!
//! The heart of the crate is *fetch*: given a remote named by a locator
//! (`docker.io/library/redis`, `localhost:5000/team/app`) and an object (a tag or a digest),
//! resolve the remote once and stream the object's bytes, verified against its digest.
//!
//! The layers, from names to bytes:
//! - [`reference`](mod@reference) and [`digest`] parse locators, objects and digests (no I/O);
//! - [`hints`] and [`media`] steer content negotiation;
//! - [`transport`] is the one pooled HTTP client (TLS, HTTP/2, proxies, timeouts,
//!   redirects);
//! - [`auth`] answers `WWW-Authenticate` challenges with tokens or credentials;
//! - [`retry`] decides when a failure is worth another attempt;
//! - [`registry`] implements the [`remote::Remote`] trait over the registry API, and
//!   [`layout_remote`] over an OCI image layout directory (`oci:<path>`);
//! - [`fetch`] verifies a download as it streams;
//! - [`image`] models descriptors, manifests and platforms, and [`pull`] walks an image
//!   into an OCI image layout through the [`worker`].
//!
//! Errors are one type, [`Error`], whose [`ErrorKind`] callers match on.
//!
//! # Fetch one blob
//!
//! Every remote (a registry, or an OCI image layout directory as here) hands out a
//! [`Download`] whose bytes are verified as they stream; the content is trustworthy only
//! once [`Download::chunk`] has returned `Ok(None)`.
//!
//! ```
//! use dist::layout_remote::LayoutRemote;
//! use dist::sink::layout::LayoutStore;
//! use dist::{digest::Algorithm, Digest, Hints, Object, Remote};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
//! # async fn main() -> dist::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! // A layout with one blob in it.
//! let store = LayoutStore::open(dir.path())?;
//! let digest = Digest::of(Algorithm::Sha256, b"hello");
//! let mut blob = store.temp(Algorithm::Sha256)?;
//! blob.write(&bytes::Bytes::from_static(b"hello")).await?;
//! blob.commit(&digest).await?;
//!
//! let remote = LayoutRemote::new(dir.path());
//! let mut download = remote.fetch(&Object::Digest(digest.clone()), &Hints::default()).await?;
//! let mut content = Vec::new();
//! while let Some(chunk) = download.chunk().await? {
//!     content.extend_from_slice(&chunk);
//! }
//! assert_eq!(content, b"hello");
//! assert_eq!(download.digest(), Some(&digest));
//! # Ok(()) }
//! ```
//!
//! From a registry, the remote is a [`registry::RegistryRemote`]:
//!
//! ```no_run
//! use dist::{auth::CredentialSource, registry::RegistryRemote, retry::RetryPolicy};
//! use dist::transport::{Transport, TransportOptions};
//!
//! # fn main() -> dist::Result<()> {
//! let repo = "localhost:5000/team/app".parse()?;
//! let transport = Transport::new(TransportOptions::default())?;
//! let remote = RegistryRemote::new(repo, transport, CredentialSource::None, RetryPolicy::default());
//! # let _ = remote; Ok(()) }
//! ```
//!
//! With credentials, from the user's `config.json` and its helpers
//! (`CredentialSource::DockerConfig(Arc::new(DockerConfig::load()?))`) or fixed ones:
//!
//! ```no_run
//! # use dist::{registry::RegistryRemote, retry::RetryPolicy};
//! # use dist::transport::{Transport, TransportOptions};
//! use dist::auth::{Credential, CredentialSource};
//! # fn main() -> dist::Result<()> {
//! let robot = Credential::Basic { username: "robot".into(), password: "…".into() };
//! let remote = RegistryRemote::new(
//!     "registry.example/team/app".parse()?,
//!     Transport::new(TransportOptions::default())?,
//!     CredentialSource::Fixed(robot),
//!     RetryPolicy::default(),
//! );
//! # let _ = remote; Ok(()) }
//! ```
//!
//! # Share a remote between tasks, and cancel
//!
//! A remote is `Send + Sync`; [`registry::RegistryRemote`] and [`transport::Transport`] are
//! handles (an `Arc` inside) that clone cheaply and share one connection pool, one token
//! and one `Retry-After` pause (and a registry failing every request is asked once for
//! all the tasks). [`Remote::fetch`] borrows the remote, the object and the
//! hints, so a task owns clones of them; the future and the [`Download`] are `Send` and
//! can be spawned. Dropping a download (or aborting its task) cancels it: its connection
//! is closed rather than pooled, its hashing thread stops, and a
//! [`TempBlob`](sink::layout::TempBlob) dropped before
//! [`commit`](sink::layout::TempBlob::commit) leaves nothing at the blob's place: no
//! temporary file, only, for one made by
//! [`LayoutStore::temp_for`](sink::layout::LayoutStore::temp_for) with content written past
//! its first MiB, the partial download a later fetch of that blob carries on.
//! [`Download::chunk`] and [`TempBlob::write`](sink::layout::TempBlob::write) are
//! cancel-safe: a call dropped by a `select!` or a timeout loses no content (a dropped
//! `write` has taken its chunk: the next call writes the next chunk, not that one again).
//!
//! ```
//! # use dist::layout_remote::LayoutRemote;
//! # use dist::sink::layout::LayoutStore;
//! # use dist::{digest::Algorithm, Digest};
//! use dist::{ErrorKind, Hints, Object, Remote};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
//! # async fn main() -> dist::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! # let store = LayoutStore::open(dir.path())?;
//! # let mut digests = Vec::new();
//! # for text in ["a", "b"] {
//! #     let digest = Digest::of(Algorithm::Sha256, text.as_bytes());
//! #     let mut blob = store.temp(Algorithm::Sha256)?;
//! #     blob.write(&bytes::Bytes::copy_from_slice(text.as_bytes())).await?;
//! #     blob.commit(&digest).await?;
//! #     digests.push(digest);
//! # }
//! # digests.push(Digest::of(Algorithm::Sha256, b"missing"));
//! let remote = LayoutRemote::new(dir.path()); // or a RegistryRemote: both clone cheaply
//! let mut tasks = tokio::task::JoinSet::new();
//! for digest in digests {
//!     let remote = remote.clone();
//!     tasks.spawn(async move {
//!         let mut download = remote.fetch(&Object::Digest(digest), &Hints::default()).await?;
//!         let mut size = 0;
//!         while let Some(chunk) = download.chunk().await? {
//!             size += chunk.len(); // into the caller's own sink
//!         }
//!         Ok::<_, dist::Error>(size)
//!     });
//! }
//! while let Some(done) = tasks.join_next().await {
//!     match done.expect("not aborted") {
//!         Ok(size) => assert_eq!(size, 1),
//!         Err(e) if e.kind() == ErrorKind::NotFound => {}
//!         Err(e) => return Err(e),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Tell errors apart
//!
//! Every function returns [`Error`]; match on its [`ErrorKind`]: `NotFound`,
//! `Unauthorized` (no credentials, or refused ones), `Denied`, `DigestMismatch` and
//! `SizeMismatch` (content that is not what was asked for, also
//! [`Error::is_corruption`]), `TooLarge`, `InvalidInput`. [`Error::is_transient`] says
//! whether the same request may succeed later (connection failures, timeouts, 408, 429,
//! 500, 502, 503 and 504; not a 501 or 507, which say the server cannot, not that it cannot
//! now); the remote has retried those already, as its [`retry::RetryPolicy`] allows, and
//! [`Error::retry_after`] is the pause the answer that ended the request asked for, which
//! nobody waited out (one longer than the policy waits, or the last attempt's).
//! [`Error::status`], [`Error::url`] and [`Error::object`] give the context; the `Display`
//! form is one line with credentials and signed queries taken out. A message that a
//! setting may cure names it as the library has it (`TransportOptions::connect_timeout`);
//! a program whose users know it by another name says so with
//! [`setting::name_settings`].
//!
//! # Run the worker over a stream of objects
//!
//! [`worker::run`] takes any async line source (stdin, a file, a socket) and yields one
//! [`worker::Outcome`] per input object, concurrently, with bounded memory.
//!
//! ```
//! use std::sync::Arc;
//! use futures::StreamExt;
//! use dist::layout_remote::LayoutRemote;
//! use dist::sink::layout::LayoutStore;
//! use dist::worker::{self, Status, WorkerOptions};
//! use dist::{digest::Algorithm, Digest};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
//! # async fn main() -> dist::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! # let store = LayoutStore::open(dir.path())?;
//! # let mut lines = String::new();
//! # for text in ["a", "b", "c"] {
//! #     let digest = Digest::of(Algorithm::Sha256, text.as_bytes());
//! #     let mut blob = store.temp(Algorithm::Sha256)?;
//! #     blob.write(&bytes::Bytes::copy_from_slice(text.as_bytes())).await?;
//! #     blob.commit(&digest).await?;
//! #     lines.push_str(&format!("{digest}\n"));
//! # }
//! // `lines` holds one digest per line, as `jq -r '.layers[].digest'` prints them.
//! let remote = Arc::new(LayoutRemote::new(dir.path()));
//! let input = std::io::Cursor::new(lines.into_bytes());
//! let outcomes: Vec<_> = worker::run(remote, input, WorkerOptions::default()).collect().await;
//! assert_eq!(outcomes.len(), 3);
//! assert!(outcomes.iter().all(|o| o.status == Status::Ok));
//! # Ok(()) }
//! ```
//!
//! # Room to grow
//!
//! What the crate reports grows with it: [`ErrorKind`], [`setting::Setting`],
//! [`worker::Status`], [`pull::Event`], [`sink::index::IndexEntry`], [`digest::Algorithm`],
//! [`image::Manifest`] and [`transport::proxy::ProxyError`] may gain variants, and
//! [`worker::Outcome`], [`pull::Pulled`], [`worker::progress::Snapshot`],
//! [`image::FetchedManifest`], [`transport::Reply`], [`transport::Redirects`],
//! [`hosts::HostSpec`] and [`hosts::HostsFile`] fields, in a minor release. They are
//! `#[non_exhaustive]`, so a `match` needs a `_` arm and a pattern a `..`:
//!
//! ```
//! use dist::pull::Pulled;
//! use dist::worker::{Outcome, Status};
//!
//! fn line(o: &Outcome) -> String {
//!     match o.status {
//!         Status::Ok | Status::Exists => format!("{} done", o.object),
//!         Status::Error => format!("{} failed", o.object),
//!         _ => format!("{} {:?}", o.object, o.status),
//!     }
//! }
//! fn summary(p: &Pulled) -> String {
//!     let Pulled { fetched, existing, failed, .. } = p;
//!     format!("{fetched} fetched, {existing} present, {failed} failed")
//! }
//! assert_eq!(line(&Outcome::new(1, "v1".into())), "v1 failed");
//! assert_eq!(summary(&Pulled::default()), "0 fetched, 0 present, 0 failed");
//! ```
//!
//! A match that names every variant today does not compile, so it cannot break tomorrow:
//!
//! ```compile_fail
//! # let status = dist::worker::Status::Ok;
//! let done = match status {
//!     dist::worker::Status::Ok | dist::worker::Status::Exists => true,
//!     dist::worker::Status::Error => false,
//! };
//! ```
//!
//! Nor does building what only the crate reports:
//!
//! ```compile_fail
//! let pulled = dist::pull::Pulled { fetched: 1, ..Default::default() };
//! ```
//!
//! Settings grow too (a flag of the CLI is usually a new field): [`pull::PullOptions`],
//! [`worker::WorkerOptions`], [`transport::TransportOptions`], [`ranged::RangeOptions`],
//! [`Hints`] and [`hosts::HostSettings`] are `#[non_exhaustive]`, as are
//! [`registry::host::Mirror`], [`registry::host::Server`] and [`worker::line::Job`] (made
//! with their `new`), and the enums [`pull::Platforms`], [`worker::Destination`],
//! [`auth::CredentialSource`] and [`auth::Credential`]. Start from the default and set what
//! differs; a field added later keeps its default:
//!
//! ```
//! use dist::pull::{Platforms, PullOptions};
//! use dist::transport::TransportOptions;
//!
//! let mut opts = PullOptions::default();
//! opts.platforms = Platforms::All;
//! opts.jobs = 4;
//! let mut transport = TransportOptions::default();
//! transport.max_connections_per_host = 8;
//! # let _ = (opts, transport);
//! ```
//!
//! A struct expression, even one ending in `..Default::default()`, does not compile:
//!
//! ```compile_fail
//! let opts = dist::pull::PullOptions { jobs: 4, ..Default::default() };
//! ```

// A library user puts these types in their own `#[derive(Debug)]` structs; types holding
// secrets write theirs by hand and redact them.
#![warn(missing_debug_implementations)]
// Every public item is documented; CI's clippy run (-D warnings) keeps it so.
#![warn(missing_docs)]

pub mod auth;
mod blocking;
pub mod certs;
pub mod digest;
pub mod duration;
pub mod error;
pub mod fetch;
#[cfg(test)]
mod fuzz;
pub mod handoff;
pub mod hints;
pub mod hosts;
pub mod image;
pub mod layout_remote;
pub mod media;
mod plural;
pub mod pull;
pub mod ranged;
pub mod reference;
pub mod registry;
pub mod remote;
pub mod retry;
// Public for the binary's tag-taken warning alone, which shows names a layout's writer
// chose: no API a library user should build on (its limits and HTML rules follow the CLI's
// messages), so kept out of the docs and free to change.
#[doc(hidden)]
pub mod server_text;
pub mod setting;
pub mod sink;
pub mod transport;
mod user_dirs;
pub mod worker;

pub use digest::Digest;
pub use error::{Error, ErrorKind, Result};
pub use fetch::Download;
pub use hints::Hints;
pub use reference::{Locator, Object, Reference, Repository};
pub use remote::Remote;
