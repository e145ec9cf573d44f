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
