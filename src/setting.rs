//! The settings an error message tells a user to change, and the names it gives them.
//!
//! A message that a setting may cure names it as the library has it: "no address for
//! registry.example within 30s (`TransportOptions::connect_timeout`)", "use
//! `Repository::force_plain_http`, an http:// locator or `plain-http` in hosts.toml". A
//! program whose users know the settings by other names (a CLI's flags, a configuration
//! file's keys) says so once, with [`name_settings`]: from then on the text of every
//! [`Error`](crate::Error) (its `Display`, [`reason`](crate::Error::reason) and
//! [`detail`](crate::Error::detail)) names each setting its way. `dist`'s own CLI names
//! them by its flags (`--connect-timeout`).
//!
//! ```
//! use dist::setting::Setting;
//!
//! assert_eq!(
//!     Setting::ConnectTimeout.library_name(),
//!     "`TransportOptions::connect_timeout`"
//! );
//! ```

use std::sync::OnceLock;

/// The library's name of a setting, as a literal for `concat!`: the one place each is
/// written, for messages kept in constants as for those formatted.
macro_rules! setting_name {
    (connect_timeout) => {
        "`TransportOptions::connect_timeout`"
    };
    (response_timeout) => {
        "`TransportOptions::response_timeout`"
    };
    (idle_timeout) => {
        "`TransportOptions::idle_timeout`"
    };
    (ca_files) => {
        "`TransportOptions::ca_files`"
    };
    (client_identity) => {
        "`TransportOptions::client_identity`"
    };
    (plain_http) => {
        "`Repository::force_plain_http`"
    };
    (all_platforms) => {
        "`Platforms::All`"
    };
    (credentials) => {
        "`CredentialSource`"
    };
}
pub(crate) use setting_name;

/// Declares [`Setting`] and [`Setting::ALL`] from one list: a variant left out of `ALL`
/// kept its library name in a program's messages, and a test listing the variants again
/// passed as long as it was left out there too.
macro_rules! settings {
    ($( $(#[$doc:meta])* $variant:ident, )*) => {
        /// A setting a message may name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Setting {
            $( $(#[$doc])* $variant, )*
        }

        impl Setting {
            /// Every setting a message may name, in the order declared.
            pub const ALL: [Setting; [$(stringify!($variant)),*].len()] =
                [$(Setting::$variant),*];
        }
    };
}

settings! {
    /// [`TransportOptions::connect_timeout`](crate::transport::TransportOptions::connect_timeout):
    /// a DNS lookup, a TCP connection, a TLS handshake, a proxy's answer to `CONNECT`.
    ConnectTimeout,
    /// [`TransportOptions::response_timeout`](crate::transport::TransportOptions::response_timeout):
    /// the wait for a response's headers.
    ResponseTimeout,
    /// [`TransportOptions::idle_timeout`](crate::transport::TransportOptions::idle_timeout):
    /// a body's pause between two pieces.
    IdleTimeout,
    /// [`TransportOptions::ca_files`](crate::transport::TransportOptions::ca_files): CA
    /// certificates trusted besides the system's.
    CaFiles,
    /// [`TransportOptions::client_identity`](crate::transport::TransportOptions::client_identity):
    /// the client certificate and its key.
    ClientIdentity,
    /// [`Repository::force_plain_http`](crate::Repository::force_plain_http): plain HTTP
    /// to a registry that is not on a loopback address.
    PlainHttp,
    /// [`Platforms::All`](crate::pull::Platforms::All) in
    /// [`PullOptions::platforms`](crate::pull::PullOptions::platforms): every entry of an
    /// index, artifacts and blobs included.
    AllPlatforms,
    /// [`CredentialSource`](crate::auth::CredentialSource): where credentials come from.
    Credentials,
}

impl Setting {
    /// How a message names the setting unless [`name_settings`] says otherwise: its
    /// Rust path, in backticks.
    pub fn library_name(self) -> &'static str {
        match self {
            Setting::ConnectTimeout => setting_name!(connect_timeout),
            Setting::ResponseTimeout => setting_name!(response_timeout),
            Setting::IdleTimeout => setting_name!(idle_timeout),
            Setting::CaFiles => setting_name!(ca_files),
            Setting::ClientIdentity => setting_name!(client_identity),
            Setting::PlainHttp => setting_name!(plain_http),
            Setting::AllPlatforms => setting_name!(all_platforms),
            Setting::Credentials => setting_name!(credentials),
        }
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.library_name())
    }
}

/// How the program names the settings, once it has said ([`name_settings`]).
static NAMES: OnceLock<fn(Setting) -> &'static str> = OnceLock::new();

/// Has every error's text name each setting as `name` returns it (`--connect-timeout`
/// for [`Setting::ConnectTimeout`]), in place of its
/// [`library_name`](Setting::library_name); a setting `name` returns the library name
/// for keeps it. For the whole process, once: a program says it before it makes its
/// first request, and `false` says that another call did first (whose names stand).
pub fn name_settings(name: fn(Setting) -> &'static str) -> bool {
    NAMES.set(name).is_ok()
}

/// `text` with each setting named as [`name_settings`] said, if it did.
pub(crate) fn named(text: String) -> String {
    match NAMES.get() {
        Some(name) => named_by(text, *name),
        None => text,
    }
}

/// `text` with each setting's library name replaced by what `name` returns for it.
fn named_by(mut text: String, name: fn(Setting) -> &'static str) -> String {
    for setting in Setting::ALL {
        let (ours, theirs) = (setting.library_name(), name(setting));
        if ours != theirs && text.contains(ours) {
            text = text.replace(ours, theirs);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(setting: Setting) -> &'static str {
        match setting {
            Setting::ConnectTimeout => "--connect-timeout",
            Setting::IdleTimeout | Setting::ResponseTimeout => "--idle-timeout",
            _ => setting.library_name(),
        }
    }

    /// A program's names replace the library's, every one of them, and only them.
    #[test]
    fn a_program_s_names_replace_the_library_s() {
        let said = format!(
            "no headers within 1s ({}); no body for 1s ({}); nothing for 1s ({}); use {}",
            Setting::ResponseTimeout,
            Setting::IdleTimeout,
            Setting::IdleTimeout,
            Setting::PlainHttp
        );
        assert_eq!(
            named_by(said, flag),
            "no headers within 1s (--idle-timeout); no body for 1s (--idle-timeout); nothing \
             for 1s (--idle-timeout); use `Repository::force_plain_http`"
        );
    }

    /// `ALL` holds every setting, once, in the order declared (each at its discriminant):
    /// a program names those it lists, and a setting left out would keep its library
    /// name. `ALL` is made from the list that declares the variants, so none is left out.
    #[test]
    fn all_holds_every_setting() {
        for (place, setting) in Setting::ALL.iter().enumerate() {
            assert_eq!(*setting as usize, place, "{setting:?}");
        }
    }

    /// Each library name is its own: none holds another, which replacing it would break.
    #[test]
    fn no_library_name_holds_another() {
        for a in Setting::ALL {
            for b in Setting::ALL {
                if a != b {
                    assert!(!a.library_name().contains(b.library_name()), "{a:?} {b:?}");
                }
            }
        }
    }
}
