//! The thread that writes on stderr: progress frames, messages and log lines.
//!
//! A frame written by the task that renders it blocked the runtime's one thread whenever
//! the terminal stopped taking output (Ctrl-S, an ssh session whose link stalls, a
//! terminal scrolled back that pauses its reader), and with it every fetch: a progress
//! line is written a few times a second, so a terminal's buffer fills within seconds. A
//! frame is now handed to a thread of its own and never waited for; one that is still
//! waiting when the next comes is replaced by it, so a stalled terminal costs one string.
//!
//! Messages (a failed object's error) and log lines went on being written by whoever had
//! them, the runtime's thread among them: the first failed line of a batch held every
//! fetch until the terminal took output again. They are queued for the same thread, in
//! the order they came, above the progress line, which is redrawn after them. The queue
//! is bounded ([`QUEUE_BYTES`]): a line that finds it full is dropped and counted, and
//! once the queue is written a warning says how many were, so that none is lost without
//! a word. Every failed object is still in the output (its frame or JSON line) and the
//! report, and in the exit status; stderr is the only place that loses lines, and memory
//! stays bounded however long the terminal stays stopped. The process waits for the
//! queue to be written before it exits ([`drain`]).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

/// Memory the queued lines may hold, counted as their length and [`LINE_COST`] each.
pub const QUEUE_BYTES: usize = 1 << 20;
/// What a queued line costs beyond its text: the `String` and the queue's slot.
const LINE_COST: usize = 64;

/// What is written in turn, as it came.
enum Line {
    /// A line of text, without its newline.
    Text(String),
    /// The end of a display or meter: its frame is cleared and not redrawn.
    Erase,
}

/// What waits for the drawing thread.
struct Pending {
    /// The display whose frames are taken; 0 when none draws.
    owner: u64,
    /// Its newest frame, not yet drawn.
    frame: Option<String>,
    /// Lines to write above the frame, oldest first.
    lines: VecDeque<Line>,
    /// What `lines` costs against [`QUEUE_BYTES`].
    queued: usize,
    /// Lines dropped since the queue was last taken, the queue being full.
    dropped: u64,
    /// Whether the thread writes what it took last.
    writing: bool,
}

/// Frames and lines waiting for a thread that writes them.
pub struct Drawer {
    pending: Mutex<Pending>,
    /// Wakes the drawing thread.
    wake: Condvar,
    /// Wakes [`Drawer::drain`].
    written: Condvar,
    /// What the queue may hold; [`QUEUE_BYTES`] but in tests.
    budget: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drawer {
    /// A drawer with nothing to draw, whose queue of lines holds `budget` bytes.
    pub const fn new(budget: usize) -> Drawer {
        Drawer {
            pending: Mutex::new(Pending {
                owner: 0,
                frame: None,
                lines: VecDeque::new(),
                queued: 0,
                dropped: 0,
                writing: false,
            }),
            wake: Condvar::new(),
            written: Condvar::new(),
            budget,
        }
    }

    /// Makes `owner` the display whose frames are drawn, dropping another's frame.
    pub fn open(&self, owner: u64) {
        let mut pending = lock(&self.pending);
        pending.owner = owner;
        pending.frame = None;
    }

    /// Hands `owner`'s newest frame to the drawing thread, replacing one still waiting;
    /// ignored unless `owner` is the display drawn ([`Drawer::open`]). Never waits for
    /// the terminal.
    pub fn offer(&self, owner: u64, frame: String) {
        let mut pending = lock(&self.pending);
        if pending.owner == owner {
            pending.frame = Some(frame);
            self.wake.notify_one();
        }
    }

    /// Queues `text` to be written as a line of its own, above the frame drawn; dropped
    /// and counted when the queue is full. Never waits for the terminal. Text of several
    /// lines (a log event's) is kept, dropped and written as one.
    pub fn say(&self, text: String) {
        let mut pending = lock(&self.pending);
        let cost = text.len() + LINE_COST;
        if pending.queued + cost > self.budget && !pending.lines.is_empty() {
            pending.dropped += 1;
        } else {
            pending.queued += cost;
            pending.lines.push_back(Line::Text(text));
        }
        self.wake.notify_one();
    }

    /// Stops drawing `owner`'s frames, dropping one still waiting. If `drawn`, its frame
    /// is cleared once the lines queued before are written, and `summary` written in its
    /// place; nothing of `owner`'s is drawn after.
    pub fn close(&self, owner: u64, drawn: bool, summary: Option<String>) {
        let mut pending = lock(&self.pending);
        if pending.owner == owner {
            pending.owner = 0;
            pending.frame = None;
        }
        if drawn {
            // Not counted against the queue: a frame left on the line would be redrawn
            // under every later message.
            pending.lines.push_back(Line::Erase);
            self.wake.notify_one();
        }
        drop(pending);
        if let Some(summary) = summary {
            self.say(summary);
        }
    }

    /// Waits until every line queued so far is written (or its write failed).
    pub fn drain(&self) {
        let mut pending = lock(&self.pending);
        while pending.writing || !pending.lines.is_empty() || pending.dropped > 0 {
            pending = self
                .written
                .wait(pending)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// [`Drawer::drain`], giving up at `deadline`; whether every line was written.
    pub fn drain_until(&self, deadline: std::time::Instant) -> bool {
        let mut pending = lock(&self.pending);
        while pending.writing || !pending.lines.is_empty() || pending.dropped > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            pending = self
                .written
                .wait_timeout(pending, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Writes lines and draws frames on `out` as they come, for ever: lines first, each
    /// on a line of its own above the frame, which is then redrawn. `line` says whether a
    /// frame holds the last line; it is taken while anything is written.
    pub fn run(&self, line: &Mutex<bool>, out: &mut dyn Write) {
        // The frame on the line, redrawn below the lines written.
        let mut shown: Option<String> = None;
        loop {
            let (lines, dropped, frame) = {
                let mut pending = lock(&self.pending);
                while pending.frame.is_none() && pending.lines.is_empty() && pending.dropped == 0 {
                    pending = self.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
                }
                pending.writing = true;
                pending.queued = 0;
                let lines = std::mem::take(&mut pending.lines);
                let dropped = std::mem::take(&mut pending.dropped);
                (lines, dropped, pending.frame.take())
            };
            let mut drawn = lock(line);
            let mut text = String::new();
            if !lines.is_empty() || dropped > 0 {
                if *drawn {
                    text.push_str("\r\x1b[K");
                    *drawn = false;
                }
                for l in lines {
                    match l {
                        Line::Text(t) => {
                            text.push_str(&t);
                            text.push('\n');
                        }
                        Line::Erase => shown = None,
                    }
                }
                if dropped > 0 {
                    text.push_str(&super::message_line(&dropped_warning(dropped)));
                    text.push('\n');
                }
            }
            let redraw = frame.is_some() || !text.is_empty();
            if frame.is_some() {
                shown = frame;
            }
            if let Some(frame) = shown.as_ref().filter(|_| redraw) {
                text.push_str("\r\x1b[K");
                text.push_str(frame);
                *drawn = true;
            }
            if !text.is_empty() {
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            drop(drawn);
            lock(&self.pending).writing = false;
            self.written.notify_all();
        }
    }
}

/// The warning that takes the place of `n` lines dropped, the queue being full.
fn dropped_warning(n: u64) -> String {
    format!(
        "dist: warning: {n} more message{} not shown: stderr took no output for too long; \
         the output, the report and the exit status still tell every object's outcome",
        if n == 1 { " was" } else { "s were" }
    )
}

/// The process's drawer, drawing on stderr.
static DRAWER: Drawer = Drawer::new(QUEUE_BYTES);

/// Whether a progress line or a meter is drawn on stderr's last line, without its newline.
/// Held by whatever writes to stderr or, on a terminal, stdout, so that writes never tear
/// one another.
static LINE: Mutex<bool> = Mutex::new(false);

/// Takes [`LINE`].
fn line() -> MutexGuard<'static, bool> {
    lock(&LINE)
}

/// Whether the drawing thread runs, starting it if need be; `false` when it could not be
/// started (a limit on threads), and whoever has something to write writes it, as before.
fn threaded() -> bool {
    static THREAD: OnceLock<bool> = OnceLock::new();
    *THREAD.get_or_init(|| {
        std::thread::Builder::new()
            .name("stderr".into())
            .spawn(|| DRAWER.run(&LINE, &mut std::io::stderr()))
            .is_ok()
    })
}

/// A new owner of frames, for one display or meter.
pub fn owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Makes `owner` the one whose frames are drawn on stderr.
pub fn open(owner: u64) {
    DRAWER.open(owner);
}

/// Draws `frame` of `owner`'s on stderr, by the drawing thread.
pub fn draw(owner: u64, frame: String) {
    if threaded() {
        DRAWER.offer(owner, frame);
    } else {
        let mut drawn = line();
        let _ = write!(std::io::stderr().lock(), "\r\x1b[K{frame}");
        let _ = std::io::stderr().flush();
        *drawn = true;
    }
}

/// Writes `text` as a line of its own on stderr, above a progress line or meter, by the
/// drawing thread: queued, never waited for (see the module's notes for a full queue).
pub fn say(text: String) {
    if threaded() {
        DRAWER.say(text);
    } else {
        let _line = clear();
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}

/// Takes [`LINE`], clearing a frame drawn there; for writes not made by the drawing
/// thread: those to stdout on the terminal, and those of a process that has none.
pub fn clear() -> MutexGuard<'static, bool> {
    let mut drawn = line();
    if *drawn {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        *drawn = false;
    }
    drawn
}

/// Stops drawing `owner`'s frames. One that was handed over (`drawn`) is cleared after
/// the lines queued before, and `summary`, if any, written in its place.
pub fn close(owner: u64, drawn: bool, summary: Option<String>) {
    if threaded() {
        DRAWER.close(owner, drawn, summary);
        return;
    }
    DRAWER.close(owner, false, None);
    if drawn {
        let _line = clear();
        if let Some(summary) = summary {
            let _ = writeln!(std::io::stderr().lock(), "{summary}");
        }
    }
}

/// Waits until every line handed to the drawing thread is written: before the process
/// exits, or they would be lost. Waits for a stopped terminal, as any program's last
/// write does.
pub fn drain() {
    DRAWER.drain();
}

/// [`drain`], giving up at `deadline`: a stopped run's, whose stop must end it even when
/// stderr's reader does not read. Whether every line was written.
pub fn drain_until(deadline: std::time::Instant) -> bool {
    DRAWER.drain_until(deadline)
}

/// Has a panic of the main thread first run `drain` (waiting for the lines queued for
/// stderr), then say its message: the process ends with the panic, and [`drain`] at the
/// end of `main` is never reached. The lines queued before are what tells how the run got
/// there, and went with the process.
pub fn drain_before_panic_message(drain: impl Fn() + Sync + Send + 'static) {
    std::panic::set_hook(drain_then(drain, std::panic::take_hook()));
}

/// A panic hook, as [`std::panic::set_hook`] takes one.
type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// A panic hook that runs `drain`, then `message`, when the main thread panics (outside
/// the runtime's tasks), and only `message` for any other. Those do not end the process
/// (the runtime catches its tasks'), and one may hold what the drawing thread needs: the lock
/// of the line an output thread holds while it writes to the terminal, or the drawing
/// thread itself, which would wait for itself.
fn drain_then(drain: impl Fn() + Sync + Send + 'static, message: PanicHook) -> PanicHook {
    Box::new(move |info| {
        if ends_the_process() {
            drain();
        }
        message(info);
    })
}

/// Whether a panic here ends the process: one of the main thread, but not of a task of the
/// runtime running there, which catches it (a job's panic fails its object, and the batch
/// goes on).
fn ends_the_process() -> bool {
    std::thread::current().name() == Some("main") && tokio::task::try_id().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::Duration;

    const PATIENCE: Duration = Duration::from_secs(20);

    /// A terminal that takes nothing holds the drawing thread, not whoever offers frames:
    /// a thousand frames are handed over while it waits, and the newest alone is drawn
    /// once it takes output again. A closed display's frames are not drawn.
    #[test]
    fn a_stalled_terminal_never_holds_whoever_offers_frames() {
        let (drawer, line, terminal) = on_a_gated_terminal(QUEUE_BYTES);
        // The next frame let through, without the line's clearing before it.
        let drawn = || terminal.pass().replace("\r\x1b[K", "");

        drawer.open(1);
        drawer.offer(1, "frame 0".into());
        // The thread takes it and waits in the write: until it does, later frames
        // replace it, and which one is first drawn is not this test's business.
        let (offered, done) = mpsc::channel();
        let offers = drawer.clone();
        std::thread::spawn(move || {
            for i in 1..=1000 {
                offers.offer(1, format!("frame {i}"));
            }
            let _ = offered.send(());
        });
        done.recv_timeout(PATIENCE)
            .expect("offering frames waited for the terminal");
        let first = drawn();
        if first != "frame 1000" {
            assert_eq!(drawn(), "frame 1000");
        }
        assert!(*lock(line), "the line holds a frame");

        // Closed with a frame waiting: neither it nor a later one of its owner's is drawn.
        // The frame waits while the thread is in a write: holding the line instead let
        // the thread take the frame first, then wait for the line, and draw it (1 run in 8).
        while terminal.reaches.try_recv().is_ok() {}
        drawer.offer(1, "frame 1001".into());
        terminal
            .reaches
            .recv_timeout(PATIENCE)
            .expect("the frame is written");
        drawer.offer(1, "stale".into());
        drawer.close(1, true, None);
        drawer.offer(1, "after its end".into());
        drawer.open(2);
        drawer.offer(2, "next display".into());
        assert_eq!(drawn(), "frame 1001");
        assert_eq!(drawn(), "next display");
    }

    /// A terminal that tells when a write reaches it, takes it only when let, and tells
    /// what it took, as written.
    struct Gated {
        reached: mpsc::Sender<()>,
        let_through: mpsc::Receiver<()>,
        took: mpsc::Sender<String>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.reached.send(());
            let _ = self.let_through.recv();
            let _ = self.took.send(String::from_utf8_lossy(buf).into_owned());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The test's side of a [`Gated`] terminal: when a write reaches it, what lets it
    /// through, and what it took.
    struct GateHandles {
        reaches: mpsc::Receiver<()>,
        let_through: mpsc::Sender<()>,
        written: mpsc::Receiver<String>,
    }

    impl GateHandles {
        /// Lets the write at the gate, or the next to come, through: what it took.
        fn pass(&self) -> String {
            self.let_through.send(()).unwrap();
            self.written.recv_timeout(PATIENCE).unwrap()
        }
    }

    /// A drawer of `budget` whose thread draws on a [`Gated`] terminal, the lock of its
    /// line, and the terminal's handles.
    fn on_a_gated_terminal(budget: usize) -> (Arc<Drawer>, &'static Mutex<bool>, GateHandles) {
        let drawer = Arc::new(Drawer::new(budget));
        let line: &'static Mutex<bool> = Box::leak(Box::new(Mutex::new(false)));
        let (reached, reaches) = mpsc::channel();
        let (let_through, gate) = mpsc::channel();
        let (took, written) = mpsc::channel();
        let mut terminal = Gated {
            reached,
            let_through: gate,
            took,
        };
        let runs = drawer.clone();
        std::thread::spawn(move || runs.run(line, &mut terminal));
        let handles = GateHandles {
            reaches,
            let_through,
            written,
        };
        (drawer, line, handles)
    }

    /// A drawer of `budget` drawing on a [`Gated`] terminal, already in the write of a
    /// first frame of owner 1's, `"frame"`; the terminal's handles.
    fn stalled_on_a_frame(budget: usize) -> (Arc<Drawer>, GateHandles) {
        let (drawer, _, terminal) = on_a_gated_terminal(budget);
        drawer.open(1);
        drawer.offer(1, "frame".into());
        terminal
            .reaches
            .recv_timeout(PATIENCE)
            .expect("the frame is written");
        assert_eq!(terminal.pass(), "\r\x1b[Kframe");
        // The next write waits at the gate: the terminal is stopped from here on.
        drawer.offer(1, "frame".into());
        terminal
            .reaches
            .recv_timeout(PATIENCE)
            .expect("the next frame is written");
        (drawer, terminal)
    }

    /// Messages said while the terminal takes nothing are queued, not waited for (the
    /// runtime's thread says a failed object's error), and then written in their order on
    /// lines of their own, the frame cleared before them and redrawn after. A closed
    /// display's summary takes the frame's place, and nothing is drawn after it.
    #[test]
    fn messages_wait_for_no_terminal_and_go_above_the_frame() {
        let (drawer, terminal) = stalled_on_a_frame(QUEUE_BYTES);
        let (said, done) = mpsc::channel();
        let says = drawer.clone();
        std::thread::spawn(move || {
            says.say("dist: line 1: not found".into());
            says.say("dist: line 2: not found".into());
            says.close(1, true, Some("2 objects, 2 failed".into()));
            says.offer(1, "a frame after the end".into());
            let _ = said.send(());
        });
        done.recv_timeout(PATIENCE)
            .expect("saying a message waited for the terminal");
        assert_eq!(terminal.pass(), "\r\x1b[Kframe");
        assert_eq!(
            terminal.pass(),
            "\r\x1b[Kdist: line 1: not found\ndist: line 2: not found\n2 objects, 2 failed\n"
        );
        drawer.drain();

        // With a frame drawn, a message clears it and redraws it below.
        drawer.open(2);
        drawer.offer(2, "next".into());
        assert_eq!(terminal.pass(), "\r\x1b[Knext");
        drawer.say("a warning".into());
        assert_eq!(terminal.pass(), "\r\x1b[Ka warning\n\r\x1b[Knext");
        drawer.drain();
    }

    /// A stopped run's wait for stderr ends at its deadline, the terminal still stopped,
    /// saying that lines were left; once they are written it says they all were.
    #[test]
    fn a_drain_until_gives_up_at_its_deadline() {
        let (drawer, terminal) = stalled_on_a_frame(QUEUE_BYTES);
        drawer.say("dist: interrupted".into());
        let soon = std::time::Instant::now() + Duration::from_millis(50);
        assert!(!drawer.drain_until(soon), "the terminal took nothing");
        assert_eq!(terminal.pass(), "\r\x1b[Kframe");
        assert_eq!(terminal.pass(), "\r\x1b[Kdist: interrupted\n\r\x1b[Kframe");
        assert!(drawer.drain_until(std::time::Instant::now() + PATIENCE));
    }

    /// A panic of the main thread waits for the lines queued before it, then says its
    /// message: they are what tells how the run got there, and went with the process.
    #[test]
    fn a_panic_of_the_main_thread_writes_the_lines_queued_before_it() {
        let (drawer, terminal) = stalled_on_a_frame(QUEUE_BYTES);
        drawer.say("dist: what went wrong first".into());
        let (told, tells) = mpsc::channel();
        let told = Mutex::new(told);
        let others: Arc<PanicHook> = Arc::new(std::panic::take_hook());
        let message = {
            let (drawer, others) = (drawer.clone(), others.clone());
            move |info: &std::panic::PanicHookInfo<'_>| {
                if std::thread::current().name() != Some("main") {
                    return others(info);
                }
                let pending = lock(&drawer.pending);
                let idle = pending.lines.is_empty() && !pending.writing;
                let _ = lock(&told).send(idle);
            }
        };
        let drains = drawer.clone();
        std::panic::set_hook(drain_then(move || drains.drain(), Box::new(message)));
        let panics = std::thread::Builder::new()
            .name("main".into())
            .spawn(|| panic!("the run's bug"))
            .unwrap();
        assert_eq!(terminal.pass(), "\r\x1b[Kframe");
        assert_eq!(
            terminal.pass(),
            "\r\x1b[Kdist: what went wrong first\n\r\x1b[Kframe"
        );
        let idle = tells.recv_timeout(PATIENCE).expect("the panic's message");
        assert!(panics.join().is_err());
        std::panic::set_hook(Box::new(move |info| others(info)));
        assert!(idle, "the panic's message came before the lines queued");
    }

    /// Only a panic that ends the process waits for stderr's lines. The runtime runs on
    /// the main thread, and catches the panic of a task there (a job's, which fails its
    /// object while the batch goes on): waiting there held the runtime up on a stalled
    /// terminal, and gave SIGINT and SIGTERM back their default for the rest of the batch,
    /// so that a Ctrl-C killed it on the spot, its temporary files left behind.
    #[test]
    fn only_a_panic_that_ends_the_process_waits_for_stderr() {
        let on_main = std::thread::Builder::new()
            .name("main".into())
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let in_task = tokio::spawn(async { ends_the_process() });
                    (ends_the_process(), in_task.await.unwrap())
                })
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(on_main, (true, false), "(the run itself, a task of it)");
        assert!(!std::thread::spawn(ends_the_process).join().unwrap());
    }

    /// A queue that fills while the terminal takes nothing keeps the lines that came
    /// first, in their order, and drops the rest, then says how many it dropped: memory
    /// stays bounded, and no line is lost without a word.
    #[test]
    fn a_full_queue_drops_lines_and_says_how_many() {
        let (drawer, terminal) = stalled_on_a_frame(3 * (LINE_COST + 6));
        for i in 0..10 {
            drawer.say(format!("line {i}"));
        }
        assert!(
            lock(&drawer.pending).lines.len() == 3,
            "the queue is bounded"
        );
        assert_eq!(terminal.pass(), "\r\x1b[Kframe");
        let shown = terminal.pass();
        let warning = dropped_warning(7);
        assert_eq!(
            shown,
            format!("\r\x1b[Kline 0\nline 1\nline 2\n{warning}\n\r\x1b[Kframe")
        );
        assert!(warning.starts_with("dist: warning: 7 more messages were not shown"));
        // Written, the queue takes lines again.
        drawer.say("line 10".into());
        assert_eq!(terminal.pass(), "\r\x1b[Kline 10\n\r\x1b[Kframe");
        drawer.drain();
    }
}
