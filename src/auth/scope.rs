//! The scopes a token is asked for: dist's own, and those a challenge adds.

/// dist's own scopes, then those of the challenge's `scope` (space-separated) it lacks,
/// each once and in the order named.
pub(super) fn merged_scopes(own: &[String], asked: Option<&str>) -> Vec<String> {
    let mut scopes = own.to_vec();
    // A set, not a scan of the list for each word: the header is the server's, and one
    // naming 60,000 scopes (469 KB, which hyper takes) cost seconds of CPU.
    let mut seen: std::collections::HashSet<&str> = own.iter().map(String::as_str).collect();
    for s in asked.unwrap_or_default().split(' ') {
        if !s.is_empty() && seen.insert(s) {
            scopes.push(s.to_string());
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_s_scopes_are_added_once_after_dist_s_own() {
        let own = vec!["repository:a:pull".to_string()];
        assert_eq!(merged_scopes(&own, None), own);
        let asked = "repository:b:pull  repository:a:pull repository:b:pull repository:c:push";
        assert_eq!(
            merged_scopes(&own, Some(asked)),
            [
                "repository:a:pull",
                "repository:b:pull",
                "repository:c:push"
            ]
        );
        let many: Vec<String> = (0..20_000)
            .map(|i| format!("repository:r{i}:pull"))
            .collect();
        let merged = merged_scopes(&own, Some(&many.join(" ")));
        assert_eq!(merged.len(), 20_001);
        assert_eq!(merged[1..], many[..]);
    }
}
