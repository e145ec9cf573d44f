//! A registry API URL pasted where a locator or a reference goes
//! (`http://host/v2/team/app/manifests/v1`, as curl is given it), told the spelling meant.

/// The host and the API path of `pasted` (scheme, if any, left out), or `None` when it
/// holds a login (refused as in any locator, never shown), names a layout (`oci:…`,
/// whose path may hold any directory names), or, without a scheme (`http://`,
/// `https://`; skopeo's `docker://` is none), starts with no host:
/// `myorg/v2/app/manifests/prod` is a Docker Hub repository, as any reference reads it.
fn host_and_path(pasted: &str) -> Option<(&str, &str)> {
    if pasted.starts_with("oci:") {
        return None;
    }
    let bare = ["http://", "https://"]
        .iter()
        .find_map(|scheme| dist::reference::strip_scheme(pasted, scheme));
    // skopeo's `docker://` changes nothing, as in any reference: `docker://myorg/…` is
    // Docker Hub's, curl never given it.
    let unprefixed = dist::reference::strip_scheme(pasted, "docker://").unwrap_or(pasted);
    let (host, path) = bare.unwrap_or(unprefixed).split_once('/')?;
    let named = bare.is_some() || dist::reference::is_host(host);
    // The query (a pre-signed link's signature, a `?token=…`) is no part of the
    // object meant, and is never shown.
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    (named && !host.contains('@')).then_some((host, path))
}

/// The message refusing `locator`, a registry API URL that names an object
/// (`host/v2/team/app/…/v1`), with the locator and object meant: the worker's `-` when
/// `given` is, else the object at the URL's end. `None` for a URL that names no object, or
/// that is no such URL.
pub(crate) fn as_locator(locator: &str, given: Option<&str>) -> Option<String> {
    let (host, path) = host_and_path(locator)?;
    let (name, Some(object)) = dist::reference::api_url_path(path)? else {
        return None;
    };
    let object = if given == Some("-") { "-" } else { object };
    let locator = dist::error::redact_url(locator);
    Some(format!(
        "invalid locator {locator:?}: a registry API URL, not a locator: write {host}/{name} \
         {object}"
    ))
}

/// The message refusing `reference` (of `dist pull` or `dist resolve`), a registry API URL
/// that names an object: with the reference meant (`host/team/app:v1`), or for a blob's
/// URL, which names no image, the fetch that gets the blob. As a reference it read as a
/// repository `v2/team/app/manifests/v1` (tag `latest`), or the tag `<hex>` of one
/// `…/blobs/sha256`, neither of which anyone means.
pub(crate) fn as_reference(reference: &str) -> Option<String> {
    let (host, path) = host_and_path(reference)?;
    let (name, Some(object)) = dist::reference::api_url_path(path)? else {
        return None;
    };
    // What the URL ends in, read as an object is: anything else (`v1:latest`) is no
    // URL's, and is left to the reference's own refusal.
    let blob = path
        .trim_end_matches('/')
        .ends_with(&format!("/blobs/{object}"));
    let object = object.parse::<dist::Object>().ok()?;
    let meant = if blob {
        format!(
            "a blob's registry API URL, which names no image: dist fetch {host}/{name} \
             {object} fetches the blob"
        )
    } else {
        let separator = match object {
            dist::Object::Digest(_) => '@',
            dist::Object::Tag(_) => ':',
        };
        format!("a registry API URL, not a reference: write {host}/{name}{separator}{object}")
    };
    let reference = dist::error::redact_url(reference);
    Some(format!("invalid reference {reference:?}: {meant}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API URL starts with its host. Without a scheme, a first component that names no
    /// host (`myorg/v2/app/manifests/prod`) is Docker Hub's namespace, as in any reference:
    /// a valid reference (the repository `myorg/v2/app/manifests/prod`, tag `latest`) was
    /// refused as an API URL and told `write myorg/app:prod`, another image.
    #[test]
    fn a_first_component_naming_no_host_is_no_api_url() {
        assert_eq!(as_reference("myorg/v2/app/manifests/prod"), None);
        assert_eq!(as_locator("myorg/v2/app/manifests/prod", None), None);
        let told = as_reference("localhost/v2/app/manifests/prod").unwrap();
        assert!(told.contains("write localhost/app:prod"), "{told}");
        let told = as_reference("http://myhost/v2/app/manifests/prod").unwrap();
        assert!(told.contains("write myhost/app:prod"), "{told}");
        let told = as_locator("[::1]:5000/v2/app/manifests/prod", None).unwrap();
        assert!(told.contains("write [::1]:5000/app prod"), "{told}");
    }

    /// A scheme in capitals is a scheme: `HTTP://host/v2/…` was read as the host `HTTP:`.
    #[test]
    fn a_scheme_in_capitals_is_read_as_one() {
        let told = as_locator("HTTP://localhost:5000/v2/app/manifests/prod", None).unwrap();
        assert!(told.ends_with("write localhost:5000/app prod"), "{told}");
    }

    /// skopeo's `docker://` changes nothing in a reference: `docker://myorg/v2/app/manifests/
    /// prod` is Docker Hub's repository `myorg/v2/app/manifests/prod` (tag `latest`), as the
    /// same without the prefix is. Read as naming its host, as curl's `http://` does, it was
    /// refused and told `write myorg/app:prod`, another image.
    #[test]
    fn skopeo_s_prefix_names_no_host_of_its_own() {
        assert_eq!(as_reference("docker://myorg/v2/app/manifests/prod"), None);
        assert_eq!(
            as_locator("docker://myorg/v2/app/manifests/prod", None),
            None
        );
        let told = as_reference("docker://localhost:5000/v2/app/manifests/prod").unwrap();
        assert!(told.contains("write localhost:5000/app:prod"), "{told}");
    }

    /// A blob's API URL ends in its digest: `host/v2/team/blobs/v1` is the repository
    /// `v2/team/blobs/v1`, a valid reference, which was refused and told `dist fetch
    /// host/team v1 fetches the blob`, by a tag no blob has.
    #[test]
    fn blobs_followed_by_no_digest_is_no_api_url() {
        assert_eq!(as_reference("localhost:5000/v2/team/blobs/v1"), None);
        assert_eq!(as_locator("localhost:5000/v2/team/blobs/v1", None), None);
        let digest = format!("sha256:{}", "a".repeat(64));
        let told = as_reference(&format!("localhost:5000/v2/team/blobs/{digest}")).unwrap();
        let meant = format!("dist fetch localhost:5000/team {digest}");
        assert!(told.contains(&meant), "{told}");
    }
}
