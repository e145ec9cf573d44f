//! Opening the layout `-o DIR` names, for the worker and `dist pull`, and refusing a `DIR`
//! that was meant as something else.

use std::path::Path;

use dist::sink::layout::LayoutStore;
use dist::Error;

/// Opens (creating if needed) the layout `-o DIR` names. A `DIR` written as a layout
/// reference (`oci:./out`, as skopeo names the layout it writes and dist the one it
/// reads) is refused with the spelling that works: taken as a path, it made a directory
/// named `oci:.` with the layout inside it, and succeeded.
///
/// So is `-o -`, stdout to curl and tar, as `--report -` is: it made a directory named
/// `-`. `pull` says so in its own words, having no output to stdout in place of a layout.
pub fn open(dir: &Path, pull: bool) -> Result<LayoutStore, Error> {
    if dir == Path::new("-") {
        let instead = if pull {
            "a pull writes an OCI image layout, and its JSON lines go to stdout already"
        } else {
            "leave -o out to write to stdout (the object, or frames from `dist fetch LOC -`)"
        };
        return Err(Error::invalid(format!(
            "-o -: -o takes the layout's directory, and stdout is none: {instead}; a \
             directory named - is ./-"
        )));
    }
    if let Some(path) = dir.to_str().and_then(|d| d.strip_prefix("oci:")) {
        return Err(Error::invalid(format!(
            "-o {}: -o takes the layout's directory, not an oci: reference: give -o {} (for a \
             directory of that name, ./{})",
            dir.display(),
            without_tag(path),
            dir.display()
        )));
    }
    LayoutStore::open(dir)
}

/// The directory of an `oci:` reference's path: without the `@digest` or `:tag` after its
/// last `/`, as `dist pull` reads an `oci:` reference.
fn without_tag(path: &str) -> &str {
    let name_at = path.rfind('/').map_or(0, |i| i + 1);
    let name = &path[name_at..];
    let end = name.find(['@', ':']);
    match end {
        Some(i) if name_at + i > 0 => &path[..name_at + i],
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_of_a_reference() {
        assert_eq!(without_tag("./out"), "./out");
        assert_eq!(without_tag("./out:v1"), "./out");
        assert_eq!(without_tag("/a:b/out@sha256:ab"), "/a:b/out");
        assert_eq!(without_tag("out:v1@sha256:ab"), "out");
        assert_eq!(without_tag(":v1"), ":v1");
    }
}
