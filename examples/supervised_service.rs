//! A service that survives its handlers' bugs and shuts down without losing or repeating work.
//!
//! - **Startup**: `start()` is retried with a growing pause while the brokers cannot be reached
//!   (a bad setting stops at once: retrying cannot fix it).
//! - **A handler actor per partition**, each on an `Arbiter` (thread) of its own, made by the
//!   service's `handler_factory`. A panic in a handler ends only that thread. The partition's
//!   tracker then sees the handler's mailbox closed, asks the factory for a new handler, and
//!   redelivers what was not done — nothing is lost, and the committed offset never passes a
//!   record that was not finished.
//! - **Graceful shutdown** on Ctrl-C (SIGINT): `Shutdown` stops fetching, lets in-flight
//!   records finish (for at most the drain timeout), commits their offsets, leaves the group,
//!   and only then answers. A second Ctrl-C exits at once.
//!
//! ```sh
//! cargo run --example supervised_service -- --brokers 127.0.0.1:9092 --topic orders
//! ```
//!
//! Produce a record whose value is `panic` to see a handler die and be replaced: the record
//! is handled by the new one.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, Context, Handler};
use konsumer_actors::core::consumer::{ConsumerConfig, OffsetReset};
use konsumer_actors::core::group::GroupConfig;
use konsumer_actors::{
    ClientConfig, ConsumerEvents, ConsumerService, Error, HandlerRef, HandlerResult, KafkaBatch,
    Shutdown,
};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The records that made a handler panic already (shared by every handler, and surviving
/// them): each panics once, so the demo shows a redelivery rather than a loop.
type Panicked = Arc<Mutex<BTreeSet<(String, i32, i64)>>>;

/// The handler of one partition, alone on its thread.
struct PartitionHandler {
    topic: String,
    partition: i32,
    handled: u64,
    panicked: Panicked,
}

impl Actor for PartitionHandler {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        eprintln!(
            "handler for {}/{} started on {:?}",
            self.topic,
            self.partition,
            std::thread::current().id()
        );
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // The actor stops once nothing refers to it (its partition was revoked, or the service
        // shut down). The thread was made for it alone: end it too, or it would linger.
        eprintln!(
            "handler for {}/{} stopped after {} records",
            self.topic, self.partition, self.handled
        );
        Arbiter::current().stop();
    }
}

impl Handler<KafkaBatch> for PartitionHandler {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        for record in &batch.records {
            if record.value() == Some(&b"panic"[..]) {
                let key = (batch.topic.to_string(), batch.partition, record.offset);
                // (Lock, insert and release before panicking, so the mutex is not poisoned.)
                let first_time = self.panicked.lock().map(|mut p| p.insert(key));
                if first_time.unwrap_or(false) {
                    // A bug: it takes this thread down, and only this one. This batch was
                    // never answered, so all of it comes again (the records printed above
                    // too: delivery is at least once) to the handler that replaces us.
                    // (A record that panicked *every* time would come back every time: turn
                    // what you can into an `Err`, which the failure policy limits.)
                    panic!(
                        "{}/{} @{}: handler bug (on purpose)",
                        batch.topic, batch.partition, record.offset
                    );
                }
            }
            self.handled += 1;
            println!(
                "{}/{} @{}: {}",
                batch.topic,
                batch.partition,
                record.offset,
                String::from_utf8_lossy(record.value().unwrap_or_default())
            );
        }
        Ok(())
    }
}

/// Starts the service, retrying while the cluster cannot be reached.
async fn start_supervised(
    settings: &common::Settings,
    events: ConsumerEvents,
) -> Result<Addr<ConsumerService>, Error> {
    let panicked = Panicked::default();
    let mut pause = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        let mut group = GroupConfig::new(settings.group.clone(), [settings.topic.clone()]);
        group.session_timeout = Duration::from_secs(10);
        group.heartbeat_interval = Duration::from_secs(1);
        group.rebalance_timeout = Duration::from_secs(30);
        let consumer = ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            commit_interval: Duration::from_secs(1),
            // How long a partition taken away (rebalance, shutdown) may take to finish what
            // its handler holds; by default the group's rebalance timeout.
            drain_timeout: Some(DRAIN_TIMEOUT),
            ..ConsumerConfig::default()
        };
        let mut client = ClientConfig::new(settings.brokers.clone());
        // How long one attempt tries the bootstrap brokers before it gives up.
        client.bootstrap_timeout = Duration::from_secs(10);
        let panicked = panicked.clone();
        let started = ConsumerService::builder(client, group)
            .consumer_config(consumer)
            // Called for each assigned partition, and again for a partition whose handler
            // died. Each handler gets a thread of its own.
            .handler_factory(move |topic, partition| {
                let handler = PartitionHandler {
                    topic: topic.to_owned(),
                    partition,
                    handled: 0,
                    panicked: panicked.clone(),
                };
                let arbiter = Arbiter::new();
                let addr = PartitionHandler::start_in_arbiter(&arbiter.handle(), |_| handler);
                HandlerRef::batches(&addr)
            })
            .events(events.clone())
            .logger(common::stderr_logger())
            .start()
            .await;
        match started {
            Ok(service) => return Ok(service),
            // Retrying cannot mend a bad setting.
            Err(error @ Error::Config { .. }) => return Err(error),
            Err(error) if attempt < 10 => {
                eprintln!("start attempt {attempt} failed: {error}; again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(8));
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

#[actix::main]
async fn main() {
    let settings = common::Settings::from_args("supervised-example", &[]);
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let service = tokio::select! {
        started = start_supervised(&settings, ConsumerEvents::Channel(events)) => match started {
            Ok(service) => service,
            Err(error) => {
                eprintln!("cannot start: {error}");
                std::process::exit(1);
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("Ctrl-C before the service started");
            std::process::exit(130);
        }
    };
    eprintln!(
        "consuming {} as group {}; Ctrl-C to stop",
        settings.topic, settings.group
    );

    loop {
        tokio::select! {
            event = received.recv() => match event {
                Some(event) => common::print_event(&event),
                None => {
                    eprintln!("the service stopped on its own");
                    std::process::exit(1);
                }
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }

    eprintln!("Ctrl-C: draining, committing and leaving the group (Ctrl-C again to quit now)");
    // The drain is bounded by DRAIN_TIMEOUT; the commit and the LeaveGroup by the request
    // timeout. The outer bound only guards against a service that no longer answers.
    let shutdown = tokio::time::timeout(DRAIN_TIMEOUT * 2, service.send(Shutdown));
    tokio::select! {
        done = shutdown => match done {
            Ok(Ok(())) => eprintln!("shut down cleanly"),
            Ok(Err(_)) => eprintln!("the service was already gone"),
            Err(_) => eprintln!("shutdown did not finish in {:?}", DRAIN_TIMEOUT * 2),
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("second Ctrl-C: quitting without waiting");
            std::process::exit(130);
        }
    }
    while let Ok(event) = received.try_recv() {
        common::print_event(&event);
    }
}
