//! Collectives over a ring of workers: ring all-reduce (scatter-reduce then all-gather, so
//! each worker sends 2(N−1)K/N values for K), a sparse all-gather for top-k compression,
//! and the neighbour exchange of gossip averaging.
//!
//! Written by hand because it is weft's own: the collectives run over weft's framed TCP
//! links with its compression codecs and per-peer timeouts. Every reduction sums in the same
//! order on every worker, so all workers end with bit-identical results.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::compress::{self, Codec, Residual};
use crate::error::{DistError, Result};
use crate::frame::{Hello, Kind};
use crate::transport::{Counters, Link};

/// This worker's place in the ring: a link to its right neighbour (rank + 1), where it
/// sends, and one from its left neighbour (rank − 1), where it receives.
pub struct Ring {
    pub rank: usize,
    pub world: usize,
    /// `None` for a single worker.
    links: Option<(Link, Link)>,
}

fn name(rank: usize) -> String {
    format!("worker rank {rank}")
}

/// Values per frame of a ring step (1 MiB of f32).
pub const SEGMENT: usize = 1 << 18;

/// Frames a ring step of `len` values takes (an empty chunk still sends one).
pub fn frames(len: usize) -> usize {
    len.div_ceil(SEGMENT).max(1)
}

fn segments(v: &[f32]) -> Vec<&[f32]> {
    if v.is_empty() {
        vec![v]
    } else {
        v.chunks(SEGMENT).collect()
    }
}

fn segments_mut(v: &mut [f32]) -> Vec<&mut [f32]> {
    if v.is_empty() {
        vec![v]
    } else {
        v.chunks_mut(SEGMENT).collect()
    }
}

/// `[start, end)` of chunk `i` of `len` values cut into `n` near-equal chunks.
pub fn chunk(len: usize, n: usize, i: usize) -> std::ops::Range<usize> {
    (i * len / n)..((i + 1) * len / n)
}

impl Ring {
    /// Joins the ring: connects to the right neighbour's data address and waits for the
    /// left neighbour's connection on `incoming` (from [`crate::transport::accept_loop`]).
    /// `job` tells this job's connections from a previous one's.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        rank: usize,
        addrs: &[String],
        job: &str,
        token: &str,
        incoming: &Receiver<(Link, Hello)>,
        counters: Arc<Counters>,
        timeout: Duration,
    ) -> Result<Ring> {
        let world = addrs.len();
        if world <= 1 {
            return Ok(Ring {
                rank,
                world,
                links: None,
            });
        }
        let right_rank = (rank + 1) % world;
        let left_rank = (rank + world - 1) % world;
        let role = format!("ring:{job}");
        let hello = Hello {
            token: token.to_string(),
            rank: rank as u32,
            world: world as u32,
            role: role.clone(),
        };
        let (right, _) = Link::connect(
            &addrs[right_rank],
            &name(right_rank),
            &hello,
            counters,
            timeout,
        )?;
        let deadline = Instant::now() + timeout;
        let left = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match incoming.recv_timeout(wait) {
                Ok((mut link, h)) if h.role == role && h.rank as usize == left_rank => {
                    link.set_peer(format!("{} ({})", name(left_rank), addrs[left_rank]));
                    // The job's `timeout_s`, not the listener's handshake timeout.
                    link.set_timeout(timeout)?;
                    break link;
                }
                Ok((_, h)) => tracing::warn!(
                    "data plane: ignoring a connection from rank {} ({}) while waiting for rank {left_rank} of job {job}",
                    h.rank,
                    h.role
                ),
                Err(_) => {
                    return Err(DistError::Timeout {
                        peer: format!("{} ({})", name(left_rank), addrs[left_rank]),
                        doing: "waiting for it to join the ring".into(),
                        seconds: timeout.as_secs_f64(),
                    })
                }
            }
        };
        Ok(Ring {
            rank,
            world,
            links: Some((left, right)),
        })
    }

    /// Sends `send` to the right while receiving `recv.len()` values from the left into
    /// `recv` (added, or overwriting), both at once: in turn, a large message would fill
    /// the socket buffers and deadlock. Both go in segments of [`SEGMENT`] values, so the
    /// receiver reduces one segment while the next is on the wire.
    fn exchange(
        &mut self,
        tag: u32,
        send: Vec<f32>,
        recv: &mut [f32],
        add: bool,
        codec: &Codec,
    ) -> Result<()> {
        let Some((left, right)) = &mut self.links else {
            return Err(DistError::Config("a single worker has no ring".into()));
        };
        let (tx, _) = right.halves();
        let (_, rx) = left.halves();
        let peer = rx.peer().to_string();
        std::thread::scope(|s| {
            let sender = s.spawn(move || -> Result<()> {
                let mut none = Residual::default();
                for seg in segments(&send) {
                    let (kind, payload) = compress::encode(codec, seg, &mut none);
                    tx.send(kind, tag, &payload)?;
                }
                Ok(())
            });
            let mut got = Ok(());
            for seg in segments_mut(recv) {
                match rx.recv_tagged(tag, "all-reduce") {
                    Ok((kind, payload)) => {
                        if let Err(source) = compress::decode_into(kind, &payload, seg, add) {
                            got = Err(DistError::Frame {
                                peer: peer.clone(),
                                source,
                            });
                            break;
                        }
                    }
                    Err(e) => {
                        got = Err(e);
                        break;
                    }
                }
            }
            let sent = sender
                .join()
                .unwrap_or_else(|_| Err(DistError::Config("the sending thread panicked".into())));
            got.and(sent)
        })
    }

    /// Sends one whole frame to the right while receiving one from the left.
    fn shift(&mut self, tag: u32, kind: Kind, payload: Vec<u8>) -> Result<(Kind, Vec<u8>)> {
        let Some((left, right)) = &mut self.links else {
            return Err(DistError::Config("a single worker has no ring".into()));
        };
        let (tx, _) = right.halves();
        std::thread::scope(|s| {
            let sender = s.spawn(move || tx.send(kind, tag, &payload));
            let got = left.recv_tagged(tag, "all-reduce");
            let sent = sender
                .join()
                .unwrap_or_else(|_| Err(DistError::Config("the sending thread panicked".into())));
            sent.and(got)
        })
    }

    /// Sums `data` over every worker, in place. With `fp16`/`int8` every hop is compressed;
    /// with `topk` each worker's top values are gathered around the ring and summed.
    pub fn allreduce(
        &mut self,
        data: &mut [f32],
        tag: u32,
        codec: &Codec,
        residual: &mut Residual,
    ) -> Result<()> {
        let n = self.world;
        if n <= 1 || data.is_empty() {
            return Ok(());
        }
        if let Codec::TopK { .. } = codec {
            return self.sparse_allreduce(data, tag, codec, residual);
        }
        let len = data.len();
        let r = self.rank;
        // Scatter-reduce: after N−1 steps this worker holds the full sum of chunk r+1.
        for s in 0..n - 1 {
            let send = data[chunk(len, n, (r + n - s) % n)].to_vec();
            let recv = chunk(len, n, (r + 2 * n - s - 1) % n);
            self.exchange(tag, send, &mut data[recv], true, codec)?;
        }
        // Compressed sums are rounded once by their owner, so every worker keeps the same
        // values (the owner's own copy would otherwise stay exact).
        let owned = chunk(len, n, (r + 1) % n);
        if !matches!(codec, Codec::None) {
            for seg in segments_mut(&mut data[owned]) {
                let (kind, payload) = compress::encode(codec, seg, &mut Residual::default());
                self.decode(kind, &payload, seg, false)?;
            }
        }
        // All-gather: pass the reduced chunks around.
        for s in 0..n - 1 {
            let send = data[chunk(len, n, (r + 1 + n - s) % n)].to_vec();
            let recv = chunk(len, n, (r + n - s) % n);
            self.exchange(tag, send, &mut data[recv], false, codec)?;
        }
        Ok(())
    }

    fn decode(&self, kind: Kind, payload: &[u8], out: &mut [f32], add: bool) -> Result<()> {
        compress::decode_into(kind, payload, out, add).map_err(|source| DistError::Frame {
            peer: self.left_peer(),
            source,
        })
    }

    fn left_peer(&self) -> String {
        self.links
            .as_ref()
            .map(|(l, _)| l.peer.clone())
            .unwrap_or_default()
    }

    /// Top-k: every worker's sparse vector travels the ring once (N−1 hops); each worker
    /// sums all N of them in rank order, so the result is the same everywhere.
    fn sparse_allreduce(
        &mut self,
        data: &mut [f32],
        tag: u32,
        codec: &Codec,
        residual: &mut Residual,
    ) -> Result<()> {
        let n = self.world;
        let mut by_rank: Vec<Option<(Kind, Vec<u8>)>> = vec![None; n];
        let mine = compress::encode(codec, data, residual);
        by_rank[self.rank] = Some(mine.clone());
        let mut current = mine;
        for s in 0..n - 1 {
            let from = (self.rank + 2 * n - s - 1) % n;
            let got = self.shift(tag, current.0, current.1)?;
            by_rank[from] = Some(got.clone());
            current = got;
        }
        data.fill(0.0);
        for (kind, payload) in by_rank.into_iter().flatten() {
            self.decode(kind, &payload, data, true)?;
        }
        Ok(())
    }

    /// Gossip: averages `data` with the left and right neighbours' values (with one
    /// neighbour when there are two workers).
    pub fn neighbour_average(&mut self, data: &mut [f32], tag: u32) -> Result<()> {
        let n = self.world;
        let Some((left, right)) = &mut self.links else {
            return Ok(());
        };
        let payload = crate::frame::f32_bytes(data);
        let (from_left, from_right) = std::thread::scope(|s| {
            let p = &payload;
            // Both sends on their own threads, both receives here: a model larger than the
            // socket buffers would deadlock if every worker sent before receiving.
            let (left_tx, left_rx) = left.halves();
            let (right_tx, right_rx) = right.halves();
            let to_right = s.spawn(move || right_tx.send(Kind::F32, tag, p));
            let to_left = s.spawn(move || -> Result<()> {
                if n > 2 {
                    left_tx.send(Kind::F32, tag, p)?;
                }
                Ok(())
            });
            let from_left = left_rx.recv_tagged(tag, "gossip");
            let from_right = if n > 2 {
                right_rx.recv_tagged(tag, "gossip").map(|r| r.1)
            } else {
                Ok(Vec::new())
            };
            let joined = |h: std::thread::ScopedJoinHandle<'_, Result<()>>| {
                h.join()
                    .unwrap_or_else(|_| Err(DistError::Config("a gossip thread panicked".into())))
            };
            let sent = joined(to_right).and(joined(to_left));
            (sent.and(from_left), from_right)
        });
        let from_left =
            crate::frame::payload_f32(&from_left?.1).map_err(|source| DistError::Frame {
                peer: self.left_peer(),
                source,
            })?;
        let from_right = from_right?;
        if from_left.len() != data.len() {
            return Err(DistError::Protocol {
                peer: self.left_peer(),
                message: format!("sent {} values, expected {}", from_left.len(), data.len()),
            });
        }
        if n > 2 {
            let from_right =
                crate::frame::payload_f32(&from_right).map_err(|source| DistError::Frame {
                    peer: "right neighbour".into(),
                    source,
                })?;
            if from_right.len() != data.len() {
                return Err(DistError::Config(
                    "right neighbour sent a wrong length".into(),
                ));
            }
            for ((d, l), r) in data.iter_mut().zip(&from_left).zip(&from_right) {
                *d = (*d + l + r) / 3.0;
            }
        } else {
            for (d, l) in data.iter_mut().zip(&from_left) {
                *d = (*d + l) / 2.0;
            }
        }
        Ok(())
    }
}
