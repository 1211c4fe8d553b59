//! BrokerConnection: one TCP connection to one broker, many requests in flight.
//!
//! Life of a connection:
//! 1. `started`: after a backoff (none for the first attempt), connect and run the ApiVersions
//!    exchange; the negotiated table decides every later request's version.
//! 2. Connected: each [`Call`] gets a correlation id, is registered as in flight *before* it is
//!    written, and is handed whole to a writer task. Responses are matched by correlation id and
//!    decoded by the caller's future, so a big response does not hold up the actor.
//! 3. Any I/O or framing error fails every in-flight request with the same typed error, and the
//!    actor stops itself; its [`Supervisor`] restarts it (fields survive, the restart is logged
//!    at info with the reason), and `started` reconnects with capped, jittered exponential
//!    backoff.
//! 4. A request that gets no answer within its timeout fails with [`Error::Timeout`]. If it was
//!    the oldest request in flight, nothing explains the silence (answers come in order), so
//!    the connection is presumed dead — a peer that vanished without a reset, a black hole —
//!    and is failed and restarted as in 3. A request that timed out behind an older one still
//!    within its own timeout (a JoinGroup that blocks by design) leaves the connection alone.
//!    A request allowed much longer than the request timeout (a JoinGroup) is preceded
//!    by a small ApiVersions probe with the ordinary timeout, so a connection that is already
//!    dead is found out in that time rather than in the long one.
//! 5. A connection with nothing in flight is probed the same way after half a request timeout
//!    of silence, so a dead idle connection (the General one between metadata refreshes, a
//!    Fetch connection between assignments) is replaced in the background, not discovered by
//!    the next request that needs it. TCP keepalive cannot see a peer that still acknowledges
//!    bytes but never answers, and its defaults wait hours.
//!
//! Requests that arrive while the connection is (re)connecting **wait**, bounded by their own
//! request timeout: they are written as soon as the connection is up, or fail with
//! [`Error::Timeout`] naming the last connection error. They fail at once only when a connect
//! attempt fails in a way retrying cannot mend (a protocol violation, a broker too old), or when
//! the connection is closed. Waiting rather than failing fast lets a short broker restart pass
//! unnoticed by callers.
//!
//! A Produce request with `acks=0` gets no answer from the broker: it completes as soon as it is
//! written, with an empty `ProduceResponse`, and is never registered as in flight.
//!
//! Writes are cancellation-safe: a request is written whole or not at all, because only the
//! writer task touches the socket and a caller that gives up merely drops its answer channel.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakAddr;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use konsumer::kafka_protocol::messages::ApiVersionsRequest;
use konsumer::protocol::codec::ProbeStep;
use konsumer::protocol::{
    decode_response, encode_request, peek_correlation_id, ApiKey, ApiVersionTable,
    ApiVersionsProbe, FrameDecoder, FrameError, RequestKind, ResponseKind,
};
use konsumer::sasl::{SaslConfig, SaslExchange, SaslStep};
use konsumer::{ClientConfig, Error};
use slog::{debug, info, o, warn, Logger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Decoder, FramedRead};

use crate::messages::{Call, Close, Reply};
use crate::tls::{BrokerStream, BrokerWriter, TlsConnector};

/// The longest a connection sleeps between checks when no deadline is nearer: bounds how late
/// an unheld connection closes. Deadlines themselves are met by a timer armed for the
/// earliest of them, so an idle member does not wake up every few milliseconds per connection.
const IDLE_SWEEP: Duration = Duration::from_secs(1);
/// acks=0 correlation ids remembered (see `BrokerConnection::unanswered`).
const MAX_UNANSWERED_REMEMBERED: usize = 1024;
/// Frames gathered into one socket write when several are waiting.
const MAX_WRITE_BATCH: usize = 1024 * 1024;
/// A request allowed more than this many request timeouts (a JoinGroup, which blocks for up to
/// the rebalance timeout) is preceded by a liveness probe; a Fetch (request timeout plus its
/// long-poll wait) is not.
const PROBE_BEYOND: u32 = 2;

/// One supervised connection to one broker. Start it with
/// `actix::Supervisor::start(|_| BrokerConnection::new(...))`.
pub struct BrokerConnection {
    address: String,
    config: Arc<ClientConfig>,
    log: Logger,
    /// Times the supervisor has restarted this actor.
    restarts: u32,
    /// Connect attempts failed in a row; drives the backoff.
    connect_failures: u32,
    last_error: Option<String>,
    /// The last connect attempt failed in a way retrying cannot mend: requests fail at once
    /// with this error instead of waiting for a connection, until a connect succeeds.
    fatal: Option<Error>,
    /// TLS setup, built on the first connect (`None`: plaintext, or not built yet).
    tls: Option<TlsConnector>,
    closed: bool,
    /// Bumped for every connect attempt; results of an older attempt are ignored.
    generation: u64,
    link: Option<Link>,
    /// Requests waiting for a connection; never written yet, so safe to send on the next one.
    queued: VecDeque<Waiting>,
    in_flight: HashMap<i32, InFlight>,
    /// Write order of in-flight requests (see [`InFlight::sequence`]).
    next_sequence: u64,
    /// When the link last wrote a request or read an answer: drives the idle probe.
    last_activity: Instant,
    /// The armed sweep timer: when it fires, and its handle (to re-arm it earlier).
    next_sweep: Option<(Instant, SpawnHandle)>,
    /// Correlation ids of recent requests that expect no answer (acks=0), so that an answer
    /// sent anyway is recognised and dropped instead of failing the connection as a protocol
    /// violation. Kafka never answers them; tansu 0.6 does.
    unanswered: VecDeque<i32>,
    next_correlation_id: i32,
}

struct Link {
    writer: mpsc::UnboundedSender<Outgoing>,
    versions: Arc<ApiVersionTable>,
}

struct Waiting {
    call: Call,
    started: Instant,
    deadline: Instant,
    reply: oneshot::Sender<Result<RawReply, Error>>,
}

struct InFlight {
    api_key: ApiKey,
    version: i16,
    /// Order of writing: the lowest in flight is the one the broker must answer first.
    sequence: u64,
    started: Instant,
    deadline: Instant,
    /// Taken when the request times out; the entry stays until its response arrives, so a late
    /// answer is recognised (and dropped) rather than taken for a protocol violation.
    reply: Option<oneshot::Sender<Result<RawReply, Error>>>,
}

/// What a request's caller gets from the connection.
enum RawReply {
    /// An undecoded response; the caller's future decodes it.
    Frame {
        api_key: ApiKey,
        version: i16,
        frame: Bytes,
    },
    /// A request the broker does not answer (Produce with acks=0) was written whole.
    Written { version: i16 },
}

/// One request frame for the writer task.
struct Outgoing {
    frame: Bytes,
    /// For a request without an answer: whom to tell once the frame is written.
    written: Option<(oneshot::Sender<Result<RawReply, Error>>, i16)>,
}

impl BrokerConnection {
    pub fn new(address: impl Into<String>, config: Arc<ClientConfig>, log: &Logger) -> Self {
        let address = address.into();
        BrokerConnection {
            log: log.new(o!("broker" => address.clone())),
            address,
            config,
            restarts: 0,
            connect_failures: 0,
            last_error: None,
            fatal: None,
            tls: None,
            closed: false,
            generation: 0,
            link: None,
            queued: VecDeque::new(),
            in_flight: HashMap::new(),
            next_sequence: 0,
            last_activity: Instant::now(),
            next_sweep: None,
            unanswered: VecDeque::new(),
            next_correlation_id: 0,
        }
    }

    /// Starts a supervised connection on the current arbiter.
    pub fn start_supervised(
        address: impl Into<String>,
        config: Arc<ClientConfig>,
        log: &Logger,
    ) -> Addr<Self> {
        let connection = Self::new(address, config, log);
        Supervisor::start(move |_| connection)
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let tls = match self.tls_connector() {
            Ok(tls) => tls,
            Err(error) => return self.connect_failed(error, ctx),
        };
        let opening = open(self.address.clone(), self.config.clone(), tls);
        ctx.spawn(opening.into_actor(self).map(move |result, act, ctx| {
            if generation != act.generation || act.closed {
                return;
            }
            match result {
                Ok((stream, versions)) => act.on_connected(stream, versions, ctx),
                Err(error) => act.connect_failed(error, ctx),
            }
        }));
    }

    /// The TLS setup, built on the first connect (it reads the certificate files) and kept
    /// across restarts; `None` for plaintext.
    fn tls_connector(&mut self) -> Result<Option<TlsConnector>, Error> {
        let Some(config) = &self.config.tls else {
            return Ok(None);
        };
        let tls = match &self.tls {
            Some(tls) => tls.clone(),
            None => {
                let tls = TlsConnector::new(config)?;
                self.tls = Some(tls.clone());
                tls
            }
        };
        if tls.insecure {
            warn!(
                self.log,
                "TLS CERTIFICATE VERIFICATION IS OFF (danger_accept_invalid_certs): \
                this connection accepts any certificate and can be intercepted"
            );
        }
        Ok(Some(tls))
    }

    fn connect_failed(&mut self, error: Error, ctx: &mut Context<Self>) {
        self.connect_failures += 1;
        warn!(self.log, "cannot connect to broker";
            "error" => %error, "failures_in_a_row" => self.connect_failures);
        if error.is_retriable() {
            self.fatal = None;
        } else {
            // Retrying will not mend this (bad credentials, TLS refused, a protocol
            // violation): tell the waiting callers now, and later ones at once until a
            // connect succeeds. The connection still retries, with backoff.
            for waiting in self.queued.drain(..) {
                let _ = waiting.reply.send(Err(error.clone()));
            }
            self.fatal = Some(error.clone());
        }
        self.last_error = Some(error.to_string());
        ctx.stop(); // the supervisor restarts us; `started` backs off
    }

    fn on_connected(
        &mut self,
        stream: BrokerStream,
        versions: ApiVersionTable,
        ctx: &mut Context<Self>,
    ) {
        let (read, write) = stream.split();
        let (writer, frames) = mpsc::unbounded_channel();
        let generation = self.generation;
        actix::spawn(write_frames(
            write,
            frames,
            generation,
            ctx.address().downgrade(),
            self.address.clone(),
        ));
        let decoder = FrameCodec(FrameDecoder::new(self.config.max_response_bytes));
        ctx.add_stream(FramedRead::new(read, decoder).map(move |item| (generation, item)));
        self.link = Some(Link {
            writer,
            versions: Arc::new(versions),
        });
        if self.restarts > 0 {
            info!(self.log, "broker connection re-established after supervised restart";
                "restarts" => self.restarts, "waiting_requests" => self.queued.len());
        } else {
            info!(self.log, "connected to broker");
        }
        self.connect_failures = 0;
        self.last_error = None;
        self.fatal = None;
        self.last_activity = Instant::now();
        for waiting in std::mem::take(&mut self.queued) {
            self.dispatch(waiting, ctx);
        }
    }

    /// Writes one request on the live link.
    fn dispatch(&mut self, mut waiting: Waiting, ctx: &mut Context<Self>) {
        if self.link.is_none() {
            self.queued.push_back(waiting);
            return;
        }
        // A long request is written behind a probe that answers within the usual time.
        let long = waiting.deadline.saturating_duration_since(Instant::now())
            > self.config.request_timeout * PROBE_BEYOND;
        if long && !self.probe(ctx) {
            // The link just failed: the request was not written, so it waits for the next.
            self.queued.push_back(waiting);
            return;
        }
        let Some(link) = &self.link else {
            self.queued.push_back(waiting);
            return;
        };
        let api_key = waiting.call.api_key();
        let version = match link
            .versions
            .select(api_key, waiting.call.max_version, &self.address)
        {
            Ok(version) => version,
            Err(error) => {
                let _ = waiting.reply.send(Err(error));
                return;
            }
        };
        waiting.call.fit_to_version(version);
        // With acks=0 the broker never answers: the request is done once it is written.
        let unanswered = matches!(waiting.call.request(), RequestKind::Produce(p) if p.acks == 0);
        let mut correlation_id = self.next_correlation_id;
        while self.in_flight.contains_key(&correlation_id) {
            correlation_id = correlation_id.wrapping_add(1);
        }
        self.next_correlation_id = correlation_id.wrapping_add(1);
        let frame = match encode_request(
            api_key,
            version,
            correlation_id,
            &self.config.client_id,
            waiting.call.request(),
        ) {
            Ok(frame) => frame,
            Err(error) => {
                let _ = waiting.reply.send(Err(error));
                return;
            }
        };
        if unanswered {
            if self.unanswered.len() >= MAX_UNANSWERED_REMEMBERED {
                self.unanswered.pop_front();
            }
            self.unanswered.push_back(correlation_id);
            let outgoing = Outgoing {
                frame,
                written: Some((waiting.reply, version)),
            };
            if let Err(mpsc::error::SendError(outgoing)) = link.writer.send(outgoing) {
                let error = Error::ConnectionClosed {
                    broker: self.address.clone(),
                    detail: "(writer stopped)".into(),
                };
                if let Some((reply, _)) = outgoing.written {
                    let _ = reply.send(Err(error.clone()));
                }
                self.fail_link(error, ctx);
            }
            return;
        }
        // Registered before the write, so a fast answer always finds its waiter.
        self.last_activity = Instant::now();
        self.next_sequence += 1;
        self.in_flight.insert(
            correlation_id,
            InFlight {
                api_key,
                version,
                sequence: self.next_sequence,
                started: waiting.started,
                deadline: waiting.deadline,
                reply: Some(waiting.reply),
            },
        );
        let outgoing = Outgoing {
            frame,
            written: None,
        };
        if link.writer.send(outgoing).is_err() {
            self.fail_link(
                Error::ConnectionClosed {
                    broker: self.address.clone(),
                    detail: "(writer stopped)".into(),
                },
                ctx,
            );
        }
    }

    /// Writes an ApiVersions request nobody waits for, due within the request timeout: its
    /// answer proves the link alive up to what is written next, its silence fails the link
    /// (it is then the oldest request overdue, see `sweep`). Returns false if the link is gone.
    fn probe(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(link) = &self.link else {
            return false;
        };
        let mut correlation_id = self.next_correlation_id;
        while self.in_flight.contains_key(&correlation_id) {
            correlation_id = correlation_id.wrapping_add(1);
        }
        self.next_correlation_id = correlation_id.wrapping_add(1);
        // Version 0: every broker takes it, and its body is empty.
        let frame = match encode_request(
            ApiKey::ApiVersions,
            0,
            correlation_id,
            &self.config.client_id,
            &RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ) {
            Ok(frame) => frame,
            Err(_) => return true, // cannot happen for an empty request; go on without
        };
        let now = Instant::now();
        self.last_activity = now;
        self.next_sequence += 1;
        self.in_flight.insert(
            correlation_id,
            InFlight {
                api_key: ApiKey::ApiVersions,
                version: 0,
                sequence: self.next_sequence,
                started: now,
                deadline: now + self.config.request_timeout,
                reply: None,
            },
        );
        let outgoing = Outgoing {
            frame,
            written: None,
        };
        if link.writer.send(outgoing).is_err() {
            self.fail_link(
                Error::ConnectionClosed {
                    broker: self.address.clone(),
                    detail: "(writer stopped)".into(),
                },
                ctx,
            );
            return false;
        }
        true
    }

    fn on_frame(&mut self, frame: Bytes, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        let Some(correlation_id) = peek_correlation_id(&frame) else {
            let detail = format!("a {}-byte response has no correlation id", frame.len());
            return self.protocol_violation(detail, ctx);
        };
        match self.in_flight.remove(&correlation_id) {
            Some(InFlight {
                api_key,
                version,
                reply,
                ..
            }) => match reply {
                Some(reply) => {
                    let _ = reply.send(Ok(RawReply::Frame {
                        api_key,
                        version,
                        frame,
                    }));
                }
                // A liveness probe's answer: it arrived, which was all it had to do.
                None if api_key == ApiKey::ApiVersions => {}
                None => debug!(self.log, "dropped a response that came after its timeout";
                    "api" => ?api_key, "correlation_id" => correlation_id),
            },
            None => {
                if let Some(i) = self.unanswered.iter().position(|id| *id == correlation_id) {
                    self.unanswered.remove(i);
                    debug!(self.log, "broker answered a request that needs no answer (acks=0); dropped";
                        "correlation_id" => correlation_id);
                    return;
                }
                let detail =
                    format!("response with correlation id {correlation_id} matches no request");
                self.protocol_violation(detail, ctx)
            }
        }
    }

    fn protocol_violation(&mut self, detail: String, ctx: &mut Context<Self>) {
        let broker = self.address.clone();
        self.fail_link(Error::Protocol { broker, detail }, ctx);
    }

    /// The connection is unusable: fail everything written on it, stop, and let the supervisor
    /// restart us. Queued requests were never written and wait for the next connection.
    fn fail_link(&mut self, error: Error, ctx: &mut Context<Self>) {
        if self.link.take().is_none() {
            return;
        }
        self.generation += 1;
        warn!(self.log, "broker connection failed; restarting it";
            "error" => %error, "failed_in_flight" => self.in_flight.len());
        self.unanswered.clear();
        for (_, in_flight) in self.in_flight.drain() {
            if let Some(reply) = in_flight.reply {
                let _ = reply.send(Err(error.clone()));
            }
        }
        self.last_error = Some(error.to_string());
        ctx.stop();
    }

    /// Fails requests whose deadline has passed, and stops for good once nobody holds an
    /// address of this connection.
    /// Arms the sweep timer for the earliest moment something may be due: a waiting or
    /// in-flight request's deadline, the idle probe, or at the latest [`IDLE_SWEEP`] from now.
    fn arm_sweep(&mut self, ctx: &mut Context<Self>) {
        if self.closed {
            return;
        }
        let now = Instant::now();
        let mut due = now + IDLE_SWEEP;
        for deadline in self
            .queued
            .iter()
            .map(|w| w.deadline)
            .chain(self.in_flight.values().map(|f| f.deadline))
            .filter(|d| *d > now)
        {
            due = due.min(deadline);
        }
        if self.link.is_some() && self.in_flight.is_empty() {
            due = due.min(self.last_activity + self.config.request_timeout / 2);
        }
        if let Some((armed, handle)) = self.next_sweep {
            if armed <= due {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(due.saturating_duration_since(now), |act, ctx| {
            act.next_sweep = None;
            act.sweep(ctx);
            act.arm_sweep(ctx);
        });
        self.next_sweep = Some((due, handle));
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let timeout = |api: ApiKey, started: Instant, this: &Self| Error::Timeout {
            api,
            broker: this.address.clone(),
            after: now.saturating_duration_since(started),
            last_error: this.last_error.clone(),
        };
        let mut i = 0;
        while i < self.queued.len() {
            if self.queued[i].deadline <= now {
                if let Some(waiting) = self.queued.remove(i) {
                    let error = timeout(waiting.call.api_key(), waiting.started, self);
                    let _ = waiting.reply.send(Err(error));
                }
            } else {
                i += 1;
            }
        }
        let expired: Vec<i32> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.reply.is_some() && f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(f) = self.in_flight.get(&id) else {
                continue;
            };
            let error = timeout(f.api_key, f.started, self);
            if let Some(reply) = self.in_flight.get_mut(&id).and_then(|f| f.reply.take()) {
                let _ = reply.send(Err(error));
            }
        }
        // The oldest request is overdue: the broker has not answered anything written since,
        // and never will on this connection. Replace it, or every later request (the next
        // heartbeat, the next fetch) would wait out its whole timeout on it too.
        if let Some(oldest) = self.in_flight.values().min_by_key(|f| f.sequence) {
            if oldest.deadline <= now {
                let error = Error::Io {
                    broker: self.address.clone(),
                    kind: std::io::ErrorKind::TimedOut,
                    reason: format!(
                        "no answer to a {:?} request within {:?}; connection presumed dead",
                        oldest.api_key,
                        now.saturating_duration_since(oldest.started)
                    ),
                };
                self.fail_link(error, ctx);
            }
        }
        let idle_after = self.config.request_timeout / 2;
        if self.link.is_some()
            && self.in_flight.is_empty()
            && now.saturating_duration_since(self.last_activity) >= idle_after
        {
            self.probe(ctx);
        }
        if !ctx.connected() && self.queued.is_empty() {
            debug!(
                self.log,
                "no one holds this connection any more; closing it"
            );
            self.closed = true;
            self.link = None;
            ctx.stop();
        }
    }
}

impl Actor for BrokerConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.closed {
            return;
        }
        self.next_sweep = None; // timers do not survive a restart
        self.arm_sweep(ctx);
        if self.connect_failures == 0 {
            self.connect(ctx);
        } else {
            let delay = self
                .config
                .reconnect_backoff
                .delay(self.connect_failures - 1, fastrand::f64());
            debug!(self.log, "reconnecting after backoff"; "delay" => ?delay);
            ctx.run_later(delay, |act, ctx| act.connect(ctx));
        }
    }
}

impl Supervised for BrokerConnection {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if self.closed {
            return;
        }
        self.restarts += 1;
        self.link = None;
        let why = self.last_error.as_deref().unwrap_or("unknown");
        info!(self.log, "supervisor restarting broker connection";
            "restart" => self.restarts, "why" => why);
    }
}

impl Handler<Call> for BrokerConnection {
    type Result = ResponseFuture<Result<Reply, Error>>;

    fn handle(&mut self, call: Call, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        let started = Instant::now();
        let deadline = started + call.timeout.unwrap_or(self.config.request_timeout);
        let waiting = Waiting {
            call,
            started,
            deadline,
            reply,
        };
        if self.closed {
            let _ = waiting.reply.send(Err(Error::Shutdown(format!(
                "connection to {}",
                self.address
            ))));
        } else if let (None, Some(error)) = (&self.link, &self.fatal) {
            let _ = waiting.reply.send(Err(error.clone()));
        } else {
            self.dispatch(waiting, ctx);
            self.arm_sweep(ctx);
        }
        let broker = self.address.clone();
        Box::pin(async move {
            let raw = answer
                .await
                .map_err(|_| Error::Shutdown(format!("connection to {broker}")))??;
            match raw {
                RawReply::Frame {
                    api_key,
                    version,
                    frame,
                } => {
                    let response = decode_response(api_key, version, frame, &broker)?;
                    Ok(Reply { version, response })
                }
                // The broker sends nothing for acks=0; the reply says so with an empty
                // ProduceResponse (no partition results), as the Java client does.
                RawReply::Written { version } => Ok(Reply {
                    version,
                    response: ResponseKind::Produce(Default::default()),
                }),
            }
        })
    }
}

impl Handler<Close> for BrokerConnection {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        self.closed = true;
        self.link = None;
        self.generation += 1;
        let shutdown = || Error::Shutdown(format!("connection to {}", self.address));
        for waiting in self.queued.drain(..) {
            let _ = waiting.reply.send(Err(shutdown()));
        }
        for (_, f) in self.in_flight.drain() {
            if let Some(reply) = f.reply {
                let _ = reply.send(Err(shutdown()));
            }
        }
        info!(self.log, "broker connection closed");
        ctx.stop();
    }
}

/// The writer task reports a failed write.
#[derive(Message)]
#[rtype(result = "()")]
struct WriteFailed {
    generation: u64,
    error: std::io::Error,
}

impl Handler<WriteFailed> for BrokerConnection {
    type Result = ();

    fn handle(&mut self, msg: WriteFailed, ctx: &mut Context<Self>) {
        if msg.generation == self.generation {
            let error = io_error(&self.address, &msg.error);
            self.fail_link(error, ctx);
        }
    }
}

type ReadItem = (u64, Result<Bytes, ReadError>);

impl StreamHandler<ReadItem> for BrokerConnection {
    fn handle(&mut self, (generation, item): ReadItem, ctx: &mut Context<Self>) {
        if generation != self.generation {
            return;
        }
        match item {
            Ok(frame) => self.on_frame(frame, ctx),
            Err(ReadError::Io(error)) => {
                let error = io_error(&self.address, &error);
                self.fail_link(error, ctx)
            }
            Err(ReadError::Frame(FrameError::Truncated { have, want })) => {
                let error = Error::ConnectionClosed {
                    broker: self.address.clone(),
                    detail: format!("in the middle of a response ({have} of {want} bytes)"),
                };
                self.fail_link(error, ctx)
            }
            Err(ReadError::Frame(FrameError::TooLarge { size, max })) => {
                let broker = self.address.clone();
                self.fail_link(Error::FrameTooLarge { broker, size, max }, ctx)
            }
            Err(ReadError::Frame(error @ FrameError::Negative { .. })) => {
                self.protocol_violation(error.to_string(), ctx)
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        let error = Error::ConnectionClosed {
            broker: self.address.clone(),
            detail: "(end of stream)".into(),
        };
        self.fail_link(error, ctx);
    }
}

fn io_error(broker: &str, error: &std::io::Error) -> Error {
    Error::Io {
        broker: broker.to_owned(),
        kind: error.kind(),
        reason: error.to_string(),
    }
}

enum ReadError {
    Io(std::io::Error),
    Frame(FrameError),
}

impl From<std::io::Error> for ReadError {
    fn from(error: std::io::Error) -> Self {
        ReadError::Io(error)
    }
}

/// tokio-util's framing over the core's [`FrameDecoder`].
struct FrameCodec(FrameDecoder);

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = ReadError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, ReadError> {
        self.0.decode(src).map_err(ReadError::Frame)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, ReadError> {
        self.0.decode_eof(src).map_err(ReadError::Frame)
    }
}

/// Owns the socket's write half: frames are written whole, in order, several at a time when
/// they queue up (one syscall instead of many under load). Requests without an answer are
/// reported done once their bytes are written, or failed with the write error.
async fn write_frames(
    mut socket: BrokerWriter,
    mut frames: mpsc::UnboundedReceiver<Outgoing>,
    generation: u64,
    connection: WeakAddr<BrokerConnection>,
    broker: String,
) {
    let mut written = Vec::new();
    while let Some(first) = frames.recv().await {
        written.extend(first.written);
        let result = match frames.try_recv() {
            Err(_) => socket.write_all(&first.frame).await,
            Ok(next) => {
                let mut batch = BytesMut::with_capacity(first.frame.len() + next.frame.len());
                batch.extend_from_slice(&first.frame);
                batch.extend_from_slice(&next.frame);
                written.extend(next.written);
                while batch.len() < MAX_WRITE_BATCH {
                    match frames.try_recv() {
                        Ok(more) => {
                            batch.extend_from_slice(&more.frame);
                            written.extend(more.written);
                        }
                        Err(_) => break,
                    }
                }
                socket.write_all(&batch).await
            }
        };
        match result {
            Ok(()) => {
                for (reply, version) in written.drain(..) {
                    let _ = reply.send(Ok(RawReply::Written { version }));
                }
            }
            Err(error) => {
                let failed = io_error(&broker, &error);
                frames.close();
                while let Ok(unsent) = frames.try_recv() {
                    written.extend(unsent.written);
                }
                for (reply, _) in written.drain(..) {
                    let _ = reply.send(Err(failed.clone()));
                }
                if let Some(connection) = connection.upgrade() {
                    connection.do_send(WriteFailed { generation, error });
                }
                return;
            }
        }
    }
}

/// TCP connect plus the ApiVersions exchange, within the connect timeout.
async fn open(
    address: String,
    config: Arc<ClientConfig>,
    tls: Option<TlsConnector>,
) -> Result<(BrokerStream, ApiVersionTable), Error> {
    let connect_error = |reason: String| Error::Connect {
        broker: address.clone(),
        reason,
    };
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(&address)).await {
        Err(_) => {
            let waited = config.connect_timeout;
            return Err(connect_error(format!(
                "no TCP connection within {waited:?}"
            )));
        }
        Ok(Err(error)) => return Err(connect_error(error.to_string())),
        Ok(Ok(stream)) => stream,
    };
    // Requests are small and latency matters more than packet count.
    let _ = tcp.set_nodelay(true);
    let handshake = async {
        let mut stream = match &tls {
            Some(tls) => {
                // Half the connect budget, so a plaintext probe still fits in it.
                let wait = config.connect_timeout / 2;
                let stream = tls
                    .handshake(&address, tcp, &config.client_id, wait)
                    .await?;
                BrokerStream::Tls(Box::new(stream))
            }
            None => BrokerStream::Plain(tcp),
        };
        let mut exchange = Handshake {
            stream: &mut stream,
            decoder: FrameDecoder::new(config.max_response_bytes),
            buffer: BytesMut::with_capacity(4096),
            address: &address,
            plaintext: tls.is_none(),
            next_correlation_id: 0,
        };
        let table = exchange.negotiate_versions(&config.client_id).await?;
        if let Some(sasl) = &config.sasl {
            exchange
                .authenticate(sasl, &table, &config.client_id)
                .await?;
        }
        Ok((stream, table))
    };
    match tokio::time::timeout_at(deadline, handshake).await {
        Err(_) => {
            let waited = config.connect_timeout;
            let steps = match (tls.is_some(), config.sasl.is_some()) {
                (false, false) => "ApiVersions answer",
                (true, false) => "TLS handshake and ApiVersions answer",
                (false, true) => "ApiVersions answer and SASL authentication",
                (true, true) => "TLS handshake, ApiVersions answer and SASL authentication",
            };
            Err(connect_error(format!("no {steps} within {waited:?}")))
        }
        Ok(result) => result,
    }
}

/// The requests a new connection makes before it is handed to the actor: ApiVersions, then
/// SASL authentication if configured. One request at a time, each answered before the next.
struct Handshake<'a> {
    stream: &'a mut BrokerStream,
    decoder: FrameDecoder,
    buffer: BytesMut,
    address: &'a str,
    /// No TLS configured: an answer in TLS means the listener wants TLS.
    plaintext: bool,
    next_correlation_id: i32,
}

impl Handshake<'_> {
    /// Writes one request frame and reads its answer frame.
    async fn round_trip(&mut self, request: &[u8], what: &str) -> Result<Bytes, Error> {
        let address = self.address;
        let io = |e: std::io::Error| {
            crate::tls::alert_error(address, &e).unwrap_or_else(|| io_error(address, &e))
        };
        // A plaintext connection cut before its first answer may have reached a TLS listener
        // (which resets or closes on bytes that are not TLS): ask it, to say so for certain.
        let probe = self.next_correlation_id == 1 && self.plaintext;
        let wants_tls = |error: Error| async move {
            if probe && crate::tls::speaks_tls(address).await {
                return Error::Tls {
                    broker: address.to_owned(),
                    reason: "the broker's listener speaks TLS (it completes a TLS handshake), \
                             and this client is configured for plaintext"
                        .into(),
                };
            }
            error
        };
        if let Err(e) = self.stream.write_all(request).await {
            return Err(wants_tls(io(e)).await);
        }
        loop {
            if self.plaintext && crate::tls::looks_like_tls(&self.buffer) {
                return Err(Error::Tls {
                    broker: address.to_owned(),
                    reason: "the broker answered in TLS: its listener expects TLS, and this \
                             client is configured for plaintext"
                        .into(),
                });
            }
            match self.decoder.decode(&mut self.buffer) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(FrameError::TooLarge { size, max }) => {
                    let broker = address.to_owned();
                    return Err(Error::FrameTooLarge { broker, size, max });
                }
                Err(error) => {
                    let broker = address.to_owned();
                    let detail = format!("answering {what}: {error}");
                    return Err(Error::Protocol { broker, detail });
                }
            }
            let closed = match self.stream.read_buf(&mut self.buffer).await {
                Ok(0) => Error::ConnectionClosed {
                    broker: address.to_owned(),
                    detail: format!(
                        "during the {what} exchange ({} bytes of a response received)",
                        self.buffer.len()
                    ),
                },
                Ok(_) => continue,
                Err(e) => io(e),
            };
            if self.buffer.is_empty() {
                return Err(wants_tls(closed).await);
            }
            return Err(closed);
        }
    }

    fn correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id += 1;
        id
    }

    fn check_correlation(&self, frame: &Bytes, expected: i32, what: &str) -> Result<(), Error> {
        if peek_correlation_id(frame) == Some(expected) {
            return Ok(());
        }
        Err(Error::Protocol {
            broker: self.address.to_owned(),
            detail: format!(
                "{what} answer carries correlation id {:?}, expected {expected}",
                peek_correlation_id(frame)
            ),
        })
    }

    async fn negotiate_versions(&mut self, client_id: &str) -> Result<ApiVersionTable, Error> {
        let mut probe = ApiVersionsProbe::default();
        // The probe asks at most twice (newest version, then the broker's).
        for _ in 0..3 {
            let correlation_id = self.correlation_id();
            let request = probe.request(correlation_id, client_id)?;
            let frame = self.round_trip(&request, "ApiVersions").await?;
            self.check_correlation(&frame, correlation_id, "ApiVersions")?;
            match probe.on_response(frame, self.address)? {
                ProbeStep::Retry => continue,
                ProbeStep::Done(table) => return Ok(table),
            }
        }
        Err(Error::Protocol {
            broker: self.address.to_owned(),
            detail: "ApiVersions negotiation did not settle".into(),
        })
    }

    /// SaslHandshake and SaslAuthenticate rounds until the broker accepts or refuses.
    async fn authenticate(
        &mut self,
        sasl: &SaslConfig,
        table: &ApiVersionTable,
        client_id: &str,
    ) -> Result<(), Error> {
        let nonce: [u8; 24] = crate::tls::random_bytes()?;
        let mut exchange = SaslExchange::new(sasl, self.address, &nonce);
        let mut step = exchange.start();
        loop {
            match step {
                SaslStep::Done { .. } => return Ok(()),
                SaslStep::Send(api, request) => {
                    let version = table.select(api, None, self.address)?;
                    let correlation_id = self.correlation_id();
                    let frame = encode_request(api, version, correlation_id, client_id, &request)?;
                    let what = format!("{api:?}");
                    let answer = self.round_trip(&frame, &what).await?;
                    self.check_correlation(&answer, correlation_id, &what)?;
                    let response = decode_response(api, version, answer, self.address)?;
                    step = exchange.on_response(response)?;
                }
            }
        }
    }
}
