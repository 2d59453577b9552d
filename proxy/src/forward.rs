//! Moves bytes between the two legs of a session: a copy through a per-thread scratch buffer for small
//! exchanges, splice(2) through a non-blocking pipe per busy direction once it carries bulk data (zero copy, the
//! way HAProxy's `option splice-auto` and realm do it), back to copying where splice is refused, copy only when
//! asked for. Both are driven by tokio readiness; half-close passes one direction's FIN on while the other keeps
//! flowing; any error aborts the session so the caller can pass a reset on.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{splice, SpliceFFlags};
use nix::unistd::pipe2;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::Forwarding;

/// Bytes a copy-path read takes at most; a read that fills it marks the direction as bulk.
const COPY_BUF: usize = 16 * 1024;
/// Pipes kept for reuse: creating two pipes per session costs three syscalls each way.
const POOL_MAX: usize = 256;

/// A pipe whose both ends are non-blocking.
#[derive(Debug)]
pub(crate) struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    cap: usize,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (r, w) = pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
        let cap =
            nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_GETPIPE_SZ).map_or(65536, |c| c as usize);
        Ok(Self { r, w, cap })
    }
}

/// Empty pipes ready for the next busy direction. Only empty pipes come back, so no data leaks between
/// sessions.
#[derive(Debug, Default)]
pub(crate) struct PipePool(Mutex<Vec<Pipe>>);

impl PipePool {
    fn get(&self) -> io::Result<Pipe> {
        if let Some(p) = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(p);
        }
        Pipe::new()
    }

    fn put(&self, p: Pipe) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < POOL_MAX {
            v.push(p);
        }
    }
}

/// Last time either direction moved bytes, in milliseconds of CLOCK_MONOTONIC_COARSE: read by the idle timer.
/// The coarse clock (a few ms resolution, plenty for an idle timeout) is a plain read of the vDSO, where
/// `Instant::now` reads the TSC and converts: this is stamped on every write, so it showed in the profiles.
#[derive(Debug)]
pub(crate) struct Activity {
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            last_ms: AtomicU64::new(coarse_ms()),
        }
    }

    fn touch(&self) {
        self.last_ms.store(coarse_ms(), Ordering::Relaxed);
    }

    /// How long no byte has moved.
    pub(crate) fn quiet_for(&self) -> std::time::Duration {
        let last = self.last_ms.load(Ordering::Relaxed);
        std::time::Duration::from_millis(coarse_ms().saturating_sub(last))
    }
}

fn coarse_ms() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE).map_or(0, |t| {
        t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000
    })
}

/// One direction's context.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dir<'a> {
    pub src: &'a TcpStream,
    pub dst: &'a TcpStream,
    pub bytes: &'a AtomicU64,
    pub activity: &'a Activity,
    pub pipes: &'a PipePool,
    /// Counted when splice is refused and the direction falls back to copying.
    pub fallbacks: &'a AtomicU64,
    /// Counted when a direction turns out to be bulk and moves to splice.
    pub spliced: &'a AtomicU64,
    /// Directions of this session that have passed their EOF on (shared by both).
    pub finished: &'a std::sync::atomic::AtomicU8,
}

impl Dir<'_> {
    fn moved(&self, n: usize) {
        if n > 0 {
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
            self.activity.touch();
        }
    }
}

/// Forwards both directions until both have seen EOF (Ok) or one fails (Err: the caller resets both legs).
pub(crate) async fn both(a: Dir<'_>, b: Dir<'_>, mode: Forwarding) -> io::Result<()> {
    tokio::try_join!(one(a, mode), one(b, mode))?;
    Ok(())
}

async fn one(d: Dir<'_>, mode: Forwarding) -> io::Result<()> {
    // Like HAProxy's splice-auto: small exchanges (API requests, watch events) are copied, which costs the
    // same syscalls and no pipe; a direction that fills a whole buffer in one read is bulk and moves to splice.
    match copy_dir(d, mode == Forwarding::Splice).await? {
        Copied::Done => return Ok(()),
        Copied::Bulk => {}
    }
    d.spliced.fetch_add(1, Ordering::Relaxed);
    match splice_dir(d).await? {
        Spliced::Done => Ok(()),
        Spliced::Refused => {
            d.fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("splice refused, falling back to copy");
            copy_dir(d, false).await.map(|_| ())
        }
    }
}

enum Copied {
    Done,
    /// A full-buffer read was seen and the buffer is empty again: switch to splice.
    Bulk,
}

enum Spliced {
    Done,
    /// splice is not possible (unsupported descriptors, no pipe); the pipe is empty, so copying can take over.
    Refused,
}

/// Waits until `s` is readable. Through the socket's single reader slot rather than `readable()`, whose
/// waiter list costs a lock to join and another to leave on every wait. One slot is enough: each socket has
/// one reading direction and one writing direction, both in the session's task.
async fn readable(s: &TcpStream) -> io::Result<()> {
    std::future::poll_fn(|cx| s.poll_read_ready(cx)).await
}

/// Same for writing.
async fn writable(s: &TcpStream) -> io::Result<()> {
    std::future::poll_fn(|cx| s.poll_write_ready(cx)).await
}

fn refused(e: Errno) -> bool {
    matches!(e, Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP)
}

/// Passes the FIN on. ENOTCONN means the peer is already gone, which the other direction will report.
/// The second direction to finish skips it: the session closes both sockets right away, and with nothing
/// left unread that close sends the same FIN (one syscall less per connection).
fn shutdown_write(d: &Dir<'_>) -> io::Result<()> {
    if d.finished.fetch_add(1, Ordering::Relaxed) >= 1 {
        return Ok(());
    }
    match SockRef::from(d.dst).shutdown(std::net::Shutdown::Write) {
        Err(e) if e.raw_os_error() == Some(libc_enotconn()) => Ok(()),
        r => r,
    }
}

fn libc_enotconn() -> i32 {
    Errno::ENOTCONN as i32
}

async fn splice_dir(d: Dir<'_>) -> io::Result<Spliced> {
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    // Held only while this direction has data in flight; idle directions hold no pipe.
    let mut pipe: Option<Pipe> = None;
    let mut in_pipe = 0usize;
    let mut eof = false;
    let res = loop {
        let mut read_blocked = false;
        let mut write_blocked = false;
        if pipe.is_none() {
            // No data is in flight here, so falling back to copying loses nothing (e.g. out of fds for pipes).
            match d.pipes.get() {
                Ok(p) => pipe = Some(p),
                Err(e) => {
                    tracing::debug!(error = %e, "no pipe for splice");
                    break Ok(Spliced::Refused);
                }
            }
        }
        let p = pipe.as_ref().expect("pipe set above");
        if !eof && in_pipe < p.cap {
            let room = p.cap - in_pipe;
            let r = d.src.try_io(Interest::READABLE, || {
                match splice(d.src.as_fd(), None, &p.w, None, room, flags) {
                    Ok(n) => Ok(Some(n)),
                    // The pipe ran out of slots (socket buffers fill slots partially): drain it first, keep
                    // the read readiness.
                    Err(Errno::EAGAIN) if in_pipe > 0 => Ok(None),
                    Err(e) => Err(io::Error::from(e)),
                }
            });
            match r {
                Ok(Some(0)) => eof = true,
                Ok(Some(n)) => in_pipe += n,
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => read_blocked = true,
                Err(e) => {
                    if in_pipe == 0 && e.raw_os_error().map(Errno::from_raw).is_some_and(refused) {
                        break Ok(Spliced::Refused);
                    }
                    break Err(e);
                }
            }
        }
        if in_pipe > 0 {
            let r = d.dst.try_io(Interest::WRITABLE, || {
                Ok(splice(&p.r, None, d.dst.as_fd(), None, in_pipe, flags)?)
            });
            match r {
                Ok(n) => {
                    in_pipe -= n;
                    d.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    d.activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => write_blocked = true,
                Err(e) => break Err(e),
            }
        }
        if eof && in_pipe == 0 {
            break shutdown_write(&d).map(|()| Spliced::Done);
        }
        if write_blocked {
            if let Err(e) = writable(d.dst).await {
                break Err(e);
            }
        } else if read_blocked && in_pipe == 0 {
            // Idle: give the (empty) pipe back so idle sessions hold no pipes.
            if let Some(p) = pipe.take() {
                d.pipes.put(p);
            }
            if let Err(e) = readable(d.src).await {
                break Err(e);
            }
        }
    };
    if let Some(p) = pipe {
        if in_pipe == 0 {
            d.pipes.put(p);
        }
    }
    res
}

async fn copy_dir(d: Dir<'_>, may_splice: bool) -> io::Result<Copied> {
    // Bytes read but not yet written: only while the destination is slower than the source. Otherwise reads go
    // into the worker thread's scratch buffer and straight out again, so a session owns no buffer at all:
    // apiserver watches sit idle for hours (HAProxy allocates on demand too), and allocating and zeroing a
    // buffer per exchange was the largest cost per connection in callgrind profiles (bench/RESULTS.md).
    let mut held: Vec<u8> = Vec::new();
    let mut sent = 0usize;
    let mut bulk = false;
    // The source's FIN has arrived (seen at the last wake-up): a short read drains it for good.
    let mut closed = false;
    loop {
        if sent < held.len() {
            match d.dst.try_write(&held[sent..]) {
                Ok(n) => {
                    sent += n;
                    d.moved(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(d.dst).await?,
                Err(e) => return Err(e),
            }
            if sent == held.len() {
                held.clear();
                sent = 0;
                if bulk {
                    return Ok(Copied::Bulk);
                }
            }
            continue;
        }
        match SCRATCH.with_borrow_mut(|buf| pass(&d, buf, &mut held, closed))? {
            Step::Moved => {}
            // The last bytes were queued corked: the FIN leaves in the same segment.
            Step::Last => return shutdown_write(&d).map(|()| Copied::Done),
            Step::Full if may_splice => {
                if held.is_empty() {
                    return Ok(Copied::Bulk);
                }
                bulk = true;
            }
            Step::Full => {}
            // Nothing is held here (a read happens only once `held` is written out).
            Step::Eof => return shutdown_write(&d).map(|()| Copied::Done),
            Step::Idle => {
                // Nothing in flight: free what a slow destination made us hold, until bytes come again.
                held = Vec::new();
                readable(d.src).await?;
                closed = peer_closed(d.src);
            }
        }
    }
}

/// What one read-and-write step did.
enum Step {
    /// Bytes were passed on (or held for a slow destination).
    Moved,
    /// The source's last bytes were passed on, corked (MSG_MORE), and its EOF is next: pass the FIN on now.
    Last,
    /// A read filled the whole scratch buffer: a bulk direction.
    Full,
    Eof,
    /// Nothing to read now.
    Idle,
}

thread_local! {
    /// Read buffer of the copy path, one per worker thread: bytes stay in it only between a read and the
    /// write that follows it, with no await in between.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; COPY_BUF].into_boxed_slice());
}

/// Whether the peer's FIN has arrived (as of the last readiness event), with no error pending. Polled right
/// after a wake-up, so the readiness is set and this is a few atomic loads; closed states are final in tokio
/// (never cleared by a read that would block), so a drained socket still reports it.
fn peer_closed(s: &TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let ready = std::pin::pin!(s.ready(Interest::READABLE | Interest::ERROR));
    matches!(std::future::Future::poll(ready, &mut cx), std::task::Poll::Ready(Ok(r)) if r.is_read_closed() && !r.is_error())
}

/// Reads what the source has into `buf` and writes it on at once; what the destination does not take is
/// appended to `held`. When the source's FIN is known to have arrived (`closed`) and the read drained the
/// socket, these are its last bytes: they are written with MSG_MORE, so the FIN that the caller passes on
/// right after leaves in the same segment (the way HAProxy closes a response: one packet and one ACK fewer per
/// connection on the client's leg, and one wake-up fewer for the client).
fn pass(d: &Dir<'_>, buf: &mut [u8], held: &mut Vec<u8>, closed: bool) -> io::Result<Step> {
    let want = buf.len();
    let mut short = 0usize;
    let r = d.src.try_io(Interest::READABLE, || {
        match nix::unistd::read(d.src.as_fd(), &mut buf[..]) {
            // A short read means the socket is drained: report WouldBlock so tokio clears the readiness now,
            // saving the read that would only return EAGAIN (tokio's own reads do the same).
            Ok(n) if n > 0 && n < want => {
                short = n;
                Err(io::ErrorKind::WouldBlock.into())
            }
            Ok(n) => Ok(n),
            Err(e) => Err(io::Error::from(e)),
        }
    });
    let n = match r {
        Ok(0) => return Ok(Step::Eof),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => short,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Idle),
        Err(e) => return Err(e),
    };
    let last = closed && n < want;
    let written = match write_out(d.dst, &buf[..n], last) {
        Ok(w) => w,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    d.moved(written);
    if written < n {
        if held.capacity() == 0 {
            held.reserve_exact(COPY_BUF);
        }
        held.extend_from_slice(&buf[written..n]);
        if last {
            // What is held goes out uncorked, and the EOF is then read as usual.
            return Ok(Step::Moved);
        }
    }
    Ok(if last {
        Step::Last
    } else if n == want {
        Step::Full
    } else {
        Step::Moved
    })
}

/// One write; `corked` adds MSG_MORE, so the bytes wait (at most until the FIN or the close that follows at
/// once) and leave with it.
fn write_out(dst: &TcpStream, b: &[u8], corked: bool) -> io::Result<usize> {
    if !corked {
        return dst.try_write(b);
    }
    dst.try_io(Interest::WRITABLE, || {
        SockRef::from(dst).send_with_flags(b, nix::libc::MSG_MORE | nix::libc::MSG_NOSIGNAL)
    })
}
