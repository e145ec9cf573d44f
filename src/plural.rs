//! Counts of bytes as messages say them: `1 byte`, `2 bytes`.

use std::fmt;

/// A count of bytes with its unit, singular for one: a size hint of `size:1` read "the
/// size given is 1 bytes".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("1 byte"),
            n => write!(f, "{n} bytes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bytes;

    #[test]
    fn one_is_singular_and_others_plural() {
        assert_eq!(Bytes(0).to_string(), "0 bytes");
        assert_eq!(Bytes(1).to_string(), "1 byte");
        assert_eq!(Bytes(2).to_string(), "2 bytes");
    }
}
