//! The thread that draws progress frames on stderr.
//!
//! A frame written by the task that renders it blocked the runtime's one thread whenever
//! the terminal stopped taking output (Ctrl-S, an ssh session whose link stalls, a
//! terminal scrolled back that pauses its reader), and with it every fetch: a progress
//! line is written a few times a second, so a terminal's buffer fills within seconds. A
//! frame is now handed to a thread of its own and never waited for; one that is still
//! waiting when the next comes is replaced by it, so a stalled terminal costs one string.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

/// Frames handed to the drawing thread and not yet drawn.
struct Pending {
    /// The display whose frames are taken; 0 when none draws.
    owner: u64,
    /// Its newest frame, not yet drawn.
    frame: Option<String>,
}

/// Frames waiting for a thread that draws them.
pub struct Drawer {
    pending: Mutex<Pending>,
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drawer {
    /// A drawer with nothing to draw.
    pub const fn new() -> Drawer {
        Drawer {
            pending: Mutex::new(Pending {
                owner: 0,
                frame: None,
            }),
            wake: Condvar::new(),
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

    /// Stops drawing `owner`'s frames, dropping one still waiting. Called holding the
    /// line's lock, it leaves no frame of `owner`'s to be drawn after what the caller
    /// writes next (its summary): the drawing thread holds that lock while it writes.
    pub fn close(&self, owner: u64) {
        let mut pending = lock(&self.pending);
        if pending.owner == owner {
            pending.owner = 0;
            pending.frame = None;
        }
    }

    /// Draws frames on `out` as they come, for ever: each on the line `line` says whether
    /// a frame holds, taken while the frame is written.
    pub fn run(&self, line: &Mutex<bool>, out: &mut dyn Write) {
        loop {
            {
                let mut pending = lock(&self.pending);
                while pending.frame.is_none() {
                    pending = self.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
                }
            }
            // The line first, then the frame: one closed meanwhile is not drawn.
            let mut drawn = lock(line);
            let Some(frame) = lock(&self.pending).frame.take() else {
                continue;
            };
            let _ = out.write_all(format!("\r\x1b[K{frame}").as_bytes());
            let _ = out.flush();
            *drawn = true;
        }
    }
}

/// The process's drawer, drawing on stderr.
static DRAWER: Drawer = Drawer::new();

/// Whether the drawing thread runs; `false` when it could not be started (a limit on
/// threads), and frames are then written by the caller, as they were.
static THREAD: OnceLock<bool> = OnceLock::new();

/// A new owner of frames, for one display or meter.
pub fn owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Makes `owner` the one whose frames are drawn on stderr.
pub fn open(owner: u64) {
    DRAWER.open(owner);
}

/// Draws `frame` of `owner`'s on stderr, by the drawing thread; `line` is the lock on
/// stderr's last line ([`super::progress::clear_line`]), taken while it is drawn.
pub fn draw(owner: u64, frame: String, line: &'static Mutex<bool>) {
    let threaded = *THREAD.get_or_init(|| {
        std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || DRAWER.run(line, &mut std::io::stderr()))
            .is_ok()
    });
    if threaded {
        DRAWER.offer(owner, frame);
    } else {
        let mut drawn = lock(line);
        let _ = write!(std::io::stderr().lock(), "\r\x1b[K{frame}");
        let _ = std::io::stderr().flush();
        *drawn = true;
    }
}

/// Stops drawing `owner`'s frames; call it holding `line`'s lock.
pub fn close(owner: u64) {
    DRAWER.close(owner);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::Duration;

    /// A terminal that takes a frame only when let, and tells each it took.
    struct Stalled {
        let_through: mpsc::Receiver<()>,
        took: mpsc::Sender<String>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.let_through.recv();
            let frame = String::from_utf8_lossy(buf).replace("\r\x1b[K", "");
            let _ = self.took.send(frame);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const PATIENCE: Duration = Duration::from_secs(20);

    /// A terminal that takes nothing holds the drawing thread, not whoever offers frames:
    /// a thousand frames are handed over while it waits, and the newest alone is drawn
    /// once it takes output again. A closed display's frames are not drawn.
    #[test]
    fn a_stalled_terminal_never_holds_whoever_offers_frames() {
        let drawer = Arc::new(Drawer::new());
        let line: &'static Mutex<bool> = Box::leak(Box::new(Mutex::new(false)));
        let (let_through, gate) = mpsc::channel();
        let (took, drawn) = mpsc::channel();
        let mut terminal = Stalled {
            let_through: gate,
            took,
        };
        let runs = drawer.clone();
        std::thread::spawn(move || runs.run(line, &mut terminal));

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
        let_through.send(()).unwrap();
        let first = drawn.recv_timeout(PATIENCE).unwrap();
        if first != "frame 1000" {
            let_through.send(()).unwrap();
            assert_eq!(drawn.recv_timeout(PATIENCE).unwrap(), "frame 1000");
        }
        assert!(*lock(line), "the line holds a frame");

        // Closed with a frame waiting: neither it nor a later one of its owner's is drawn.
        {
            let _line = lock(line);
            drawer.offer(1, "stale".into());
            drawer.close(1);
        }
        drawer.offer(1, "after its end".into());
        drawer.open(2);
        drawer.offer(2, "next display".into());
        let_through.send(()).unwrap();
        assert_eq!(drawn.recv_timeout(PATIENCE).unwrap(), "next display");
    }
}
