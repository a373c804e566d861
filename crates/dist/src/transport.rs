//! The TCP data plane: one [`Link`] per peer connection, carrying [`crate::frame`]s.
//!
//! Every read and write has a timeout (the spec's `parallelism.data.timeout_s`), so a dead or
//! stalled peer is an error naming it, never a hang. A connection starts with a `Hello`
//! frame carrying the shared token; the accepting side refuses a wrong one with an `Error`
//! frame and closes. Bytes are counted as they go through the socket, framing included, so
//! `comm.bytes_sent_per_worker` is measured, not computed.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{DistError, Result};
use crate::frame::{self, FrameError, Header, Hello, Kind, HEADER_LEN};

/// Bytes through every link of one process.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

impl Counters {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// One side of a connection to a peer: a sending half and a receiving half, which two
/// threads may use at once (see [`Link::halves`]).
pub struct Link {
    /// Who is on the other side, for errors (`rank 2 (127.0.0.1:4312)`).
    pub peer: String,
    tx: Tx,
    rx: Rx,
}

/// The sending half of a [`Link`].
pub struct Tx {
    writer: TcpStream,
    peer: String,
    counters: Arc<Counters>,
    timeout: Duration,
    max_len: u32,
}

/// The receiving half of a [`Link`].
pub struct Rx {
    reader: BufReader<TcpStream>,
    peer: String,
    counters: Arc<Counters>,
    timeout: Duration,
    max_len: u32,
}

/// The largest hello frame: two u32s and two strings of at most 64 KiB.
const HELLO_MAX: u32 = 8 + 2 * (2 + 65_535);

/// Compares tokens without stopping at the first difference.
pub fn same_token(given: &str, token: &str) -> bool {
    // Time depends on the given token's length only: every given byte is compared (with
    // the token's bytes cycled), and a length difference fails the comparison at the end.
    let (g, t) = (given.as_bytes(), token.as_bytes());
    if t.is_empty() {
        return false;
    }
    let mut diff = u8::from(g.len() != t.len());
    for (i, x) in g.iter().enumerate() {
        diff |= x ^ t[i % t.len()];
    }
    std::hint::black_box(diff) == 0
}

impl Link {
    fn new(
        stream: TcpStream,
        peer: String,
        counters: Arc<Counters>,
        timeout: Duration,
    ) -> Result<Link> {
        let setup =
            |e: std::io::Error| DistError::io(format!("set up the connection to {peer}"), e);
        stream.set_nodelay(true).map_err(setup)?;
        stream.set_read_timeout(Some(timeout)).map_err(setup)?;
        stream.set_write_timeout(Some(timeout)).map_err(setup)?;
        let writer = stream.try_clone().map_err(setup)?;
        let max_len = frame::DEFAULT_MAX_LEN;
        Ok(Link {
            tx: Tx {
                writer,
                peer: peer.clone(),
                counters: counters.clone(),
                timeout,
                max_len,
            },
            rx: Rx {
                reader: BufReader::with_capacity(1 << 16, stream),
                peer: peer.clone(),
                counters,
                timeout,
                max_len,
            },
            peer,
        })
    }

    /// Connects to `addr`, retrying until `timeout` (the peer may still be starting), and
    /// introduces itself with `hello`; returns the link and the peer's own hello.
    pub fn connect(
        addr: &str,
        peer: &str,
        hello: &Hello,
        counters: Arc<Counters>,
        timeout: Duration,
    ) -> Result<(Link, Hello)> {
        let peer = format!("{peer} ({addr})");
        let deadline = Instant::now() + timeout;
        let target = addr
            .to_socket_addrs()
            .map_err(|e| DistError::io(format!("resolve {peer}"), e))?
            .next()
            .ok_or_else(|| DistError::Config(format!("{peer}: the address resolves to nothing")))?;
        let stream = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match TcpStream::connect_timeout(&target, left.max(Duration::from_millis(10))) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("connect to {peer}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(DistError::Timeout {
                        peer,
                        doing: format!("connecting ({e})"),
                        seconds: timeout.as_secs_f64(),
                    })
                }
            }
        };
        let mut link = Link::new(stream, peer, counters, timeout)?;
        let bytes = hello.encode().map_err(|e| link.frame_error(e))?;
        link.send(Kind::Hello, 0, &bytes)?;
        let (h, payload) = link.recv_any("waiting for its hello")?;
        match h.kind {
            Kind::Hello => {
                let theirs = Hello::decode(&payload).map_err(|e| link.frame_error(e))?;
                Ok((link, theirs))
            }
            Kind::Error => Err(DistError::Refused {
                peer: link.peer.clone(),
                message: String::from_utf8_lossy(&payload).into_owned(),
            }),
            other => Err(link.protocol(format!("expected a hello frame, got {other:?}"))),
        }
    }

    /// Accepts a connection: reads the peer's hello, checks its token, answers with `ours`.
    /// A wrong token gets an `Error` frame saying so, then the connection is closed.
    pub fn accept(
        stream: TcpStream,
        token: &str,
        ours: &Hello,
        counters: Arc<Counters>,
        timeout: Duration,
    ) -> Result<(Link, Hello)> {
        let addr = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        let mut link = Link::new(stream, format!("connection from {addr}"), counters, timeout)?;
        // Before the token is checked, nothing bigger than a hello is read.
        link.rx.max_len = HELLO_MAX;
        let (h, payload) = link.recv("waiting for its hello")?;
        if h.kind != Kind::Hello {
            return Err(link.protocol(format!("expected a hello frame first, got {:?}", h.kind)));
        }
        let theirs = Hello::decode(&payload).map_err(|e| link.frame_error(e))?;
        if !same_token(&theirs.token, token) {
            let message = if theirs.token.is_empty() {
                "no token given; set WEFT_TOKEN (or --token-file) to the cluster's token"
            } else {
                "wrong token; WEFT_TOKEN (or --token-file) must match the worker's"
            };
            // Best effort: the peer learns why before the connection closes.
            let _ = link.send(Kind::Error, 0, message.as_bytes());
            return Err(DistError::Refused {
                peer: link.peer,
                message: message.into(),
            });
        }
        link.rx.max_len = frame::DEFAULT_MAX_LEN;
        link.set_peer(format!("{} rank {} ({addr})", theirs.role, theirs.rank));
        let bytes = ours.encode().map_err(|e| link.frame_error(e))?;
        link.send(Kind::Hello, 0, &bytes)?;
        Ok((link, theirs))
    }

    /// Renames the peer (errors name it).
    pub fn set_peer(&mut self, peer: String) {
        self.tx.peer = peer.clone();
        self.rx.peer = peer.clone();
        self.peer = peer;
    }

    /// Changes how long reads and writes wait (a server waits for requests longer than a
    /// collective waits for a peer).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.tx.timeout = timeout;
        self.rx.timeout = timeout;
        let s = &self.tx.writer;
        s.set_read_timeout(Some(timeout))
            .and_then(|()| s.set_write_timeout(Some(timeout)))
            .map_err(|e| DistError::io(format!("set a timeout on {}", self.peer), e))
    }

    /// The two halves, for sending and receiving at the same time on two threads.
    pub fn halves(&mut self) -> (&mut Tx, &mut Rx) {
        (&mut self.tx, &mut self.rx)
    }

    pub fn protocol(&self, message: String) -> DistError {
        protocol(&self.peer, message)
    }

    fn frame_error(&self, source: FrameError) -> DistError {
        DistError::Frame {
            peer: self.peer.clone(),
            source,
        }
    }

    pub fn send(&mut self, kind: Kind, tag: u32, payload: &[u8]) -> Result<()> {
        self.tx.send(kind, tag, payload)
    }
    pub fn recv(&mut self, doing: &str) -> Result<(Header, Vec<u8>)> {
        self.rx.recv(doing)
    }
    pub fn recv_any(&mut self, doing: &str) -> Result<(Header, Vec<u8>)> {
        self.rx.recv_any(doing)
    }
    pub fn recv_tagged(&mut self, tag: u32, doing: &str) -> Result<(Kind, Vec<u8>)> {
        self.rx.recv_tagged(tag, doing)
    }
}

fn protocol(peer: &str, message: String) -> DistError {
    DistError::Protocol {
        peer: peer.to_string(),
        message,
    }
}

fn io_error(peer: &str, timeout: Duration, e: std::io::Error, doing: &str) -> DistError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => DistError::Timeout {
            peer: peer.to_string(),
            doing: doing.into(),
            seconds: timeout.as_secs_f64(),
        },
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => DistError::PeerLost {
            peer: peer.to_string(),
            doing: doing.into(),
        },
        _ => DistError::io(format!("talk to {peer} while {doing}"), e),
    }
}

impl Tx {
    /// Sends one frame.
    pub fn send(&mut self, kind: Kind, tag: u32, payload: &[u8]) -> Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= self.max_len)
            .ok_or_else(|| {
                protocol(
                    &self.peer,
                    format!("a {}-byte frame is over the limit", payload.len()),
                )
            })?;
        let head = frame::encode_header(&Header { kind, tag, len });
        self.writer
            .write_all(&head)
            .and_then(|()| self.writer.write_all(payload))
            .map_err(|e| io_error(&self.peer, self.timeout, e, "sending"))?;
        self.counters
            .sent
            .fetch_add((HEADER_LEN + payload.len()) as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl Rx {
    /// Who is on the other side.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Receives one frame; an `Error` frame from the peer becomes an error.
    pub fn recv(&mut self, doing: &str) -> Result<(Header, Vec<u8>)> {
        let (h, payload) = self.recv_any(doing)?;
        if h.kind == Kind::Error {
            return Err(protocol(
                &self.peer,
                format!("reported an error: {}", String::from_utf8_lossy(&payload)),
            ));
        }
        Ok((h, payload))
    }

    /// Receives one frame of any kind; `doing` says what for, in errors.
    pub fn recv_any(&mut self, doing: &str) -> Result<(Header, Vec<u8>)> {
        let mut head = [0u8; HEADER_LEN];
        self.reader
            .read_exact(&mut head)
            .map_err(|e| io_error(&self.peer, self.timeout, e, doing))?;
        let h = frame::decode_header(&head, self.max_len).map_err(|source| DistError::Frame {
            peer: self.peer.clone(),
            source,
        })?;
        let mut payload = vec![0u8; h.len as usize];
        self.reader
            .read_exact(&mut payload)
            .map_err(|e| io_error(&self.peer, self.timeout, e, doing))?;
        self.counters
            .received
            .fetch_add((HEADER_LEN + payload.len()) as u64, Ordering::Relaxed);
        Ok((h, payload))
    }

    /// Receives one frame and checks its tag (the step it belongs to).
    pub fn recv_tagged(&mut self, tag: u32, doing: &str) -> Result<(Kind, Vec<u8>)> {
        let (h, payload) = self.recv(doing)?;
        if h.tag != tag {
            return Err(protocol(
                &self.peer,
                format!(
                    "out of step while {doing}: got a frame for step {}, expected {tag}",
                    h.tag
                ),
            ));
        }
        Ok((h.kind, payload))
    }
}

/// Connections saying hello at once, at most; more are closed on arrival (a flood of idle
/// connections cannot make a thread each).
pub const MAX_HANDSHAKES: usize = 512;

/// Accepts connections on `listener` for as long as the process lives: each one that says
/// hello with the right token within `timeout` goes to the returned channel; anything else
/// (a wrong token, garbage bytes, a malformed frame, silence) is logged and that connection
/// closed, and the loop goes on serving. At most [`MAX_HANDSHAKES`] are in progress; a
/// failing `accept` (out of file descriptors) backs off instead of spinning. The caller
/// sets the link's timeout for its job once it takes it.
pub fn accept_loop(
    listener: std::net::TcpListener,
    token: String,
    ours: Hello,
    counters: Arc<Counters>,
    timeout: Duration,
) -> std::sync::mpsc::Receiver<(Link, Hello)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (tx, rx) = std::sync::mpsc::channel();
    let pending = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        let mut backoff = Duration::from_millis(5);
        loop {
            let stream = match listener.accept() {
                Ok((s, _)) => {
                    backoff = Duration::from_millis(5);
                    s
                }
                Err(e) => {
                    tracing::warn!("data plane: accept failed ({e}); retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            if pending.fetch_add(1, Ordering::SeqCst) >= MAX_HANDSHAKES {
                pending.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!("data plane: {MAX_HANDSHAKES} connections are still saying hello; closing a new one");
                continue;
            }
            let (tx, token, ours, counters, pending) = (
                tx.clone(),
                token.clone(),
                ours.clone(),
                counters.clone(),
                pending.clone(),
            );
            // A handshake waits for the peer: one thread each, so a silent client cannot
            // hold up the others.
            std::thread::spawn(move || {
                let r = Link::accept(stream, &token, &ours, counters, timeout);
                pending.fetch_sub(1, Ordering::SeqCst);
                match r {
                    Ok(pair) => {
                        let _ = tx.send(pair);
                    }
                    Err(e) => tracing::warn!("data plane: refused a connection: {e}"),
                }
            });
        }
    });
    rx
}
