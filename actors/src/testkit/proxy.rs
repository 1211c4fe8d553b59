//! A fault-injecting TCP proxy for tests: clients connect to it, it forwards every byte to a
//! target (a broker), and on command it breaks connections the way networks do.
//!
//! - [`Fault::Reset`]: both sides are closed at once with `SO_LINGER 0`, so each peer gets a
//!   TCP reset (`ECONNRESET`), not a clean end of stream.
//! - [`Fault::Stall`]: nothing is forwarded, either way, for a while; then everything that
//!   waited (in the proxy and in the kernel's buffers) flows again. Nothing is lost.
//! - [`Fault::BlackHole`]: the connection stays open, the proxy reads and drops whatever the
//!   client sends and never answers, until the client closes the connection. The target sees
//!   nothing more. This is the nasty one: only a client-side timeout notices it.
//!
//! Faults are injected now ([`FaultProxy::inject_all`], [`FaultProxy::inject_one`]) or at
//! random ([`FaultProxy::start_random`]: one fault every so often on one random connection,
//! from a seeded RNG). [`FaultProxy::counts`] tells how many connections each kind hit.
//! A stall or black hole only hits a connection that still forwards; a black-holed connection
//! stays black-holed until its client closes it, so a random reset never heals it.
//!
//! The proxy runs on a thread of its own (a current-thread tokio runtime), so it works the same
//! from a synchronous test and from an actix test, and the test's own work cannot delay it.
//! It stops when dropped.
//!
//! ```no_run
//! use std::time::Duration;
//! use konsumer_actors::testkit::proxy::{Fault, FaultProxy, RandomFaults};
//! use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
//!
//! // The broker must advertise the proxy's address, or clients would go around it after the
//! // first Metadata answer: start the proxy first, then the broker, then join them.
//! let proxy = FaultProxy::start().expect("proxy");
//! let broker = TansuBroker::start_advertising(Storage::Sqlite, proxy.port());
//! proxy.set_target(broker.addr());
//! let bootstrap = proxy.address(); // give this to the clients under test
//! # let _ = bootstrap;
//! proxy.inject_all(Fault::Reset);
//! proxy.start_random(RandomFaults::new(42, Duration::from_millis(300)));
//! // ...
//! proxy.stop_random();
//! println!("{}", proxy.counts());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use actix::Recipient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::cluster::{Connector, TcpConnector};
use crate::messages::{Call, Purpose};

/// How long the proxy waits for the target to accept a connection before it drops the client.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BUFFER: usize = 64 * 1024;

/// One fault, injected into one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Close both sides abruptly: the peers see a TCP reset.
    Reset,
    /// Forward nothing for this long, then carry on.
    Stall(Duration),
    /// Swallow everything and never answer, until the client closes the connection.
    BlackHole,
}

/// A fault without its parameters, for counting and for [`RandomFaults::kinds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    Reset,
    Stall,
    BlackHole,
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Reset => FaultKind::Reset,
            Fault::Stall(_) => FaultKind::Stall,
            Fault::BlackHole => FaultKind::BlackHole,
        }
    }
}

/// How many connections each kind of fault has hit so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub resets: u64,
    pub stalls: u64,
    pub black_holes: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.resets + self.stalls + self.black_holes
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resets, {} stalls, {} black holes",
            self.resets, self.stalls, self.black_holes
        )
    }
}

/// The random mode: every `every` (± half, at random) one fault of a kind drawn from `kinds`
/// hits one connection drawn at random among those that still forward.
///
/// The seed fixes the sequence of draws; which connection a draw lands on also depends on
/// which connections exist at that moment, so a run is repeatable only as far as the timing of
/// the clients is.
#[derive(Clone, Debug)]
pub struct RandomFaults {
    pub seed: u64,
    pub every: Duration,
    /// Drawn with equal probability; an empty list injects nothing.
    pub kinds: Vec<FaultKind>,
    /// A stall lasts between half of this and all of it.
    pub max_stall: Duration,
}

impl RandomFaults {
    /// Every kind of fault, stalls of up to 2 s.
    pub fn new(seed: u64, every: Duration) -> Self {
        RandomFaults {
            seed,
            every,
            kinds: vec![FaultKind::Reset, FaultKind::Stall, FaultKind::BlackHole],
            max_stall: Duration::from_secs(2),
        }
    }
}

/// What a connection's relay does now; changed by the injector through a watch channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Forward,
    Stall { until: Instant },
    BlackHole,
    Reset,
}

impl State {
    /// Whether the connection still carries bytes (possibly after a stall).
    fn forwards(&self) -> bool {
        matches!(self, State::Forward | State::Stall { .. })
    }
}

#[derive(Default)]
struct Shared {
    target: Mutex<Option<SocketAddr>>,
    /// Live relayed connections by id (ids grow, so the map is in connection order).
    connections: Mutex<BTreeMap<u64, watch::Sender<State>>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    resets: AtomicU64,
    stalls: AtomicU64,
    black_holes: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Applies `fault` to one connection; returns whether it took (counted) effect.
    fn apply(&self, connection: &watch::Sender<State>, fault: Fault) -> bool {
        let applied = connection.send_if_modified(|state| {
            let next = match fault {
                Fault::Reset if *state != State::Reset => State::Reset,
                Fault::Stall(d) if state.forwards() => State::Stall {
                    until: Instant::now() + d,
                },
                Fault::BlackHole if state.forwards() => State::BlackHole,
                _ => return false,
            };
            *state = next;
            true
        });
        if applied {
            let counter = match fault.kind() {
                FaultKind::Reset => &self.resets,
                FaultKind::Stall => &self.stalls,
                FaultKind::BlackHole => &self.black_holes,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        applied
    }

    fn inject_all(&self, fault: Fault) -> usize {
        let connections = lock(&self.connections);
        connections
            .values()
            .filter(|c| self.apply(c, fault))
            .count()
    }

    /// Hits one connection that still forwards, chosen with `rng`.
    fn inject_one(&self, fault: Fault, rng: &mut fastrand::Rng) -> bool {
        let connections = lock(&self.connections);
        let live: Vec<&watch::Sender<State>> = connections
            .values()
            .filter(|c| c.borrow().forwards())
            .collect();
        if live.is_empty() {
            return false;
        }
        self.apply(live[rng.usize(..live.len())], fault)
    }
}

/// A TCP proxy on a free port of 127.0.0.1. See the module doc.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    /// For [`inject_one`](Self::inject_one).
    rng: Mutex<fastrand::Rng>,
    random: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy with no target yet: it listens at once (so its port can be handed out),
    /// and closes connections that arrive before [`set_target`](Self::set_target).
    pub fn start() -> io::Result<FaultProxy> {
        let listener = StdListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let accepting = shared.clone();
        let thread = thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(_) => return,
                    };
                    tokio::select! {
                        () = accept(listener, accepting) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime ends every relay: their sockets close.
            })?;
        let runtime = handle_rx
            .recv()
            .map_err(|_| io::Error::other("the proxy thread died while starting"))??;
        Ok(FaultProxy {
            addr,
            shared,
            runtime,
            rng: Mutex::new(fastrand::Rng::with_seed(0)),
            random: Mutex::new(None),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Starts a proxy forwarding to `target`.
    pub fn to(target: SocketAddr) -> io::Result<FaultProxy> {
        let proxy = Self::start()?;
        proxy.set_target(target);
        Ok(proxy)
    }

    /// Where new connections are forwarded; existing ones keep theirs.
    pub fn set_target(&self, target: SocketAddr) {
        *lock(&self.shared.target) = Some(target);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `"127.0.0.1:PORT"`, the bootstrap address for clients that should go through the proxy.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Injects `fault` into every connection it can hit now; returns how many it hit.
    pub fn inject_all(&self, fault: Fault) -> usize {
        self.shared.inject_all(fault)
    }

    /// Injects `fault` into one connection, chosen at random among those that still forward;
    /// returns whether there was one.
    pub fn inject_one(&self, fault: Fault) -> bool {
        self.shared.inject_one(fault, &mut lock(&self.rng))
    }

    /// Starts (or restarts with a new plan) the random mode.
    pub fn start_random(&self, plan: RandomFaults) {
        let task = self.runtime.spawn(random_faults(self.shared.clone(), plan));
        if let Some(previous) = lock(&self.random).replace(task) {
            previous.abort();
        }
    }

    /// Ends the random mode. Faults already injected stay: stalls run out, black holes last
    /// until their clients close them.
    pub fn stop_random(&self) {
        if let Some(task) = lock(&self.random).take() {
            task.abort();
        }
    }

    /// The connections each kind of fault has hit so far.
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            resets: self.shared.resets.load(Ordering::Relaxed),
            stalls: self.shared.stalls.load(Ordering::Relaxed),
            black_holes: self.shared.black_holes.load(Ordering::Relaxed),
        }
    }

    /// Connections relayed now (a black-holed one counts until its client closes it).
    pub fn connections(&self) -> usize {
        lock(&self.shared.connections).len()
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop_random();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("target", &*lock(&self.shared.target))
            .field("connections", &self.connections())
            .field("counts", &self.counts())
            .finish()
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors and the like: try again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(shared.clone(), client));
    }
}

/// Connects `client` to the target and relays until either side ends or a reset is injected.
async fn serve(shared: Arc<Shared>, mut client: TcpStream) {
    let Some(target) = *lock(&shared.target) else {
        return; // no target yet: the client sees its connection closed
    };
    let mut server =
        match tokio::time::timeout(TARGET_CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(server)) => server,
            _ => return,
        };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (control, state) = watch::channel(State::Forward);
    lock(&shared.connections).insert(id, control);

    let reset = relay(&mut client, &mut server, state).await;
    lock(&shared.connections).remove(&id);
    if reset {
        // Closing with a zero linger sends RST instead of FIN.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

/// How one direction of a relay ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Its source closed (end of stream).
    Eof,
    /// A read or write failed (the peer reset or vanished).
    Broken,
    /// A reset was injected.
    Reset,
}

/// Runs both directions; returns whether the connection must end with a reset.
async fn relay(
    client: &mut TcpStream,
    server: &mut TcpStream,
    state: watch::Receiver<State>,
) -> bool {
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let up = pump(&mut client_read, &mut server_write, state.clone());
    let down = pump(&mut server_read, &mut client_write, state.clone());
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        tokio::select! {
            end = &mut up, if !up_done => {
                up_done = true;
                match end {
                    // A client gone from a black hole ends it; otherwise its end of stream was
                    // passed on, and the answer direction finishes by itself.
                    Ended::Eof if *state.borrow() == State::BlackHole => return false,
                    Ended::Eof => {}
                    Ended::Broken => return false,
                    Ended::Reset => return true,
                }
            }
            end = &mut down, if !down_done => {
                down_done = true;
                match end {
                    Ended::Eof => {}
                    Ended::Broken => return false,
                    Ended::Reset => return true,
                }
            }
        }
        if up_done && down_done {
            return false;
        }
    }
}

/// Copies `from` to `to` as the connection's state allows.
async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    mut state: watch::Receiver<State>,
) -> Ended {
    let mut buffer = vec![0u8; BUFFER];
    loop {
        // Not reading while stalled is what stalls: the kernel's buffers fill up behind us.
        if let Err(end) = passage(&mut state).await {
            return end;
        }
        let n = tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) => {
                    // Pass the end of stream on, unless black-holed: then the client hears
                    // nothing, not even that the target went away.
                    if *state.borrow() != State::BlackHole {
                        let _ = to.shutdown().await;
                    }
                    return Ended::Eof;
                }
                Ok(n) => n,
                Err(_) => return Ended::Broken,
            },
            changed = state.changed() => {
                if changed.is_err() {
                    return Ended::Reset;
                }
                continue;
            }
        };
        // The state may have changed while we read: the bytes in hand obey the new one.
        match passage(&mut state).await {
            Err(end) => return end,
            Ok(Passage::Swallow) => continue,
            Ok(Passage::Forward) => {}
        }
        // Only a reset may interrupt a write: a stall or black hole arriving meanwhile takes
        // effect from the next read, so no stream is ever cut in the middle of a chunk.
        tokio::select! {
            written = to.write_all(&buffer[..n]) => {
                if written.is_err() {
                    return Ended::Broken;
                }
            }
            () = until_reset(&mut state) => return Ended::Reset,
        }
    }
}

enum Passage {
    Forward,
    Swallow,
}

/// Waits out a stall; then says whether bytes go through or are swallowed (black hole).
async fn passage(state: &mut watch::Receiver<State>) -> Result<Passage, Ended> {
    loop {
        let now = *state.borrow_and_update();
        match now {
            State::Forward => return Ok(Passage::Forward),
            State::BlackHole => return Ok(Passage::Swallow),
            State::Reset => return Err(Ended::Reset),
            State::Stall { until } if Instant::now() >= until => return Ok(Passage::Forward),
            State::Stall { until } => {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    changed = state.changed() => {
                        if changed.is_err() {
                            return Err(Ended::Reset);
                        }
                    }
                }
            }
        }
    }
}

/// Resolves once a reset is injected (or the proxy is gone).
async fn until_reset(state: &mut watch::Receiver<State>) {
    while *state.borrow_and_update() != State::Reset {
        if state.changed().await.is_err() {
            return;
        }
    }
}

async fn random_faults(shared: Arc<Shared>, plan: RandomFaults) {
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    if plan.kinds.is_empty() {
        return;
    }
    loop {
        // every ± half
        let half = plan.every / 2;
        let pause = half + half.mul_f64(2.0 * rng.f64());
        tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
        let kind = plan.kinds[rng.usize(..plan.kinds.len())];
        let fault = match kind {
            FaultKind::Reset => Fault::Reset,
            FaultKind::BlackHole => Fault::BlackHole,
            FaultKind::Stall => {
                let half = plan.max_stall / 2;
                Fault::Stall(half + half.mul_f64(rng.f64()))
            }
        };
        shared.inject_one(fault, &mut rng);
    }
}

/// A [`Connector`] that reaches `real` whenever it is asked for `advertised`: lets a client
/// (a producer feeding the test, say) talk to a broker that advertises the proxy's address
/// without going through the proxy. Other addresses are connected as asked.
pub struct Bypass {
    inner: TcpConnector,
    advertised: String,
    real: String,
}

impl Bypass {
    pub fn new(
        config: Arc<konsumer::ClientConfig>,
        log: slog::Logger,
        advertised: impl Into<String>,
        real: impl Into<String>,
    ) -> Self {
        Bypass {
            inner: TcpConnector::new(config, log),
            advertised: advertised.into(),
            real: real.into(),
        }
    }
}

impl Connector for Bypass {
    fn connect(&self, address: &str, purpose: Purpose) -> Recipient<Call> {
        let address = if address == self.advertised {
            self.real.as_str()
        } else {
            address
        };
        self.inner.connect(address, purpose)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    use super::*;

    /// An echo server on a free port; counts the bytes it received.
    struct Echo {
        addr: SocketAddr,
        received: Arc<AtomicUsize>,
    }

    fn echo() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let counter = counter.clone();
                thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    loop {
                        match stream.read(&mut buffer) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                counter.fetch_add(n, Ordering::Relaxed);
                                if stream.write_all(&buffer[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Echo { addr, received }
    }

    fn client(proxy: &FaultProxy, read_timeout: Duration) -> TcpStream {
        let stream = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
        stream
            .set_read_timeout(Some(read_timeout))
            .expect("read timeout");
        stream
    }

    /// Writes `text` and reads the echo back.
    fn round_trip(stream: &mut TcpStream, text: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(text)?;
        let mut answer = vec![0u8; text.len()];
        stream.read_exact(&mut answer)?;
        Ok(answer)
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn proxy_forwards_both_ways_and_passes_the_end_of_stream_on() {
        let echo = echo();
        let proxy = FaultProxy::to(echo.addr).expect("proxy");
        let mut stream = client(&proxy, Duration::from_secs(5));
        assert_eq!(round_trip(&mut stream, b"hello").expect("echo"), b"hello");
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let mut writer = stream.try_clone().expect("clone");
        let sent = big.clone();
        let writing = thread::spawn(move || writer.write_all(&sent));
        let mut back = vec![0u8; big.len()];
        stream.read_exact(&mut back).expect("a megabyte back");
        writing.join().expect("writer").expect("written");
        assert!(back == big, "the bytes came back changed");
        assert_eq!(proxy.connections(), 1);
        stream.shutdown(Shutdown::Write).expect("half-close");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).expect("end of stream");
        assert!(rest.is_empty());
        wait_for("the relay to end", || proxy.connections() == 0);
        assert_eq!(proxy.counts(), FaultCounts::default());
        assert_eq!(proxy.accepted(), 1);
    }

    #[test]
    fn proxy_reset_reaches_the_client_as_a_tcp_reset() {
        let echo = echo();
        let proxy = FaultProxy::to(echo.addr).expect("proxy");
        let mut stream = client(&proxy, Duration::from_secs(5));
        round_trip(&mut stream, b"ping").expect("echo");
        assert_eq!(proxy.inject_all(Fault::Reset), 1);
        let mut buffer = [0u8; 16];
        let error = stream
            .read(&mut buffer)
            .expect_err("a reset connection cannot be read");
        assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
        wait_for("the relay to end", || proxy.connections() == 0);
        assert_eq!(proxy.counts().resets, 1);
        // A reset connection is not hit again.
        assert_eq!(proxy.inject_all(Fault::Reset), 0);
        // New connections work.
        let mut again = client(&proxy, Duration::from_secs(5));
        assert_eq!(round_trip(&mut again, b"again").expect("echo"), b"again");
    }

    #[test]
    fn proxy_stall_delays_without_losing_bytes() {
        let echo = echo();
        let proxy = FaultProxy::to(echo.addr).expect("proxy");
        let mut stream = client(&proxy, Duration::from_millis(300));
        round_trip(&mut stream, b"before").expect("echo");
        assert!(proxy.inject_one(Fault::Stall(Duration::from_millis(800))));
        let started = Instant::now();
        stream.write_all(b"during").expect("write");
        let mut buffer = [0u8; 6];
        let error = stream
            .read_exact(&mut buffer)
            .expect_err("nothing comes back during a stall");
        assert!(
            matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{error}"
        );
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        stream
            .read_exact(&mut buffer)
            .expect("the echo after the stall");
        assert_eq!(&buffer, b"during");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(700),
            "answered after {waited:?}, within the stall"
        );
        assert_eq!(proxy.counts().stalls, 1);
        assert_eq!(round_trip(&mut stream, b"after").expect("echo"), b"after");
    }

    #[test]
    fn proxy_black_hole_swallows_everything_until_the_client_closes() {
        let echo = echo();
        let proxy = FaultProxy::to(echo.addr).expect("proxy");
        let mut stream = client(&proxy, Duration::from_millis(500));
        round_trip(&mut stream, b"alive").expect("echo");
        let received = echo.received.load(Ordering::Relaxed);
        assert_eq!(proxy.inject_all(Fault::BlackHole), 1);
        // Writes succeed, nothing comes back, the connection does not end.
        for _ in 0..3 {
            stream.write_all(b"anyone?").expect("writes are accepted");
            let mut buffer = [0u8; 16];
            let error = stream.read(&mut buffer).expect_err("no answer, no end");
            assert!(
                matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{error}"
            );
        }
        assert_eq!(
            echo.received.load(Ordering::Relaxed),
            received,
            "bytes reached the target through a black hole"
        );
        // Neither a stall nor another black hole hits it again, and random faults skip it.
        assert_eq!(proxy.inject_all(Fault::Stall(Duration::from_secs(1))), 0);
        assert!(!proxy.inject_one(Fault::BlackHole));
        assert_eq!(proxy.counts().black_holes, 1);
        assert_eq!(proxy.connections(), 1);
        drop(stream);
        wait_for("the black hole to close with its client", || {
            proxy.connections() == 0
        });
    }

    #[test]
    fn proxy_closes_connections_that_come_before_a_target() {
        let proxy = FaultProxy::start().expect("proxy");
        let mut stream = client(&proxy, Duration::from_secs(5));
        let mut buffer = [0u8; 1];
        let n = stream.read(&mut buffer).unwrap_or(0);
        assert_eq!(n, 0, "a connection without a target is closed");
        let echo = echo();
        proxy.set_target(echo.addr);
        let mut stream = client(&proxy, Duration::from_secs(5));
        assert_eq!(round_trip(&mut stream, b"now").expect("echo"), b"now");
    }

    #[test]
    fn proxy_random_mode_hits_connections_with_every_kind_until_stopped() {
        let echo = echo();
        let proxy = FaultProxy::to(echo.addr).expect("proxy");
        // Clients that reconnect whenever their connection breaks or goes quiet.
        let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (running, addr) = (running.clone(), proxy.addr());
                thread::spawn(move || {
                    while running.load(Ordering::Relaxed) {
                        let Ok(mut stream) = TcpStream::connect(addr) else {
                            continue;
                        };
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                        while running.load(Ordering::Relaxed)
                            && round_trip(&mut stream, b"x").is_ok()
                        {
                            thread::sleep(Duration::from_millis(5));
                        }
                    }
                })
            })
            .collect();
        let mut plan = RandomFaults::new(7, Duration::from_millis(20));
        plan.max_stall = Duration::from_millis(50);
        proxy.start_random(plan);
        wait_for("every kind of fault", || {
            let c = proxy.counts();
            c.resets >= 3 && c.stalls >= 3 && c.black_holes >= 3
        });
        proxy.stop_random();
        thread::sleep(Duration::from_millis(50)); // an injection under way finishes
        let stopped = proxy.counts();
        thread::sleep(Duration::from_millis(200));
        assert_eq!(proxy.counts(), stopped, "faults after stop_random");
        running.store(false, Ordering::Relaxed);
        for c in clients {
            c.join().expect("client thread");
        }
        assert!(proxy.accepted() > 4, "clients never had to reconnect");
    }
}
