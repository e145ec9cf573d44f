//! Media types the registry API negotiates, and the Accept lists built from them.

/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Docker image manifest, schema 1, signed: what docker-registry falls back to when it has
/// none of the types asked for. Its digest covers the payload without the signatures it
/// is served with, so it cannot be verified as served.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Why a signed schema 1 manifest is refused, wherever it is met.
pub(crate) const SCHEMA1_REFUSED: &str = "dist does not fetch schema 1, deprecated since 2017, \
     whose digest leaves out the signatures it is served with";

/// What a tag is fetched with when no media type is hinted: every manifest kind `dist`
/// understands, indexes first so multi-platform images stay multi-platform.
pub const DEFAULT_MANIFEST_ACCEPT: [&str; 4] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// Docker image manifest, schema 1, unsigned.
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// The OCI artifact manifest of image-spec 1.1's release candidates, dropped from the
/// release but still pushed by ORAS and held by registries: a list of `blobs`, no image.
pub const OCI_ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// OCI image config.
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The types served from the manifests endpoint.
const MANIFEST_TYPES: [&str; 7] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_ARTIFACT_MANIFEST,
];

/// Whether content of this type is served from the manifests endpoint.
pub fn is_manifest(media_type: &str) -> bool {
    MANIFEST_TYPES.contains(&canonical(media_type))
}

/// Whether the type is an index (a list of manifests for several platforms).
pub fn is_index(media_type: &str) -> bool {
    matches!(canonical(media_type), OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// Whether the type is an image's config (OCI's or Docker's), whose `os` and
/// `architecture` say what the image runs on; an artifact's config may hold anything.
pub fn is_image_config(media_type: &str) -> bool {
    matches!(canonical(media_type), OCI_CONFIG | DOCKER_CONFIG)
}

/// Whether the type marks a non-distributable layer: OCI's `nondistributable` layer
/// types (deprecated by image-spec 1.1) and Docker's foreign layer, which a registry need
/// not hold (a Windows base layer, kept at the URLs its descriptor lists).
pub fn is_non_distributable(media_type: &str) -> bool {
    const OCI: &str = "application/vnd.oci.image.layer.nondistributable.";
    let t = essence(media_type);
    t.get(..OCI.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(OCI))
        || is(
            t,
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        )
}

/// Whether `media_type` is `known`, whatever its parameters and the case it is written in.
pub fn is(media_type: &str, known: &str) -> bool {
    essence(media_type).eq_ignore_ascii_case(known)
}

/// Whether `media_type` is in the vendor tree (`type/vnd.…`, RFC 6838 3.2), as the OCI
/// and Docker types are: a type that says what content is, where the standards tree's
/// generic ones (`application/octet-stream`, `text/plain`, `application/x-gzip`) say only
/// how it was stored.
pub fn is_vendor(media_type: &str) -> bool {
    essence(media_type)
        .split_once('/')
        .is_some_and(|(_, sub)| sub.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("vnd.")))
}

/// The type without parameters (`; charset=…`) and surrounding space.
pub fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

/// Whether `media_type` is a type or a range as `Accept` carries them (RFC 6838 4.2
/// names, RFC 9110 12.5.1 ranges: `type/subtype`, `type/*` or `*/*`, then parameters in
/// visible ASCII). A hint such as `/` or `application/` would otherwise go out as
/// the request's `Accept`, and the registry's answer to it would be the first sign of the
/// typo.
pub fn well_formed(media_type: &str) -> bool {
    let name = |part: &str| {
        let mut bytes = part.bytes();
        part.len() <= 127
            && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
            && bytes.all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let (essence, params) = media_type.split_once(';').unwrap_or((media_type, ""));
    let Some((kind, sub)) = essence.trim().split_once('/') else {
        return false;
    };
    let type_ok = match (kind, sub) {
        ("*", "*") => true,
        (_, "*") => name(kind),
        _ => name(kind) && name(sub),
    };
    type_ok && params.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

/// A server's `media_type` (a manifest's, an index entry's, a layer's) as a report shows
/// it: `None` when it is empty or no media type. It is a JSON string, which may hold
/// anything (a terminal's escape, a right-to-left override), and JSON lines, which a
/// terminal shows, escape only the C0 controls.
pub(crate) fn reported(media_type: &str) -> Option<&str> {
    Some(media_type).filter(|t| !t.is_empty() && well_formed(t))
}

/// The type without parameters, in its registered spelling when it is one dist knows
/// (`Application/Vnd.Oci.Image.Manifest.V1+JSON` is the OCI manifest type: type and
/// subtype are case-insensitive, RFC 9110 8.3.1), else as written. Every comparison with a
/// known type goes through here; and what dist reports and records in a layout is this
/// spelling, the one the tools that read them compare with byte for byte.
pub fn canonical(media_type: &str) -> &str {
    let t = essence(media_type);
    known(t).unwrap_or(t)
}

/// The registered spelling of `essence` when it is a type dist knows.
fn known(essence: &str) -> Option<&'static str> {
    MANIFEST_TYPES
        .into_iter()
        .chain([OCI_CONFIG, DOCKER_CONFIG])
        .find(|known| known.eq_ignore_ascii_case(essence))
}

/// `media_type` as dist sends and remembers it: a type it knows in its registered
/// spelling, its parameters (`;q=0.5`) kept as written; any other type as written. A
/// registry may match `Accept` byte for byte, and a tag named with the same type in two
/// spellings is one object to fetch once.
pub fn registered(media_type: &str) -> String {
    let Some(known) = known(essence(media_type)) else {
        return media_type.to_string();
    };
    let params = media_type.find(';').map_or("", |at| &media_type[at..]);
    format!("{known}{params}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_distributable_types() {
        for t in [
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            "Application/Vnd.Docker.Image.Rootfs.Foreign.Diff.Tar.Gzip; x=y",
        ] {
            assert!(is_non_distributable(t), "{t}");
        }
        for t in [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.oci.image.layer.nondistributable",
            "",
        ] {
            assert!(!is_non_distributable(t), "{t}");
        }
    }

    #[test]
    fn vendor_types_are_told_from_generic_ones() {
        for vendor in [
            OCI_MANIFEST,
            "application/vnd.oci.image.layer.v1.tar+gzip; charset=x",
            "Application/VND.Cncf.Helm.Chart.Content.V1.Tar+Gzip",
        ] {
            assert!(is_vendor(vendor), "{vendor}");
        }
        for generic in [
            "application/octet-stream",
            "binary/octet-stream",
            "text/plain; charset=utf-8",
            "application/x-gzip",
            "application/vnd",
            "vnd.x/y",
            "",
        ] {
            assert!(!is_vendor(generic), "{generic}");
        }
    }

    #[test]
    fn well_formed_types_and_ranges() {
        for ok in [
            OCI_MANIFEST,
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/json;charset=utf-8",
            "application/json; q=0.5",
            "image/*",
            "*/*",
        ] {
            assert!(well_formed(ok), "{ok}");
        }
        for bad in [
            "/",
            "application/",
            "/json",
            "application",
            "a/b/c",
            "*/json",
            ".x/y",
            "application/json;\u{1}",
            "application/j son",
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn classification() {
        assert!(is_manifest(OCI_MANIFEST));
        assert!(is_manifest(
            "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"
        ));
        assert!(!is_manifest("application/vnd.oci.image.layer.v1.tar+gzip"));
        assert!(is_index(DOCKER_MANIFEST_LIST));
        assert!(!is_index(OCI_MANIFEST));
        assert!(is_image_config("application/vnd.oci.image.config.v1+json"));
        assert!(!is_image_config("application/vnd.example+json"));
    }

    #[test]
    fn case_and_parameters_do_not_count() {
        let odd = " Application/Vnd.Oci.Image.Index.V1+JSON ; Charset=UTF-8";
        assert_eq!(canonical(odd), OCI_INDEX);
        assert!(is_manifest(odd) && is_index(odd));
        assert!(is(odd, OCI_INDEX) && !is(odd, OCI_MANIFEST));
        assert!(is_image_config(
            "Application/Vnd.Docker.Container.Image.V1+json"
        ));
        assert!(is_manifest(&DOCKER_SCHEMA1_SIGNED.to_uppercase()));
        assert_eq!(
            registered("application/VND.oci.image.manifest.v1+json; q=0.5"),
            "application/vnd.oci.image.manifest.v1+json; q=0.5"
        );
        assert_eq!(registered(OCI_INDEX), OCI_INDEX);
        // Space around a known type is no part of its spelling, in either case: a type
        // written two ways is one object to fetch once.
        for spaced in [
            " application/vnd.oci.image.index.v1+json ",
            " Application/Vnd.Oci.Image.Index.V1+JSON",
        ] {
            assert_eq!(registered(spaced), OCI_INDEX, "{spaced:?}");
        }
        assert_eq!(
            registered(" application/vnd.oci.image.index.v1+json ;q=1"),
            format!("{OCI_INDEX};q=1")
        );
        assert_eq!(registered("Text/Plain; a=B"), "Text/Plain; a=B");
        // Unknown types keep their spelling, without parameters.
        assert_eq!(canonical("Text/Plain; charset=utf-8"), "Text/Plain");
        assert_eq!(canonical(""), "");
    }
}
