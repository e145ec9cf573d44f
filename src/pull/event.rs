//! What a pull reports per object, and its JSON line.

use serde::Serialize;

use crate::image::Descriptor;
use crate::sink;
use crate::worker::{Outcome, Status};

/// One object of a pull, reported as soon as it is settled.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A manifest, config or layer went through the worker: fetched, already present, or
    /// failed, exactly as the worker reports it (with `line` renumbered across the pull).
    Object(Outcome),
    /// A non-distributable layer (one with `urls`) that was not fetched.
    Skipped {
        /// Its number among the pull's objects.
        line: u64,
        /// The layer as its manifest lists it.
        descriptor: Descriptor,
    },
}

#[derive(Serialize)]
struct SkippedLine<'a> {
    line: u64,
    object: String,
    status: &'static str,
    digest: String,
    size: u64,
    #[serde(rename = "mediaType")]
    media_type: Option<&'a str>,
    path: Option<String>,
    error: String,
    ms: u64,
}

impl Event {
    /// Whether the object failed.
    pub fn failed(&self) -> bool {
        matches!(self, Event::Object(o) if o.status == Status::Error)
    }

    /// The report line: the worker's keys, all present. A skipped layer has status
    /// `skipped` and says why in `error`.
    pub fn json_line(&self) -> String {
        match self {
            Event::Object(o) => sink::report::json_line(o),
            Event::Skipped { line, descriptor } => {
                let l = SkippedLine {
                    line: *line,
                    object: descriptor.digest.to_string(),
                    status: "skipped",
                    digest: descriptor.digest.to_string(),
                    size: descriptor.size,
                    media_type: crate::media::reported(&descriptor.media_type),
                    path: None,
                    error: skip_reason(descriptor),
                    ms: 0,
                };
                serde_json::to_string(&l).expect("report lines always serialise")
            }
        }
    }
}

/// Why a layer was not fetched, naming where it lives instead.
pub fn skip_reason(d: &Descriptor) -> String {
    format!(
        "non-distributable layer, not fetched (urls: {})",
        crate::image::urls_shown(&d.urls)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Algorithm, Digest};

    #[test]
    fn a_skipped_layers_urls_print_without_escapes() {
        let mut d = Descriptor::new(
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            Digest::of(Algorithm::Sha256, b"x"),
            1,
        );
        d.urls
            .push("https://example.invalid/l\u{1b}[31m\nnext".into());
        assert_eq!(
            skip_reason(&d),
            "non-distributable layer, not fetched (urls: https://example.invalid/l [31m next)"
        );
    }

    /// A manifest's `urls` may be pre-signed (a storage account's SAS token, an S3
    /// signature in the query) or carry a login: shown as they were, the skip line and
    /// the worker's note for a missing layer put those credentials on stderr and into
    /// `--report` files, where every other URL dist shows is redacted.
    #[test]
    fn a_skipped_layers_urls_print_redacted() {
        let mut d = Descriptor::new(
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Digest::of(Algorithm::Sha256, b"x"),
            1,
        );
        d.urls = vec![
            "https://acct.blob.core.windows.net/l/x?sv=2020&sig=s3cret".into(),
            "https://user:hunter2@mirror.example/l/x".into(),
        ];
        let shown = skip_reason(&d);
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2") && !shown.contains("user"),
            "{shown}"
        );
        assert!(
            shown.contains("https://acct.blob.core.windows.net/l/x?…")
                && shown.contains("https://mirror.example/l/x"),
            "{shown}"
        );
    }

    #[test]
    fn a_skipped_layers_urls_print_cut() {
        let mut d = Descriptor::new(
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            Digest::of(Algorithm::Sha256, b"x"),
            1,
        );
        d.urls = vec![format!("https://example.invalid/{}", "a".repeat(1 << 20)); 3];
        let shown = skip_reason(&d);
        assert!(shown.len() < 1024, "{} bytes", shown.len());
        assert!(shown.ends_with("aaa…)"), "{shown}");
    }

    #[test]
    fn skipped_line_has_every_key() {
        let mut d = Descriptor::new(
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Digest::of(Algorithm::Sha256, b"x"),
            1,
        );
        d.urls.push("https://example.com/x".into());
        let e = Event::Skipped {
            line: 3,
            descriptor: d,
        };
        assert!(!e.failed());
        let v: serde_json::Value = serde_json::from_str(&e.json_line()).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "digest",
                "error",
                "line",
                "mediaType",
                "ms",
                "object",
                "path",
                "size",
                "status"
            ]
        );
        assert_eq!(v["status"], "skipped");
        assert!(v["error"]
            .as_str()
            .unwrap()
            .contains("https://example.com/x"));
    }

    /// A skipped layer's `mediaType` is the manifest's text, never checked (the layer is
    /// not fetched): one that is no media type (a C1 CSI, a right-to-left override in it)
    /// reached the JSON line, which a terminal shows, as it came. It is unknown, `null`.
    #[test]
    fn a_skipped_layers_type_that_is_no_media_type_is_null() {
        let garbled = "application/vnd.oci.image.layer.v1.tar\u{9b}31m\u{202e}x";
        let mut d = Descriptor::new(garbled, Digest::of(Algorithm::Sha256, b"x"), 1);
        d.urls.push("https://example.com/x".into());
        let line = |descriptor: Descriptor| {
            Event::Skipped {
                line: 1,
                descriptor,
            }
            .json_line()
        };
        let v: serde_json::Value = serde_json::from_str(&line(d.clone())).unwrap();
        assert_eq!(v["mediaType"], serde_json::Value::Null, "{v}");
        d.media_type = "application/vnd.oci.image.layer.v1.tar+gzip".into();
        let v: serde_json::Value = serde_json::from_str(&line(d)).unwrap();
        assert_eq!(
            v["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
}
