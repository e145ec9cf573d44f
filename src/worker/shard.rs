//! Splitting one input across machines: `--shard K/N` keeps the objects whose digest falls
//! in shard K of N, so N workers fed the same input fetch every object exactly once, with
//! no coordination beyond their index (Kubernetes' `JOB_COMPLETION_INDEX`, a Slurm array
//! index, or GNU parallel's argument: not its `{%}`, which counts from 1).
//!
//! The shard of a digest is its leading 64 bits modulo N: digests are uniformly
//! distributed, so shards are even. A tag has no digest; the SHA-256 of its name stands in.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::reference::Object;

/// Shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

impl Shard {
    /// Shard `index` of `count` (`index < count`).
    pub fn new(index: u64, count: u64) -> Result<Shard> {
        // "K must be between 0 and N-1" reads as nonsense for N = 0.
        if count == 0 {
            return Err(Error::invalid(format!(
                "invalid shard {index}/0: N, the number of shards, must be at least 1"
            )));
        }
        if index >= count {
            return Err(Error::invalid(format!(
                "invalid shard {index}/{count}: K must be between 0 and N-1"
            )));
        }
        Ok(Shard { index, count })
    }

    /// Whether `object` belongs to this shard.
    pub fn contains(&self, object: &Object) -> bool {
        self.of(object) == self.index
    }

    /// Whether this shard reports input lines that name no object (malformed lines), so
    /// that N shards report each such line once, not N times.
    pub fn reports_bad_lines(&self) -> bool {
        self.index == 0
    }

    fn of(&self, object: &Object) -> u64 {
        let lead = match object {
            Object::Digest(d) => u64::from_str_radix(&d.encoded()[..16], 16).unwrap_or(0),
            Object::Tag(t) => {
                let h = sha2::Sha256::digest(t.as_bytes());
                u64::from_be_bytes(h[..8].try_into().expect("8 bytes"))
            }
        };
        lead % self.count
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Shard> {
        let bad = || Error::invalid(format!("invalid shard {s:?}: expected K/N, e.g. 0/4"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        Shard::new(
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        )
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Algorithm, Digest};

    #[test]
    fn parses_and_validates() {
        assert_eq!("2/4".parse::<Shard>().unwrap().to_string(), "2/4");
        for bad in ["4/4", "1/0", "x/2", "1", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let none = "0/0".parse::<Shard>().unwrap_err().to_string();
        assert!(none.contains("at least 1"), "{none}");
        assert!(!none.contains("N-1"), "{none}");
    }

    #[test]
    fn every_object_in_exactly_one_shard_and_shards_are_even() {
        let n = 5;
        let shards: Vec<Shard> = (0..n).map(|k| Shard::new(k, n).unwrap()).collect();
        let mut sizes = vec![0usize; n as usize];
        for i in 0..10_000u32 {
            let object = Object::Digest(Digest::of(Algorithm::Sha256, &i.to_le_bytes()));
            let owners: Vec<usize> = (0..n as usize)
                .filter(|&k| shards[k].contains(&object))
                .collect();
            assert_eq!(owners.len(), 1);
            sizes[owners[0]] += 1;
        }
        assert!(
            sizes.iter().all(|&s| (1800..2200).contains(&s)),
            "{sizes:?}"
        );
        let tag = Object::Tag("latest".into());
        assert_eq!(shards.iter().filter(|s| s.contains(&tag)).count(), 1);
    }
}
