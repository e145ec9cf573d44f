//! Names: locators of remotes, and the objects fetched from them. No I/O happens here.
//!
//! A locator is schemaless, `host[:port]/path` (an `http://` or `https://` prefix picks the
//! scheme), normalised the way the Docker reference grammar does it: `redis` is
//! `docker.io/library/redis`, and the first path component is a host only when it contains
//! `.` or `:` or is `localhost`. An object is a tag or a digest.

mod host;
mod image_reference;
mod locator;
mod object;
mod user_info;

pub(crate) use host::bracketed_ipv6;
// Outside this module, only the fuzzing tests call it.
#[cfg(test)]
pub(crate) use host::host_without_port;
pub use host::{is_host, is_loopback};
pub(crate) use host::{is_port, PORT_0};
pub(crate) use image_reference::{nothing_after, write_reference};
pub use image_reference::{object_of, Reference, DEFAULT_TAG};
pub use locator::{api_url_path, strip_scheme, Locator, Repository};
pub use object::Object;
pub use user_info::shown_by_words as without_credentials;
pub(crate) use user_info::{is_url_host, url_login_end, NO_CREDENTIALS_HERE};

/// Docker Hub's canonical name, as written in references and in `config.json`.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
