//! Recognising a directory that holds something other than an OCI image layout.
//!
//! `-o DIR` and `dist pull -o DIR` turn a directory into a layout by adding `oci-layout`,
//! `index.json` and `blobs/`. A directory that already has an `index.json` of its own (a
//! web project's, say) or a layout of an unknown version must be refused before anything is
//! fetched: merging image entries into someone else's JSON, or writing blobs beside it,
//! would leave neither a valid layout nor the user's file as it was.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// The most of a layout's own JSON file (`index.json`, `oci-layout`) dist reads. An
/// `index.json` naming a hundred thousand images is some 30 MiB.
pub const MAX_LAYOUT_JSON: u64 = 64 << 20;

/// Reads a layout's JSON file whole, refusing one that is no regular file or is larger
/// than [`MAX_LAYOUT_JSON`]. A named pipe in its place (or a device) blocked the read for
/// ever, waiting for a writer, and a file of gigabytes was read into memory whole.
/// A missing file is `NotFound`, as `std::fs::read` says it.
pub fn read_layout_json(path: &Path) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than the {} MiB dist reads", MAX_LAYOUT_JSON >> 20),
        )
    };
    if meta.len() > MAX_LAYOUT_JSON {
        return Err(too_large());
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    // Bounded again: the file may grow between the two looks.
    std::fs::File::open(path)?
        .take(MAX_LAYOUT_JSON + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MAX_LAYOUT_JSON {
        return Err(too_large());
    }
    Ok(text)
}

/// Refuses `root` if its `oci-layout` or `index.json`, where present, are not an OCI image
/// layout's (version 1.x) and an image index (`schemaVersion` 2).
pub fn check(root: &Path) -> Result<()> {
    // Through a symbolic link to a directory not made yet (or gone), making the layout
    // failed with "File exists", of a path that is not there: `mkdir` follows no such link.
    if let Some(link) = root.ancestors().find(|a| leads_nowhere(a)) {
        let to = std::fs::read_link(link).unwrap_or_default();
        let why = format!(
            "{} is a symbolic link to {}, which does not exist",
            link.display(),
            to.display()
        );
        return Err(Error::invalid(if link == root {
            why
        } else {
            format!(
                "{} cannot be a directory for an OCI image layout: {why}",
                root.display()
            )
        }));
    }
    // As written, then from `/`: `-o .` run in `DIR/blobs` names no `blobs` itself.
    let inside = enclosing_layout(root).or_else(|| {
        std::path::absolute(root)
            .ok()
            .and_then(|path| enclosing_layout(&path))
    });
    if let Some(layout) = inside {
        return Err(Error::invalid(format!(
            "{} is inside the blobs of the OCI image layout {}: give -o {}",
            root.display(),
            layout.display(),
            layout.display()
        )));
    }
    if let Some(v) = read_json(root, "oci-layout")? {
        if let Some(why) = marker_fault(&v) {
            return Err(refuse(root, "oci-layout", &why));
        }
    }
    if let Some(v) = read_json(root, "index.json")? {
        if v.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
            return Err(refuse(
                root,
                "index.json",
                "is not an OCI image index (no \"schemaVersion\": 2)",
            ));
        }
        // `null` is Go's empty list.
        if v.get("manifests")
            .is_some_and(|m| !m.is_array() && !m.is_null())
        {
            return Err(refuse(
                root,
                "index.json",
                "has a \"manifests\" that is not an array",
            ));
        }
    }
    Ok(())
}

/// What is wrong with the content of a layout's `oci-layout` file, read as JSON: `None`
/// when it names a version dist reads (1.x, as the image spec promises compatibility
/// within a major version).
pub fn marker_fault(marker: &serde_json::Value) -> Option<String> {
    match marker.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(version) if version.starts_with("1.") => None,
        Some(version) => Some(format!("says version {version:?}, and dist knows 1.x")),
        None => Some("has no imageLayoutVersion".into()),
    }
}

/// The file `name` in `root` as JSON, `None` when it does not exist.
fn read_json(root: &Path, name: &str) -> Result<Option<serde_json::Value>> {
    let path = root.join(name);
    let text = match read_layout_json(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            // `root` itself, or a directory above it that is a file (`-o notes.txt/out`).
            let file = root.ancestors().find(|a| a.is_file()).unwrap_or(root);
            return Err(Error::invalid(if file == root {
                format!(
                    "{} is a file, not a directory for an OCI image layout",
                    root.display()
                )
            } else {
                format!(
                    "{} cannot be a directory for an OCI image layout: {} is a file",
                    root.display(),
                    file.display()
                )
            }));
        }
        Err(e) => {
            return Err(
                Error::new(ErrorKind::Io, format!("reading {}", path.display())).with_cause(e),
            )
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| refuse(root, name, "is not JSON").with_cause(e))
}

fn refuse(root: &Path, file: &str, why: &str) -> Error {
    Error::invalid(format!(
        "{} is not an OCI image layout: its {file} {why}; give a new or empty directory, or \
         an existing layout",
        root.display()
    ))
}

/// The layout whose blob store `root` lies in: `DIR` for `DIR/blobs`, `DIR/blobs/sha256`
/// or a directory below them, as `-o` is given them by a slip for `DIR`. A layout made
/// there went inside the other's blobs, and its objects where no reader of `DIR` looks.
fn enclosing_layout(root: &Path) -> Option<std::path::PathBuf> {
    use std::path::Component;
    root.ancestors().skip(1).find_map(|above| {
        let mut rest = root.strip_prefix(above).ok()?.components();
        let in_blobs = rest.next() == Some(Component::Normal("blobs".as_ref()))
            && !rest.any(|c| c == Component::ParentDir);
        // `Path::new("")`, above a relative `root`, is the current directory.
        let above = if above.as_os_str().is_empty() {
            Path::new(".")
        } else {
            above
        };
        (in_blobs && above.join("oci-layout").is_file()).then(|| above.to_path_buf())
    })
}

/// Whether `path` is a symbolic link to nothing.
fn leads_nowhere(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink())
        && std::fs::metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn layouts_and_empty_directories_pass() {
        assert!(check(dir_with(&[]).path()).is_ok());
        let layout = dir_with(&[
            ("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", r#"{"schemaVersion":2,"manifests":[]}"#),
        ]);
        assert!(check(layout.path()).is_ok());
        assert!(check(dir_with(&[("index.json", r#"{"schemaVersion":2}"#)]).path()).is_ok());
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let dir = dir_with(&[("blob", "x")]);
        let e = check(&dir.path().join("blob")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("is a file, not a directory"), "{e}");
        let below = dir.path().join("blob").join("out");
        let e = check(&below).unwrap_err();
        let blob = dir.path().join("blob");
        assert!(
            e.to_string()
                .ends_with(&format!("{} is a file", blob.display())),
            "{e}"
        );
    }

    /// `-o DIR` where DIR (or a directory above it) is a symbolic link to a directory not
    /// made yet, or gone: creating the layout failed with "File exists", of a path that is
    /// not there.
    #[test]
    fn a_link_to_nothing_is_named_with_where_it_leads() {
        let dir = dir_with(&[]);
        let link = dir.path().join("layout");
        std::os::unix::fs::symlink("not-made-yet", &link).unwrap();
        for root in [link.clone(), link.join("app")] {
            let e = check(&root).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(
                e.to_string().ends_with(&format!(
                    "{} is a symbolic link to not-made-yet, which does not exist",
                    link.display()
                )),
                "{e}"
            );
        }
        std::fs::create_dir(dir.path().join("not-made-yet")).unwrap();
        assert!(check(&link).is_ok());
    }

    #[test]
    fn other_files_are_refused_and_named() {
        for (name, text, why) in [
            (
                "index.json",
                r#"{"name":"my web app"}"#,
                "no \"schemaVersion\": 2",
            ),
            (
                "index.json",
                r#"{"schemaVersion":1}"#,
                "no \"schemaVersion\": 2",
            ),
            ("index.json", "{\"oops", "is not JSON"),
            (
                "index.json",
                r#"{"schemaVersion":2,"manifests":{}}"#,
                "not an array",
            ),
            (
                "oci-layout",
                r#"{"imageLayoutVersion":"2.0.0"}"#,
                "\"2.0.0\"",
            ),
            ("oci-layout", "{}", "no imageLayoutVersion"),
        ] {
            let dir = dir_with(&[(name, text)]);
            let e = check(dir.path()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("its {name}")) && msg.contains(why),
                "{msg}"
            );
        }
    }
}
