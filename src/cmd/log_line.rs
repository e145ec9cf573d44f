//! Log events in the words of dist's own messages, for a run at the default verbosity: a
//! batch's stderr read `dist: line 3: …` and `dist: warning: …` from the command, and
//! `2026-12-06T02:00:00.123Z  WARN content did not verify; fetching again object=…` from
//! the library beside them, two styles for one kind of line. With `-v` or `RUST_LOG` the
//! log is a log, stamped and levelled as tracing writes it; with `--log-format json` it is
//! JSON either way.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Writes an event as `dist: warning: <message> (<field>=<value>, …)`, on one line.
pub struct AsMessage;

impl<S, N> FormatEvent<S, N> for AsMessage
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        writeln!(writer, "{}", line(*event.metadata().level(), &fields))
    }
}

/// An event's message and its other fields, in the order they were given.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.others.push((field.name(), value));
        }
    }
}

/// The line for an event at `level` with `fields`, without its newline.
fn line(level: Level, fields: &Fields) -> String {
    let word = match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    };
    let mut line = format!("dist: {word}: ");
    push_one_line(&mut line, &fields.message);
    for (i, (name, value)) in fields.others.iter().enumerate() {
        line.push_str(if i == 0 { " (" } else { ", " });
        let _ = write!(line, "{name}=");
        push_one_line(&mut line, value);
    }
    if !fields.others.is_empty() {
        line.push(')');
    }
    line
}

/// Appends `text` with no line break and no control character: a break as a space, any
/// other (an `ESC` of a registry's error body, a right-to-left override that would turn
/// the rest of the line around) escaped, so that it cannot rewrite the terminal, split
/// the line or make it read as another; as messages show a server's text.
fn push_one_line(line: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => line.push(' '),
            c if dist::server_text::hidden(c) => line.extend(c.escape_default()),
            c => line.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_reads_as_dists_own_on_one_line() {
        let fields = Fields {
            message: "content did not verify; fetching again".into(),
            others: vec![
                ("object", "sha256:abc".into()),
                ("error", "bad\r\nbody \u{1b}[31m".into()),
            ],
        };
        assert_eq!(
            line(Level::WARN, &fields),
            "dist: warning: content did not verify; fetching again \
             (object=sha256:abc, error=bad  body \\u{1b}[31m)"
        );
        let turned = Fields {
            message: "token service http://a.example/\u{202e}nekot\u{2028}x".into(),
            others: Vec::new(),
        };
        assert_eq!(
            line(Level::WARN, &turned),
            "dist: warning: token service http://a.example/\\u{202e}nekot\\u{2028}x"
        );
        // A zero-width space made `a.example` of another host.
        let joined = Fields {
            message: "token realm's host a\u{200b}.example".into(),
            others: Vec::new(),
        };
        assert_eq!(
            line(Level::WARN, &joined),
            "dist: warning: token realm's host a\\u{200b}.example"
        );
        // Text is no control: a path in another script, an ellipsis, a dot, an arrow, an
        // emoji and right-to-left letters reach the terminal as they are.
        let text = "ignoring /home/ü/日本/…·→🙂 שלום";
        let worded = Fields {
            message: text.into(),
            others: Vec::new(),
        };
        assert_eq!(line(Level::WARN, &worded), format!("dist: warning: {text}"));
        let bare = Fields {
            message: "ignoring the hint key".into(),
            others: Vec::new(),
        };
        assert_eq!(
            line(Level::ERROR, &bare),
            "dist: error: ignoring the hint key"
        );
    }
}
