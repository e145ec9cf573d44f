//! `dist resolve`: the descriptor a reference points to, as one JSON line.

use dist::image::ImageRef;

use super::{check_layout, exit_for, open_image, print_stdout, report, Downloads, EXIT_USAGE};
use crate::cli::{Global, ResolveArgs};

/// `dist resolve`: the descriptor a reference points to, as one JSON line.
pub async fn run(global: &Global, args: ResolveArgs) -> u8 {
    if let Some(pasted) = super::api_url::as_reference(&args.reference) {
        return report(&dist::Error::invalid(pasted), EXIT_USAGE);
    }
    let image = match args.reference.parse::<ImageRef>() {
        Ok(i) => i,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    let remote = match open_image(global, &image, 1, Downloads::Manifests) {
        Ok(r) => r,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    if let Err(code) = check_layout(remote.as_ref(), &image.locator).await {
        return code;
    }
    match remote.resolve(&image.object()).await {
        Ok(d) => {
            let mut line = serde_json::to_vec(&d.bare()).expect("descriptors serialise");
            line.push(b'\n');
            print_stdout(&line)
        }
        Err(e) => {
            let e = e.spelt_as_reference();
            report(&e, exit_for(&e))
        }
    }
}
