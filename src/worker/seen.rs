//! Which objects a batch has met already, so that an object named twice is fetched once.
//!
//! Every object the batch meets is remembered to its end, unless its fetch fails: then it
//! is forgotten, and a later line naming it fetches it again. So this is the one part of the
//! worker whose memory grows with its input: with the count of *distinct* objects. It is
//! kept to their 32 bytes each. A plain hash set of them needed about twice that, and
//! three times while it doubled: 112 MiB of peak RSS for 1,000,000 distinct digests.
//! Here new keys go to a small hash set, and each time it fills they move, in order, into
//! a sorted array that holds exactly the keys (42 MiB for that input).

use std::collections::HashSet;

use sha2::Digest as _;

use crate::digest::Algorithm;
use crate::reference::Object;

/// How many keys the hash set takes before they move into the sorted array: small enough
/// that the set stays near 1 MiB, large enough that moving them (a pass over the array)
/// is rare.
const BATCH: usize = 16 * 1024;

/// The objects met so far, in 32 bytes each ([`key`]). The whole digest counts: input is
/// untrusted, and a made-up digest sharing a real one's leading bytes must not pass for a
/// duplicate and go unfetched. Any object counts together with its `mediatype:` hints: the
/// registry may answer a tag differently for each (an index, or the one manifest it picks
/// for a client that takes no indexes), and a digest's hint is asked for, where a wrong
/// one fails (`docker-registry` answers 404 to an OCI manifest asked for as Docker's) and,
/// as duplicates, took a later line's right one down with it. And with its `size:` hint:
/// lines whose sizes disagree cannot both be right, and as duplicates the second took the
/// first's end, a right size after a wrong one never fetched.
pub(super) struct Seen {
    recent: HashSet<Key>,
    /// Every key not in `recent`, sorted, none twice.
    settled: Vec<Key>,
    /// Keys in `settled` that count as not met: taking one out of the array there and then
    /// would move half of it, for each failed object. They leave it together once there are
    /// `batch` of them, in one pass, as keys enter it.
    forgotten: HashSet<Key>,
    batch: usize,
}

/// An object as [`Seen`] remembers it.
pub(super) type Key = [u8; 32];

/// The sorted array's first capacity, in bytes.
const ARRAY_START: usize = 4 << 20;

impl Default for Seen {
    fn default() -> Self {
        Seen::with_batch(BATCH)
    }
}

impl Seen {
    fn with_batch(batch: usize) -> Self {
        Seen {
            recent: HashSet::new(),
            settled: Vec::new(),
            forgotten: HashSet::new(),
            batch,
        }
    }

    /// Whether the object of `key` is met for the first time, or for the first time since
    /// it was forgotten; it is remembered from now on.
    pub(super) fn first_time(&mut self, key: Key) -> bool {
        if !self.forgotten.is_empty() && self.forgotten.remove(&key) {
            return true; // still in `settled`, where it counts again
        }
        if self.settled.binary_search(&key).is_ok() || !self.recent.insert(key) {
            return false;
        }
        if self.recent.len() >= self.batch {
            self.settle();
        }
        true
    }

    /// Forgets the object of `key`, met before: it counts as not met until it is met again.
    pub(super) fn forget(&mut self, key: Key) {
        if self.recent.remove(&key) || self.settled.binary_search(&key).is_err() {
            return;
        }
        self.forgotten.insert(key);
        if self.forgotten.len() >= self.batch {
            let forgotten = std::mem::take(&mut self.forgotten);
            self.settled.retain(|k| !forgotten.contains(k));
        }
    }

    /// Moves the recent keys into the sorted array, merging from the back so that no key
    /// is moved twice and no second array is needed. The set keeps its capacity for the
    /// next batch.
    fn settle(&mut self) {
        let mut fresh: Vec<Key> = self.recent.drain().collect();
        fresh.sort_unstable();
        let old = self.settled.len();
        // The array starts at 4 MiB (131,072 keys): an allocation that large is mapped on
        // its own, so its pages cost memory only once written, and growing it remaps them
        // instead of copying them and leaving the old copy in the heap.
        let wanted = (old + fresh.len()).max(ARRAY_START / std::mem::size_of::<Key>());
        self.settled.reserve(wanted - old);
        self.settled.resize(old + fresh.len(), [0; 32]);
        let (mut i, mut j) = (old, fresh.len());
        for k in (0..self.settled.len()).rev() {
            // A fresh key is never in the array already, so the two never compare equal.
            if j == 0 {
                break;
            }
            if i > 0 && self.settled[i - 1] > fresh[j - 1] {
                self.settled[k] = self.settled[i - 1];
                i -= 1;
            } else {
                self.settled[k] = fresh[j - 1];
                j -= 1;
            }
        }
    }
}

/// The key of `object` named with these `mediatype:` hints and this `size:` hint: a sha256
/// digest's own bytes when no hint is given, anything else (a sha512 digest, a tag, any
/// object with a hint) the first 32 bytes of the SHA-512 of a text that
/// says which kind of object it is. Not the SHA-256 of that text: a sha256
/// digest is the SHA-256 of content, and the content may be the very text another object's
/// key was hashed from (a blob holding `tag v1 `), which made that object a duplicate,
/// skipped without a word; no content is known whose SHA-256 begins a SHA-512. And the
/// common plain line, a sha256 digest alone, is not hashed at all: hashing it took 123 ms
/// of CPU per million digests against 59 ms for reading its hex, about 6% of a
/// million-line batch of duplicates. A descriptor line (which gives a size and a type) is
/// hashed: its JSON costs more than that already, and sizes or types that disagree must
/// not share a key.
pub(super) fn key(object: &Object, media_types: &[String], size: Option<u64>) -> Key {
    // Joined by a line feed, which no type holds: a descriptor's type may hold a space
    // (`a/b; c/d`), and joined by one it was the two hints `mediatype:a/b;
    // mediatype:c/d`, a line asking otherwise skipped as its duplicate.
    let types = media_types.join("\n");
    if let Some(size) = size {
        // "sized " begins no other text, and the size ends at the space after it.
        let size = size.to_string();
        return match object {
            Object::Digest(d) => hashed(&["sized ", &size, " digest ", d.as_str(), " ", &types]),
            Object::Tag(t) => hashed(&["sized ", &size, " tag ", t, " ", &types]),
        };
    }
    match object {
        Object::Digest(d) if d.algorithm() == Algorithm::Sha256 && media_types.is_empty() => {
            let mut k = [0u8; 32];
            for (i, pair) in d.encoded().as_bytes().chunks(2).enumerate() {
                // The digest was validated as 64 lowercase hex characters.
                k[i] = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
            }
            k
        }
        Object::Digest(d) => hashed(&["digest ", d.as_str(), " ", &types]),
        Object::Tag(t) => hashed(&["tag ", t, " ", &types]),
    }
}

/// The first 32 bytes of the SHA-512 of `parts` joined.
fn hashed(parts: &[&str]) -> Key {
    let mut h = sha2::Sha512::new();
    for part in parts {
        h.update(part);
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&h.finalize()[..32]);
    k
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(s: &mut Seen, object: &Object, media_types: &[String]) -> bool {
        s.first_time(key(object, media_types, None))
    }

    #[test]
    fn dedup_keys() {
        let mut s = Seen::default();
        let d: Object = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        assert!(first(&mut s, &d, &[]));
        assert!(!first(&mut s, &d, &[]));
        assert!(first(&mut s, &Object::Tag("latest".into()), &[]));
        assert!(!first(&mut s, &Object::Tag("latest".into()), &[]));
        assert!(first(&mut s, &Object::Tag("v1".into()), &[]));
        // Same leading half, different digest: not a duplicate.
        let twin: Object =
            "sha256:e3b0c44298fc1c149afbf4c8996fb92400000000000000000000000000000000"
                .parse()
                .unwrap();
        assert!(first(&mut s, &twin, &[]));
        let long: Object = format!("sha512:{}", "ab".repeat(64)).parse().unwrap();
        assert!(first(&mut s, &long, &[]));
        assert!(!first(&mut s, &long, &[]));
        // Any object is the same only with the same type hints: a tag's answer depends on
        // them, and a digest's type, wrong, fails where the right one succeeds.
        let index = ["application/vnd.oci.image.index.v1+json".to_string()];
        let manifest = ["application/vnd.oci.image.manifest.v1+json".to_string()];
        for object in [&d, &long, &Object::Tag("latest".into())] {
            assert!(first(&mut s, object, &index), "{object}");
            assert!(!first(&mut s, object, &index), "{object}");
            assert!(first(&mut s, object, &manifest), "{object}");
            assert!(!first(&mut s, object, &[]), "{object}");
            assert!(s.first_time(key(object, &index, Some(10))), "{object}");
            assert!(!s.first_time(key(object, &index, Some(10))), "{object}");
        }
        // Any object is the same only with the same size, or none.
        for object in [&d, &long, &Object::Tag("latest".into())] {
            assert!(s.first_time(key(object, &[], Some(10))), "{object}");
            assert!(!s.first_time(key(object, &[], Some(10))), "{object}");
            assert!(s.first_time(key(object, &[], Some(20))), "{object}");
            assert!(!first(&mut s, object, &[]), "{object}");
        }
    }

    /// No object's key is another's: a sha256 digest is the hash of some content, and the
    /// content may be the very text another object's key was hashed from (a blob holding
    /// `tag v1 `), which made that object a duplicate, skipped without a word.
    #[test]
    fn a_sha256_digest_is_no_other_object_s_key() {
        let sha512: Object = format!("sha512:{}", "ab".repeat(64)).parse().unwrap();
        let v1 = Object::Tag("v1".into());
        let index = ["application/vnd.oci.image.index.v1+json".to_string()];
        let sha256 = Object::Digest(crate::digest::Digest::of(Algorithm::Sha256, b""));
        for (object, media_types, size, text) in [
            (&sha512, &[][..], None, format!("digest {sha512} ")),
            (
                &sha256,
                &index[..],
                None,
                format!("digest {sha256} {}", index[0]),
            ),
            (&v1, &[][..], None, "tag v1 ".to_string()),
            (&v1, &index[..], None, format!("tag v1 {}", index[0])),
            (
                &sha256,
                &[][..],
                Some(7),
                format!("sized 7 digest {sha256} "),
            ),
            (&v1, &[][..], Some(7), "sized 7 tag v1 ".to_string()),
        ] {
            let mut s = Seen::default();
            let holding_text = Object::Digest(crate::digest::Digest::of(
                Algorithm::Sha256,
                text.as_bytes(),
            ));
            assert!(first(&mut s, &holding_text, &[]));
            let k = key(object, media_types, size);
            assert!(s.first_time(k), "{object} {text:?}");
        }
    }

    /// Lines whose type hints differ are no duplicates, however the types are spelt: a
    /// descriptor's one type with a space in it is not two hints split there.
    #[test]
    fn types_split_otherwise_are_other_hints() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let one = format!(r#"{{"digest":"{d}","mediaType":"a/b; c/d"}}"#);
        let two = format!("{d} mediatype:a/b; mediatype:c/d");
        let mut s = Seen::default();
        for line in [&one, &two] {
            let job = crate::worker::line::parse_line(line).unwrap().unwrap();
            let k = key(&job.object, &job.hints.media_types, job.hints.size);
            assert!(s.first_time(k), "{line} {:?}", job.hints.media_types);
        }
        // And the same lines again, as a list of descriptors given twice, are duplicates.
        for line in [&one, &two] {
            let job = crate::worker::line::parse_line(line).unwrap().unwrap();
            let k = key(&job.object, &job.hints.media_types, job.hints.size);
            assert!(!s.first_time(k), "{line}");
        }
    }

    /// Keys met batches ago are still known once they have moved into the array, which
    /// stays sorted and holds each key once.
    #[test]
    fn keys_are_known_across_batches() {
        let digest = |i: u32| -> Object {
            let d = crate::digest::Digest::of(Algorithm::Sha256, &i.to_le_bytes());
            Object::Digest(d)
        };
        let mut s = Seen::with_batch(7);
        for i in 0..100 {
            assert!(first(&mut s, &digest(i), &[]), "{i} is new");
            assert!(!first(&mut s, &digest(i / 2), &[]), "{} was met", i / 2);
        }
        assert_eq!(s.settled.len(), 98, "14 batches of 7 moved");
        assert_eq!(s.recent.len(), 2);
        assert!(
            s.settled.windows(2).all(|w| w[0] < w[1]),
            "sorted, once each"
        );
        for i in 0..100 {
            assert!(!first(&mut s, &digest(i), &[]), "{i} is known");
        }
        assert!(first(&mut s, &digest(100), &[]));
    }

    /// A forgotten key is new once more, whether it was still recent or had moved into
    /// the array, and known again once met; forgotten keys leave the array together.
    #[test]
    fn forgotten_keys_are_new_again() {
        let digest = |i: u32| -> Object {
            let d = crate::digest::Digest::of(Algorithm::Sha256, &i.to_le_bytes());
            Object::Digest(d)
        };
        let mut s = Seen::with_batch(4);
        for i in 0..10 {
            assert!(first(&mut s, &digest(i), &[]));
        }
        assert_eq!((s.settled.len(), s.recent.len()), (8, 2));
        for i in [1, 5, 9] {
            s.forget(key(&digest(i), &[], None));
        }
        for i in 0..10 {
            assert_eq!(
                first(&mut s, &digest(i), &[]),
                [1, 5, 9].contains(&i),
                "{i}"
            );
        }
        for i in 0..10 {
            assert!(!first(&mut s, &digest(i), &[]), "{i} is known again");
        }
        // Forgotten, not met again: gone from the array at the fourth, as a batch.
        for i in [0, 1, 2] {
            s.forget(key(&digest(i), &[], None));
        }
        assert_eq!((s.settled.len(), s.forgotten.len()), (8, 3));
        s.forget(key(&digest(3), &[], None));
        assert_eq!((s.settled.len(), s.forgotten.len()), (4, 0));
        for i in 0..10 {
            assert_eq!(first(&mut s, &digest(i), &[]), i < 4, "{i}");
        }
        assert!(s.settled.windows(2).all(|w| w[0] < w[1]));
    }
}
