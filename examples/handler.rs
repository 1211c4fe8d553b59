//! The smallest konsumer application: an ordinary actix actor handles the records of a topic,
//! and a `ConsumerService` runs the consumer group around it — membership, fetching,
//! backpressure, and commits of exactly the records the handler has finished.
//!
//! ```sh
//! cargo run --example handler -- --brokers 127.0.0.1:9092 --topic orders --group printer
//! cargo run --example handler -- --topic orders --batches   # one message per batch instead
//! ```
//!
//! Settings fall back to `KONSUMER_BROKERS`, `KONSUMER_GROUP` and `KONSUMER_TOPIC`, then to
//! `127.0.0.1:9092`, `handler-example` and `konsumer-example`. Runs until Ctrl-C, then leaves
//! the group cleanly: in-flight records finish, their offsets are committed, the member leaves.

mod common;

use std::time::Duration;

use actix::{Actor, Context, Handler};
use konsumer_actors::core::consumer::{ConsumerConfig, OffsetReset};
use konsumer_actors::core::group::GroupConfig;
use konsumer_actors::{
    ClientConfig, ConsumerEvents, ConsumerService, HandlerError, HandlerRef, HandlerResult,
    KafkaBatch, KafkaMessage, Shutdown,
};

/// Handles one record per actix message.
struct Printer {
    handled: u64,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<KafkaMessage> for Printer {
    // `Ok(())`: the record is done, and its offset may be committed. `Err(..)`: it failed; the
    // failure policy (`ConsumerConfig::failure_policy`: retries with backoff, then stop the
    // partition, skip, or dead-letter) decides what happens next — never a silent skip.
    type Result = HandlerResult;

    fn handle(&mut self, msg: KafkaMessage, _: &mut Context<Self>) -> HandlerResult {
        // Keys and values are slices of the fetched buffer: no copy until you make one.
        let value = std::str::from_utf8(msg.value().unwrap_or_default())
            .map_err(|e| HandlerError::new(format!("value is not UTF-8: {e}")))?;
        let key = msg.key().map(String::from_utf8_lossy);
        self.handled += 1;
        println!(
            "{}/{} @{}  key={}  value={value}  (#{})",
            msg.topic,
            msg.partition,
            msg.offset(),
            key.as_deref().unwrap_or("-"),
            self.handled
        );
        Ok(())
    }
}

/// Handles consecutive records of one partition per actix message: fewer messages, and a
/// natural unit for bulk work (one database transaction per batch, ...).
struct BatchPrinter;

impl Actor for BatchPrinter {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for BatchPrinter {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        let (Some(first), Some(last)) = (batch.records.first(), batch.records.last()) else {
            return Ok(());
        };
        println!(
            "{}/{}: batch of {} records, offsets {}..={}",
            batch.topic,
            batch.partition,
            batch.records.len(),
            first.offset,
            last.offset
        );
        for record in &batch.records {
            if record.value().is_none() {
                // Records before this one count as done; it and those after it are redelivered
                // (or skipped, dead-lettered...) as the failure policy says.
                return Err(HandlerError::at(record.offset, "a null value"));
            }
        }
        Ok(())
    }
}

#[actix::main]
async fn main() {
    let settings = common::Settings::from_args("handler-example", &["--batches"]);
    let log = common::stderr_logger();

    // The handler actors live on the System arbiter here: a panic in one would end the
    // process. See the supervised_service example for handlers on arbiters of their own.
    let handler = if settings.flag("--batches") {
        HandlerRef::batches(&BatchPrinter.start())
    } else {
        HandlerRef::messages(&Printer { handled: 0 }.start())
    };

    let mut group = GroupConfig::new(settings.group.clone(), [settings.topic.clone()]);
    group.session_timeout = Duration::from_secs(10);
    group.heartbeat_interval = Duration::from_secs(1);
    group.rebalance_timeout = Duration::from_secs(30);
    let consumer = ConsumerConfig {
        // A new group starts at the beginning of the topic (the Java client's default is the
        // end: only records produced from now on).
        offset_reset: OffsetReset::Earliest,
        commit_interval: Duration::from_secs(1),
        ..ConsumerConfig::default()
    };
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let service = ConsumerService::builder(ClientConfig::new(settings.brokers.clone()), group)
        .consumer_config(consumer)
        // The handler of every subscribed topic; `.topic_handler(topic, ..)` sets one per topic.
        .handler(handler)
        .events(ConsumerEvents::Channel(events))
        .logger(log)
        .start()
        .await;
    let service = match service {
        Ok(service) => service,
        Err(error) => {
            eprintln!("cannot start: {error}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "consuming {} as group {} from {}; Ctrl-C to stop",
        settings.topic,
        settings.group,
        settings.brokers.join(",")
    );

    loop {
        tokio::select! {
            event = received.recv() => match event {
                Some(event) => common::print_event(&event),
                None => break, // the service is gone
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("Ctrl-C: finishing in-flight records, committing, leaving the group");
                // Answers once the partitions are drained and committed and the member left.
                let _ = service.send(Shutdown).await;
                break;
            }
        }
    }
    while let Ok(event) = received.try_recv() {
        common::print_event(&event);
    }
    eprintln!("stopped");
}
