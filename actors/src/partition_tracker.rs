//! PartitionTracker: one per assigned partition, between its Fetcher and the user's handler.
//!
//! It queues what the Fetcher hands over, delivers it to the handler (one record per message,
//! or batches of up to `max_batch_records`, at most `max_in_flight` deliveries unanswered),
//! opens each offset in the core [`OffsetTracker`] when it is sent, and marks it done when the
//! handler answers `Ok` — or, for records the handler [deferred](crate::messages::KafkaMessage::defer),
//! when their [`Ack`](crate::messages::Ack) arrives, in any order. The offset that may be
//! committed (end of the contiguous done run + 1) is kept in the shared [`PartitionFlow`],
//! where the service reads it for commits and the Fetcher reads how full the partition is.
//!
//! A failed delivery follows the topic's [`FailurePolicy`]: redelivered after a backoff, then
//! stop (the default), skip, or dead-letter. Nothing is ever skipped silently: a stop is
//! reported ([`PartitionStopped`]) and the committed offset stays below the failed record.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use konsumer::consumer::{AfterRetries, ConsumerConfig, FailurePolicy};
use konsumer::offsets::{OffsetError, OffsetTracker};
use konsumer::records::Record;
use konsumer::Error;
use slog::{info, warn, Logger};
use tokio::sync::oneshot;

use crate::messages::{
    records_bytes, AckTarget, Acked, CommitOffset, Drain, Fetched, HandlerError, HandlerRef,
    HandlerResult, KafkaBatch, KafkaMessage, MarkMetadata, PartitionFlow, PartitionStopped, Pause,
    ProducerRecord, Records, Seek,
};
use crate::producer::Producer;
use crate::service::HandlerFactory;

/// Records fetched together, delivered from `pos` on; `next_offset` is where the fetch after
/// them starts (offsets below it that are not records will never come). Deliveries share the
/// records with the chunk ([`Records::slice`]) rather than copying them out.
struct Chunk {
    records: Records,
    pos: usize,
    next_offset: i64,
}

/// Records handed to the handler and not all done yet.
struct Delivery {
    /// In increasing offset order.
    records: Records,
    /// The records' offsets are consecutive (no gap): an `Ok` answer completes them with one
    /// range call on the [`OffsetTracker`].
    consecutive: bool,
    /// The handler generation it went to.
    handler_generation: u64,
    /// Deliveries of these records so far (1 = the first).
    attempts: u32,
    ack: Arc<AckTarget>,
    answered: bool,
}

impl Delivery {
    /// The offsets whose handler deferred them to an [`Ack`](crate::messages::Ack), sorted.
    fn deferred(&self) -> Vec<i64> {
        let mut deferred = self
            .ack
            .deferred
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        deferred.sort_unstable();
        deferred
    }
}

/// Whether the offsets of `records` are `first, first + 1, ..` without a gap.
fn consecutive(records: &[Record]) -> bool {
    let Some(first) = records.first().map(|r| r.offset) else {
        return true;
    };
    records
        .iter()
        .enumerate()
        .all(|(i, r)| first.checked_add(i as i64) == Some(r.offset))
}

/// [`consecutive`] and [`records_bytes`] in one pass over the records.
fn consecutive_and_bytes(records: &[Record]) -> (bool, usize) {
    let first = records.first().map_or(0, |r| r.offset);
    let mut in_a_row = true;
    let mut bytes = 0;
    for (i, record) in records.iter().enumerate() {
        in_a_row &= first.checked_add(i as i64) == Some(record.offset);
        bytes += record.payload_len();
    }
    (in_a_row, bytes)
}

/// If `offsets` are `first, first + 1, .., last`, that range.
fn as_range(offsets: &[i64]) -> Option<(i64, i64)> {
    let (&first, &last) = (offsets.first()?, offsets.last()?);
    offsets
        .iter()
        .enumerate()
        .all(|(i, &o)| first.checked_add(i as i64) == Some(o))
        .then_some((first, last))
}

/// One partition's delivery and completion state. See the module doc.
pub struct PartitionTracker {
    topic: Arc<str>,
    partition: i32,
    epoch: u64,
    config: Arc<ConsumerConfig>,
    policy: FailurePolicy,
    handler: HandlerRef,
    /// Makes a new handler when the current one is gone (actor per partition).
    factory: Option<HandlerFactory>,
    /// Bumped each time the factory replaces the handler.
    handler_generation: u64,
    flow: Arc<PartitionFlow>,
    owner: Recipient<PartitionStopped>,
    producer: Option<Addr<Producer>>,
    log: Logger,
    offsets: OffsetTracker,
    queue: VecDeque<Chunk>,
    deliveries: BTreeMap<u64, Delivery>,
    next_delivery: u64,
    /// Deliveries waiting for the handler's answer.
    unanswered: usize,
    /// Failed records waiting for their backoff before redelivery.
    retries_pending: usize,
    paused: bool,
    stopped: Option<Error>,
    metadata: Option<String>,
    draining: Vec<oneshot::Sender<()>>,
}

impl PartitionTracker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topic: Arc<str>,
        partition: i32,
        start: i64,
        epoch: u64,
        config: Arc<ConsumerConfig>,
        handler: HandlerRef,
        flow: Arc<PartitionFlow>,
        owner: Recipient<PartitionStopped>,
        producer: Option<Addr<Producer>>,
        log: Logger,
    ) -> Self {
        flow.committable.store(start, Ordering::Relaxed);
        PartitionTracker {
            policy: config.policy_for(&topic).clone(),
            topic,
            partition,
            epoch,
            config,
            handler,
            factory: None,
            handler_generation: 0,
            flow,
            owner,
            producer,
            log,
            offsets: OffsetTracker::new(start),
            queue: VecDeque::new(),
            deliveries: BTreeMap::new(),
            next_delivery: 0,
            unanswered: 0,
            retries_pending: 0,
            paused: false,
            stopped: None,
            metadata: None,
            draining: Vec::new(),
        }
    }

    /// Handlers made by `factory`, which is asked again when a handler's actor is gone; its
    /// unfinished records are delivered to the new one.
    pub fn with_factory(mut self, factory: Option<HandlerFactory>) -> Self {
        self.factory = factory;
        self
    }

    fn publish(&self) {
        self.flow
            .committable
            .store(self.offsets.committable(), Ordering::Relaxed);
    }

    /// Sends what the window allows.
    fn deliver(&mut self, ctx: &mut Context<Self>) {
        while self.unanswered < self.config.max_in_flight
            && !self.paused
            && self.stopped.is_none()
            && self.draining.is_empty()
        {
            let Some(chunk) = self.queue.front_mut() else {
                break;
            };
            let max = match self.handler {
                HandlerRef::Message(_) => 1,
                HandlerRef::Batch(_) => self.config.max_batch_records,
            };
            let n = (chunk.records.len() - chunk.pos).min(max);
            let records = chunk.records.slice(chunk.pos..chunk.pos + n);
            chunk.pos += n;
            let (in_a_row, bytes) = consecutive_and_bytes(&records);
            if chunk.pos == chunk.records.len() {
                let next = chunk.next_offset;
                self.queue.pop_front();
                // Offsets up to `next` that were not records (control batches, compacted gaps)
                // are passed once every record before them is open.
                if let Some(last) = records.last() {
                    if let Err(e) = self.open(&records, in_a_row) {
                        self.stop(self.internal_error(last.offset, &e.to_string()), ctx);
                        return;
                    }
                }
                self.offsets.skip_to(next);
                if records.is_empty() {
                    self.publish();
                    continue;
                }
            } else if let Err(e) = self.open(&records, in_a_row) {
                let at = records.first().map_or(-1, |r| r.offset);
                self.stop(self.internal_error(at, &e.to_string()), ctx);
                return;
            }
            self.flow.remove_bytes(bytes);
            self.send(records, 1, in_a_row, ctx);
        }
        self.publish();
    }

    /// Opens the offsets of `records` in the [`OffsetTracker`]: one call for a run without gaps
    /// (the usual case), one per record otherwise. Both fail alike on offsets that do not
    /// increase.
    fn open(&mut self, records: &[Record], consecutive: bool) -> Result<usize, OffsetError> {
        match records.first() {
            Some(first) if consecutive => self.offsets.open_run(first.offset, records.len()),
            _ => self.offsets.open_range(records.iter().map(|r| r.offset)),
        }
    }

    /// One delivery of `records` (already open) to the handler. `consecutive`: see [`Delivery`].
    fn send(
        &mut self,
        records: Records,
        attempts: u32,
        consecutive: bool,
        ctx: &mut Context<Self>,
    ) {
        let id = self.next_delivery;
        self.next_delivery += 1;
        let ack = Arc::new(AckTarget {
            tracker: ctx.address().recipient(),
            epoch: self.epoch,
            deferred: std::sync::Mutex::new(Vec::new()),
        });
        let epoch = self.epoch;
        let reply: Pin<Box<dyn Future<Output = Result<HandlerResult, MailboxError>>>> =
            match &self.handler {
                HandlerRef::Message(handler) => {
                    let message = KafkaMessage {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        record: records[0].clone(),
                        ack: Some(ack.clone()),
                    };
                    Box::pin(handler.send(message))
                }
                HandlerRef::Batch(handler) => {
                    let batch = KafkaBatch {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        records: records.clone(),
                        ack: Some(ack.clone()),
                    };
                    Box::pin(handler.send(batch))
                }
            };
        self.deliveries.insert(
            id,
            Delivery {
                records,
                consecutive,
                handler_generation: self.handler_generation,
                attempts,
                ack,
                answered: false,
            },
        );
        self.unanswered += 1;
        ctx.spawn(reply.into_actor(self).map(move |result, act, ctx| {
            if act.epoch != epoch {
                return; // answered after a seek: the delivery is forgotten
            }
            act.answered(id, result, ctx);
        }));
    }

    fn answered(
        &mut self,
        id: u64,
        result: Result<HandlerResult, MailboxError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(delivery) = self.deliveries.get_mut(&id) else {
            return;
        };
        delivery.answered = true;
        self.unanswered = self.unanswered.saturating_sub(1);
        match result {
            Ok(Ok(())) => {
                let deferred = delivery.deferred();
                match (delivery.records.first(), delivery.records.last()) {
                    // Every offset from the first to the last: one range, no list.
                    (Some(first), Some(last)) if delivery.consecutive && deferred.is_empty() => {
                        let (first, last) = (first.offset, last.offset);
                        self.complete_range(first, last);
                    }
                    _ => {
                        let finished: Vec<i64> = delivery
                            .records
                            .iter()
                            .map(|r| r.offset)
                            .filter(|o| deferred.binary_search(o).is_err())
                            .collect();
                        self.complete(&finished);
                    }
                }
            }
            Ok(Err(error)) => {
                let deferred = delivery.deferred();
                let (before, from): (Vec<i64>, Vec<i64>) = delivery
                    .records
                    .iter()
                    .map(|r| r.offset)
                    .partition(|o| error.offset.is_some_and(|at| *o < at));
                // Records before the failed one are done (unless their acks are pending).
                let done: Vec<i64> = before
                    .into_iter()
                    .filter(|o| deferred.binary_search(o).is_err())
                    .collect();
                self.complete(&done);
                self.failed(&from, error, ctx);
            }
            Err(_) if self.factory.is_some() => {
                // The handler died (a panic ends its arbiter): a fresh one takes over, and the
                // records count as failed once, so a record that kills every handler meets the
                // failure policy instead of looping.
                let generation = delivery.handler_generation;
                let offsets: Vec<i64> = delivery.records.iter().map(|r| r.offset).collect();
                if generation == self.handler_generation {
                    if let Some(factory) = &self.factory {
                        warn!(self.log, "handler actor is gone; starting a new one");
                        self.handler = factory(&self.topic, self.partition);
                        self.handler_generation += 1;
                    }
                }
                let error = HandlerError::new("the handler actor died (panicked or stopped)");
                self.failed(&offsets, error, ctx);
            }
            Err(_) => {
                let at = delivery.records.first().map_or(-1, |r| r.offset);
                let error = Error::Handler {
                    topic: self.topic.to_string(),
                    partition: self.partition,
                    offset: at,
                    attempts: delivery.attempts,
                    detail: "the handler actor is gone (stopped, or its arbiter died)".into(),
                };
                self.stop(error, ctx);
            }
        }
        self.after_change(ctx);
    }

    /// Marks offsets done and forgets deliveries whose records are all done.
    fn complete(&mut self, offsets: &[i64]) {
        if let Some((first, last)) = as_range(offsets) {
            // Every offset in the range is listed, so the range call marks the same ones.
            self.complete_range(first, last);
            return;
        }
        let mut newly = 0;
        if self.config.in_order_done {
            if let Some(&last) = offsets.iter().max() {
                newly += self.offsets.done_up_to(last);
            }
        } else {
            for &offset in offsets {
                if let Ok(true) = self.offsets.done(offset) {
                    newly += 1;
                }
            }
        }
        self.completed(newly);
    }

    /// [`complete`](Self::complete) of every offset from `first` to `last`, in one call.
    fn complete_range(&mut self, first: i64, last: i64) {
        let newly = if self.config.in_order_done {
            self.offsets.done_up_to(last)
        } else {
            self.offsets.done_range(first, last)
        };
        self.completed(newly);
    }

    fn completed(&mut self, newly: usize) {
        self.flow.remove_records(newly);
        let committable = self.offsets.committable();
        let offsets = &self.offsets;
        // A delivery's records are in offset order (they were opened, which needs increasing
        // offsets, or sorted for a retry): one is left to do exactly when its last one is.
        self.deliveries.retain(|_, d| {
            !d.answered
                || d.records
                    .last()
                    .is_some_and(|r| r.offset >= committable && !is_done(offsets, r.offset))
        });
    }

    /// A handler failed `offsets`: redeliver after a backoff, or apply the policy's last word.
    fn failed(&mut self, offsets: &[i64], error: HandlerError, ctx: &mut Context<Self>) {
        // Take the failed records out of their deliveries.
        let mut wanted = offsets.to_vec();
        wanted.sort_unstable();
        let tracker = &self.offsets;
        let failing =
            |r: &Record| wanted.binary_search(&r.offset).is_ok() && !is_done(tracker, r.offset);
        let mut records = Vec::new();
        let mut attempts = 0;
        for delivery in self.deliveries.values_mut() {
            if !delivery.records.iter().any(failing) {
                continue;
            }
            attempts = attempts.max(delivery.attempts);
            let (taken, kept): (Vec<Record>, Vec<Record>) =
                delivery.records.iter().cloned().partition(failing);
            records.extend(taken);
            delivery.consecutive = consecutive(&kept);
            delivery.records = Records::new(kept);
        }
        self.deliveries
            .retain(|_, d| !d.answered || !d.records.is_empty());
        if records.is_empty() {
            return; // already done (a late failure after a success), or forgotten by a seek
        }
        records.sort_by_key(|r| r.offset);
        // The record that failed: named by the handler, else the first of the delivery.
        let first = error
            .offset
            .filter(|at| records.iter().any(|r| r.offset == *at))
            .unwrap_or(records[0].offset);
        if attempts <= self.policy.retries {
            let delay = self.policy.backoff.delay(attempts - 1, fastrand::f64());
            info!(self.log, "handler failed; redelivering"; "topic" => &*self.topic,
                "partition" => self.partition, "offset" => first, "attempt" => attempts,
                "delay" => ?delay, "error" => %error);
            self.retries_pending += 1;
            let epoch = self.epoch;
            ctx.run_later(delay, move |act, ctx| {
                if act.epoch != epoch {
                    return;
                }
                act.retries_pending -= 1;
                if act.stopped.is_some() {
                    return;
                }
                let in_a_row = consecutive(&records);
                act.send(Records::new(records), attempts + 1, in_a_row, ctx);
            });
            return;
        }
        let failure = Error::Handler {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: first,
            attempts,
            detail: error.message.clone(),
        };
        // Only the named record meets the last word; the ones after it get a fresh start.
        if error.offset.is_some() && self.policy.then != AfterRetries::Stop {
            let rest: Vec<Record> = records
                .iter()
                .filter(|r| r.offset != first)
                .cloned()
                .collect();
            records.retain(|r| r.offset == first);
            if !rest.is_empty() {
                let in_a_row = consecutive(&rest);
                self.send(Records::new(rest), 1, in_a_row, ctx);
            }
        }
        match self.policy.then.clone() {
            AfterRetries::Stop => self.stop(failure, ctx),
            AfterRetries::Skip => {
                warn!(self.log, "handler failed; skipping the records as the policy says";
                    "topic" => &*self.topic, "partition" => self.partition,
                    "offsets" => ?records.iter().map(|r| r.offset).collect::<Vec<_>>(),
                    "error" => %failure);
                let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
                self.complete(&offsets);
                self.owner.do_send(PartitionStopped {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    error: failure,
                })
            }
            AfterRetries::DeadLetter { topic } => self.dead_letter(topic, records, failure, ctx),
        }
    }

    /// Produces `records` to the dead-letter topic and marks them done once acknowledged.
    fn dead_letter(
        &mut self,
        dlt: String,
        records: Vec<Record>,
        failure: Error,
        ctx: &mut Context<Self>,
    ) {
        let Some(producer) = self.producer.clone() else {
            let error = Error::Config {
                field: "failure_policy",
                detail: format!("dead-letter topic {dlt} needs a producer, and none is set"),
            };
            self.stop(error, ctx);
            return;
        };
        self.retries_pending += 1;
        let epoch = self.epoch;
        let (origin, partition) = (self.topic.to_string(), self.partition);
        let detail = failure.to_string();
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        let work = async move {
            for record in &records {
                let mut out = ProducerRecord::new(dlt.clone())
                    .timestamp(record.timestamp)
                    .header("konsumer.origin.topic", Some(Bytes::from(origin.clone())))
                    .header(
                        "konsumer.origin.partition",
                        Some(Bytes::from(partition.to_string())),
                    )
                    .header(
                        "konsumer.origin.offset",
                        Some(Bytes::from(record.offset.to_string())),
                    )
                    .header("konsumer.error", Some(Bytes::from(detail.clone())));
                for header in record.headers().iter() {
                    if let Some(name) = header.key_str() {
                        out = out.header(name, header.value.map(Bytes::copy_from_slice));
                    }
                }
                if let Some(key) = record.key_bytes() {
                    out = out.key(key);
                }
                if let Some(value) = record.value_bytes() {
                    out = out.value(value);
                }
                producer
                    .send(crate::messages::Produce(out))
                    .await
                    .map_err(|_| Error::Shutdown("producer".into()))?
                    .map_err(|e| Error::Handler {
                        topic: origin.clone(),
                        partition,
                        offset: record.offset,
                        attempts: 0,
                        detail: format!("dead-letter produce failed: {e}"),
                    })?;
            }
            Ok::<(), Error>(())
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            if act.epoch != epoch {
                return;
            }
            act.retries_pending -= 1;
            match result {
                Ok(()) => {
                    warn!(act.log, "records sent to the dead-letter topic";
                        "topic" => &*act.topic, "partition" => act.partition,
                        "offsets" => ?offsets, "error" => %failure);
                    act.complete(&offsets);
                }
                Err(error) => act.stop(error, ctx),
            }
            act.after_change(ctx);
        }));
    }

    fn stop(&mut self, error: Error, _: &mut Context<Self>) {
        if self.stopped.is_some() {
            return;
        }
        warn!(self.log, "partition stopped"; "topic" => &*self.topic,
            "partition" => self.partition, "error" => %error);
        self.flow.paused.store(true, Ordering::Relaxed);
        self.stopped = Some(error.clone());
        self.owner.do_send(PartitionStopped {
            topic: self.topic.clone(),
            partition: self.partition,
            error,
        });
    }

    fn internal_error(&self, offset: i64, detail: &str) -> Error {
        Error::Handler {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset,
            attempts: 0,
            detail: format!("offset bookkeeping: {detail}"),
        }
    }

    fn after_change(&mut self, ctx: &mut Context<Self>) {
        self.deliver(ctx);
        self.publish();
        if !self.draining.is_empty() && self.idle() {
            for waiter in self.draining.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// Nothing delivered is unfinished (queued records do not count: they were never opened).
    fn idle(&self) -> bool {
        self.offsets.is_idle() && self.retries_pending == 0
    }

    fn commit_offset(&self) -> CommitOffset {
        CommitOffset {
            offset: self.offsets.committable(),
            leader_epoch: None,
            metadata: self.metadata.clone(),
        }
    }
}

fn is_done(offsets: &OffsetTracker, offset: i64) -> bool {
    // Below the committable offset everything opened is done; at or above it, done() would
    // tell, but without mutating: an offset that is still open keeps the delivery.
    offset < offsets.committable()
}

impl Actor for PartitionTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A tracker may hold many queued fetches; the default mailbox of 16 would park the
        // Fetcher's do_send callers needlessly.
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Fetched> for PartitionTracker {
    type Result = ();

    fn handle(&mut self, fetched: Fetched, ctx: &mut Context<Self>) {
        if fetched.epoch != self.epoch || !self.draining.is_empty() {
            // From before a seek, or the partition is on its way out: forget it.
            self.flow.remove_records(fetched.records.len());
            self.flow.remove_bytes(fetched.bytes);
            return;
        }
        self.queue.push_back(Chunk {
            records: Records::new(fetched.records),
            pos: 0,
            next_offset: fetched.next_offset,
        });
        self.deliver(ctx);
    }
}

impl Handler<Acked> for PartitionTracker {
    type Result = ();

    fn handle(&mut self, acked: Acked, ctx: &mut Context<Self>) {
        if acked.epoch != self.epoch {
            return;
        }
        match acked.result {
            Ok(()) => self.complete(&acked.offsets),
            Err(error) => self.failed(&acked.offsets, error, ctx),
        }
        self.after_change(ctx);
    }
}

impl Handler<Drain> for PartitionTracker {
    type Result = ResponseActFuture<Self, CommitOffset>;

    fn handle(&mut self, drain: Drain, ctx: &mut Context<Self>) -> Self::Result {
        // Nothing new goes out; what was fetched and never delivered is simply not committed.
        let dropped: usize = self.queue.iter().map(|c| c.records.len() - c.pos).sum();
        let bytes: usize = self
            .queue
            .iter()
            .map(|c| records_bytes(&c.records[c.pos..]))
            .sum();
        self.queue.clear();
        self.flow.remove_records(dropped);
        self.flow.remove_bytes(bytes);
        self.flow.paused.store(true, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.draining.push(tx);
        if self.idle() || self.stopped.is_some() && self.unanswered == 0 {
            for waiter in self.draining.drain(..) {
                let _ = waiter.send(());
            }
        }
        let _ = ctx;
        let timeout = drain.timeout;
        Box::pin(
            async move {
                let _ = tokio::time::timeout(timeout, rx).await;
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                let offset = act.commit_offset();
                if !act.idle() {
                    warn!(act.log, "partition given up before its records were done";
                        "topic" => &*act.topic, "partition" => act.partition,
                        "open" => act.offsets.open_count(), "committing" => offset.offset);
                }
                ctx.stop();
                offset
            }),
        )
    }
}

impl Handler<Seek> for PartitionTracker {
    type Result = ();

    fn handle(&mut self, seek: Seek, ctx: &mut Context<Self>) {
        self.epoch = seek.epoch;
        self.queue.clear();
        self.deliveries.clear();
        self.unanswered = 0;
        self.retries_pending = 0;
        self.offsets.reset(seek.offset);
        self.flow.records.store(0, Ordering::Relaxed);
        self.flow.bytes.store(0, Ordering::Relaxed);
        self.after_change(ctx);
    }
}

impl Handler<Pause> for PartitionTracker {
    type Result = ();

    fn handle(&mut self, Pause(paused): Pause, ctx: &mut Context<Self>) {
        self.paused = paused;
        self.flow
            .paused
            .store(paused || self.stopped.is_some(), Ordering::Relaxed);
        self.after_change(ctx);
    }
}

impl Handler<MarkMetadata> for PartitionTracker {
    type Result = ();

    fn handle(&mut self, MarkMetadata(metadata): MarkMetadata, _: &mut Context<Self>) {
        if let Ok(mut shared) = self.flow.metadata.lock() {
            shared.clone_from(&metadata);
        }
        self.metadata = metadata;
    }
}
