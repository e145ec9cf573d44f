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

/// Prints the manual page (roff): one page, `dist.1`, with a section per subcommand.
pub fn man() -> u8 {
    match manual() {
        Ok(out) => print_stdout(&out),
        Err(e) => {
            say!("dist: rendering the manual: {e}");
            EXIT_FAILED
        }
    }
}

/// The manual, one page: the command's own sections, a list of the subcommands, then a
/// section for each (`DIST FETCH`) with its synopsis, description and options as
/// subsections. It was the page clap_mangen makes for `dist`, which lists its subcommands
/// as pages of their own (`dist-fetch(1)`) that nothing installs, followed by those pages
/// in the same file: `man dist-fetch` found nothing, and `man dist` showed headers that
/// started over.
fn manual() -> std::io::Result<Vec<u8>> {
    // Not built: built, each subcommand holds the global options too, and its section
    // listed them all again.
    let cmd = Cli::command();
    let page = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    page.render_options_section(&mut out)?;
    let subcommands: Vec<&clap::Command> =
        cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in &subcommands {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        let name = format!("dist {}", sub.get_name());
        out.extend_from_slice(format!(".TP\n\\fB{}\\fR\n", roff_text(&name)).as_bytes());
        out.extend_from_slice(format!("{}\n", roff_text(&about)).as_bytes());
    }
    for sub in subcommands {
        let name = format!("dist {}", sub.get_name());
        let heading = name.to_uppercase();
        out.extend_from_slice(format!(".SH \"{}\"\n", roff_text(&heading)).as_bytes());
        let part = clap_mangen::Man::new(sub.clone().bin_name(name));
        let mut sections = Vec::new();
        part.render_synopsis_section(&mut sections)?;
        part.render_description_section(&mut sections)?;
        part.render_options_section(&mut sections)?;
        out.extend_from_slice(&subsections(&sections));
    }
    if let Some(text) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        out.extend_from_slice(&tables(&text.to_string()));
    }
    page.render_version_section(&mut out)?;
    Ok(out)
}

/// `--help`'s closing text (blocks of a `Heading:` line over an aligned table of
/// `  name   description` rows, a long description going on in the column below) as man
/// sections (`ENVIRONMENT`, `EXIT STATUS`) of `.TP` entries. As text, clap_mangen's
/// `EXTRA` section, roff filled it: the columns ran together, and a description went on
/// under the next name.
fn tables(text: &str) -> Vec<u8> {
    let mut out = String::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines();
        let Some(heading) = lines.next() else {
            continue;
        };
        let heading = heading.trim().trim_end_matches(':').to_uppercase();
        if heading.contains(' ') {
            out.push_str(&format!(".SH \"{}\"\n", roff_text(&heading)));
        } else {
            out.push_str(&format!(".SH {}\n", roff_text(&heading)));
        }
        let lines: Vec<&str> = lines.collect();
        // The description column: where the text after a name's run of blanks starts. A
        // name as long as the column leaves one blank (`130, 143 interrupted`).
        let column = lines
            .iter()
            .filter_map(|line| {
                let name_at = line.len() - line.trim_start().len();
                let gap = line[name_at..].find("  ")? + name_at;
                let rest = &line[gap..];
                (!rest.trim().is_empty()).then(|| gap + (rest.len() - rest.trim_start().len()))
            })
            .min();
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in lines {
            let indent = line.len() - line.trim_start().len();
            match entries.last_mut() {
                // Deeper than a name: the description of the row above goes on.
                Some((_, description)) if indent > 2 => {
                    if !description.is_empty() {
                        description.push(' ');
                    }
                    description.push_str(line.trim());
                }
                _ => {
                    let split = column.filter(|&at| {
                        line.is_char_boundary(at)
                            && line[..at].ends_with(' ')
                            && !line[at..].starts_with(' ')
                    });
                    let (name, description) = match split {
                        Some(at) => (line[..at].trim(), line[at..].trim()),
                        None => (line.trim(), ""),
                    };
                    entries.push((name.to_string(), description.to_string()));
                }
            }
        }
        for (name, description) in entries {
            out.push_str(&format!(
                ".TP\n\\fB{}\\fR\n{}\n",
                roff_text(&name),
                roff_text(&description)
            ));
        }
    }
    out.into_bytes()
}

/// `roff` with its section headings (`.SH`) made subsection headings (`.SS`), for a
/// subcommand's sections inside the section of its own.
fn subsections(roff: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(roff);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match line.strip_prefix(".SH ") {
            Some(rest) => {
                out.push_str(".SS ");
                out.push_str(rest);
            }
            None => out.push_str(line),
        }
    }
    out.into_bytes()
}

/// `text` as a line of roff text: a backslash and a hyphen (a minus in options) escaped,
/// quotes kept straight (groff prints `'` and a backtick as typographic quotes, which a
/// command copied out of the page cannot take), and a line that would read as a request
/// (a leading `.`) kept as text.
fn roff_text(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\e")
        .replace('-', "\\-")
        .replace('\'', "\\(aq")
        .replace('`', "\\(ga");
    if escaped.starts_with('.') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One page, and no reference to a page that does not exist: every subcommand has
    /// a section of its own in it, with its options.
    #[test]
    fn the_manual_is_one_page_with_a_section_per_subcommand() {
        let page = String::from_utf8(manual().unwrap()).unwrap();
        assert_eq!(
            page.matches("\n.TH ").count() + usize::from(page.starts_with(".TH ")),
            1
        );
        assert!(!page.contains("(1)"), "a page referred to: {page}");
        for heading in ["DIST FETCH", "DIST PULL", "DIST RESOLVE", "DIST MAN"] {
            assert!(page.contains(&format!(".SH \"{heading}\"\n")), "{heading}");
        }
        let fetch = &page[page.find(".SH \"DIST FETCH\"").unwrap()..];
        let fetch = &fetch[..fetch.find(".SH \"DIST PULL\"").unwrap()];
        assert!(
            fetch.contains(".SS SYNOPSIS\n\\fBdist fetch\\fR"),
            "{fetch}"
        );
        assert!(fetch.contains("\\-\\-verify\\-existing"), "{fetch}");
        // The global options are the page's own, said once.
        assert!(!fetch.contains("\\-\\-plain\\-http"), "{fetch}");
        assert!(page.contains(".SH ENVIRONMENT") && page.contains(".SH VERSION"));
    }

    #[test]
    fn text_is_escaped_for_roff() {
        assert_eq!(roff_text("a-b \\ c"), "a\\-b \\e c");
        assert_eq!(roff_text(".x"), "\\&.x");
        assert_eq!(roff_text("'x' `y`"), "\\(aqx\\(aq \\(gay\\(ga");
    }
}
