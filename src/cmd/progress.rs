//! The progress line on a terminal: objects done of total, bytes, throughput, ETA and the
//! objects in flight, redrawn a few times a second on stderr, then one summary line; and
//! the [`Meter`] of a single download sent to a file or a pipe.
//!
//! It never writes to stdout (that is the data), and nothing at all when stderr is not a
//! terminal or with `-q`. Its frames, and everything else written to stderr while it runs
//! (per-object errors, and the warnings logged meanwhile), are written by one thread
//! ([`drawer`]) that clears the line before a message and redraws it after, so that the
//! two never interleave and a terminal that takes no output holds no fetch.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use dist::worker::progress::{Progress, Snapshot};

use super::drawer;

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(200);
/// How long a single download runs before its meter is drawn.
const METER_DELAY: Duration = Duration::from_secs(1);
/// How far back the rate shown looks.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Takes stderr for lines of text, clearing a progress line or meter drawn there: text
/// written after one would be glued to it. Redrawing waits while the guard is held. For
/// what the drawing thread does not write ([`drawer::say`]): stdout on the terminal.
pub fn clear_line() -> MutexGuard<'static, bool> {
    drawer::clear()
}

/// Where log lines go: stderr, above the progress line, by the drawing thread. A warning
/// logged while a batch draws its progress (content that did not verify, fetched again)
/// was appended to the line drawn; and written by the runtime's thread, it held every
/// fetch while the terminal took no output.
pub struct LogWriter;

/// One log event, handed to the drawing thread when dropped.
pub struct LogLine {
    text: Vec<u8>,
    /// Where the event goes: [`drawer::say`] but in tests.
    say: fn(String),
}

/// Never fails: a log line stderr cannot take is dropped. Told of an error, the log would
/// report it with `eprintln!`, which panics when stderr is gone (see [`super::to_stderr`]).
impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.text);
        // The log ends each event with a newline; the drawing thread gives every line one.
        // An event of several lines is handed over whole, so that it is written as one.
        let event = text.strip_suffix('\n').unwrap_or(&text);
        if !event.is_empty() {
            (self.say)(event.to_string());
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            text: Vec::new(),
            say: drawer::say,
        }
    }
}

/// A progress line bound to one worker run.
pub struct Display {
    progress: Arc<Progress>,
    started: Instant,
    enabled: bool,
    /// Whose frames its frames are to the drawing thread.
    owner: u64,
}

impl Display {
    /// A display for `progress`, enabled only on a terminal and when it may be `shown`
    /// at all ([`crate::cli::Global::draws_progress`]).
    pub fn new(progress: Arc<Progress>, shown: bool) -> Display {
        Display {
            progress,
            started: Instant::now(),
            enabled: shown && std::io::stderr().is_terminal(),
            owner: drawer::owner(),
        }
    }

    /// Starts redrawing; the task ends when the display is finished.
    pub fn start(&self) -> Option<tokio::task::JoinHandle<()>> {
        if !self.enabled {
            return None;
        }
        let (progress, started, owner) = (self.progress.clone(), self.started, self.owner);
        drawer::open(owner);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            let mut window = Window::default();
            loop {
                tick.tick().await;
                let (s, elapsed) = (progress.snapshot(), started.elapsed());
                let text = render(&s, elapsed, window.rate(elapsed, s.bytes));
                let text = fit(&text, columns());
                drawer::draw(owner, text.into_owned());
            }
        }))
    }

    /// Prints a line of its own (an error, a warning) without tearing the progress line.
    pub fn message(&self, text: &str) {
        super::say(text);
    }

    /// Stops redrawing and prints the summary line.
    pub fn finish(&self, ticker: Option<tokio::task::JoinHandle<()>>) {
        if let Some(t) = ticker {
            t.abort();
        }
        if !self.enabled {
            return;
        }
        let s = self.progress.snapshot();
        let elapsed = self.started.elapsed();
        let summary = format!(
            "{} {}, {} in {:.2} s ({}/s), {} failed",
            s.finished,
            if s.finished == 1 { "object" } else { "objects" },
            bytes(s.bytes),
            elapsed.as_secs_f64(),
            bytes(rate(s.bytes, elapsed)),
            s.failed
        );
        // After the messages queued before it, in the line's place: none of its frames
        // is drawn after it.
        drawer::close(self.owner, true, Some(summary));
    }
}

/// The meter of one download whose content goes to a file or a pipe (`dist fetch … >
/// layer.tar`), as curl draws one: bytes, the share of the size when it is known, rate and
/// remaining time, on stderr. It is drawn only from a second in, so that a manifest or a
/// small blob never shows one and a script's many short fetches leave the terminal alone.
pub struct Meter {
    received: Arc<AtomicU64>,
    /// Whether a frame was handed to the drawing thread.
    drawn: Arc<AtomicBool>,
    /// Whose frames its frames are to the drawing thread.
    owner: u64,
    started: Instant,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Meter {
    /// Starts the meter of a download of `size` bytes (if known); `shown` says whether it
    /// may be drawn at all ([`crate::cli::Global::draws_progress`], stderr a terminal,
    /// stdout not).
    pub fn start(size: Option<u64>, shown: bool) -> Meter {
        let received = Arc::new(AtomicU64::new(0));
        let drawn = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let owner = drawer::owner();
        let ticker = shown.then(|| {
            let (received, drawn) = (received.clone(), drawn.clone());
            drawer::open(owner);
            tokio::spawn(async move {
                tokio::time::sleep(METER_DELAY).await;
                let mut tick = tokio::time::interval(TICK);
                let mut window = Window::default();
                loop {
                    tick.tick().await;
                    let (n, elapsed) = (received.load(Ordering::Relaxed), started.elapsed());
                    let text = render_meter(n, size, window.rate(elapsed, n));
                    let text = fit(&text, columns());
                    drawer::draw(owner, text.into_owned());
                    drawn.store(true, Ordering::Relaxed);
                }
            })
        });
        Meter {
            received,
            drawn,
            owner,
            started,
            ticker,
        }
    }

    /// Counts from zero again: the content is being fetched once more.
    pub fn restart(&self) {
        self.received.store(0, Ordering::Relaxed);
    }

    /// Counts `n` more bytes received.
    pub fn add(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// Stops drawing. A meter that was drawn gives way to a summary line when the download
    /// succeeded, and to nothing when it failed, so that the error message that follows
    /// starts on a clean line.
    pub fn finish(mut self, ok: bool) {
        self.stop(ok);
    }

    fn stop(&mut self, ok: bool) {
        let Some(ticker) = self.ticker.take() else {
            return;
        };
        ticker.abort();
        let drawn = self.drawn.load(Ordering::Relaxed);
        let summary = (drawn && ok).then(|| {
            let n = self.received.load(Ordering::Relaxed);
            let elapsed = self.started.elapsed();
            format!(
                "{} in {:.2} s ({}/s)",
                bytes(n),
                elapsed.as_secs_f64(),
                bytes(rate(n, elapsed))
            )
        });
        // A meter drawn is cleared before what is said next (the error message that
        // follows a failure), and none of its frames drawn after; one that was not has
        // nothing to clear.
        drawer::close(self.owner, drawn, summary);
    }
}

/// A download abandoned before its end (`--timeout`) stops its meter too: a detached
/// ticker would go on drawing over the message that says why.
impl Drop for Meter {
    fn drop(&mut self) {
        self.stop(false);
    }
}

/// The width of the terminal stderr is, asked at each frame so that a resize is followed.
fn columns() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into memory of its size.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(size.ws_col.into())
}

/// A frame cut to fit on one line of `columns`. A frame that wraps is redrawn from the
/// start of its last row only: each redraw would leave a copy of the rows above behind.
/// Whole fields go from the end first; the last column stays free, where some terminals
/// wrap already.
fn fit(text: &str, columns: Option<usize>) -> std::borrow::Cow<'_, str> {
    let Some(room) = columns.map(|c| c.saturating_sub(1).max(1)) else {
        return text.into();
    };
    let mut end = text.len();
    while text[..end].chars().count() > room {
        match text[..end].rfind(", ") {
            Some(i) => end = i,
            None => return text.chars().take(room).collect::<String>().into(),
        }
    }
    text[..end].into()
}

/// The rate over the last [`RATE_WINDOW`], from the counts of the frames drawn. The
/// average since the start hid a stall: an hour at 100 MB/s and then a dead connection
/// still read 50 MB/s an hour later.
#[derive(Debug, Default)]
struct Window {
    /// (time since the start, bytes by then), oldest first; the start is (0, 0).
    samples: std::collections::VecDeque<(Duration, u64)>,
}

impl Window {
    fn rate(&mut self, elapsed: Duration, bytes: u64) -> u64 {
        if self.samples.is_empty() {
            self.samples.push_back((Duration::ZERO, 0));
        }
        // A meter restarted from zero (content fetched again) starts a window of its own.
        if self.samples.back().is_some_and(|&(_, b)| b > bytes) {
            self.samples.clear();
            self.samples.push_back((elapsed, bytes));
            return 0;
        }
        self.samples.push_back((elapsed, bytes));
        while self.samples.len() > 2 && elapsed.saturating_sub(self.samples[1].0) >= RATE_WINDOW {
            self.samples.pop_front();
        }
        let (since, from) = self.samples[0];
        rate(bytes - from, elapsed.saturating_sub(since))
    }
}

/// One frame of a download's meter, `speed` the rate to show.
fn render_meter(received: u64, size: Option<u64>, speed: u64) -> String {
    match size.filter(|&s| s > 0 && s >= received) {
        Some(size) => {
            let mut text = format!(
                "{} of {} ({}%), {}/s",
                bytes(received),
                bytes(size),
                received * 100 / size,
                bytes(speed)
            );
            // Rounded up: "0:00" only once nothing is left.
            if let Some(secs) = (speed > 0).then(|| (size - received).div_ceil(speed)) {
                text.push_str(&eta_text(secs));
            }
            text
        }
        None => format!("{}, {}/s", bytes(received), bytes(speed)),
    }
}

fn rate(bytes: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0
    } else {
        (bytes as f64 / secs).round() as u64
    }
}

/// One frame of the progress line, `speed` the rate to show.
fn render(s: &Snapshot, elapsed: Duration, speed: u64) -> String {
    let total = if s.input_done {
        s.objects.to_string()
    } else {
        format!("{}+", s.objects)
    };
    let mut text = format!(
        "{}/{} objects, {} in flight, {}, {}/s",
        s.finished,
        total,
        s.in_flight(),
        bytes(s.bytes),
        bytes(speed)
    );
    if let Some(eta) = eta(s, elapsed) {
        text.push_str(&eta_text(eta));
    }
    text
}

/// `, ETA m:ss` (`h:mm:ss` from an hour on), as the progress line and the meter both end.
/// Nothing past 99:59:59: so far off, the estimate rests on a trickle of bytes at the
/// start or a size no download will reach, and says nothing a user can wait for.
fn eta_text(secs: u64) -> String {
    match secs {
        0..3600 => format!(", ETA {}:{:02}", secs / 60, secs % 60),
        3600..MAX_ETA => format!(
            ", ETA {}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        ),
        _ => String::new(),
    }
}

/// The first remaining time, in seconds, that is not shown.
const MAX_ETA: u64 = 100 * 3600;

/// Remaining time: by bytes when every size was known in advance, else by objects once
/// the input has ended and one has finished, until none is left waiting: then by the
/// bytes the objects in flight still have to receive, when all their sizes are known,
/// and none when one's is not. Rounded up, as the meter's: "0:00" only once nothing is
/// left.
/// In whole seconds, saturating: a `Duration` made from more seconds than it holds (a
/// descriptor's absurd `size` over the few bytes of a slow start) would panic the redraw.
fn eta(s: &Snapshot, elapsed: Duration) -> Option<u64> {
    if !s.input_done {
        return None;
    }
    let secs = elapsed.as_secs_f64();
    let by_bytes =
        |left: u64| (s.bytes > 0).then(|| (left as f64 * secs / s.bytes as f64).ceil() as u64);
    if s.expected_bytes > 0 && s.bytes > 0 && s.expected_bytes >= s.bytes {
        return by_bytes(s.expected_bytes - s.bytes);
    }
    // None waiting: the time per object finished says nothing of those in flight, and
    // it only grew while the last, large one ran.
    if s.started >= s.objects && s.in_flight() > 0 {
        return (s.in_flight_sized >= s.in_flight())
            .then(|| by_bytes(s.in_flight_left))
            .flatten();
    }
    // By objects, the first to finish is the first measure of how long one takes.
    if s.finished == 0 {
        return None;
    }
    let left = s.objects.saturating_sub(s.finished) as f64;
    Some((left * secs / s.finished as f64).ceil() as u64)
}

/// `34.8 MB`, in decimal units like the peers print.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n} B");
    }
    let mut text = format!("{v:.1}");
    // 999,950 bytes and up round to 1000.0 of a unit: that is one of the next.
    if text == "1000.0" && unit < UNITS.len() - 1 {
        unit += 1;
        text = format!("{:.1}", v / 1000.0);
    }
    format!("{text} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log event of several lines (`-v`'s log of an error whose text holds a registry's
    /// body of several lines) is handed to the drawing thread whole: line by line, a
    /// message said meanwhile by another thread went between its lines, and a full queue
    /// kept its first lines and dropped the rest.
    #[test]
    fn a_log_event_of_several_lines_is_said_as_one() {
        thread_local! {
            static SAID: std::cell::RefCell<Vec<String>> = const {
                std::cell::RefCell::new(Vec::new())
            };
        }
        let record = |text| SAID.with(|s| s.borrow_mut().push(text));
        let event = "  WARN fetching again error=registry answered 500:\n<html>\n</html>\n";
        let mut line = LogLine {
            text: Vec::new(),
            say: record,
        };
        line.write_all(event.as_bytes()).unwrap();
        drop(line);
        let said = SAID.with(|s| s.take());
        assert_eq!(said, vec![event.trim_end_matches('\n')]);
        // An event with no text says nothing, not an empty line.
        drop(LogLine {
            text: Vec::new(),
            say: record,
        });
        assert!(SAID.with(|s| s.take()).is_empty());
    }

    /// A frame showing the average rate since the start.
    fn frame(s: &Snapshot, elapsed: Duration) -> String {
        render(s, elapsed, rate(s.bytes, elapsed))
    }

    /// The rate shown is that of the last few seconds: after a stall it falls to zero,
    /// not to the average since the start; a count that went back starts over.
    #[test]
    fn the_rate_is_that_of_the_last_seconds() {
        let mut w = Window::default();
        let at = |ms| Duration::from_millis(ms);
        assert_eq!(w.rate(at(200), 200_000), 1_000_000);
        // A minute at 1 MB/s, a frame every 200 ms.
        for ms in (400..=60_000).step_by(200) {
            assert_eq!(w.rate(at(ms), ms * 1000), 1_000_000, "at {ms} ms");
        }
        // Then the connection stalls.
        for ms in (60_200..=63_000).step_by(200) {
            let r = w.rate(at(ms), 60_000_000);
            assert!(r < 1_000_000 && r > 0, "{r} at {ms} ms");
        }
        assert_eq!(w.rate(at(65_200), 60_000_000), 0);
        assert!(w.samples.len() < 30, "only the last seconds are kept");
        // Twice as fast again.
        assert_eq!(w.rate(at(70_400), 70_400_000), 2_000_000);
        // Fetched again from zero.
        assert_eq!(w.rate(at(70_600), 0), 0);
        assert_eq!(w.rate(at(70_800), 400_000), 2_000_000);
    }

    #[test]
    fn renders_counts_rate_and_eta() {
        // Snapshot may gain counters: built from its default, as a library user must.
        let mut s = Snapshot::default();
        (s.objects, s.input_done, s.started, s.finished) = (10, true, 6, 5);
        s.bytes = 5_000_000;
        let text = frame(&s, Duration::from_secs(5));
        assert_eq!(
            text,
            "5/10 objects, 1 in flight, 5.0 MB, 1.0 MB/s, ETA 0:05"
        );
        let mut open = s;
        open.input_done = false;
        assert_eq!(
            frame(&open, Duration::from_secs(5)),
            "5/10+ objects, 1 in flight, 5.0 MB, 1.0 MB/s"
        );
        let mut sized = s;
        sized.expected_bytes = 20_000_000;
        assert!(frame(&sized, Duration::from_secs(5)).ends_with("ETA 0:15"));
    }

    /// By bytes, the ETA needs no object finished: a batch of one large blob of known
    /// size showed none until it was done, the README's "goes by bytes when every size
    /// is known in advance" notwithstanding.
    #[test]
    fn an_eta_by_bytes_needs_no_object_finished() {
        let mut s = Snapshot::default();
        (s.objects, s.input_done, s.started, s.finished) = (1, true, 1, 0);
        (s.bytes, s.expected_bytes) = (1_000_000, 3_000_000);
        let text = frame(&s, Duration::from_secs(1));
        assert!(text.ends_with(", ETA 0:02"), "{text}");
        // Rounded up: 0.6 s left is not "0:00".
        s.bytes = 2_500_000;
        let text = frame(&s, Duration::from_secs(3));
        assert!(text.ends_with(", ETA 0:01"), "{text}");
        s.bytes = 1_000_000;
        // By objects, none finished says nothing of the time left.
        s.expected_bytes = 0;
        let text = frame(&s, Duration::from_secs(1));
        assert!(!text.contains("ETA"), "{text}");
    }

    /// With nothing left waiting, what remains is the objects in flight: by objects, the
    /// time per object finished so far, the ETA only grew while the last, large blob ran
    /// (from 0:02 to 0:10 over a layer of 90 s, its time left falling from 1:29 to 0:09).
    /// It goes by the bytes those objects still have to receive when their sizes are
    /// known, and shrinks as they come.
    #[test]
    fn the_last_objects_in_flight_go_by_their_bytes_left() {
        let mut s = Snapshot::default();
        (s.objects, s.input_done, s.started, s.finished) = (10, true, 10, 9);
        s.in_flight_sized = 1;
        let mut last = u64::MAX;
        // 9 small objects of 1 MB in the first 9 s, then a layer of 90 MB at 1 MB/s.
        for secs in [10, 20, 40, 60, 90] {
            s.bytes = secs * 1_000_000;
            s.in_flight_left = 99_000_000 - s.bytes;
            let text = frame(&s, Duration::from_secs(secs));
            let eta = text.rsplit_once("ETA ").map(|(_, eta)| eta.to_string());
            let eta = eta.unwrap_or_else(|| panic!("no ETA: {text}"));
            let (m, sec) = eta.split_once(':').unwrap();
            let eta: u64 = m.parse::<u64>().unwrap() * 60 + sec.parse::<u64>().unwrap();
            assert!(eta < last, "the ETA grew to {eta} s at {secs} s: {text}");
            assert_eq!(eta, 99 - secs, "at {secs} s: {text}");
            last = eta;
        }
        // A size not known of one in flight (a chunked body): no ETA, rather than one
        // that only grows.
        s.in_flight_sized = 0;
        let text = frame(&s, Duration::from_secs(60));
        assert!(!text.contains("ETA"), "{text}");
        // Objects still waiting: by objects, as before.
        (s.started, s.finished) = (6, 5);
        (s.bytes, s.in_flight_left) = (5_000_000, 0);
        assert!(frame(&s, Duration::from_secs(5)).ends_with("ETA 0:05"));
    }

    #[test]
    fn a_long_eta_shows_hours_and_an_absurd_one_none() {
        let mut s = Snapshot::default();
        (s.objects, s.input_done, s.started, s.finished) = (2, true, 2, 1);
        (s.bytes, s.expected_bytes) = (1_000_000, 3_000_000);
        assert!(frame(&s, Duration::from_secs(5400)).ends_with(", ETA 3:00:00"));
        assert!(frame(&s, Duration::from_secs(59)).ends_with(", ETA 1:58"));
        // A size of 2^63 over a first byte after ten seconds: 2.9 trillion years.
        let mut absurd = s;
        (absurd.bytes, absurd.expected_bytes) = (1, 1 << 63);
        let text = frame(&absurd, Duration::from_secs(10));
        assert!(!text.contains("ETA"), "{text}");
        assert_eq!(
            render_meter(1_000, Some(u64::MAX), 1_000),
            "1.0 kB of 18446744.1 TB (0%), 1.0 kB/s"
        );
        assert!(render_meter(1_000, Some(4_601_000), 1_000).ends_with(", ETA 1:16:40"));
    }

    #[test]
    fn a_frame_fits_the_terminal() {
        let text = "5/10 objects, 1 in flight, 5.0 MB, 1.0 MB/s, ETA 0:05";
        assert_eq!(fit(text, None), text);
        assert_eq!(fit(text, Some(80)), text);
        assert_eq!(fit(text, Some(text.len() + 1)), text);
        assert_eq!(
            fit(text, Some(text.len())),
            "5/10 objects, 1 in flight, 5.0 MB, 1.0 MB/s"
        );
        assert_eq!(fit(text, Some(40)), "5/10 objects, 1 in flight, 5.0 MB");
        assert_eq!(fit(text, Some(8)), "5/10 ob");
        assert_eq!(fit(text, Some(1)), "5");
    }

    #[test]
    fn a_meter_shows_the_share_rate_and_time_left() {
        assert_eq!(
            render_meter(30_000_000, Some(120_000_000), 10_000_000),
            "30.0 MB of 120.0 MB (25%), 10.0 MB/s, ETA 0:09"
        );
        assert_eq!(
            render_meter(30_000_000, None, 10_000_000),
            "30.0 MB, 10.0 MB/s"
        );
        // A size the body has already outgrown is not trusted for a share.
        assert_eq!(
            render_meter(30_000_000, Some(1000), 10_000_000),
            "30.0 MB, 10.0 MB/s"
        );
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(34_828_297), "34.8 MB");
        assert_eq!(bytes(1_073_741_824), "1.1 GB");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999_949), "999.9 kB");
        assert_eq!(bytes(999_950), "1.0 MB");
        assert_eq!(bytes(999_999_999), "1.0 GB");
        assert_eq!(bytes(2_500_000_000_000), "2.5 TB");
        assert_eq!(bytes(999_999_999_999_999), "1000.0 TB");
    }
}
