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
            // Added as the object's last member: right after the value of the member
            // written last, or the `{` of an object without any. Before the closing
            // brace, it came after the white space of an indented file's last line
            // (`{"a":1\n,"manifests":[…]}`).
            let end = match members.last() {
                Some((_, raw)) => span(text, raw.get()).end,
                None => text.find('{')? + 1,
            };
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
    // An empty list that stays so is the file's text, white space and all.
    if entries.is_empty() && manifests.is_empty() && old.starts_with('[') {
        return old.to_string();
    }
    // Every entry removed: the white space that set them apart would stay as a line of
    // spaces between `[` and `]`.
    if manifests.is_empty() {
        return "[]".to_string();
    }
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
    // What sets entries apart: the file's own between its first two (Python's `, `
    // after a `[` followed by none), else a comma and the white space after `[`.
    let between = match entries {
        [first, second, ..] => {
            text[span(text, first.get()).end..span(text, second.get()).start].to_string()
        }
        _ => format!(",{open}"),
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
            out.push_str(&between);
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
    fn a_list_whose_entries_are_all_removed_is_empty_without_their_white_space() {
        let text = "{\n  \"manifests\": [\n    {\"a\": 1},\n    {\"b\": 2}\n  ]\n}\n";
        assert_eq!(
            rewritten(text, serde_json::json!([])),
            "{\n  \"manifests\": []\n}\n"
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

    /// A missing list is added right after the last member's value: before the closing
    /// brace, an indented file's last line break came before it (`"a": 1\n,"manifests"…`).
    #[test]
    fn a_missing_list_follows_the_last_member_s_value() {
        let entry = serde_json::json!([{"a": 1}]);
        assert_eq!(
            rewritten("{\n  \"b\": 1\n}\n", entry.clone()),
            "{\n  \"b\": 1,\"manifests\":[{\"a\":1}]\n}\n"
        );
        assert_eq!(
            rewritten("{\n  \"b\": {\"c\": 2} \r\n}", entry.clone()),
            "{\n  \"b\": {\"c\": 2},\"manifests\":[{\"a\":1}] \r\n}"
        );
        assert_eq!(
            rewritten(" {\n}\n", entry),
            " {\"manifests\":[{\"a\":1}]\n}\n"
        );
    }

    /// An empty list that the rewrite keeps empty is left as the file wrote it.
    #[test]
    fn an_empty_list_kept_empty_is_the_file_s_text() {
        let text = "{\n  \"manifests\": [\n  ],\n  \"b\": 1\n}\n";
        assert_eq!(rewritten(text, serde_json::json!([])), text);
        // One of no list is written as one.
        assert_eq!(
            rewritten(r#"{"manifests": null}"#, serde_json::json!([])),
            r#"{"manifests": []}"#
        );
    }

    /// Entries set apart otherwise than the list's first one from its `[` (Python's
    /// `json.dumps` writes `[{...}, {...}]`) stay so: the space after each comma went.
    #[test]
    fn entries_stay_set_apart_as_the_file_sets_them() {
        assert_eq!(
            rewritten(
                r#"{"manifests": [{"a": 1}, {"b": 2}]}"#,
                serde_json::json!([{"a": 1}, {"b": 2}, {"c": 3}])
            ),
            r#"{"manifests": [{"a": 1}, {"b": 2}, {"c":3}]}"#
        );
        assert_eq!(
            rewritten(
                "{\"manifests\":[\n  {\"a\":1}\n  ,{\"b\":2}]}",
                serde_json::json!([{"b": 2}, {"c": 3}])
            ),
            "{\"manifests\":[\n  {\"b\":2}\n  ,{\"c\":3}]}"
        );
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

    /// A small deterministic generator (xorshift): the same files on every run.
    struct Gen(u64);

    impl Gen {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn pick<T: Copy>(&mut self, of: &[T]) -> T {
            of[self.below(of.len())]
        }
        /// White space as tools put it: none, spaces, LF or CRLF indentation, tabs.
        fn space(&mut self) -> &'static str {
            self.pick(&["", "", " ", "\n  ", "\r\n\t", "\n    "])
        }
        /// `s` as a JSON string, some of its characters escaped.
        fn string(&mut self, s: &str) -> String {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' | '\\' => out.extend(['\\', c]),
                    '/' if self.below(2) == 0 => out.push_str("\\/"),
                    c if c.is_ascii_alphabetic() && self.below(8) == 0 => {
                        out.push_str(&format!("\\u{:04x}", c as u32))
                    }
                    c if !c.is_ascii() && self.below(2) == 0 => {
                        for unit in c.encode_utf16(&mut [0; 2]) {
                            out.push_str(&format!("\\u{unit:04X}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out + "\""
        }
        /// An object of `members` (key, value's text), set apart with white space.
        fn object(&mut self, members: &[(&str, String)]) -> String {
            let members: Vec<String> = members
                .iter()
                .map(|(k, v)| {
                    let (a, b, c, d) = (self.space(), self.space(), self.space(), self.space());
                    format!("{a}{}{b}:{c}{v}{d}", self.string(k))
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        /// An index entry: few digests and names, so that entries repeat, with fields
        /// whose text a value does not keep and strings that look like JSON's syntax.
        fn entry(&mut self) -> String {
            let digest = self.pick(&["sha256:aa", "sha256:bb", "sha256:cc"]);
            let mut members = vec![
                (
                    "mediaType",
                    self.string("application/vnd.oci.image.manifest.v1+json"),
                ),
                ("digest", self.string(digest)),
                ("size", self.pick(&["1", "2"]).to_string()),
            ];
            let mut annotations = Vec::new();
            if let Some(name) = self.pick(&[None, Some("v1"), Some("v2")]) {
                annotations.push((crate::image::REF_NAME, self.string(name)));
            }
            if self.below(3) == 0 {
                annotations.push(("x", self.string("}]\"manifests\": [é 😀 \\ /")));
            }
            if !annotations.is_empty() {
                members.push(("annotations", self.object(&annotations)));
            }
            let numbers = [
                "123456789012345678901234567890",
                "123456789012345678901234567891",
                "18446744073709551616",
                "1.10",
                "1.1",
                "1e2",
                "-0",
                "0.30000000000000004",
            ];
            match self.below(6) {
                0 => members.push(("n", self.pick(&numbers).to_string())),
                1 => members.push(("manifests", "[{}]".to_string())),
                2 => members.push(("a", "1".to_string())),
                _ => {}
            }
            let (i, j) = (self.below(members.len()), self.below(members.len()));
            members.swap(i, j);
            self.object(&members)
        }
        /// A list of `entries`, as indented or compact as the file.
        fn list(&mut self, entries: &[String]) -> String {
            let (open, close) = (self.space(), self.space());
            let between = format!(",{}", self.space());
            format!("[{open}{}{close}]", entries.join(&between))
        }
    }

    /// Whatever the file's text (indented, compact, CRLF, escapes, numbers a value
    /// rounds, `manifests` twice or inside entries, equal entries), the rewritten file
    /// reads as the file's value with its list made `manifests`, each entry kept is the
    /// text of one of the file's, and what lies before the list is the file's own.
    #[test]
    fn generated_files_read_as_the_value_meant() {
        for seed in 1..3000u64 {
            let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let entries: Vec<String> = (0..g.below(6)).map(|_| g.entry()).collect();
            let mut members = vec![("schemaVersion", "2".to_string())];
            match g.below(6) {
                0 => {}
                1 => members.push(("manifests", "null".to_string())),
                2 => {
                    let decoy = g.entry();
                    members.push(("manifests", g.list(&[decoy])));
                    members.push(("manifests", g.list(&entries)));
                }
                _ => members.push(("manifests", g.list(&entries))),
            }
            if g.below(2) == 0 {
                members.push(("annotations", g.object(&[("manifests", "\"]}\"".into())])));
            }
            let (i, j) = (g.below(members.len()), g.below(members.len()));
            members.swap(i, j);
            let text = format!("{}{}{}", g.space(), g.object(&members), g.space());
            let old: Value = serde_json::from_str(&text).unwrap();

            // What an update makes of the list: some entries go, one may move to the end,
            // a new one may come.
            let mut manifests: Vec<Value> = (old.get("manifests").and_then(Value::as_array))
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .filter(|_| g.below(4) != 0)
                .cloned()
                .collect();
            if !manifests.is_empty() && g.below(3) == 0 {
                let moved = manifests.remove(g.below(manifests.len()));
                manifests.push(moved);
            }
            let fresh_text = r#"{"mediaType":"m","digest":"sha256:dd","size":3}"#;
            let fresh = (
                serde_json::from_str::<Value>(fresh_text).unwrap(),
                fresh_text.to_string(),
            );
            if g.below(2) == 0 {
                manifests.push(fresh.0.clone());
            }

            let out = rewrite(text.as_bytes(), &manifests, &fresh).expect("an object");
            let out = String::from_utf8(out).unwrap();
            let mut meant = old.clone();
            meant["manifests"] = Value::Array(manifests.clone());
            let read: Value = serde_json::from_str(&out)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}\n=>\n{out}"));
            assert_eq!(read, meant, "seed {seed}\n{text}\n=>\n{out}");

            let Members(members) = serde_json::from_str(&out).unwrap();
            let (_, list) = members
                .iter()
                .rev()
                .find(|(k, _)| k == "manifests")
                .unwrap();
            let written: Vec<&RawValue> = serde_json::from_str(list.get()).unwrap();
            for entry in written {
                assert!(
                    text.contains(entry.get()) || entry.get() == fresh.1,
                    "seed {seed}: {} is no text of the file's\n{text}\n=>\n{out}",
                    entry.get()
                );
            }
            if old.get("manifests").is_some() {
                let at = span(&out, list.get()).start;
                assert_eq!(out[..at], text[..at], "seed {seed}");
            } else {
                // Added right after the last member's value: the file's text is all
                // there, around it.
                let added = format!(",\"manifests\":{}", list.get());
                let at = span(&out, list.get()).end - added.len();
                assert_eq!(out[at..at + added.len()], added, "seed {seed}\n{out}");
                assert_eq!(out[..at], text[..at], "seed {seed}");
                assert_eq!(out[at + added.len()..], text[at..], "seed {seed}");
                assert!(
                    !text[..at].ends_with(char::is_whitespace),
                    "seed {seed}\n{out}"
                );
            }
            // An empty list kept empty: nothing changes.
            let empty = old
                .get("manifests")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
            if empty && manifests.is_empty() {
                assert_eq!(out, text, "seed {seed}");
            }
        }
    }
}

/// Files as tools write them, generated (any white space, members in any order, a key
/// given twice, a list that is null, empty or missing): the rewrite reads as the file's
/// own value with only its list changed, whatever entries are kept, dropped or added.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn space() -> impl Strategy<Value = String> {
        "[ \t\r\n]{0,3}"
    }

    /// An entry's text: a few shapes, some equal as values but not as text.
    fn entry() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#"{"a":1}"#.to_string()),
            Just(r#"{ "a" : 1 }"#.to_string()),
            Just(r#"{"b":"\u00e9","n":123456789012345678901234567890}"#.to_string()),
            Just(r#"{"c":[1,{"d":null}]}"#.to_string()),
            "\\{\"k\":\"[a-z\\]\\[{},:]{0,4}\"\\}",
        ]
    }

    fn list() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            (
                space(),
                proptest::collection::vec((entry(), space(), space()), 0..4)
            )
                .prop_map(|(open, entries)| {
                    let inner: Vec<String> = entries
                        .into_iter()
                        .map(|(e, a, b)| format!("{a}{e}{b}"))
                        .collect();
                    format!("[{open}{}]", inner.join(","))
                }),
        ]
    }

    fn member() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            3 => (Just("manifests".to_string()), list()),
            1 => (Just("\\u006danifests".to_string()), list()),
            4 => (
                prop_oneof![Just("schemaVersion"), Just("mediaType"), Just("annotations"), Just("x")]
                    .prop_map(String::from),
                prop_oneof![
                    Just("2".to_string()),
                    Just("\"a]b}\"".to_string()),
                    Just("{\"k\":[1, 2]}".to_string()),
                    Just("123456789012345678901234567890".to_string()),
                ],
            ),
        ]
    }

    proptest! {
        #![proptest_config(crate::fuzz::cases(500))]

        #[test]
        fn a_rewrite_changes_the_list_alone(
            members in proptest::collection::vec((member(), space(), space()), 0..5),
            outer in (space(), space()),
            kept in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            added in proptest::collection::vec(entry(), 0..3),
        ) {
            let body: Vec<String> = members
                .iter()
                .map(|((k, v), a, b)| format!("{a}\"{k}\"{b}:{a}{v}{b}"))
                .collect();
            let text = format!("{}{{{}}}{}", outer.0, body.join(","), outer.1);
            let mut value: Value = serde_json::from_str(&text).unwrap();
            let old: Vec<Value> = match &value["manifests"] {
                Value::Array(entries) => entries.clone(),
                _ => Vec::new(),
            };
            let mut manifests: Vec<Value> = Vec::new();
            if !old.is_empty() {
                manifests.extend(kept.iter().map(|i| i.get(&old).clone()));
            }
            manifests.extend(added.iter().map(|e| serde_json::from_str::<Value>(e).unwrap()));
            let fresh = match manifests.last() {
                Some(v) => (v.clone(), serde_json::to_string_pretty(v).unwrap()),
                None => (Value::Null, String::new()),
            };
            let out = rewrite(text.as_bytes(), &manifests, &fresh);
            let out = String::from_utf8(out.expect("a file that reads")).unwrap();
            let read: Value = serde_json::from_str(&out)
                .map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
            value["manifests"] = Value::Array(manifests);
            prop_assert_eq!(read, value, "{} -> {}", text, out);
        }
    }
}
