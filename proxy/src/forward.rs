//! Moves bytes between the two legs of a session: a buffered copy for small exchanges, splice(2) through a
//! non-blocking pipe per busy direction once it carries bulk data (zero copy, the way HAProxy's
//! `option splice-auto` and realm do it), back to copying where splice is refused, copy only when asked for. Both are driven by tokio readiness; half-close passes one direction's FIN on
//! while the other keeps flowing; any error aborts the session so the caller can pass a reset on.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{splice, SpliceFFlags};
use nix::unistd::pipe2;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::Forwarding;

/// Bytes a copy-path direction buffers.
const COPY_BUF: usize = 16 * 1024;
/// Size a copy buffer starts at.
const COPY_BUF_INITIAL: usize = 2048;
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

/// Last time either direction moved bytes, in milliseconds since `base`: read by the idle timer.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn last(&self) -> Instant {
        self.base + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
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
            if let Err(e) = d.dst.writable().await {
                break Err(e);
            }
        } else if read_blocked && in_pipe == 0 {
            // Idle: give the (empty) pipe back so idle sessions hold no pipes.
            if let Some(p) = pipe.take() {
                d.pipes.put(p);
            }
            if let Err(e) = d.src.readable().await {
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
    // The buffer exists only while bytes are moving: apiserver watches sit idle for hours, and a buffer per
    // direction held by every idle session would dominate the proxy's memory (HAProxy allocates on demand
    // too). It starts small, since most exchanges are a few hundred bytes and zeroing 16 KiB twice per
    // connection showed up in profiles; a read that fills it grows it.
    let mut buf: Vec<u8> = Vec::new();
    let (mut start, mut end) = (0usize, 0usize);
    let mut eof = false;
    let mut bulk = false;
    loop {
        if buf.is_empty() {
            d.src.readable().await?;
            buf = vec![0u8; COPY_BUF_INITIAL];
        }
        let mut read_blocked = false;
        let mut write_blocked = false;
        if !eof && end < buf.len() {
            let want = buf.len() - end;
            let mut short = 0usize;
            let r = d.src.try_io(Interest::READABLE, || {
                match nix::unistd::read(d.src.as_fd(), &mut buf[end..]) {
                    // A short read means the socket is drained: report WouldBlock so tokio clears the readiness
                    // now, saving the read that would only return EAGAIN (tokio's own reads do the same).
                    Ok(n) if n > 0 && n < want => {
                        short = n;
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Ok(n) => Ok(n),
                    Err(e) => Err(io::Error::from(e)),
                }
            });
            match r {
                Ok(0) => eof = true,
                Ok(n) => {
                    end += n;
                    bulk |= may_splice && n == COPY_BUF;
                    if n == want && buf.len() < COPY_BUF {
                        buf.resize(COPY_BUF, 0);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    end += short;
                    read_blocked = true;
                }
                Err(e) => return Err(e),
            }
        }
        if start < end {
            match d.dst.try_write(&buf[start..end]) {
                Ok(n) => {
                    start += n;
                    if start == end {
                        start = 0;
                        end = 0;
                    }
                    d.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    d.activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => write_blocked = true,
                Err(e) => return Err(e),
            }
        }
        if eof && start == end {
            return shutdown_write(&d).map(|()| Copied::Done);
        }
        if bulk && start == end {
            return Ok(Copied::Bulk);
        }
        if write_blocked {
            d.dst.writable().await?;
        } else if read_blocked && start == end {
            // Idle: the buffer goes until bytes come again (the top of the loop waits for them).
            buf = Vec::new();
        }
    }
}
