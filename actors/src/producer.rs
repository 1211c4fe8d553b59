//! Producer: batches records per partition, compresses them, and sends each batch to its
//! partition's leader; answers every record with its offset or a typed error.
//!
//! The batching decisions are the core's [`Accumulator`]; this actor feeds it records, wakes it
//! when a linger or retry backoff ends, sends the requests it returns over the cluster's Produce
//! connections, and hands each record's outcome back to whoever sent it:
//! - [`Produce`]: the answer to `send(...).await` (use [`ProducerExt::produce`]);
//! - [`Enqueue`]: fire and forget, outcome reported on a recipient or channel;
//! - [`Flush`]: answers when everything taken before it is finished;
//! - [`Close`]: flushes, then stops.
//!
//! A partition has at most one batch in flight, so retries never reorder its records. A topic
//! the metadata does not know is looked up once more; if it is still unknown its records fail
//! with [`Error::UnknownTopic`]. A NotLeader-style answer refreshes the metadata and the batch is
//! retried at the new leader.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use konsumer::error::is_stale_metadata;
use konsumer::kafka_protocol::messages::ProduceRequest;
use konsumer::partitioner::{DefaultPartitioner, Partitioner};
use konsumer::producer::{
    Accumulator, Acks, Delivered, Failed, InFlightRequest, ProduceError, ProducerConfig,
    RecordMetadata,
};
use konsumer::{ClientConfig, Error, KafkaCode};
use slog::{debug, info, warn, Logger};
use tokio::sync::oneshot;

use crate::cluster::{Cluster, ClusterMetadata};
use crate::messages::{
    Call, Close, ConnectionFor, DeliveryReport, Enqueue, Flush, GetMetadata, Produce,
    ProducerRecord, Purpose, Reply, ReportTo, Target,
};

/// Produce v13 names topics by id only; konsumer names them, so it speaks v3..=v12.
const MAX_PRODUCE_VERSION: i16 = 12;
/// How often the producer takes the cluster's latest metadata snapshot (partition counts and
/// leaders), besides the refreshes that errors trigger.
const METADATA_POLL: Duration = Duration::from_secs(5);

/// How a record's outcome reaches its sender.
enum Delivery {
    Reply(oneshot::Sender<Result<RecordMetadata, ProduceError>>),
    Report { to: ReportTo, opaque: u64 },
}

/// The accumulator's token for one record.
struct Pending {
    delivery: Delivery,
    key: Option<Bytes>,
}

impl Pending {
    fn deliver(self, result: Result<RecordMetadata, ProduceError>) {
        match self.delivery {
            Delivery::Reply(reply) => {
                let _ = reply.send(result);
            }
            Delivery::Report { to, opaque } => to.report(DeliveryReport { opaque, result }),
        }
    }

    fn fail(self, topic: &Arc<str>, partition: Option<i32>, error: Error) {
        let failure = ProduceError {
            topic: topic.clone(),
            partition,
            key: self.key.clone(),
            error: Box::new(error),
        };
        self.deliver(Err(failure));
    }
}

/// A record waiting for its topic's metadata.
struct Queued {
    record: ProducerRecord,
    pending: Pending,
}

/// The producer actor. Build it with [`Producer::new`] (or [`Producer::connect`]), optionally
/// set a partitioner, then `start()` it.
pub struct Producer {
    cluster: Addr<Cluster>,
    /// Started by [`Producer::connect`]: closed with the producer.
    owns_cluster: bool,
    log: Logger,
    accumulator: Accumulator<Pending>,
    partitioner: Box<dyn Partitioner>,
    metadata: Arc<ClusterMetadata>,
    connections: HashMap<i32, Recipient<Call>>,
    /// Records of topics the metadata does not know yet, in arrival order, per topic.
    awaiting_topic: HashMap<String, Vec<Queued>>,
    refreshing: bool,
    /// The pending wake-up: when, and the timer to cancel if an earlier one is needed.
    wake: Option<(Instant, SpawnHandle)>,
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
    closing: bool,
    /// One shared name per topic, so a record costs no allocation for its topic.
    topic_names: HashMap<String, Arc<str>>,
}

impl Producer {
    /// A producer sending through `cluster`. The configuration is checked here.
    pub fn new(cluster: Addr<Cluster>, config: ProducerConfig, log: Logger) -> Result<Self, Error> {
        config.validate()?;
        Ok(Producer {
            cluster,
            owns_cluster: false,
            log,
            accumulator: Accumulator::new(config),
            partitioner: Box::new(DefaultPartitioner::new(fastrand::u64(..))),
            metadata: Arc::new(ClusterMetadata::default()),
            connections: HashMap::new(),
            awaiting_topic: HashMap::new(),
            refreshing: false,
            wake: None,
            flush_waiters: Vec::new(),
            closing: false,
            topic_names: HashMap::new(),
        })
    }

    /// Bootstraps its own [`Cluster`] and starts a producer on it; closing the producer closes
    /// that cluster too.
    pub async fn connect(
        client: ClientConfig,
        config: ProducerConfig,
        log: Logger,
    ) -> Result<Addr<Producer>, Error> {
        config.validate()?;
        let cluster = Cluster::connect(client, log.clone()).await?;
        let mut producer = Producer::new(cluster, config, log)?;
        producer.owns_cluster = true;
        Ok(producer.start())
    }

    /// Places records without an explicit partition (default: [`DefaultPartitioner`]).
    pub fn with_partitioner(mut self, partitioner: impl Partitioner + 'static) -> Self {
        self.partitioner = Box::new(partitioner);
        self
    }

    fn topic_name(&mut self, topic: &str) -> Arc<str> {
        if let Some(name) = self.topic_names.get(topic) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(topic);
        self.topic_names.insert(topic.to_owned(), name.clone());
        name
    }

    fn config(&self) -> &ProducerConfig {
        self.accumulator.config()
    }

    /// Takes one record: waits for its topic's metadata if need be, picks its partition and
    /// appends it to that partition's batch.
    fn take(
        &mut self,
        topic: Arc<str>,
        record: ProducerRecord,
        pending: Pending,
        ctx: &mut Context<Self>,
    ) {
        if self.closing {
            let error = Error::Shutdown("producer".into());
            return pending.fail(&topic, record.partition, error);
        }
        if let Some(waiting) = self.awaiting_topic.get_mut(&record.topic) {
            waiting.push(Queued { record, pending });
            return;
        }
        let partitions = match self.metadata.topics.get(&record.topic) {
            Some(info) if !info.partitions.is_empty() => info.partitions.len() as i32,
            _ => {
                self.awaiting_topic
                    .insert(record.topic.clone(), vec![Queued { record, pending }]);
                return self.refresh_metadata(ctx);
            }
        };
        self.append(topic, partitions, record, pending, ctx);
    }

    fn append(
        &mut self,
        topic: Arc<str>,
        partitions: i32,
        record: ProducerRecord,
        pending: Pending,
        ctx: &mut Context<Self>,
    ) {
        let partition = match record.partition {
            Some(p) if (0..partitions).contains(&p) => p,
            Some(p) => {
                let error = Error::Broker {
                    code: KafkaCode::UnknownTopicOrPartition,
                    context: konsumer::Context::default()
                        .with_topic(topic.to_string())
                        .with_partition(p),
                };
                return pending.fail(&topic, Some(p), error);
            }
            None => {
                let chosen = self
                    .partitioner
                    .partition(&topic, record.key.as_deref(), partitions);
                if !(0..partitions).contains(&chosen) {
                    let error = Error::Config {
                        field: "partitioner",
                        detail: format!(
                            "chose partition {chosen} of topic {topic}, which has {partitions}"
                        ),
                    };
                    return pending.fail(&topic, None, error);
                }
                chosen
            }
        };
        let timestamp = record.timestamp.unwrap_or_else(now_millis);
        let now = Instant::now();
        let appended = self.accumulator.append(
            &topic,
            partition,
            timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
            pending,
            now,
        );
        match appended {
            Err((error, pending)) => pending.fail(&topic, Some(partition), error),
            Ok(appended) => {
                if appended.batch_closed {
                    if record.key.is_none() && record.partition.is_none() {
                        self.partitioner.batch_full(&topic, partitions);
                    }
                    self.wake_at(now, ctx);
                } else if appended.new_batch {
                    self.wake_at(now + self.config().linger, ctx);
                }
            }
        }
        self.report_failures();
    }

    /// Makes sure a drain runs at `at` or earlier.
    fn wake_at(&mut self, at: Instant, ctx: &mut Context<Self>) {
        if let Some((pending, handle)) = self.wake {
            if pending <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.drain(ctx);
        });
        self.wake = Some((at, handle));
    }

    /// Sends every batch that is due.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        let flush = self.closing || !self.flush_waiters.is_empty();
        let metadata = self.metadata.clone();
        let drained = self
            .accumulator
            .drain(Instant::now(), flush, |topic, partition| {
                let node = metadata.leader(topic, partition).ok()?;
                metadata.brokers.contains_key(&node).then_some(node)
            });
        self.report_failures();
        if drained.missing_leader {
            self.refresh_metadata(ctx);
        }
        for request in drained.requests {
            self.send(request, ctx);
        }
        if let Some(at) = drained.wake_at {
            self.wake_at(at, ctx);
        }
        self.check_flushed(ctx);
    }

    fn send(&mut self, request: InFlightRequest<Pending>, ctx: &mut Context<Self>) {
        let node = request.node;
        let produce = request.request(self.config());
        let timeout = self.config().request_timeout;
        let known = self.connections.get(&node).cloned();
        let cluster = self.cluster.clone();
        let generation = self.metadata.generation;
        let sending = async move {
            let connection = match known {
                Some(connection) => connection,
                None => {
                    let wanted = ConnectionFor {
                        target: Target::Broker(node),
                        purpose: Purpose::Produce,
                    };
                    match cluster.send(wanted).await {
                        Ok(Ok((_, connection))) => connection,
                        Ok(Err(error)) => return (None, Err(error)),
                        Err(_) => return (None, Err(Error::Shutdown("cluster".into()))),
                    }
                }
            };
            let call = Call::new(produce)
                .with_max_version(MAX_PRODUCE_VERSION)
                .with_timeout(timeout);
            let reply = connection
                .send(call)
                .await
                .map_err(|_| Error::Shutdown(format!("connection to broker {node}")))
                .and_then(|r| r);
            (Some(connection), reply)
        };
        ctx.spawn(
            sending
                .into_actor(self)
                .map(move |(connection, reply), act, ctx| {
                    if let Some(connection) = connection {
                        if act.metadata.generation == generation {
                            act.connections.entry(node).or_insert(connection);
                        }
                    }
                    act.on_answer(request, reply, ctx);
                }),
        );
    }

    fn on_answer(
        &mut self,
        request: InFlightRequest<Pending>,
        reply: Result<Reply, Error>,
        ctx: &mut Context<Self>,
    ) {
        let node = request.node;
        let broker = self
            .metadata
            .brokers
            .get(&node)
            .map_or_else(|| format!("node {node}"), |b| b.address());
        let outcomes = match reply.and_then(|r| r.into_typed::<ProduceRequest>(&broker)) {
            Ok(response) => {
                let answered = self.config().acks != Acks::None;
                request.outcomes(answered.then_some(&response), &broker)
            }
            Err(error) => {
                warn!(self.log, "produce request failed"; "broker" => &broker, "error" => %error,
                    "batches" => request.batches.len());
                if !matches!(error, Error::Shutdown(_)) {
                    self.connections.remove(&node);
                }
                let outcomes = request.batches.into_iter();
                outcomes.map(|b| (b, Err(error.clone()))).collect()
            }
        };
        let now = Instant::now();
        let mut stale = false;
        for (batch, outcome) in outcomes {
            match outcome {
                Ok(delivered) => {
                    let topic = batch.topic.clone();
                    let partition = batch.partition;
                    let (tokens, timestamps) = self.accumulator.complete(batch);
                    deliver(&topic, partition, delivered, tokens, timestamps);
                }
                Err(error) => {
                    stale |= error.kafka_code().is_some_and(is_stale_metadata)
                        || matches!(error, Error::Connect { .. } | Error::Io { .. });
                    debug!(self.log, "batch attempt failed"; "topic" => &*batch.topic,
                        "partition" => batch.partition, "attempt" => batch.attempts(),
                        "error" => %error);
                    let failed = self
                        .accumulator
                        .retry_or_fail(batch, error, now, fastrand::f64());
                    if let Some(failed) = failed {
                        fail_batch(failed);
                    }
                }
            }
        }
        if stale {
            self.refresh_metadata(ctx);
        }
        self.drain(ctx);
    }

    fn report_failures(&mut self) {
        for failed in self.accumulator.take_failures() {
            fail_batch(failed);
        }
    }

    /// Asks the cluster for fresh metadata (one request at a time); on the answer, records
    /// waiting for their topic go on, and batches waiting for a leader are sent.
    fn refresh_metadata(&mut self, ctx: &mut Context<Self>) {
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        let asking = self.cluster.send(GetMetadata { refresh: true });
        ctx.spawn(asking.into_actor(self).map(|answer, act, ctx| {
            act.refreshing = false;
            let answer = answer
                .map_err(|_| Error::Shutdown("cluster".into()))
                .and_then(|r| r);
            match answer {
                Ok(metadata) => act.install(metadata),
                Err(error) => {
                    warn!(act.log, "metadata refresh for the producer failed"; "error" => %error);
                    act.fail_awaiting(&error);
                }
            }
            act.release_awaiting(ctx);
            act.drain(ctx);
        }));
    }

    /// Sends what lingers and answers once everything taken so far is finished.
    fn flushed(&mut self, ctx: &mut Context<Self>) -> ResponseFuture<()> {
        let (waiter, done) = oneshot::channel();
        self.flush_waiters
            .push((self.accumulator.next_seq(), waiter));
        self.drain(ctx);
        Box::pin(async move {
            let _ = done.await;
        })
    }

    /// Fails every record still waiting for its topic's metadata.
    fn fail_awaiting(&mut self, error: &Error) {
        for (topic, waiting) in std::mem::take(&mut self.awaiting_topic) {
            let topic = self.topic_name(&topic);
            for queued in waiting {
                let partition = queued.record.partition;
                queued.pending.fail(&topic, partition, error.clone());
            }
        }
    }

    fn install(&mut self, metadata: Arc<ClusterMetadata>) {
        if metadata.generation != self.metadata.generation {
            self.connections.clear();
        }
        self.metadata = metadata;
    }

    /// Records that waited for their topic: appended in arrival order, or failed if the topic
    /// is still unknown.
    fn release_awaiting(&mut self, ctx: &mut Context<Self>) {
        for (name, waiting) in std::mem::take(&mut self.awaiting_topic) {
            let topic: Arc<str> = Arc::from(name.as_str());
            let partitions = self
                .metadata
                .topics
                .get(&name)
                .map_or(0, |t| t.partitions.len() as i32);
            for queued in waiting {
                if partitions == 0 {
                    let error = Error::UnknownTopic {
                        topic: name.clone(),
                    };
                    queued.pending.fail(&topic, queued.record.partition, error);
                } else {
                    self.append(
                        topic.clone(),
                        partitions,
                        queued.record,
                        queued.pending,
                        ctx,
                    );
                }
            }
        }
    }

    fn check_flushed(&mut self, ctx: &mut Context<Self>) {
        if !self.awaiting_topic.is_empty() {
            return;
        }
        let done = self.accumulator.flushed_up_to();
        let (finished, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flush_waiters)
            .into_iter()
            .partition(|(target, _)| *target <= done);
        self.flush_waiters = waiting;
        for (_, waiter) in finished {
            let _ = waiter.send(());
        }
        if self.closing && self.accumulator.is_empty() && self.flush_waiters.is_empty() {
            ctx.stop();
        }
    }
}

/// Answers each record of an acknowledged batch: offsets count up from the batch's base.
fn deliver(
    topic: &Arc<str>,
    partition: i32,
    delivered: Delivered,
    tokens: Vec<Pending>,
    timestamps: Vec<i64>,
) {
    for (i, (pending, timestamp)) in tokens.into_iter().zip(timestamps).enumerate() {
        let metadata = RecordMetadata {
            topic: topic.clone(),
            partition,
            offset: delivered.base_offset.map(|base| base + i as i64),
            timestamp: delivered.log_append_time.unwrap_or(timestamp),
        };
        pending.deliver(Ok(metadata));
    }
}

fn fail_batch(failed: Failed<Pending>) {
    for pending in failed.tokens {
        pending.fail(&failed.topic, Some(failed.partition), failed.error.clone());
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Actor for Producer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let current = self.cluster.send(GetMetadata { refresh: false });
        ctx.wait(current.into_actor(self).map(|answer, act, _| {
            if let Ok(Ok(metadata)) = answer {
                act.install(metadata);
            }
        }));
        ctx.run_interval(METADATA_POLL, |act, ctx| {
            let current = act.cluster.send(GetMetadata { refresh: false });
            ctx.spawn(current.into_actor(act).map(|answer, act, ctx| {
                if let Ok(Ok(metadata)) = answer {
                    act.install(metadata);
                    act.drain(ctx);
                }
            }));
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Whatever is left (the actor was dropped or its system stopped) fails loudly.
        let error = Error::Shutdown("producer".into());
        for failed in self.accumulator.abort(&error) {
            fail_batch(failed);
        }
        self.fail_awaiting(&error);
        if self.owns_cluster {
            self.cluster.do_send(Close);
        }
        info!(self.log, "producer stopped");
    }
}

impl Handler<Produce> for Producer {
    type Result = ResponseFuture<Result<RecordMetadata, ProduceError>>;

    fn handle(&mut self, Produce(record): Produce, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        let topic = self.topic_name(&record.topic);
        let (partition, key) = (record.partition, record.key.clone());
        let pending = Pending {
            delivery: Delivery::Reply(reply),
            key: record.key.clone(),
        };
        self.take(topic.clone(), record, pending, ctx);
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(shut_down(topic, partition, key)))
        })
    }
}

fn shut_down(topic: Arc<str>, partition: Option<i32>, key: Option<Bytes>) -> ProduceError {
    ProduceError {
        topic,
        partition,
        key,
        error: Box::new(Error::Shutdown("producer".into())),
    }
}

impl Handler<Enqueue> for Producer {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        let pending = Pending {
            delivery: Delivery::Report {
                to: msg.report_to,
                opaque: msg.opaque,
            },
            key: msg.record.key.clone(),
        };
        let topic = self.topic_name(&msg.record.topic);
        self.take(topic, msg.record, pending, ctx);
    }
}

impl Handler<Flush> for Producer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        self.flushed(ctx)
    }
}

impl Handler<Close> for Producer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) -> Self::Result {
        info!(self.log, "producer closing: delivering what it holds";
            "buffered_bytes" => self.accumulator.buffered_bytes());
        self.closing = true;
        self.flushed(ctx)
    }
}

/// `async` helpers over a producer's address.
pub trait ProducerExt {
    /// Produces `record` and waits for its acknowledgement.
    fn produce(
        &self,
        record: ProducerRecord,
    ) -> impl std::future::Future<Output = Result<RecordMetadata, ProduceError>>;
    /// Waits until everything handed over so far is finished.
    fn flush(&self) -> impl std::future::Future<Output = ()>;
    /// Delivers what the producer holds, then stops it.
    fn close(&self) -> impl std::future::Future<Output = ()>;
}

impl ProducerExt for Addr<Producer> {
    async fn produce(&self, record: ProducerRecord) -> Result<RecordMetadata, ProduceError> {
        let (partition, key) = (record.partition, record.key.clone());
        let topic = record.topic.clone();
        match self.send(Produce(record)).await {
            Ok(result) => result,
            Err(_) => Err(shut_down(Arc::from(topic), partition, key)),
        }
    }

    async fn flush(&self) {
        let _ = self.send(Flush).await;
    }

    async fn close(&self) {
        let _ = self.send(Close).await;
    }
}
