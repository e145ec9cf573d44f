//! The text of a rewritten `index.json`: the file as another tool wrote it, with only its
//! `manifests` list changed.
//!
//! A layout is shared: skopeo, crane, ORAS and containerd write `index.json` too, and their
//! entries are theirs. Parsed into a JSON value and written out again, every entry dist
//! kept came back with its keys sorted, its escapes decoded, and a number past 64 bits
//! (an unknown field's) rounded to a float: `123456789012345678901234567890` became
//! `1.2345678901234568e+29`. So the file's text is kept, and only the list's entries that
//! were removed or added change; each entry kept is its own text, byte for byte, and so is
//! everything outside the list.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// `text`, an `index.json` that reads as a JSON object, with its `manifests` list made
/// `manifests`: each value of `manifests` is written as the first entry of the file equal
/// to it that an earlier one did not take, if there is one; else one equal to `fresh`'s
/// value as its text, the others as compact JSON; set apart as the file's entries are. `None` when the
/// text does not read so (the caller then writes the value whole).
pub(super) fn rewrite(
    text: &[u8],
    manifests: &[Value],
    fresh: &(Value, String),
) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let Members(members) = serde_json::from_str(text).ok()?;
    // A key given twice is its last, as serde and Go read it.
    let old = members
        .iter()
        .rev()
        .find(|(key, _)| key == "manifests")
        .map(|(_, raw)| *raw);
    let mut out = String::with_capacity(text.len() + 512);
    match old {
        Some(raw) => {
            let at = span(text, raw.get());
            let entries = serde_json::from_str::<Option<Vec<&RawValue>>>(raw.get())
                .ok()?
                .unwrap_or_default();
            out.push_str(&text[..at.start]);
            out.push_str(&list(text, raw.get(), &entries, manifests, fresh));
            out.push_str(&text[at.end..]);
        }
        None => {
            // Added as the object's last member: before its closing brace.
            let end = text.rfind('}')?;
            out.push_str(&text[..end]);
            if !members.is_empty() {
                out.push(',');
            }
            out.push_str("\"manifests\":");
            out.push_str(&list(text, "[]", &[], manifests, fresh));
            out.push_str(&text[end..]);
        }
    }
    Some(out.into_bytes())
}

/// The new list: `old`'s text is the file's list, `entries` its entries (slices of
/// `text`); `fresh` as for [`rewrite`].
fn list(
    text: &str,
    old: &str,
    entries: &[&RawValue],
    manifests: &[Value],
    fresh: &(Value, String),
) -> String {
    // The white space the file puts after `[`, between entries and before `]`: an
    // indented file stays indented.
    let (open, close) = match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => {
            let list = span(text, old);
            let first = span(text, first.get());
            let last = span(text, last.get());
            (
                &text[list.start + 1..first.start],
                &text[last.end..list.end - 1],
            )
        }
        _ => ("", ""),
    };
    // Each value of `manifests` is the file's first unused entry equal to it: the k-th
    // of equal values is the k-th such entry, so entries kept are their own texts in the
    // file's order, and one an update moved to the end (the entry kept as its name's
    // only one) is the first of its name there, as readers took it. Equal entries can
    // differ in text (a number past 64 bits in a field dist does not know reads as the
    // same float), so the first one is the one meant. Keyed by the value's compact text:
    // one look-up each, where a scan per value grew with the file.
    let mut unused: HashMap<String, VecDeque<&RawValue>> = HashMap::new();
    for entry in entries {
        if let Ok(value) = serde_json::from_str::<Value>(entry.get()) {
            unused
                .entry(value.to_string())
                .or_default()
                .push_back(entry);
        }
    }
    let mut out = String::from("[");
    out.push_str(open);
    for (i, value) in manifests.iter().enumerate() {
        if i > 0 {
            out.push(',');
            out.push_str(open);
        }
        let key = value.to_string();
        match unused.get_mut(&key).and_then(VecDeque::pop_front) {
            Some(entry) => out.push_str(entry.get()),
            None if *value == fresh.0 => out.push_str(&fresh.1),
            None => out.push_str(&key),
        }
    }
    out.push_str(close);
    out.push(']');
    out
}

/// Where `part`, a slice of `text`, lies in it.
fn span(text: &str, part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - text.as_ptr() as usize;
    start..start + part.len()
}

/// A JSON object's members in the order written, each value as its text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(text: &str, manifests: Value) -> String {
        let manifests = manifests.as_array().unwrap().clone();
        let none = (Value::Null, String::new());
        String::from_utf8(rewrite(text.as_bytes(), &manifests, &none).unwrap()).unwrap()
    }

    #[test]
    fn entries_kept_and_the_rest_of_the_file_are_its_own_text() {
        let text = "{\n  \"schemaVersion\": 2,\n  \"x\": 123456789012345678901234567890,\n  \"manifests\": [\n    {\"z\": 1.10, \"a\": \"\\u00e9\"},\n    {\"b\": 2}\n  ],\n  \"annotations\": {\"k\": \"v\"}\n}\n";
        let out = rewritten(text, serde_json::json!([{"z": 1.10, "a": "é"}, {"c": 3}]));
        assert_eq!(
            out,
            "{\n  \"schemaVersion\": 2,\n  \"x\": 123456789012345678901234567890,\n  \"manifests\": [\n    {\"z\": 1.10, \"a\": \"\\u00e9\"},\n    {\"c\":3}\n  ],\n  \"annotations\": {\"k\": \"v\"}\n}\n"
        );
    }

    #[test]
    fn a_list_that_was_null_empty_or_missing_gets_the_entries() {
        let entry = serde_json::json!([{"a": 1}]);
        assert_eq!(
            rewritten(r#"{"manifests":null,"b":1}"#, entry.clone()),
            r#"{"manifests":[{"a":1}],"b":1}"#
        );
        assert_eq!(
            rewritten(r#"{"manifests": [ ]}"#, entry.clone()),
            r#"{"manifests": [{"a":1}]}"#
        );
        assert_eq!(
            rewritten("{\"b\":1}\n", entry.clone()),
            "{\"b\":1,\"manifests\":[{\"a\":1}]}\n"
        );
        assert_eq!(rewritten("{}", entry), r#"{"manifests":[{"a":1}]}"#);
    }

    #[test]
    fn of_a_key_written_twice_the_last_is_the_list() {
        assert_eq!(
            rewritten(
                r#"{"manifests":[{"a":1}],"manifests":[{"b":2}]}"#,
                serde_json::json!([{"b":2},{"c":3}])
            ),
            r#"{"manifests":[{"a":1}],"manifests":[{"b":2},{"c":3}]}"#
        );
    }

    #[test]
    fn an_entry_moved_to_the_end_keeps_its_text() {
        assert_eq!(
            rewritten(
                r#"{"manifests":[{"b": 1.0},{"a": 1}]}"#,
                serde_json::json!([{"a": 1}, {"b": 1.0}])
            ),
            r#"{"manifests":[{"a": 1},{"b": 1.0}]}"#
        );
    }

    #[test]
    fn the_new_entry_is_written_as_its_text_gives_it() {
        let fresh = r#"{"mediaType":"m","digest":"d","size":1}"#;
        let value: Value = serde_json::from_str(fresh).unwrap();
        let out = rewrite(
            br#"{"manifests":[{"a": 1}]}"#,
            &[serde_json::json!({"a": 1}), value.clone()],
            &(value, fresh.to_string()),
        );
        assert_eq!(
            String::from_utf8(out.unwrap()).unwrap(),
            format!(r#"{{"manifests":[{{"a": 1}},{fresh}]}}"#)
        );
    }

    #[test]
    fn text_that_is_no_object_is_left_to_the_caller() {
        let none = (Value::Null, String::new());
        assert_eq!(rewrite(b"[1]", &[], &none), None);
        assert_eq!(rewrite(br#"{"manifests":{}}"#, &[], &none), None);
    }
}
