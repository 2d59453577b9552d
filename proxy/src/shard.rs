//! Where the accept loops and their sessions run. With `threads` > 0 each listening socket gets a thread of its own
//! with a single-threaded tokio runtime: a session is accepted, connected and forwarded on the thread that
//! accepted it, and each thread waits on its own epoll. On tokio's multi-threaded runtime all sockets share one
//! epoll, polled by whichever worker parks first, and woken sessions are handed to (and stolen by) the other
//! workers; on a loaded machine a worker that holds the epoll but is not running delays every session, and the
//! other worker idles meanwhile (bench/RESULTS.md: the same CPU per connection as HAProxy, a lower rate, idle CPU
//! left). The price: no work stealing, so a thread the OS holds back stalls its own sessions and the new
//! connections hashed to its listener. With `threads = 0` the accept loop runs as a task on the caller's runtime;
//! the daemon uses one thread per CPU (`proxy.threads: auto`).

use std::sync::Arc;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{serve_listener, Backends, Shared};

/// One accept loop and its sessions.
pub(crate) struct Shard {
    /// The sessions this shard spawned.
    pub(crate) tracker: TaskTracker,
    /// Fires once the accept loop stopped and its listening socket is closed.
    stopped: oneshot::Receiver<()>,
    /// Fires once the shard's thread and runtime are gone (their descriptors closed).
    done: oneshot::Receiver<()>,
}

impl Shard {
    pub(crate) async fn stopped(&mut self) {
        let _ = (&mut self.stopped).await;
    }

    pub(crate) async fn finished(self) {
        let _ = self.done.await;
    }
}

/// Starts accepting on `listener`: on a thread of its own when `own_thread` (falling back to the caller's
/// runtime if no thread or runtime can be had), else on the caller's runtime.
pub(crate) fn start(
    listener: std::net::TcpListener,
    own_thread: bool,
    shared: &Arc<Shared>,
    backends: &watch::Receiver<Backends>,
    shutdown: &CancellationToken,
) -> Shard {
    let (stopped_tx, stopped) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    let tracker = TaskTracker::new();
    let job = Job {
        listener,
        shared: shared.clone(),
        backends: backends.clone(),
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
        stopped: stopped_tx,
    };
    let job = if own_thread {
        match spawn_thread(job, done_tx) {
            Ok(()) => {
                return Shard {
                    tracker,
                    stopped,
                    done,
                }
            }
            Err((job, done_tx, e)) => {
                tracing::warn!(error = %e, "proxy: no thread of its own, serving on the main runtime");
                let _ = done_tx.send(());
                job
            }
        }
    } else {
        let _ = done_tx.send(());
        job
    };
    tokio::spawn(job.accept());
    Shard {
        tracker,
        stopped,
        done,
    }
}

/// What an accept loop needs.
struct Job {
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    backends: watch::Receiver<Backends>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    stopped: oneshot::Sender<()>,
}

impl Job {
    /// Accepts until shutdown, closes the listening socket and says so.
    async fn accept(self) {
        serve_listener(
            self.listener,
            &self.shared,
            &self.backends,
            &self.tracker,
            &self.shutdown,
        )
        .await;
        let _ = self.stopped.send(());
    }
}

type SpawnError = (Job, oneshot::Sender<()>, std::io::Error);

/// Runs `job` on a new thread with its own runtime, which lives until the job's sessions are all gone (the
/// tracker is closed by [`crate::Proxy::run`] once every shard stopped accepting). The runtime is built on
/// that thread (a runtime cannot be dropped from async code, should the thread fail to start); if it cannot
/// be built, the job runs on the caller's runtime after all.
fn spawn_thread(job: Job, done: oneshot::Sender<()>) -> Result<(), SpawnError> {
    let caller = tokio::runtime::Handle::current();
    // The job goes through a slot so that a failed spawn (which drops the closure) gives it back.
    let slot = Arc::new(std::sync::Mutex::new(Some((job, done))));
    let theirs = slot.clone();
    let spawned = std::thread::Builder::new()
        .name("vipd-proxy".into())
        .spawn(move || {
            let taken = theirs.lock().unwrap_or_else(|e| e.into_inner()).take();
            let Some((job, done)) = taken else { return };
            run_on_own_runtime(job, &caller);
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => Ok(()),
        Err(e) => {
            let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            let (job, done) = taken.expect("a thread that never started took nothing");
            Err((job, done, e))
        }
    }
}

fn run_on_own_runtime(job: Job, caller: &tokio::runtime::Handle) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(error = %e, "proxy: no runtime of its own, serving on the main runtime");
            caller.spawn(job.accept());
            return;
        }
    };
    let tracker = job.tracker.clone();
    rt.block_on(async move {
        job.accept().await;
        tracker.wait().await;
    });
}
