//! Shared test harness: a real `docker-registry` process in every auth mode, the token
//! issuer the bearer mode needs, and an in-process registry that injects faults.
#![allow(dead_code)]

pub mod cli;
pub mod fake;
pub mod listen;
pub mod opens;
pub mod proxy;
pub mod registry;
pub mod socks;
pub mod token;
pub mod wait;

/// A host name the system resolver answers "no such name" for on every machine, with or
/// without a DNS server: 263 bytes, over the 255 a DNS name can carry (RFC 1035), so
/// glibc refuses it itself, as `EAI_NONAME` ("Name or service not known"), without a
/// query. Each label is 63 bytes, the most DNS allows, as dist refuses a longer one
/// before any lookup. A name under `.invalid` (RFC 6761) is answered so only where a DNS
/// server answers it, and a machine without one says "Temporary failure in name
/// resolution". Over https, TLS refuses the name before any lookup: reach it over
/// `http://`.
pub fn no_such_host() -> String {
    let label = "x".repeat(63);
    format!("{label}.{label}.{label}.{label}.invalid")
}
