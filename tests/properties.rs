//! Property tests for the parsers that read untrusted text: input lines, references and
//! locators, digests, `WWW-Authenticate`, `Retry-After` and `Location` headers, media
//! types, platforms, hints, mirror flags, `hosts.toml` and manifests. They must never
//! panic, and what they accept must round-trip. Parsers private to the library have their
//! properties beside them (`Content-Range`, `NO_PROXY`, credential files, a layout's
//! `index.json`, error bodies). `PROPTEST_CASES=5000` runs a longer hunt than the
//! defaults, which keep CI quick.

use dist::auth::challenge;
use dist::duration::{self, Written};
use dist::image::Platform;
use dist::worker::line::parse_line;
use dist::{Digest, Object, Reference, Repository};
use proptest::prelude::*;
use std::time::Duration;

/// `default` cases, or `PROPTEST_CASES` when set (a longer hunt locally):
/// `ProptestConfig::with_cases` alone ignores the variable.
fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    ProptestConfig::with_cases(n.unwrap_or(default))
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn line_parser_never_panics(line in any::<String>()) {
        let _ = parse_line(&line);
    }

    #[test]
    fn descriptor_like_lines_never_panic(body in "\\{[ -~]{0,200}") {
        let _ = parse_line(&body);
    }

    #[test]
    fn reference_parsers_never_panic(s in any::<String>()) {
        let _ = s.parse::<Repository>();
        let _ = s.parse::<Reference>();
        let _ = s.parse::<Object>();
        let _ = s.parse::<Digest>();
    }

    #[test]
    fn valid_digests_round_trip(hex in "[0-9a-f]{64}") {
        let s = format!("sha256:{hex}");
        let d: Digest = s.parse().unwrap();
        prop_assert_eq!(d.to_string(), s.clone());
        let line = format!("{s} mediatype:a/b size:1");
        let job = parse_line(&line).unwrap().unwrap();
        prop_assert_eq!(job.object.to_string(), s);
    }

    #[test]
    fn accepted_repositories_round_trip(
        host in prop_oneof![Just(String::new()), "[a-z]{1,8}\\.[a-z]{2,4}(:[1-9][0-9]{0,3})?/", Just("localhost:5000/".to_string())],
        path in "[a-z0-9]{1,6}(/[a-z0-9]{1,6}){0,3}",
    ) {
        let s = format!("{host}{path}");
        let r: Repository = s.parse().unwrap();
        let again: Repository = r.to_string().parse().unwrap();
        prop_assert_eq!(r, again);
    }

    #[test]
    fn challenge_parser_never_panics(s in any::<String>()) {
        let _ = challenge::parse(&s);
    }

    /// Random text seldom holds `=`, a quote and a backslash where the parser reads a
    /// quoted value: a header cut after its escape went untried (an `unwrap` of the escaped
    /// byte passed 2000 cases). These are made of little but what challenges are made of.
    #[test]
    fn challenge_like_headers_never_panic(s in "(Bearer |Basic )?[ab =,\"\\\\]{0,30}") {
        let _ = challenge::parse(&s);
    }

    #[test]
    fn challenge_params_survive_quoting(
        realm in "[ -~]{0,40}",
        service in "[a-zA-Z0-9._-]{1,20}",
    ) {
        let quoted = realm.replace('\\', "\\\\").replace('"', "\\\"");
        let header = format!("Bearer realm=\"{quoted}\",service={service}, Basic realm=\"x\"");
        let parsed = challenge::parse(&header);
        prop_assert_eq!(parsed.len(), 2);
        prop_assert_eq!(parsed[0].param("realm"), Some(realm.as_str()));
        prop_assert_eq!(parsed[0].param("service"), Some(service.as_str()));
        prop_assert_eq!(parsed[1].scheme.as_str(), "basic");
    }

    /// A duration a message writes reads back as itself, for any the parser holds (up to
    /// 2^64 ns, some 584 years): sub-millisecond ones, ones past a day, and ones with
    /// nanoseconds after hours and minutes alike.
    #[test]
    fn written_durations_read_back(
        d in prop_oneof![
            (0u64..1_000_000).prop_map(Duration::from_nanos),
            (0u64..120, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            (0u64..86_400 * 400, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            any::<u64>().prop_map(Duration::from_nanos),
        ],
    ) {
        let written = Written(d).to_string();
        prop_assert_eq!(duration::parse(&written), Ok(d), "{}", written);
    }
}

/// Headers holding `name: value`, or none when `value` is no header value at all.
fn headers(pairs: &[(http::header::HeaderName, &str)]) -> Option<http::HeaderMap> {
    let mut h = http::HeaderMap::new();
    for (name, value) in pairs {
        h.insert(name.clone(), http::HeaderValue::from_str(value).ok()?);
    }
    Some(h)
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn retry_after_never_panics(v in any::<String>(), date in "[ -~]{0,40}") {
        if let Some(h) = headers(&[
            (http::header::RETRY_AFTER, &v),
            (http::header::DATE, &date),
        ]) {
            let _ = dist::retry::retry_after(&h);
        }
    }

    /// Seconds read as themselves, padded or not; a sign or a fraction is no number.
    #[test]
    fn retry_after_seconds_read_as_written(
        n in any::<u64>(),
        pad in "[ \t]{0,2}",
        bad in prop_oneof![Just("+"), Just("-"), Just(".5"), Just("s"), Just("e3")],
    ) {
        let h = headers(&[(http::header::RETRY_AFTER, &format!("{pad}{n}{pad}"))]).unwrap();
        prop_assert_eq!(dist::retry::retry_after(&h), Some(Duration::from_secs(n)));
        let odd = if bad == "+" || bad == "-" { format!("{bad}{n}") } else { format!("{n}{bad}") };
        let h = headers(&[(http::header::RETRY_AFTER, &odd)]).unwrap();
        prop_assert_eq!(dist::retry::retry_after(&h), None, "{}", odd);
    }

    /// An HTTP-date is read against the answer's own `Date`: the wait is their difference
    /// (none for a date already past), whatever the local clock says.
    #[test]
    fn retry_after_date_is_counted_from_the_answer_s_date(
        now in 0u64..4_000_000_000,
        ahead in -100_000i64..100_000,
    ) {
        let at = |s: u64| httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(s));
        let when = now.saturating_add_signed(ahead);
        let h = headers(&[
            (http::header::RETRY_AFTER, &at(when)),
            (http::header::DATE, &at(now)),
        ]).unwrap();
        prop_assert_eq!(
            dist::retry::retry_after(&h),
            Some(Duration::from_secs(when.saturating_sub(now)))
        );
    }

    #[test]
    fn platform_never_panics(s in any::<String>(), near in "[a-zA-Z0-9()._/-]{0,30}") {
        let _ = s.parse::<Platform>();
        let _ = near.parse::<Platform>();
    }

    /// A platform `--platform` accepts, shown, reads back as itself.
    #[test]
    fn accepted_platforms_read_back(
        s in "(linux|windows|darwin|macos|Linux|freebsd|[a-z]{1,6})(/(amd64|arm64|arm|ARM64|aarch64|x86_64|386|[a-z0-9]{1,5})(/(v[0-9]|[a-z0-9]{1,4}))?)?",
    ) {
        if let Ok(p) = s.parse::<Platform>() {
            let again: Platform = p.to_string().parse().unwrap();
            prop_assert_eq!(&again, &p, "{} -> {}", s, p);
        }
    }

    /// A `size:` hint is read as the number written, up to the OCI descriptor's `int64`.
    #[test]
    fn size_hints_read_as_written(n in any::<u64>(), lead in "0{0,3}") {
        let word = format!("size:{lead}{n}");
        let read = dist::Hints::parse([word.as_str()]);
        if n <= i64::MAX as u64 {
            prop_assert_eq!(read.unwrap().size, Some(n));
        } else {
            prop_assert!(read.is_err());
        }
    }

    #[test]
    fn hints_never_panic(words in proptest::collection::vec("[a-zA-Z:_./+-]{0,6}[0-9a-z:]{0,25}", 0..5)) {
        let _ = dist::Hints::parse(words.iter().map(String::as_str));
    }

    /// A `Location` resolves to an http(s) URL or is refused; never a panic.
    #[test]
    fn redirect_locations_never_panic(
        loc in prop_oneof![
            any::<String>(),
            "(https?:|ftp:|file:|HTTP:|//|/|\\.\\./|\\?|#)?[a-z0-9@:./?#%\\[\\]-]{0,30}",
        ],
    ) {
        let base: http::Uri = "https://reg.example:5000/v2/a/b/blobs/sha256:ab?x=1".parse().unwrap();
        if let Ok(u) = dist::transport::resolve(&base, &loc) {
            prop_assert!(matches!(u.scheme_str(), Some("http" | "https")), "{}", u);
            prop_assert!(u.host().is_some_and(|h| !h.is_empty()), "{}", u);
        }
    }

    /// A path-absolute or relative location keeps the base's scheme and authority, and
    /// its own path without dot segments, a fragment after it or not; a fragment alone
    /// is the base itself.
    #[test]
    fn locations_on_the_base_host_lose_their_dot_segments(
        segs in proptest::collection::vec("[a-z0-9]{1,5}|\\.|\\.\\.", 0..6),
        rooted in any::<bool>(),
        fragment in proptest::option::of("[a-z]{0,3}"),
    ) {
        let base: http::Uri = "https://reg.example:5000/v2/x/blobs/b?q=1".parse().unwrap();
        let frag = fragment.map(|f| format!("#{f}")).unwrap_or_default();
        let loc = format!("{}{}{frag}", if rooted { "/" } else { "" }, segs.join("/"));
        let u = dist::transport::resolve(&base, &loc).unwrap();
        prop_assert_eq!(u.authority().unwrap().as_str(), "reg.example:5000");
        prop_assert!(!u.path().split('/').any(|s| s == "." || s == ".."), "{} -> {}", loc, u);
        if segs.is_empty() && !rooted {
            prop_assert_eq!(u, base, "{}", loc);
        }
    }

    #[test]
    fn locators_never_panic(
        s in "(oci:|https?://|//)?([a-z]{1,3}(:[a-z]{0,3})?@)?(\\[[0-9a-f:]{0,12}\\]|[a-z0-9.]{1,8})(:[0-9]{0,6})?(/[a-z0-9._-]{0,5}){0,3}(:[a-z0-9]{0,4})?(@sha256:[0-9a-f]{0,64})?",
    ) {
        let _ = s.parse::<dist::Locator>();
        if let Ok(r) = s.parse::<dist::image::ImageRef>() {
            let again: dist::image::ImageRef = r.to_string().parse().unwrap();
            prop_assert_eq!(again.to_string(), r.to_string());
        }
    }

    #[test]
    fn hosts_toml_never_panics(
        s in "(server = \"[a-z:/.]{0,12}\"\n)?(\\[host\\.\"[a-z:/.\\[\\]0-9]{0,16}\"\\]\n( {0,2}[a-z_]{1,12} = (\"[a-z0-9./:-]{0,10}\"|\\[\"[a-z]{0,5}\"\\]|true|[0-9]{1,3}|\\[\\[\"a\",\"b\"\\]\\])\n){0,3}){0,2}",
    ) {
        let _ = dist::hosts::HostsFile::parse(&s, std::path::Path::new("/nonexistent"));
    }

    #[test]
    fn manifests_never_panic(
        s in "\\{(\"(schemaVersion|mediaType|manifests|layers|config|digest|size|platform|urls|annotations|subject)\":(1|2|-1|1e3|18446744073709551616|null|\"[a-z./+]{0,10}\"|\\[\\]|\\{\\}|\\[\\{\"digest\":\"sha256:\",\"size\":1\\}\\]),?){0,5}\\}?",
    ) {
        let _ = dist::image::sniff_media_type(s.as_bytes());
        let _ = dist::image::Manifest::parse(None, s.as_bytes());
        let _ = dist::image::Manifest::parse(Some(dist::media::OCI_INDEX), s.as_bytes());
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// A media type reads as its essence, whatever its parameters and case; the spelling
    /// dist records is a known type's registered one and keeps the parameters.
    #[test]
    fn media_types_keep_their_essence(
        essence in prop_oneof![
            Just(dist::media::OCI_MANIFEST.to_string()),
            Just(dist::media::OCI_INDEX.to_string()),
            Just(dist::media::DOCKER_MANIFEST.to_string()),
            "[a-z]{1,8}/[a-z0-9][a-z0-9.+-]{0,11}",
        ],
        upper in proptest::collection::vec(any::<bool>(), 64),
        params in "(;[ ]?[a-z]{1,5}=[a-z0-9\"]{0,5}){0,2}",
        pad in "[ ]{0,2}",
    ) {
        let spelt: String = essence
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
            .collect();
        let written = format!("{pad}{spelt}{pad}{params}");
        prop_assert!(dist::media::is(&written, &essence));
        prop_assert!(dist::media::well_formed(&written), "{}", written);
        let registered = dist::media::registered(&written);
        prop_assert_eq!(dist::media::canonical(&registered), dist::media::canonical(&written));
        prop_assert!(registered.ends_with(&params));
        let known = [dist::media::OCI_MANIFEST, dist::media::OCI_INDEX, dist::media::DOCKER_MANIFEST];
        if known.contains(&essence.as_str()) {
            prop_assert_eq!(dist::media::canonical(&written), essence.as_str());
        }
    }

    #[test]
    fn media_type_readers_never_panic(s in any::<String>()) {
        let _ = dist::media::well_formed(&s);
        let _ = dist::media::registered(&s);
        let _ = dist::media::is_vendor(&s);
        let _ = dist::media::is_manifest(&s);
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// A reference written `host[:port]/path[:tag][@digest]` reads as those parts, an
    /// IPv6 host in brackets included, and as itself when written again.
    #[test]
    fn references_read_as_their_parts(
        host in prop_oneof![
            "[a-z]([a-z0-9-]{0,4}[a-z0-9])?\\.[a-z]{2,3}",
            Just("localhost".to_string()),
            "\\[(fd00|2001:db8)::[0-9a-f]{1,4}\\]",
            "10\\.[0-9]{1,3}\\.0\\.1",
        ],
        port in proptest::option::of(1u16..),
        path in "[a-z0-9]{1,5}([._-][a-z0-9]{1,3})?(/[a-z0-9]{1,5}){0,2}",
        tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}"),
        hex in proptest::option::of("[0-9a-f]{64}"),
    ) {
        let authority = match port {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let mut s = format!("{authority}/{path}");
        if let Some(t) = &tag {
            s.push_str(&format!(":{t}"));
        }
        if let Some(h) = &hex {
            s.push_str(&format!("@sha256:{h}"));
        }
        let r: Reference = s.parse().map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        prop_assert_eq!(r.repository.host(), authority.as_str(), "{}", s);
        prop_assert_eq!(r.repository.name(), path.as_str());
        prop_assert_eq!(&r.tag, &tag);
        prop_assert_eq!(r.digest.as_ref().map(|d| d.encoded().to_string()), hex);
        let again: Reference = r.to_string().parse().unwrap();
        prop_assert_eq!(again, r);
        let image: dist::image::ImageRef = s.parse().unwrap();
        prop_assert_eq!(image.locator.to_string(), format!("{authority}/{path}"));
    }

    /// `oci:<dir>[:tag][@digest]` names the directory as written, colons and all.
    #[test]
    fn layout_references_keep_their_directory(
        dir in "(\\./|/|\\.\\./)?[a-z0-9_.-]{1,6}(/[a-z0-9_.-]{1,6}){0,2}",
        tag in proptest::option::of("[a-z0-9_][a-z0-9_.-]{0,6}"),
    ) {
        let s = match &tag {
            Some(t) => format!("oci:{dir}:{t}"),
            None => format!("oci:{dir}"),
        };
        let r: dist::image::ImageRef = s.parse().map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        prop_assert_eq!(&r.locator, &dist::Locator::Layout(dir.clone().into()), "{}", s);
        if tag.is_some() {
            prop_assert_eq!(&r.tag, &tag);
        }
        let again: dist::image::ImageRef = r.to_string().parse().unwrap();
        prop_assert_eq!(again.to_string(), r.to_string());
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// A `--mirror` written without a scheme is https, or http on this machine's own
    /// addresses; one with a scheme keeps it, in lower case; the address stays as written.
    #[test]
    fn mirror_flags_take_their_scheme(
        (host, local) in prop_oneof![
            "[a-z][a-z0-9]{0,5}\\.[a-z]{2,3}".prop_map(|h| (h, false)),
            Just(("localhost".to_string(), true)),
            "127\\.[1-9]?[0-9]\\.0\\.1".prop_map(|h| (h, true)),
            Just(("[::1]".to_string(), true)),
            "\\[fd00::[1-9a-f]{1,3}\\]".prop_map(|h| (h, false)),
            "10\\.[1-9]?[0-9]\\.0\\.1".prop_map(|h| (h, false)),
        ],
        port in proptest::option::of(1u16..),
        path in "(/[a-z0-9]{1,4}){0,2}/?",
        scheme in proptest::option::of("[hH][tT][tT][pP][sS]?://"),
    ) {
        let authority = match port {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let flag = format!("{}{authority}{path}", scheme.clone().unwrap_or_default());
        let spec = dist::hosts::HostSpec::from_flag(&flag)
            .map_err(|e| TestCaseError::fail(format!("{flag}: {e}")))?;
        let want_scheme = match &scheme {
            Some(s) => s.trim_end_matches("://").to_ascii_lowercase(),
            None if local => "http".to_string(),
            None => "https".to_string(),
        };
        let want = format!("{want_scheme}://{authority}{}", path.trim_end_matches('/'));
        prop_assert_eq!(spec.url, want, "{}", flag);
        // The same without its host names none.
        let hostless = flag.replacen(&host, "", 1);
        prop_assert!(dist::hosts::HostSpec::from_flag(&hostless).is_err(), "{}", hostless);
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// `--shard K/N` reads as written, with white space around its numbers, and N shards
    /// take each object exactly once; a K of N or more, or an N of 0, is refused.
    #[test]
    fn shards_read_as_written_and_split_every_object_once(
        count in 1u64..64,
        k in any::<u64>(),
        pad in "[ ]{0,1}",
        object in prop_oneof![
            "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
            "[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,20}",
        ],
    ) {
        use dist::worker::shard::Shard;
        let written = format!("{}{pad}/{pad}{count}", k % count);
        let shard: Shard = written.parse().unwrap();
        prop_assert_eq!(shard.to_string(), format!("{}/{count}", k % count));
        let (past, none) = (format!("{}/{count}", count + k % 3), format!("{k}/0"));
        prop_assert!(past.parse::<Shard>().is_err(), "{}", past);
        prop_assert!(none.parse::<Shard>().is_err(), "{}", none);
        let object: Object = object.parse().unwrap();
        let taken = (0..count)
            .filter(|i| Shard::new(*i, count).unwrap().contains(&object))
            .count();
        prop_assert_eq!(taken, 1);
    }
}

proptest! {
    #![proptest_config(cases(500))]

    /// A `hosts.toml`'s mirrors are tried in the file's order, each at its URL (https
    /// unless `plain-http`, or its own scheme), with the capabilities it lists.
    #[test]
    fn hosts_toml_mirrors_read_in_order(
        mirrors in proptest::collection::vec(
            (
                prop_oneof![
                    "[a-z][a-z0-9]{0,5}\\.[a-z]{2,3}",
                    "\\[fd00::[1-9a-f]{1,3}\\]",
                    "10\\.[1-9]?[0-9]\\.0\\.1",
                ],
                proptest::option::of(1u16..),
                proptest::option::of(prop_oneof![Just("http://"), Just("https://")]),
                any::<bool>(),
                prop_oneof![Just("[\"pull\"]"), Just("[\"pull\", \"resolve\"]"), Just("[]")],
            ),
            1..5,
        ),
    ) {
        let mut text = String::from("server = \"https://registry.example\"\n");
        let mut want = Vec::new();
        for (i, (host, port, scheme, plain, caps)) in mirrors.iter().enumerate() {
            // Each its own, as a table named twice is no TOML.
            let path = format!("/m{i}");
            let authority = match port {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            };
            let name = format!("{}{authority}{path}", scheme.unwrap_or(""));
            text.push_str(&format!(
                "\n[host.\"{name}\"]\n  capabilities = {caps}\n  plain-http = {plain}\n"
            ));
            let scheme = match scheme {
                Some(s) => s.trim_end_matches("://"),
                None if *plain => "http",
                None => "https",
            };
            want.push((format!("{scheme}://{authority}{path}"), *caps == "[\"pull\"]"));
        }
        let file = dist::hosts::HostsFile::parse(&text, std::path::Path::new("/nonexistent"))
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let got: Vec<(String, bool)> = file
            .hosts
            .iter()
            .map(|h| (h.url.clone(), !h.capabilities.resolve))
            .collect();
        prop_assert_eq!(got, want, "{}", text);
    }
}
