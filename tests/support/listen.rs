//! A loopback TCP listener served on a thread of its own, for test servers that speak
//! something the fake registry does not (TLS with their own CA, a proxy).

use std::future::Future;

/// Accepts connections on `127.0.0.1:<free port>` and hands each to a handler on a
/// current-thread runtime; stopped and joined when dropped.
pub struct Listener {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    /// Starts serving: every accepted connection is given to `serve` as a task.
    pub fn start<F, Fut>(serve: F) -> Listener
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        r = listener.accept() => r.unwrap(),
                        _ = &mut stopped => return,
                    };
                    tokio::spawn(serve(tcp));
                }
            });
        });
        Listener {
            port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
