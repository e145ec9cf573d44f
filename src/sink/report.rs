//! One JSON line per input object:
//! `{"line","object","status","digest","size","mediaType","path","error","ms"}`.
//! `status` is `ok` (fetched and verified), `exists` (already in the store) or `error`.
//! Unknown fields are `null`, so every line has the same keys.

use serde::Serialize;

use crate::worker::{Outcome, Status};

#[derive(Serialize)]
struct Line<'a> {
    line: u64,
    object: &'a str,
    status: &'static str,
    digest: Option<String>,
    size: Option<u64>,
    #[serde(rename = "mediaType")]
    media_type: Option<&'a str>,
    path: Option<String>,
    error: Option<String>,
    ms: u64,
}

/// The report line for `outcome`, without the trailing newline.
pub fn json_line(outcome: &Outcome) -> String {
    let line = Line {
        line: outcome.line,
        object: &outcome.object,
        status: match outcome.status {
            Status::Ok => "ok",
            Status::Exists => "exists",
            Status::Error => "error",
        },
        digest: outcome.digest.as_ref().map(ToString::to_string),
        size: outcome.size,
        media_type: outcome.media_type.as_deref(),
        path: outcome.path.as_ref().map(|p| p.display().to_string()),
        error: outcome.error.as_ref().map(ToString::to_string),
        ms: outcome.elapsed.as_millis() as u64,
    };
    serde_json::to_string(&line).expect("report lines always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_present() {
        let mut o = Outcome::new(7, "latest".into());
        o.fail(crate::Error::invalid("nope"));
        let v: serde_json::Value = serde_json::from_str(&json_line(&o)).unwrap();
        for k in [
            "line",
            "object",
            "status",
            "digest",
            "size",
            "mediaType",
            "path",
            "error",
            "ms",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["status"], "error");
        assert_eq!(v["line"], 7);
        assert_eq!(v["error"], "nope");
    }
}
