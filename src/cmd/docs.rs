//! `dist completions <shell>` and `dist man`, generated from the clap definitions so they
//! never drift from the real options.

use clap::CommandFactory;

use super::{print_stdout, EXIT_FAILED};
use crate::cli::Cli;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> u8 {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "dist", &mut out);
    print_stdout(&out)
}

/// Prints the manual page (roff), with a section per subcommand.
pub fn man() -> u8 {
    let cmd = Cli::command();
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(cmd.clone()).render(&mut out) {
        say!("dist: rendering the manual: {e}");
        return EXIT_FAILED;
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("dist-{}", sub.get_name());
        let page = clap_mangen::Man::new(sub.clone().name(name));
        if let Err(e) = page.render(&mut out) {
            say!("dist: rendering the manual: {e}");
            return EXIT_FAILED;
        }
    }
    print_stdout(&out)
}
