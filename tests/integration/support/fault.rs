//! HTTP servers that misbehave in ways nginx cannot play, on 127.0.0.1 in a
//! thread: a black hole (accepts, never answers), a slow drip (headers, then
//! one byte at a time), a truncated body (Content-Length larger than what is
//! sent, then close), and canned raw responses.
//!
//! Bounded: every connection is closed after at most `MAX_HOLD`, and
//! everything stops (threads joined) when the server is dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest any connection is held open.
const MAX_HOLD: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
pub enum Fault {
    /// Accept, read the request, never answer.
    BlackHole,
    /// Send 200 headers claiming a large body, then one byte of `body`
    /// (repeated) per `interval`.
    SlowDrip { interval: Duration, body: Vec<u8> },
    /// Send headers with `Content-Length: claimed` but only `body`, then close.
    Truncated { claimed: usize, body: Vec<u8> },
    /// Send these bytes as the whole response, then close.
    Raw(Vec<u8>),
}

/// A running fault server; stopped on drop.
pub struct FaultServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FaultServer {
    pub fn start(fault: Fault) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault server");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let mut handlers = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        let (f, s2) = (fault.clone(), s.clone());
                        handlers.push(std::thread::spawn(move || serve(conn, &f, &s2)));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            for h in handlers {
                let _ = h.join();
            }
        });
        FaultServer {
            port,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// Accepts and never answers.
    pub fn black_hole() -> FaultServer {
        Self::start(Fault::BlackHole)
    }

    /// 200 with a body that arrives one byte per `interval`.
    pub fn slow_drip(interval: Duration, body: &str) -> FaultServer {
        Self::start(Fault::SlowDrip {
            interval,
            body: body.as_bytes().to_vec(),
        })
    }

    /// 200 with `Content-Length: claimed` but only `body` sent, then close.
    pub fn truncated(claimed: usize, body: &str) -> FaultServer {
        assert!(claimed > body.len());
        Self::start(Fault::Truncated {
            claimed,
            body: body.as_bytes().to_vec(),
        })
    }

    /// A full canned response (status line, headers, body) then close.
    pub fn raw(response: &str) -> FaultServer {
        Self::start(Fault::Raw(response.as_bytes().to_vec()))
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn users_url(&self) -> String {
        self.url("/users/{user}.keys")
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stopped(stop: &AtomicBool, since: Instant) -> bool {
    stop.load(Ordering::SeqCst) || since.elapsed() > MAX_HOLD
}

/// Reads until the end of the request head (or a pause/close/stop).
fn read_head(conn: &mut TcpStream, stop: &AtomicBool, since: Instant) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stopped(stop, since) && Instant::now() < deadline {
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    return;
                }
            }
            Err(_) => continue,
        }
    }
}

fn serve(mut conn: TcpStream, fault: &Fault, stop: &AtomicBool) {
    let since = Instant::now();
    let _ = conn.set_nonblocking(false);
    match fault {
        Fault::BlackHole => {
            let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
            let mut chunk = [0u8; 1024];
            while !stopped(stop, since) {
                match conn.read(&mut chunk) {
                    Ok(0) => {
                        // Peer closed: nothing more to swallow.
                        std::thread::sleep(Duration::from_millis(50));
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        return;
                    }
                    _ => continue,
                }
            }
        }
        Fault::SlowDrip { interval, body } => {
            read_head(&mut conn, stop, since);
            // No Content-Length: the body is delimited by the close, so only
            // the time budget (not the size cap) can stop the reader.
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n";
            if conn.write_all(head.as_bytes()).is_err() {
                return;
            }
            let body = if body.is_empty() {
                b"x".to_vec()
            } else {
                body.clone()
            };
            let mut i = 0;
            while !stopped(stop, since) {
                if conn.write_all(&body[i % body.len()..][..1]).is_err() {
                    return;
                }
                i += 1;
                let end = Instant::now() + *interval;
                while Instant::now() < end && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10).min(*interval));
                }
            }
        }
        Fault::Truncated { claimed, body } => {
            read_head(&mut conn, stop, since);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {claimed}\r\nConnection: close\r\n\r\n"
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(body);
            let _ = conn.flush();
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        Fault::Raw(resp) => {
            read_head(&mut conn, stop, since);
            let _ = conn.write_all(resp);
            let _ = conn.flush();
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A port on 127.0.0.1 where nothing listens (connection refused).
pub fn dead_url() -> String {
    let port = super::free_port();
    format!("http://127.0.0.1:{port}/users/{{user}}.keys")
}
