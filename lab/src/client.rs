//! A client of the VIP, as a kubectl user is one: HTTPS `GET /version` on a fresh TCP + TLS connection each
//! time, the certificate verified against the cluster CA (`ClientOpts::ca`), from inside a namespace.
//!
//! [`Probe`] repeats that request on a thread of its own until stopped (or dropped) and records a [`Sample`]
//! per request; [`longest_without_success`] turns the samples into the outage a client saw. [`request`] is one
//! such request, [`wait_served`] polls with it until the VIP answers. The e2e and migration tests, the chaos
//! run and `vipd demo` all use this one client.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::apiserver::{get_on, ClientOpts};
use crate::netns::{spawn_in_netns, wait_for};

/// The bound of one attempt when `ClientOpts::timeout` is not set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait before retrying a connect that failed (refused, unreachable), as client-go's dialer does.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What a request does on failure. Each attempt is bounded by `ClientOpts::timeout` (connect, TLS and the
/// GET together: the kernel's SYN retransmissions happen inside it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retries {
    /// Further attempts after a connect that failed (refused, unreachable), [`CONNECT_RETRY_PAUSE`] apart.
    pub connect: u32,
    /// Further attempts, at once, after any other failure (TLS, reset, status, timeout), like a client's own
    /// request retry.
    pub other: u32,
}

impl Retries {
    /// One attempt per request.
    pub const NONE: Retries = Retries {
        connect: 0,
        other: 0,
    };
}

/// One request: when it started and ended, the apiserver that answered (the `name` of its `/version`) or why
/// the last attempt failed, and how many attempts it took.
///
/// Success is status 200 with a `/version` body that names its apiserver. A failure reads `connect: ...` when
/// no connection was made (refused, unreachable, or the attempt timed out while connecting), otherwise
/// `HTTP <code>`, `an answer without a name`, or the I/O error in a few words (see [`short_error`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub start: Instant,
    pub end: Instant,
    pub result: Result<String, String>,
    pub attempts: u32,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// The longest time in `[from, to]` without a successful answer: from `from` (or a success's end) to the next
/// success's end, and from the last one to `to`. A sample counts where it ended. `to` itself when nothing
/// succeeded in between.
pub fn longest_without_success(samples: &[Sample], from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut worst = Duration::ZERO;
    for s in samples {
        if s.ok() && s.end >= from && s.end <= to {
            worst = worst.max(s.end.saturating_duration_since(last));
            last = s.end;
        }
    }
    worst.max(to.saturating_duration_since(last))
}

/// A failure in a few words: the kind of the innermost I/O error (hyper and rustls wrap them).
pub fn short_error(e: &io::Error) -> String {
    use io::ErrorKind as K;
    let mut kind = e.kind();
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|x| x as _);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            kind = io.kind();
        }
        source = s.source();
    }
    match kind {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::TimedOut => "timed out".into(),
        K::UnexpectedEof => "connection closed".into(),
        _ => e.to_string(),
    }
}

/// Why an attempt failed: a refused or unreachable connect may be retried apart from the rest.
enum Failure {
    Connect(String),
    Other(String),
}

/// `GET /version` to `target` on a fresh connection (TLS when `opts.ca` is set), retried as `retries` says.
/// Must run inside the namespace the client lives in.
pub async fn request(target: SocketAddr, opts: &ClientOpts, retries: Retries) -> Sample {
    let start = Instant::now();
    let (mut connect_left, mut other_left) = (retries.connect, retries.other);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let failure = match attempt(target, opts).await {
            Ok(name) => break finish(start, Ok(name), attempts),
            Err(Failure::Connect(why)) if connect_left > 0 => {
                connect_left -= 1;
                drop(why);
                tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
                continue;
            }
            Err(Failure::Connect(why) | Failure::Other(why)) => why,
        };
        if other_left > 0 {
            other_left -= 1;
            continue;
        }
        break finish(start, Err(failure), attempts);
    }
}

fn finish(start: Instant, result: Result<String, String>, attempts: u32) -> Sample {
    Sample {
        start,
        end: Instant::now(),
        result,
        attempts,
    }
}

/// One attempt, connect to answer within `opts.timeout`.
async fn attempt(target: SocketAddr, opts: &ClientOpts) -> Result<String, Failure> {
    let bound = opts.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let deadline = Instant::now() + bound;
    let tcp = match tokio::time::timeout(bound, tokio::net::TcpStream::connect(target)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(Failure::Connect(format!("connect: {}", short_error(&e)))),
        Err(_) => return Err(Failure::Other("connect: timed out".into())),
    };
    let rest = ClientOpts {
        timeout: Some(deadline.saturating_duration_since(Instant::now())),
        ..opts.clone()
    };
    match get_on(tcp, target, &rest, "/version").await {
        Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_string))
            .ok_or_else(|| Failure::Other("an answer without a name".into())),
        Ok((code, _)) => Err(Failure::Other(format!("HTTP {code}"))),
        Err(e) => Err(Failure::Other(short_error(&e))),
    }
}

/// Polls with single requests (no retries) from a thread in namespace `ns` until one succeeds or `timeout`
/// passed: the apiserver that answered, or `None`. An error if the thread could not start in `ns`.
pub fn wait_served(
    ns: &str,
    target: SocketAddr,
    opts: ClientOpts,
    timeout: Duration,
) -> Result<Option<String>> {
    spawn_in_netns(
        ns,
        "vip-client-wait",
        move || -> io::Result<Option<String>> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(wait_for(timeout, || {
                rt.block_on(request(target, &opts, Retries::NONE))
                    .result
                    .ok()
            }))
        },
    )?
    .join()
    .map_err(|_| anyhow!("the client thread in {ns} panicked"))??
    .map_err(Into::into)
}

/// Called with every sample as it is taken, on the probe's thread.
pub type OnSample = Box<dyn Fn(&Sample) + Send>;

/// How a [`Probe`] runs.
pub struct ProbeSpec {
    pub target: SocketAddr,
    /// The CA to verify against, and the bound of one attempt.
    pub opts: ClientOpts,
    /// The pause after each request before the next.
    pub pause: Duration,
    pub retries: Retries,
    /// The loop ends by itself after this long, if nobody stopped it.
    pub max_run: Duration,
    pub on_sample: Option<OnSample>,
}

impl std::fmt::Debug for ProbeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeSpec")
            .field("target", &self.target)
            .field("opts", &self.opts)
            .field("pause", &self.pause)
            .field("retries", &self.retries)
            .field("max_run", &self.max_run)
            .field("on_sample", &self.on_sample.is_some())
            .finish()
    }
}

impl ProbeSpec {
    /// A request every ~20 ms, no retries, for at most fifteen minutes.
    pub fn new(target: SocketAddr, opts: ClientOpts) -> ProbeSpec {
        ProbeSpec {
            target,
            opts,
            pause: Duration::from_millis(20),
            retries: Retries::NONE,
            max_run: Duration::from_secs(900),
            on_sample: None,
        }
    }

    pub fn pause(mut self, pause: Duration) -> ProbeSpec {
        self.pause = pause;
        self
    }

    pub fn retries(mut self, retries: Retries) -> ProbeSpec {
        self.retries = retries;
        self
    }

    pub fn max_run(mut self, max_run: Duration) -> ProbeSpec {
        self.max_run = max_run;
        self
    }

    pub fn on_sample(mut self, f: impl Fn(&Sample) + Send + 'static) -> ProbeSpec {
        self.on_sample = Some(Box::new(f));
        self
    }
}

/// [`request`] again and again from a thread in a namespace, each [`Sample`] kept; stopped on drop.
#[derive(Debug)]
pub struct Probe {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<io::Result<()>>>>,
}

impl Probe {
    /// Starts the loop in namespace `ns` (its name under /run/netns).
    pub fn start(ns: &str, spec: ProbeSpec) -> Result<Probe> {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let thread = spawn_in_netns(ns, "vip-client", move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(run(spec, &s, &st));
            Ok(())
        })?;
        Ok(Probe {
            samples,
            stop,
            thread: Some(thread),
        })
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.samples.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples from the `index`-th on (see [`Probe::len`]).
    pub fn since(&self, index: usize) -> Vec<Sample> {
        self.samples
            .lock()
            .map(|s| s.get(index..).map(<[Sample]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The samples that started in `[from, to)`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<Sample> {
        let mut v = self.samples();
        v.retain(|s| s.start >= from && s.start < to);
        v
    }

    /// The failed samples that started in `[from, to)`.
    pub fn failures(&self, from: Instant, to: Instant) -> Vec<Sample> {
        let mut v = self.between(from, to);
        v.retain(|s| !s.ok());
        v
    }

    /// The apiservers that answered requests started in `[from, to)`, sorted, each once.
    pub fn names(&self, from: Instant, to: Instant) -> Vec<String> {
        let mut v: Vec<String> = self
            .between(from, to)
            .into_iter()
            .filter_map(|s| s.result.ok())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// [`longest_without_success`] in `[from, to]`.
    pub fn outage(&self, from: Instant, to: Instant) -> Duration {
        longest_without_success(&self.samples(), from, to)
    }

    /// Waits (bounded) until `n` requests that started at or after `t` succeeded.
    pub fn wait_successes_after(&self, t: Instant, n: usize, timeout: Duration) -> bool {
        wait_for(timeout, || {
            let ok = self
                .samples
                .lock()
                .ok()?
                .iter()
                .filter(|s| s.start >= t && s.ok())
                .count();
            (ok >= n).then_some(())
        })
        .is_some()
    }

    /// The reasons of the last `n` failures, newest first (for assertion messages).
    pub fn last_failures(&self, n: usize) -> Vec<String> {
        let s = self.samples();
        s.into_iter()
            .rev()
            .filter_map(|s| s.result.err())
            .take(n)
            .collect()
    }

    /// Whether the loop still runs (it ends only when stopped, after `max_run`, or on a setup error).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(spec: ProbeSpec, samples: &Mutex<Vec<Sample>>, stop: &AtomicBool) {
    let hard_stop = Instant::now() + spec.max_run;
    while !stop.load(Ordering::SeqCst) && Instant::now() < hard_stop {
        let s = request(spec.target, &spec.opts, spec.retries).await;
        if let Some(f) = &spec.on_sample {
            f(&s);
        }
        if let Ok(mut v) = samples.lock() {
            v.push(s);
        }
        tokio::time::sleep(spec.pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Hand-built samples, one per `(start, length, served)` row in milliseconds after `base`.
    fn history(base: Instant, rows: &[(u64, u64, bool)]) -> Vec<Sample> {
        let one = |&(at, len, served): &(u64, u64, bool)| Sample {
            start: base + ms(at),
            end: base + ms(at + len),
            result: served
                .then(|| "api0".to_string())
                .ok_or_else(|| "connect: connection refused".to_string()),
            attempts: 1,
        };
        rows.iter().map(one).collect()
    }

    #[test]
    fn the_outage_is_the_longest_stretch_between_successful_ends() {
        let b = Instant::now();
        // Successes end at 5, 25, 165 and 185 ms; failures in between do not end the stretch.
        let rows = [
            (0, 5, true),
            (20, 5, true),
            (40, 1, false),
            (60, 1, false),
            (160, 5, true),
            (180, 5, true),
        ];
        let s = history(b, &rows);
        assert_eq!(longest_without_success(&s, b, b + ms(200)), ms(140));
        // Without the failures nothing changes: what counts is when the client was last served.
        let only_ok: Vec<Sample> = s.into_iter().filter(Sample::ok).collect();
        assert_eq!(longest_without_success(&only_ok, b, b + ms(200)), ms(140));
    }

    #[test]
    fn the_window_edges_count_and_samples_outside_do_not() {
        let b = Instant::now();
        let s = history(b, &[(0, 5, true), (300, 10, true), (400, 10, true)]);
        let worst = |from: u64, to: u64| longest_without_success(&s, b + ms(from), b + ms(to));
        // From the window's start to the first success in it (at 310), and from the last (410) to the end.
        assert_eq!(worst(100, 420), ms(210));
        assert_eq!(worst(100, 900), ms(490));
        // A success that ends after `to` does not shorten the window's tail.
        assert_eq!(worst(0, 405), ms(305));
        // Nothing served in the window: all of it.
        assert_eq!(worst(10, 250), ms(240));
        assert_eq!(longest_without_success(&[], b, b + ms(50)), ms(50));
    }

    #[test]
    fn a_run_of_successes_is_no_outage_beyond_its_spacing() {
        let b = Instant::now();
        let rows: Vec<(u64, u64, bool)> = (0..10).map(|i| (20 * i, 2, true)).collect();
        let s = history(b, &rows);
        assert_eq!(longest_without_success(&s, b, b + ms(182)), ms(20));
    }

    #[test]
    fn short_errors_name_the_innermost_kind() {
        let inner = io::Error::new(io::ErrorKind::ConnectionReset, "peer");
        let wrapped = io::Error::other(inner);
        assert_eq!(short_error(&wrapped), "connection reset");
        let other = io::Error::other("bad certificate");
        assert_eq!(short_error(&other), "bad certificate");
    }
}
