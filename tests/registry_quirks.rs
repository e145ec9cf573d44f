//! What real registries and the servers in front of them send, as a client pulling from
//! them meets it: challenges in their own spellings, token replies, blob stores.

mod support;

use support::cli::{bytes, Dist};
use support::fake::{Auth, FakeRegistry};

fn repo(reg: &FakeRegistry) -> String {
    format!("{}/team/app", reg.host())
}

/// nginx's `auth_basic "Zugang geschützt";` in front of a registry sends its realm's bytes
/// as written: UTF-8, which a header may carry (obs-text) and Go's clients read. dist read
/// only ASCII headers, passed over the challenge, and failed with the 401 without ever
/// sending the credentials it had.
#[test]
fn a_challenge_whose_realm_is_not_ascii_is_answered() {
    let reg = FakeRegistry::builder()
        .auth(Auth::basic("user", "pw"))
        .start();
    let data = bytes(3, 5000);
    let digest = reg.blob("team/app", &data);
    reg.set_challenges(&["Basic realm=\"Zugang geschützt\""]);
    let dist = Dist::new();
    dist.login(&reg.host(), "user", "pw");
    let out = dist.run(&["fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, data);
    let sent: Vec<_> = reg
        .requests()
        .iter()
        .map(|r| r.auth_scheme().map(str::to_string))
        .collect();
    assert_eq!(sent, [None, Some("Basic".to_string())]);
}
