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

/// Whether content of this type is served from the manifests endpoint.
pub fn is_manifest(media_type: &str) -> bool {
    let t = essence(media_type);
    DEFAULT_MANIFEST_ACCEPT.contains(&t)
        || t == "application/vnd.docker.distribution.manifest.v1+json"
        || t == DOCKER_SCHEMA1_SIGNED
        || t == "application/vnd.oci.artifact.manifest.v1+json"
}

/// Whether the type is an index (a list of manifests for several platforms).
pub fn is_index(media_type: &str) -> bool {
    matches!(essence(media_type), OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// Whether the type is an image's config (OCI's or Docker's), whose `os` and
/// `architecture` say what the image runs on; an artifact's config may hold anything.
pub fn is_image_config(media_type: &str) -> bool {
    matches!(
        essence(media_type),
        "application/vnd.oci.image.config.v1+json"
            | "application/vnd.docker.container.image.v1+json"
    )
}

/// The type without parameters (`; charset=…`) and surrounding space.
pub fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
