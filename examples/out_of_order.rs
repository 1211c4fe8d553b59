//! Finishing records out of order: the handler hands each record to a pool of worker tasks
//! and returns at once; the workers finish in whatever order their work takes and acknowledge
//! each record with its `Ack`.
//!
//! What gets committed is never "the newest offset seen" but the end of the *contiguous run of
//! finished records*: if offsets 0, 1, 2, 4 and 5 are done and 3 is still being worked on, the
//! commit is 3 (the next record to read), and it jumps to 6 the moment 3 is done. A crash (or a
//! rebalance) at any moment therefore redelivers exactly the records that were not finished —
//! and, at worst, some that were (4 and 5 here): at-least-once, never at-most-once.
//! The `event: committed ...` lines show the commits following the contiguous run.
//!
//! ```sh
//! cargo run --example out_of_order -- --brokers 127.0.0.1:9092 --topic orders
//! ```

mod common;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Context, Handler};
use konsumer_actors::core::consumer::{ConsumerConfig, OffsetReset};
use konsumer_actors::core::group::GroupConfig;
use konsumer_actors::{
    Ack, ClientConfig, ConsumerEvents, ConsumerService, HandlerRef, HandlerResult, KafkaMessage,
    Shutdown,
};
use tokio::sync::{mpsc, Mutex};

const WORKERS: usize = 4;

/// A record and the ack that completes it.
type Job = (KafkaMessage, Ack);

/// Takes over each record's completion and passes it on to the workers.
struct Dispatcher {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Actor for Dispatcher {
    type Context = Context<Self>;
}

impl Handler<KafkaMessage> for Dispatcher {
    type Result = HandlerResult;

    fn handle(&mut self, msg: KafkaMessage, _: &mut Context<Self>) -> HandlerResult {
        // From here on, the `Ok` below no longer means "done": only `ack.done()` does.
        let ack = msg.defer();
        // The channel is unbounded, yet memory is not: records that are fetched and not yet
        // done count against `buffer_max_records`, and a full partition is not fetched.
        // If the send fails (the pool is gone), the ack is dropped with the job; a dropped
        // ack counts as a failure, so the record is redelivered rather than lost.
        let _ = self.jobs.send((msg, ack));
        Ok(())
    }
}

/// One worker: takes the next job, works on it for a random while, acknowledges it.
async fn worker(id: usize, jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
    let mut random = Random::new();
    loop {
        // Hold the lock only to take a job, not while working on it.
        let Some((msg, ack)) = jobs.lock().await.recv().await else {
            return; // the dispatcher is gone
        };
        let work = Duration::from_millis(random.below(800));
        tokio::time::sleep(work).await;
        println!(
            "worker {id}: {}/{} @{} done after {} ms",
            msg.topic,
            msg.partition,
            msg.offset(),
            work.as_millis()
        );
        // `ack.fail(HandlerError::new(..))` would hand the record to the failure policy.
        ack.done();
    }
}

/// xorshift64*, seeded by the standard library's random hasher keys: random enough for
/// delays, without a dependency.
struct Random(u64);

impl Random {
    fn new() -> Self {
        Random(RandomState::new().build_hasher().finish() | 1)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

#[actix::main]
async fn main() {
    let settings = common::Settings::from_args("out-of-order-example", &[]);

    let (jobs, queue) = mpsc::unbounded_channel();
    let queue = Arc::new(Mutex::new(queue));
    for id in 0..WORKERS {
        actix::spawn(worker(id, queue.clone()));
    }
    let dispatcher = Dispatcher { jobs }.start();

    let mut group = GroupConfig::new(settings.group.clone(), [settings.topic.clone()]);
    group.session_timeout = Duration::from_secs(10);
    group.heartbeat_interval = Duration::from_secs(1);
    group.rebalance_timeout = Duration::from_secs(30);
    let consumer = ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        // Commit often, to watch the committed offset follow the contiguous done run.
        commit_interval: Duration::from_millis(500),
        // At most this many records per partition fetched and not yet done.
        buffer_max_records: 100,
        // On shutdown or revoke, wait this long for the workers to finish what they hold.
        drain_timeout: Some(Duration::from_secs(5)),
        ..ConsumerConfig::default()
    };
    let (events, mut received) = mpsc::unbounded_channel();
    let service = ConsumerService::builder(ClientConfig::new(settings.brokers.clone()), group)
        .consumer_config(consumer)
        .handler(HandlerRef::messages(&dispatcher))
        .events(ConsumerEvents::Channel(events))
        .logger(common::stderr_logger())
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
        "consuming {} as group {} with {WORKERS} workers; Ctrl-C to stop",
        settings.topic, settings.group
    );

    loop {
        tokio::select! {
            event = received.recv() => match event {
                Some(event) => common::print_event(&event),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => {
                // The workers keep running while the service drains: what they finish within
                // the drain timeout is committed; the rest is redelivered to the next owner.
                eprintln!("Ctrl-C: waiting for the workers, committing, leaving the group");
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
