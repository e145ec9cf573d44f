//! The flags that set what the library's messages name as settings, so that a message
//! tells a CLI user the flag to change ("--connect-timeout"), not a field of a struct they
//! have never seen.

use dist::setting::Setting;

/// Has every message name each setting by its flag, for the whole process.
pub fn name_settings_by_flag() {
    dist::setting::name_settings(flag);
}

/// The flag (or where the CLI's help tells it) that sets `setting`.
fn flag(setting: Setting) -> &'static str {
    match setting {
        Setting::ConnectTimeout => "--connect-timeout",
        // One flag sets both: a response's headers and its body's pauses.
        Setting::ResponseTimeout | Setting::IdleTimeout => "--idle-timeout",
        Setting::CaFiles => "--ca-file",
        Setting::ClientIdentity => "--cert and --key",
        Setting::PlainHttp => "--plain-http",
        Setting::AllPlatforms => "--all-platforms",
        // The help's section on credentials says where they come from.
        Setting::Credentials => "--help",
        // A setting added later keeps its library name until it has a flag here.
        _ => setting.library_name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting a message may name has a flag: a new one named by its Rust path
    /// would read to a CLI user as a field of a struct they have never seen.
    #[test]
    fn every_setting_has_a_flag() {
        for setting in Setting::ALL {
            assert!(flag(setting).starts_with("--"), "{setting:?}");
        }
    }
}
