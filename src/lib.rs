//! `dist`: distribution primitives for pulling content out of OCI container registries.
//!
//! The heart of the crate is *fetch*: given a remote named by a locator
//! (`docker.io/library/redis`, `localhost:5000/team/app`) and an object (a tag or a digest),
//! resolve the remote once and stream the object's bytes, verified against its digest.
//!
//! The layers, from names to bytes:
//! - [`reference`](mod@reference) and [`digest`] parse locators, objects and digests (no I/O);
//! - [`hints`] and [`media`] steer content negotiation;
//! - [`transport`] is the one pooled HTTP client (TLS, HTTP/2, timeouts, redirects);
//! - [`auth`] answers `WWW-Authenticate` challenges with tokens or credentials;
//! - [`retry`] decides when a failure is worth another attempt;
//! - [`registry`] implements the [`remote::Remote`] trait over the registry API, and
//!   [`layout_remote`] over an OCI image layout directory (`oci:<path>`);
//! - [`fetch`] verifies a download as it streams;
//! - [`image`] models descriptors, manifests and platforms, and [`pull`] walks an image
//!   into an OCI image layout through the [`worker`].
//!
//! Errors are one type, [`Error`], whose [`ErrorKind`] callers match on.

pub mod auth;
pub mod digest;
pub mod error;
pub mod fetch;
pub mod hints;
pub mod image;
pub mod layout_remote;
pub mod media;
pub mod pull;
pub mod ranged;
pub mod reference;
pub mod registry;
pub mod remote;
pub mod retry;
pub mod sink;
pub mod transport;
pub mod worker;

pub use digest::Digest;
pub use error::{Error, ErrorKind, Result};
pub use fetch::Download;
pub use hints::Hints;
pub use reference::{Locator, Object, Reference, Repository};
pub use remote::Remote;
