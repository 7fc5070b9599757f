//! The transmission phase of one connection: requests in, replies out.
//!
//! A reader task parses requests. A read of cached local data, which cannot
//! block, it serves in place; other small local reads it runs in place too
//! through `block_in_place`; everything else goes to the blocking pool.
//! Replies come back through a channel to one writer, in whatever order they
//! finish (the protocol allows it). Invariants: every request whose payload
//! was read gets exactly one reply while the client reads them; a request
//! that breaks framing (bad magic, a payload too big to skip) ends this
//! connection only, after in-flight replies are sent. A request's bytes are
//! taken from the connection's budget (see `budget`) before its payload is
//! read or its reply made, so a client that stops reading replies stops its
//! own reader. Once the writer fails or the client hangs up, the connection
//! is gone: its reader stops and no request not yet started runs.

use std::io;
use std::sync::Arc;

use prometheus::{Histogram, IntCounter, IntCounterVec};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::budget::{ConnBudget, Held};
use super::handshake::Session;
use super::proto::*;
use crate::error::TierError;
use crate::volume::Volume;
use policy::access::{ReadPattern, ReadTracker};

/// Read buffers a connection keeps for reuse, and the largest kept.
const POOLED_BUFFERS: usize = 8;
const POOLED_BUFFER_MAX: usize = 1 << 20;
/// Reads of local data up to this size run on the connection's own task.
const INLINE_READ: u64 = 1 << 20;
/// Requests executing at once per connection; the reader waits beyond this.
const MAX_IN_FLIGHT: usize = 64;
/// Descriptors per BLOCK_STATUS reply; clients ask again for the rest.
const MAX_STATUS_RUNS: usize = 1024;

#[derive(Debug)]
enum Reply {
    Ok {
        handle: u64,
    },
    Data {
        handle: u64,
        offset: u64,
        data: Vec<u8>,
    },
    Status {
        handle: u64,
        runs: Vec<(u32, u32)>,
    },
    Error {
        handle: u64,
        errno: u32,
        message: String,
        chunk: bool,
    },
}

/// The errno's label in `tierd_nbd_requests_total`.
fn errno_name(errno: u32) -> &'static str {
    match errno {
        EPERM => "eperm",
        EIO => "eio",
        EINVAL => "einval",
        ENOSPC => "enospc",
        EOVERFLOW => "eoverflow",
        ENOTSUP => "enotsup",
        ESHUTDOWN => "eshutdown",
        _ => "error",
    }
}

/// The commands a connection executes, in the order of [`Conn`]' arrays.
const OPS: [u16; 6] = [
    CMD_READ,
    CMD_WRITE,
    CMD_FLUSH,
    CMD_TRIM,
    CMD_WRITE_ZEROES,
    CMD_BLOCK_STATUS,
];

/// CMD_READ's index in [`OPS`].
const READ_OP: usize = 0;
const _: () = assert!(OPS[READ_OP] == CMD_READ);

/// What one connection's request tasks share: metric handles looked up once
/// (a request then only touches atomics), and read buffers the writer hands
/// back after sending them (no allocating and zeroing per read).
struct Conn {
    volume: String,
    requests: IntCounterVec,
    ok: Vec<IntCounter>,
    local: Vec<Histogram>,
    remote: Vec<Histogram>,
    buffers: parking_lot::Mutex<Vec<Vec<u8>>>,
    /// Structured replies were negotiated.
    structured: bool,
}

impl Conn {
    fn new(vol: &Volume, structured: bool) -> Self {
        let m = &vol.engine.metrics;
        let volume = vol.name();
        let per_op =
            |f: &dyn Fn(&str) -> Histogram| OPS.iter().map(|&c| f(command_name(c))).collect();
        Self {
            ok: OPS
                .iter()
                .map(|&c| {
                    m.nbd_requests
                        .with_label_values(&[volume.as_str(), command_name(c), "ok"])
                })
                .collect(),
            local: per_op(&|op| m.nbd_duration.with_label_values(&[op, "local"])),
            remote: per_op(&|op| m.nbd_duration.with_label_values(&[op, "remote"])),
            requests: m.nbd_requests.clone(),
            volume,
            buffers: parking_lot::Mutex::new(Vec::new()),
            structured,
        }
    }

    /// A buffer of `len` bytes; its content is whatever a previous read of
    /// this connection left, so the caller overwrites all of it.
    fn buffer(&self, len: usize) -> Vec<u8> {
        let mut b = self.buffers.lock().pop().unwrap_or_default();
        b.resize(len, 0);
        b
    }

    /// Keeps at most POOLED_BUFFERS of at most POOLED_BUFFER_MAX bytes, so
    /// an idle connection holds little memory whatever it once read.
    fn give_back(&self, b: Vec<u8>) {
        let mut pool = self.buffers.lock();
        if pool.len() < POOLED_BUFFERS && b.capacity() <= POOLED_BUFFER_MAX {
            pool.push(b);
        }
    }

    fn count(&self, command: u16, result: &str) {
        match OPS.iter().position(|&c| c == command) {
            Some(i) if result == "ok" => self.ok[i].inc(),
            _ => self
                .requests
                .with_label_values(&[self.volume.as_str(), command_name(command), result])
                .inc(),
        }
    }
}

/// Runs one request, counting it and timing it by the tier it touched
/// (`cold`: a remote extent, as the reader saw when it dispatched it).
fn execute(
    vol: &Arc<Volume>,
    m: &Conn,
    req: Request,
    payload: Vec<u8>,
    pattern: ReadPattern,
    cold: bool,
) -> Reply {
    let t0 = clock::Stopwatch::start();
    let command = req.command;
    let reply = execute_inner(vol, m, req, payload, pattern, m.structured);
    let result = match &reply {
        Reply::Error { errno, .. } => errno_name(*errno),
        _ => "ok",
    };
    m.count(command, result);
    if let Some(i) = OPS.iter().position(|&c| c == command) {
        let h = if cold { &m.remote[i] } else { &m.local[i] };
        h.observe(t0.elapsed().as_secs_f64());
    }
    reply
}

/// A read served on the connection's task if it needs no waiting (see
/// [`Volume::try_read_cached`]), counted and timed as [`execute`] does.
/// `None` when it would wait or failed: the caller then runs it the usual
/// way, which reports any error.
fn read_cached(vol: &Volume, m: &Conn, req: &Request, pattern: ReadPattern) -> Option<Reply> {
    let t0 = clock::Stopwatch::start();
    let mut data = m.buffer(req.length as usize);
    if let Some(Ok(())) = vol.try_read_cached(req.offset, &mut data, pattern) {
        m.count(CMD_READ, "ok");
        m.local[READ_OP].observe(t0.elapsed().as_secs_f64());
        return Some(Reply::Data {
            handle: req.handle,
            offset: req.offset,
            data,
        });
    }
    m.give_back(data);
    None
}

fn execute_inner(
    vol: &Arc<Volume>,
    conn: &Conn,
    req: Request,
    payload: Vec<u8>,
    pattern: ReadPattern,
    structured: bool,
) -> Reply {
    let handle = req.handle;
    let fua = req.flags & CMD_FLAG_FUA != 0;
    let len = req.length as u64;
    let result = match req.command {
        CMD_READ => {
            // Volume::read fills every byte or fails (then the buffer is dropped).
            let mut data = conn.buffer(req.length as usize);
            match vol.read(req.offset, &mut data, pattern) {
                Ok(()) => {
                    return Reply::Data {
                        handle,
                        offset: req.offset,
                        data,
                    }
                }
                Err(e) => Err(e),
            }
        }
        CMD_WRITE => vol.write(req.offset, &payload, fua),
        CMD_FLUSH => vol.flush(),
        CMD_TRIM => vol.trim(req.offset, len, fua),
        CMD_WRITE_ZEROES => {
            vol.write_zeroes(req.offset, len, req.flags & CMD_FLAG_NO_HOLE == 0, fua)
        }
        CMD_BLOCK_STATUS => {
            let max = if req.flags & CMD_FLAG_REQ_ONE != 0 {
                1
            } else {
                MAX_STATUS_RUNS
            };
            match vol.allocation(req.offset, len, max) {
                Ok(runs) => {
                    let runs = runs
                        .iter()
                        .map(|a| {
                            (
                                a.len as u32,
                                if a.hole { STATE_HOLE | STATE_ZERO } else { 0 },
                            )
                        })
                        .collect();
                    return Reply::Status { handle, runs };
                }
                Err(e) => Err(e),
            }
        }
        _ => Err(TierError::InvalidArgument(format!(
            "command {} is not supported",
            req.command
        ))),
    };
    match result {
        Ok(()) => Reply::Ok { handle },
        Err(e) => {
            tracing::warn!(
                volume = %vol.name(), op = command_name(req.command), offset = req.offset,
                length = req.length, error = %e, "NBD request failed"
            );
            Reply::Error {
                handle,
                errno: e.kind().nbd_errno(),
                message: e.to_string(),
                chunk: structured && matches!(req.command, CMD_READ | CMD_BLOCK_STATUS),
            }
        }
    }
}

/// Writes one reply; gives back the buffer of a data reply for reuse.
async fn write_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    r: Reply,
    structured: bool,
) -> io::Result<Option<Vec<u8>>> {
    match r {
        Reply::Ok { handle } => w.write_all(&simple_reply(handle, 0)).await?,
        Reply::Data {
            handle,
            offset,
            data,
        } => {
            if !structured {
                w.write_all(&simple_reply(handle, 0)).await?;
                w.write_all(&data).await?;
            } else if data.is_empty() {
                w.write_all(&chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_NONE, handle, 0))
                    .await?;
            } else {
                w.write_all(&chunk_header(
                    REPLY_FLAG_DONE,
                    REPLY_TYPE_OFFSET_DATA,
                    handle,
                    8 + data.len() as u32,
                ))
                .await?;
                w.write_all(&offset.to_be_bytes()).await?;
                w.write_all(&data).await?;
            }
            return Ok(Some(data));
        }
        Reply::Status { handle, runs } => {
            let mut b = Vec::with_capacity(20 + 4 + runs.len() * 8);
            b.extend_from_slice(&chunk_header(
                REPLY_FLAG_DONE,
                REPLY_TYPE_BLOCK_STATUS,
                handle,
                4 + 8 * runs.len() as u32,
            ));
            b.extend_from_slice(&BASE_ALLOCATION_ID.to_be_bytes());
            for (len, flags) in runs {
                b.extend_from_slice(&len.to_be_bytes());
                b.extend_from_slice(&flags.to_be_bytes());
            }
            w.write_all(&b).await?
        }
        Reply::Error {
            handle,
            errno,
            message,
            chunk,
        } => {
            if chunk {
                w.write_all(&error_chunk(handle, errno, &message)).await?
            } else {
                w.write_all(&simple_reply(handle, errno)).await?
            }
        }
    }
    Ok(None)
}

/// Writes replies as they come until the reader and every request task
/// are done; a reply's budget is given back once it has been written.
async fn write_replies<W: AsyncWrite + Unpin>(
    writer: W,
    mut rx: mpsc::Receiver<(Reply, Held)>,
    conn: &Conn,
    structured: bool,
) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(256 << 10, writer);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some((reply, held)) = next.take() {
            if let Some(buf) = write_reply(&mut w, reply, structured).await? {
                conn.give_back(buf);
            }
            drop(held);
            next = rx.try_recv().ok();
        }
        w.flush().await?;
    }
    w.shutdown().await
}

/// Serves one connection until the client disconnects, breaks framing, the
/// volume is deleted, or `shutdown` is cancelled. `budget` bounds the bytes
/// of payloads and replies it holds.
pub async fn serve<R, W>(
    reader: R,
    writer: W,
    session: Session,
    peer: String,
    budget: ConnBudget,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let structured = session.structured;
    let vol: Arc<Volume> = (*session.volume).clone();
    let conn_state = Arc::new(Conn::new(&vol, structured));
    let (tx, rx) = mpsc::channel::<(Reply, Held)>(MAX_IN_FLIGHT * 2);
    // Cancelled when the client can no longer get replies: nothing more is
    // read from it, and requests not yet started never run.
    let gone = CancellationToken::new();
    let conn = conn_state.clone();
    let writer_gone = gone.clone();
    let writer_task = tokio::spawn(async move {
        let r = write_replies(writer, rx, &conn, structured).await;
        if r.is_err() {
            writer_gone.cancel();
        }
        r
    });

    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // block_in_place needs a multi-threaded runtime (the daemon's is).
    let inline_ok = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    let mut r = BufReader::with_capacity(256 << 10, reader);
    let mut reads = ReadTracker::new();
    let size = session.size;
    let mut header = [0u8; REQUEST_LEN];
    let reason: String = loop {
        if shutdown.is_cancelled() {
            break "server shutting down".into();
        }
        // Requests already buffered are not run for a client that is gone.
        if gone.is_cancelled() {
            break "replies could not be sent".into();
        }
        let read = tokio::select! {
            res = r.read_exact(&mut header) => res,
            _ = shutdown.cancelled() => break "server shutting down".into(),
            _ = gone.cancelled() => break "replies could not be sent".into(),
        };
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                gone.cancel();
                break "client hung up without NBD_CMD_DISC".into();
            }
            Err(e) => {
                gone.cancel();
                break format!("read error: {e}");
            }
        }
        let req = match Request::parse(&header) {
            Ok(req) => req,
            Err(magic) => {
                tracing::warn!(peer, export = %session.export, magic = format!("{magic:#x}"), "bad request magic; disconnecting");
                break format!("bad request magic {magic:#x}");
            }
        };
        let reject = |errno: u32, message: String| {
            tracing::warn!(peer, export = %session.export, op = command_name(req.command), offset = req.offset,
                length = req.length, error = %message, "refusing NBD request");
            Reply::Error {
                handle: req.handle,
                errno,
                message,
                chunk: structured && matches!(req.command, CMD_READ | CMD_BLOCK_STATUS),
            }
        };
        let in_range = req
            .offset
            .checked_add(req.length as u64)
            .is_some_and(|end| end <= size);
        let mut payload = Vec::new();
        if req.command == CMD_WRITE && req.length > MAX_PAYLOAD {
            // The payload cannot be skipped cheaply, so framing is lost: answer and hang up.
            let _ = tx
                .send((
                    reject(
                        EINVAL,
                        format!(
                            "write of {} bytes exceeds the {MAX_PAYLOAD}-byte maximum",
                            req.length
                        ),
                    ),
                    Held::none(),
                ))
                .await;
            break "oversized write payload".into();
        }
        // The bytes this request holds until its reply is written: its
        // payload, or the data a read returns.
        let cost = match req.command {
            CMD_WRITE => req.length as u64,
            CMD_READ if req.length <= MAX_PAYLOAD => req.length as u64,
            _ => 0,
        };
        let held = tokio::select! {
            held = budget.take(cost) => held,
            _ = shutdown.cancelled() => break "server shutting down".into(),
            _ = gone.cancelled() => break "replies could not be sent".into(),
        };
        if req.command == CMD_WRITE {
            payload = vec![0u8; req.length as usize];
            if let Err(e) = r.read_exact(&mut payload).await {
                gone.cancel();
                break format!("read error in write payload: {e}");
            }
        }
        if vol.is_closed() {
            let _ = tx
                .send((reject(ESHUTDOWN, "volume was deleted".into()), held))
                .await;
            break "volume deleted".into();
        }
        let early = match req.command {
            CMD_DISC => break "client disconnected".into(),
            _ if req.flags & !CMD_FLAGS_KNOWN != 0 => Some(reject(
                EINVAL,
                format!(
                    "unknown request flags {:#06x} (known: FUA, NO_HOLE, DF, REQ_ONE)",
                    req.flags & !CMD_FLAGS_KNOWN
                ),
            )),
            CMD_READ if req.length > MAX_PAYLOAD => Some(reject(
                EINVAL,
                format!(
                    "read of {} bytes exceeds the {MAX_PAYLOAD}-byte maximum",
                    req.length
                ),
            )),
            CMD_READ | CMD_TRIM | CMD_BLOCK_STATUS if !in_range => Some(reject(
                EINVAL,
                format!(
                    "range {}+{} is beyond the {size}-byte export",
                    req.offset, req.length
                ),
            )),
            CMD_WRITE | CMD_WRITE_ZEROES if !in_range => Some(reject(
                ENOSPC,
                format!(
                    "range {}+{} is beyond the {size}-byte export",
                    req.offset, req.length
                ),
            )),
            CMD_BLOCK_STATUS if !(structured && session.allocation) => {
                Some(reject(EINVAL, "no metadata context was negotiated".into()))
            }
            CMD_BLOCK_STATUS if req.length == 0 => {
                Some(reject(EINVAL, "block status of zero length".into()))
            }
            CMD_READ | CMD_WRITE | CMD_FLUSH | CMD_TRIM | CMD_WRITE_ZEROES | CMD_BLOCK_STATUS => {
                None
            }
            other => Some(reject(EINVAL, format!("unknown command {other}"))),
        };
        if let Some(reply) = early {
            if let Reply::Error { errno, .. } = &reply {
                conn_state.count(req.command, errno_name(*errno));
            }
            if tx.send((reply, held)).await.is_err() {
                break "writer closed".into();
            }
            continue;
        }
        let pattern = if req.command == CMD_READ {
            reads.observe(req.offset, req.length as u64)
        } else {
            ReadPattern::RANDOM
        };
        let cold = matches!(req.command, CMD_READ | CMD_WRITE)
            && vol.touches_remote(req.offset, req.length as u64);
        if req.command == CMD_READ && req.length as u64 <= INLINE_READ && !cold {
            // Cached local data: a copy that cannot block, done right here.
            if let Some(reply) = read_cached(&vol, &conn_state, &req, pattern) {
                if tx.send((reply, held)).await.is_err() {
                    break "writer closed".into();
                }
                continue;
            }
        }
        if inline_ok && req.command == CMD_READ && req.length as u64 <= INLINE_READ && !cold {
            // A read of local extents that may wait for the disk: done here
            // all the same, it saves two thread hand-offs (block_in_place lets
            // the runtime move this worker's other tasks meanwhile).
            let reply = tokio::task::block_in_place(|| {
                execute(&vol, &conn_state, req, payload, pattern, cold)
            });
            if tx.send((reply, held)).await.is_err() {
                break "writer closed".into();
            }
            continue;
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break "internal: request slots closed".into(),
            },
            _ = gone.cancelled() => break "replies could not be sent".into(),
        };
        let tx = tx.clone();
        let vol = vol.clone();
        let conn = conn_state.clone();
        let gone = gone.clone();
        tokio::task::spawn_blocking(move || {
            // Nobody would get the reply: do not start.
            if !gone.is_cancelled() {
                let reply = execute(&vol, &conn, req, payload, pattern, cold);
                if tx.blocking_send((reply, held)).is_err() {
                    gone.cancel();
                }
            }
            drop(permit);
        });
    };
    drop(tx);
    match writer_task.await {
        Ok(Ok(())) | Ok(Err(_)) | Err(_) => {}
    }
    tracing::info!(peer, export = %session.export, reason, "NBD connection closed");
}
