//! Where a user keeps configuration, read from the environment the way the XDG base
//! directory rules and the tools dist follows (Docker, podman) read it: a variable set to
//! an empty string counts as unset, and the configuration folder is `$XDG_CONFIG_HOME`,
//! else `~/.config`.

use std::ffi::OsString;
use std::path::PathBuf;

/// The environment variable `name` as a path; unset or empty is `None`.
pub(crate) fn path_var(env: &impl Fn(&str) -> Option<OsString>, name: &str) -> Option<PathBuf> {
    env(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `$XDG_CONFIG_HOME`, else `$HOME/.config`.
pub(crate) fn config_home(env: &impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    path_var(env, "XDG_CONFIG_HOME").or_else(|| path_var(env, "HOME").map(|h| h.join(".config")))
}
