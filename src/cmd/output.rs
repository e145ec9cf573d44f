//! The worker's stdout (frames or JSON lines) and `--report`, written on a thread of their
//! own.
//!
//! The worker's runtime has one thread; a slow reader (`| ssh host cat`) or a large spooled
//! frame must not stop it from polling the transfers in flight, or their idle timeouts
//! would fire. Outcomes cross a small bounded queue, so a slow reader still slows the
//! batch down (backpressure) instead of letting memory grow.

use std::io::Write;

use dist::sink;
use dist::worker::Outcome;

/// Outcomes waiting for the writer at most; each holds at most a 1 MiB spool in memory.
const QUEUE: usize = 4;

/// Why output stopped.
pub enum Failure {
    /// The reader went away (`| head`): nothing to report.
    ReaderGone,
    /// A real write error, already described.
    Write(String),
}

/// The writer thread and the queue to it.
pub struct Output {
    queue: Option<tokio::sync::mpsc::Sender<Outcome>>,
    /// The writer's verdict, sent when it ends.
    done: std::sync::mpsc::Receiver<Result<(), Failure>>,
}

impl Output {
    /// Starts the writer: frames (`framed`) or JSON lines on stdout, and JSON lines to
    /// `report` if given.
    pub fn start(framed: bool, report: Option<std::io::BufWriter<std::fs::File>>) -> Output {
        let (queue, rx) = tokio::sync::mpsc::channel(QUEUE);
        let (verdict, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("dist-output".into())
            .spawn(move || {
                let _ = verdict.send(write_all(rx, framed, report));
            })
            .expect("starting the output thread");
        Output {
            queue: Some(queue),
            done,
        }
    }

    /// Hands an outcome to the writer, waiting while the queue is full. `false` when the
    /// writer has stopped (see [`Output::finish`] for why).
    pub async fn send(&mut self, outcome: Outcome) -> bool {
        match &self.queue {
            Some(q) => q.send(outcome).await.is_ok(),
            None => false,
        }
    }

    /// Writes what is queued, flushes, and reports how it went.
    pub fn finish(mut self) -> Result<(), Failure> {
        self.queue.take();
        self.done
            .recv()
            .unwrap_or_else(|_| Err(Failure::Write("the output thread panicked".into())))
    }

    /// Like [`Output::finish`], but gives up after `limit`: on interruption a reader that
    /// does not read must not keep the process alive. What the writer had not written by
    /// then is lost with the process.
    pub fn finish_within(mut self, limit: std::time::Duration) {
        self.queue.take();
        let _ = self.done.recv_timeout(limit);
    }
}

fn write_all(
    mut rx: tokio::sync::mpsc::Receiver<Outcome>,
    framed: bool,
    mut report: Option<std::io::BufWriter<std::fs::File>>,
) -> Result<(), Failure> {
    let mut out = sink::gather::Gather::new(std::io::stdout().lock());
    let stdout_failed = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::ReaderGone
        } else {
            Failure::Write(format!("writing to stdout: {e}"))
        }
    };
    loop {
        let mut outcome = match rx.try_recv() {
            Ok(o) => o,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                // Nothing queued: hand what we have to the reader before waiting.
                out.flush().map_err(stdout_failed)?;
                match rx.blocking_recv() {
                    Some(o) => o,
                    None => break,
                }
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
        };
        // Framed output without a report needs no JSON line at all.
        let line = (!framed || report.is_some()).then(|| sink::report::json_line(&outcome));
        if framed {
            sink::framed::write_frame(&mut out, &mut outcome).map_err(stdout_failed)?;
        }
        if let Some(line) = line {
            if !framed {
                writeln!(out, "{line}").map_err(stdout_failed)?;
            }
            if let Some(r) = &mut report {
                writeln!(r, "{line}")
                    .map_err(|e| Failure::Write(format!("writing the report: {e}")))?;
            }
        }
    }
    out.flush().map_err(stdout_failed)?;
    if let Some(r) = &mut report {
        r.flush()
            .map_err(|e| Failure::Write(format!("writing the report: {e}")))?;
    }
    Ok(())
}
