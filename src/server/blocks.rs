//! Running a received block through the core without stalling other connections.
//!
//! Verifying a block can be expensive: up to ~110 transmissions, each checked against every
//! recipient key of its queue (16 after `RKEY`), Ed448 included. Done on the tokio worker that
//! reads the connection, one such block held that worker for seconds and every connection
//! scheduled on it waited (a PING took 23 s). So:
//!
//! - A block in which nothing needs cryptography (no authorization, no `RFWD`; e.g. PING,
//!   unsigned SEND, PRXY) runs inline, as before: no thread hop for cheap commands.
//! - A block with one or two signed transmissions (a client's SEND or ACK) also runs inline
//!   while the server-wide [`InlineBudget`] allows: the pool's two thread hops cost about a
//!   fifth of a delivered message's CPU. The budget keeps such work to a quarter of each CPU,
//!   and a connection whose inline block took over 2 ms of CPU (many keys to try) uses the pool
//!   from then on, so under a flood of signed blocks the pool takes over as below.
//! - Any other block is verified and applied by [`VerifyPool`]: one thread per CPU, taking
//!   blocks from one FIFO queue, at a lower CPU priority (nice +10) than the runtime's workers,
//!   so the kernel runs reads, writes and cheap commands first while verification uses what is
//!   left (a flood of expensive blocks slows expensive blocks, not PING or delivery).
//! - The read loop waits for its block to finish before it reads the next one, so a connection
//!   has at most one block queued or running (its share: an attacker's next block queues
//!   behind every other waiting connection's), the queue holds at most one block per
//!   connection, and the effects of a connection's blocks stay in order.
//! - Work for a connection that closed (or a server stopping) ends after the transmission in
//!   progress; the transmissions already applied keep their effects, as when a connection drops
//!   between blocks.
//!
//! A second pool of the same kind ([`VerifyPool::for_handshakes`]) answers ClientHellos beyond
//! its own inline budget (`transport::tls::HelloWork`), so a flood of replayed ClientHellos
//! cannot take the runtime from connected clients either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::core::{Effects, Env, Outgoing, Session, SessionKeys};
use super::state::{ClientHandle, ServerState};
use crate::protocol::command::Command;
use crate::protocol::errors::{ErrorType, TransportError};
use crate::protocol::response::BrokerMsg;
use crate::protocol::transmission::{
    decode_server, parse_transmission, split_batch, Rejected, SignedTransmission, THParams,
};

/// A block to verify and apply, and where its effects go.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The threads that verify and apply blocks, off the runtime workers.
#[derive(Debug)]
pub struct VerifyPool {
    queue: std::sync::mpsc::Sender<Job>,
    threads: usize,
    /// Signed blocks allowed on the reading worker; none when store calls wait on I/O.
    inline: Option<Mutex<InlineBudget>>,
}

/// Signed transmissions a block may have to run inline.
const INLINE_MAX_SIGNED: usize = 2;
/// Share of each CPU that inline verification may use over time.
const INLINE_SHARE: f64 = 0.25;
/// Inline time the budget holds when full.
const INLINE_BURST: Duration = Duration::from_millis(20);
/// An inline block that took more CPU time sends its connection's later blocks to the pool.
const INLINE_BLOCK_LIMIT: Duration = Duration::from_millis(2);

/// Times an inline block two ways: wall time, which the budget is charged (a worker held is a
/// worker held, preempted or not), and the thread's CPU time, which alone decides demotion:
/// a worker preempted in the middle of a cheap block must not send a healthy connection to
/// the pool for good.
struct InlineClock {
    wall: Instant,
    cpu: Duration,
}

impl InlineClock {
    fn start() -> Self {
        InlineClock {
            wall: Instant::now(),
            cpu: thread_cpu(),
        }
    }

    /// Wall time, and whether the block's own CPU time was over [`INLINE_BLOCK_LIMIT`].
    fn stop(&self) -> (Duration, bool) {
        let cpu = thread_cpu().saturating_sub(self.cpu);
        (self.wall.elapsed(), cpu > INLINE_BLOCK_LIMIT)
    }
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// A token bucket of worker time for inline verification: it refills at [`INLINE_SHARE`] of
/// the CPUs, holds at most [`INLINE_BURST`], and a block runs inline only while it is not
/// empty; the time a block took is then taken out (the bucket may go below zero).
#[derive(Debug)]
pub struct InlineBudget {
    /// Seconds of worker time left (negative: owed).
    left: f64,
    /// Seconds of worker time added per second.
    rate: f64,
    /// When `left` was last refilled.
    at: Instant,
}

impl InlineBudget {
    /// A full budget for `cpus` CPUs.
    pub fn new(cpus: usize, now: Instant) -> Self {
        InlineBudget {
            left: INLINE_BURST.as_secs_f64(),
            rate: INLINE_SHARE * cpus.max(1) as f64,
            at: now,
        }
    }

    /// Whether a block may run inline now.
    pub fn allows(&mut self, now: Instant) -> bool {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.left = (self.left + gained).min(INLINE_BURST.as_secs_f64());
        self.at = now;
        self.left > 0.0
    }

    /// Take out the worker time an inline block used.
    pub fn spend(&mut self, used: Duration) {
        self.left -= used.as_secs_f64();
    }
}

/// CPU priority of the verification threads relative to the rest of the server.
const VERIFY_NICE: i32 = 10;

impl VerifyPool {
    /// One thread per CPU. The threads end when the pool is dropped (the server's state).
    pub fn new() -> Self {
        Self::with_waiting(0)
    }

    /// One thread per CPU, plus `waiting` for blocks whose store calls wait on I/O (a
    /// database: its pool size, see [`crate::store::Store::io_waits`]), so commands waiting
    /// for commits do not leave the CPUs idle, and the database can commit them together.
    pub fn with_waiting(waiting: usize) -> Self {
        Self::named("smp-verify", waiting)
    }

    /// The pool that answers ClientHellos when the runtime is busy (see
    /// [`crate::transport::tls::HelloWork`]): the same rules with its own threads and budget,
    /// so a flood of handshakes and a flood of signed blocks each slow only their own kind.
    pub fn for_handshakes() -> Self {
        Self::named("smp-tls", 0)
    }

    fn named(name: &str, waiting: usize) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) + waiting;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a verification thread: {e}");
            }
        }
        let inline = (waiting == 0).then(|| {
            let cpus = threads;
            Mutex::new(InlineBudget::new(cpus, Instant::now()))
        });
        VerifyPool {
            queue: tx,
            threads,
            inline,
        }
    }

    /// Whether a signed block may run on the reading worker now (see [`InlineBudget`]).
    fn inline_allows(&self) -> bool {
        self.inline
            .as_ref()
            .is_some_and(|b| b.lock().is_ok_and(|mut b| b.allows(Instant::now())))
    }

    /// Account for an inline block's time.
    fn inline_spent(&self, used: Duration) {
        if let Some(Ok(mut b)) = self.inline.as_ref().map(|b| b.lock()) {
            b.spend(used);
        }
    }

    /// Threads in the pool (control port and tests).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f` on a pool thread; `None` if the pool is gone or the job panicked.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r.ok());
        });
        self.queue.send(job).ok()?;
        rx.await.ok().flatten()
    }
}

impl crate::transport::tls::HelloWork for VerifyPool {
    fn answer(
        &self,
        job: Box<dyn FnOnce() + Send + 'static>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        if self.inline_allows() {
            let started = Instant::now();
            job();
            self.inline_spent(started.elapsed());
            return Box::pin(std::future::ready(()));
        }
        Box::pin(async move {
            let _ = self.run(job).await;
        })
    }
}

impl Default for VerifyPool {
    fn default() -> Self {
        Self::new()
    }
}

/// Nice this thread (Linux priorities are per thread); failure only costs the priority.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    let r = rustix::process::setpriority_process(Some(tid), VERIFY_NICE);
    if r.is_err() {
        tracing::debug!("verification threads keep the normal priority");
    }
}

/// Replies a block may build up before they are handed to the connection's outbox, which
/// waits for room: a block of 110 GETs of a 16 KB message would otherwise hold 1.7 MB of
/// replies at once for a client that does not read them.
pub const REPLY_CHUNK_BYTES: usize = 64 * 1024;

/// A block's transmissions, decoded (cheap) but not yet verified.
pub struct Decoded {
    items: Vec<Result<SignedTransmission, Rejected>>,
    /// The rest of a block whose first part was run already (see [`REPLY_CHUNK_BYTES`]).
    rest: bool,
}

impl Decoded {
    /// Decode a block into transmissions; a block that cannot be split is one `ERR BLOCK`.
    pub fn new(params: &THParams, block: Result<Vec<u8>, TransportError>) -> Self {
        let block_err = || Decoded {
            items: vec![Err((Vec::new(), Vec::new(), ErrorType::Block))],
            rest: false,
        };
        let Ok(content) = block else {
            return block_err();
        };
        let Ok(ts) = split_batch(&content) else {
            return block_err();
        };
        Decoded {
            items: ts
                .into_iter()
                .map(|t| decode_server(params, parse_transmission(params, t)))
                .collect(),
            rest: false,
        }
    }

    /// The block's transmissions if they are several SUBs and nothing else (resubscription,
    /// which [`super::core::Core::receive_subs`] runs with one store lookup); else the block.
    pub fn into_subs(self) -> Result<Vec<SignedTransmission>, Self> {
        let subs_only = self.items.len() > 1
            && self
                .items
                .iter()
                .all(|t| matches!(t, Ok(t) if matches!(t.command, Command::Sub)));
        if subs_only {
            Ok(self.items.into_iter().filter_map(Result::ok).collect())
        } else {
            Err(self)
        }
    }

    /// Whether running the block involves no signature, authenticator or decryption, so it
    /// may run on the reading worker.
    pub fn is_cheap(&self) -> bool {
        self.signed() == 0
    }

    /// Transmissions that need a signature or authenticator checked; a forwarded (`RFWD`)
    /// one counts as a whole block's worth, so it always goes to the pool.
    fn signed(&self) -> usize {
        self.items
            .iter()
            .map(|t| match t {
                Err(_) => 0,
                Ok(t) if matches!(t.command, Command::Rfwd(_)) => INLINE_MAX_SIGNED + 1,
                Ok(t) => usize::from(t.auth.is_some() || t.service_sig.is_some()),
            })
            .sum()
    }
}

/// What one connection needs to run its blocks.
pub struct Conn {
    /// The server.
    pub state: Arc<ServerState>,
    /// The connection.
    pub client: Arc<ClientHandle>,
    /// Its session keys.
    pub keys: Arc<SessionKeys>,
    /// Its version.
    pub version: crate::protocol::version::Version,
    /// Server shutdown.
    pub shutdown: CancellationToken,
    /// False once an inline block of this connection took too long: the pool runs the rest.
    pub inline: AtomicBool,
}

/// What running (part of) a block left: its effects, and the transmissions not run yet when
/// the replies reached [`REPLY_CHUNK_BYTES`] (run them after the replies are queued).
pub type Ran = (Effects, Option<Decoded>);

/// Verify and apply a block's transmissions in order, inline when cheap and otherwise on the
/// verification pool. `None` only if the pool failed (the connection is then closed).
pub async fn run(conn: &Conn, decoded: Decoded, now: i64) -> Option<Ran> {
    if decoded.is_cheap() {
        return Some(apply_all(conn, decoded, now));
    }
    let pool = &conn.state.verify_pool;
    if decoded.signed() <= INLINE_MAX_SIGNED
        && conn.inline.load(Ordering::Relaxed)
        && pool.inline_allows()
    {
        let clock = InlineClock::start();
        let fx = apply_all(conn, decoded, now);
        let (used, expensive) = clock.stop();
        pool.inline_spent(used);
        if expensive {
            conn.inline.store(false, Ordering::Relaxed);
        }
        return Some(fx);
    }
    let owned = Conn {
        state: conn.state.clone(),
        client: conn.client.clone(),
        keys: conn.keys.clone(),
        version: conn.version,
        shutdown: conn.shutdown.clone(),
        inline: AtomicBool::new(false),
    };
    // Awaited even if the connection closes, so its subscriptions are not removed before the
    // block's SUBs are added; `apply_all` stops early instead.
    pool.run(move || apply_all(&owned, decoded, now)).await
}

fn apply_all(conn: &Conn, decoded: Decoded, now: i64) -> Ran {
    let session = Session {
        client: &conn.client.core,
        version: conn.version,
        keys: &conn.keys,
        forwarded: false,
    };
    let mut fx = Effects::default();
    let batched = decoded.items.len() > 1 && !decoded.rest;
    let mut rng = rand::thread_rng();
    let mut env = Env { now, rng: &mut rng };
    let core = &conn.state.core;
    let decoded = if core.store.batches_lookups() {
        match decoded.into_subs() {
            Ok(subs) => {
                core.receive_subs(&session, subs, &mut env, &mut fx);
                return (fx, None);
            }
            Err(other) => other,
        }
    } else {
        decoded
    };
    let mut items = decoded.items.into_iter().enumerate();
    let mut reply_bytes = 0;
    let counted = |fx: &Effects, from: (usize, usize)| -> usize {
        let replies = fx.replies[from.0..].iter().map(super::outbox::cost);
        replies
            .chain(fx.follow[from.1..].iter().map(super::outbox::cost))
            .sum()
    };
    while let Some((i, t)) = items.next() {
        if conn.client.closed.is_cancelled() || conn.shutdown.is_cancelled() {
            break;
        }
        let before = (fx.replies.len(), fx.follow.len());
        match t {
            Err((corr, ent, e)) => fx
                .replies
                .push(Outgoing::new(&corr, &ent, BrokerMsg::Err(e))),
            Ok(st) => conn
                .state
                .core
                .receive(&session, st, batched && i == 0, &mut env, &mut fx),
        }
        reply_bytes += counted(&fx, before);
        if reply_bytes >= REPLY_CHUNK_BYTES {
            let rest: Vec<_> = items.map(|(_, t)| t).collect();
            if rest.is_empty() {
                break;
            }
            return (
                fx,
                Some(Decoded {
                    items: rest,
                    rest: true,
                }),
            );
        }
    }
    (fx, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inline_budget_refills_at_a_quarter_of_the_cpus_and_caps_its_burst() {
        let t0 = Instant::now();
        let mut b = InlineBudget::new(2, t0);
        assert!(b.allows(t0));
        // a long inline block empties it and leaves a debt
        b.spend(Duration::from_millis(30));
        assert!(!b.allows(t0));
        // 10 ms owed: two CPUs refill 0.5 s per s, so 20 ms of waiting repays it
        assert!(!b.allows(t0 + Duration::from_millis(19)));
        assert!(b.allows(t0 + Duration::from_millis(21)));
        // an idle hour fills it to the burst, not to an hour's worth
        let later = t0 + Duration::from_secs(3600);
        assert!(b.allows(later));
        b.spend(INLINE_BURST + Duration::from_micros(1));
        assert!(!b.allows(later));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn hellos_are_answered_inline_while_the_budget_lasts_then_on_the_pool() {
        use crate::transport::tls::HelloWork;
        type Job = Box<dyn FnOnce() + Send + 'static>;
        fn where_it_ran() -> (Job, std::sync::mpsc::Receiver<String>) {
            let (tx, rx) = std::sync::mpsc::channel();
            let job: Job = Box::new(move || {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                let _ = tx.send(name);
            });
            (job, rx)
        }
        let mut pool = VerifyPool::for_handshakes();
        // the budget of one CPU, whatever this machine has
        pool.inline = Some(Mutex::new(InlineBudget::new(1, Instant::now())));
        let (job, ran) = where_it_ran();
        pool.answer(job).await;
        let first = ran.recv().expect("ran");
        assert!(!first.starts_with("smp-tls-"), "ran on {first}");
        // four bursts' worth inline: the budget gets one back meanwhile, so it is then owed
        // and the next answers go to the pool
        pool.answer(Box::new(|| std::thread::sleep(INLINE_BURST * 4)))
            .await;
        for _ in 0..3 {
            let (job, ran) = where_it_ran();
            pool.answer(job).await;
            let name = ran.recv().expect("ran");
            assert!(name.starts_with("smp-tls-"), "ran on {name:?}");
        }
    }

    #[test]
    fn only_cpu_time_demotes_a_connection() {
        // Off the CPU (as when preempted) for longer than the limit: charged, not demoted.
        let clock = InlineClock::start();
        std::thread::sleep(INLINE_BLOCK_LIMIT * 3);
        let (wall, expensive) = clock.stop();
        assert!(wall >= INLINE_BLOCK_LIMIT * 3);
        assert!(!expensive);
        // Computing for longer than the limit: demoted.
        let clock = InlineClock::start();
        let mut x = 0u64;
        while thread_cpu().saturating_sub(clock.cpu) <= INLINE_BLOCK_LIMIT * 2 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let (wall, expensive) = clock.stop();
        assert!(wall > INLINE_BLOCK_LIMIT);
        assert!(expensive);
    }
}
