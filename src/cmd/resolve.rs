//! `dist resolve`: the descriptor a reference points to, as one JSON line.

use std::io::Write;

use dist::image::ImageRef;

use super::{check_layout, exit_for, open_locator, report, EXIT_FAILED, EXIT_USAGE};
use crate::cli::{Global, ResolveArgs};

/// `dist resolve`: the descriptor a reference points to, as one JSON line.
pub async fn run(global: &Global, args: ResolveArgs) -> u8 {
    let image = match args.reference.parse::<ImageRef>() {
        Ok(i) => i,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    let remote = match open_locator(global, image.locator.clone(), 1) {
        Ok(r) => r,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    if let Err(code) = check_layout(remote.as_ref(), &image.locator).await {
        return code;
    }
    match remote.resolve(&image.object()).await {
        Ok(d) => {
            let line = serde_json::to_string(&d.bare()).expect("descriptors serialise");
            match writeln!(std::io::stdout(), "{line}") {
                // A reader that went away (`| head -0`) wanted no more, as for `fetch`.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    say!("dist: writing to stdout: {e}");
                    EXIT_FAILED
                }
                _ => 0,
            }
        }
        Err(e) => report(&e, exit_for(&e)),
    }
}
