//! Rebalance latency: the time from a second member starting to both members holding their
//! partitions, konsumer's Coordinator side by side with librdkafka's consumer (the `rdkafka`
//! crate 0.39, librdkafka 2.12), against the same tansu broker, in one run.
//!
//! Each round, for each client: a first member joins a fresh group on a 12-partition topic and
//! is waited for until it holds all 12; then the clock starts, a second member of the same
//! client starts, and the clock stops when the two hold 6 + 6 partitions between them. Both
//! clients use the same settings: session timeout 6 s, heartbeat interval 1 s, the range
//! assignor (eager), and the default first-join path (KIP-394 two-step join for konsumer).
//! The first member learns of the rebalance from a heartbeat answer, so a heartbeat interval
//! bounds the result from below for both clients alike.
//!
//! Run with `bash scripts/bench-group.sh` (or `cargo bench --bench group_join -- [--rounds N]`).
//! Prints each run, then the median of each client and the ratio konsumer / rdkafka.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use konsumer::group::GroupConfig;
use konsumer::ClientConfig;
use konsumer_actors::messages::{Close, EventSink, GetMembership};
use konsumer_actors::testkit::tansu::{Storage, TansuBroker, TANSU_VERSION};
use konsumer_actors::{Cluster, Coordinator};
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

const PARTITIONS: usize = 12;
const STRATEGY: &str = "range";
/// A run that takes longer than this is stuck: the bench fails instead of hanging.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn group_config(group: &str, topic: &str) -> GroupConfig {
    let mut config = GroupConfig::new(group, [topic])
        .with_assignors(&[STRATEGY])
        .expect("built-in assignor");
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_secs(1);
    config.rebalance_timeout = Duration::from_secs(20);
    config
}

async fn konsumer_member(broker: &TansuBroker, group: &str, topic: &str) -> Addr<Coordinator> {
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let cluster = Cluster::connect(ClientConfig::new([broker.bootstrap()]), log.clone())
        .await
        .expect("bootstrap");
    Coordinator::new(cluster, group_config(group, topic), EventSink::None, log)
        .expect("valid config")
        .start()
}

async fn konsumer_owned(member: &Addr<Coordinator>) -> usize {
    member
        .send(GetMembership)
        .await
        .map(|m| {
            if m.generation >= 0 {
                m.assignment.len()
            } else {
                0
            }
        })
        .unwrap_or(0)
}

/// One konsumer run: the time for the second member to get its share.
async fn konsumer_run(broker: &TansuBroker, round: u32) -> Result<Duration, String> {
    let group = format!("bench-join-konsumer-{round}");
    let topic = format!("{group}-topic");
    broker.create_topic(&topic, PARTITIONS as i32);
    let first = konsumer_member(broker, &group, &topic).await;
    wait(
        || async { konsumer_owned(&first).await == PARTITIONS },
        "first member",
    )
    .await?;
    let started = Instant::now();
    let second = konsumer_member(broker, &group, &topic).await;
    wait(
        || async {
            konsumer_owned(&first).await == PARTITIONS / 2
                && konsumer_owned(&second).await == PARTITIONS / 2
        },
        "both members",
    )
    .await?;
    let took = started.elapsed();
    let _ = first.send(Close).await;
    let _ = second.send(Close).await;
    Ok(took)
}

/// A librdkafka member polling on its own thread; `owned` is how many partitions it holds.
struct Peer {
    stop: Arc<AtomicBool>,
    owned: Arc<Mutex<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    fn start(broker: &TansuBroker, group: &str, topic: &str) -> Peer {
        let consumer: BaseConsumer = RdConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("group.id", group)
            .set("partition.assignment.strategy", STRATEGY)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("enable.auto.commit", "false")
            .create()
            .expect("librdkafka consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let owned = Arc::new(Mutex::new(0));
        let thread = {
            let (stop, owned) = (stop.clone(), owned.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let _ = consumer.poll(Duration::from_millis(10));
                    let count = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                    *owned.lock().unwrap_or_else(|e| e.into_inner()) = count;
                }
                consumer.unsubscribe();
                for _ in 0..10 {
                    let _ = consumer.poll(Duration::from_millis(20));
                }
            })
        };
        Peer {
            stop,
            owned,
            thread: Some(thread),
        }
    }

    fn owned(&self) -> usize {
        *self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn rdkafka_run(broker: &TansuBroker, round: u32) -> Result<Duration, String> {
    let group = format!("bench-join-rdkafka-{round}");
    let topic = format!("{group}-topic");
    broker.create_topic(&topic, PARTITIONS as i32);
    let first = Peer::start(broker, &group, &topic);
    wait(|| async { first.owned() == PARTITIONS }, "first member").await?;
    let started = Instant::now();
    let second = Peer::start(broker, &group, &topic);
    wait(
        || async { first.owned() == PARTITIONS / 2 && second.owned() == PARTITIONS / 2 },
        "both members",
    )
    .await?;
    Ok(started.elapsed())
}

async fn wait<F, Fut>(mut done: F, what: &str) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + RUN_TIMEOUT;
    while !done().await {
        if Instant::now() > deadline {
            return Err(format!(
                "{what} did not get partitions within {RUN_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort_unstable();
    runs[runs.len() / 2]
}

fn main() -> ExitCode {
    let mut rounds = 5u32;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--rounds" => {
                rounds = match args.get(i + 1).and_then(|v| v.parse().ok()) {
                    Some(n) if n > 0 => n,
                    _ => {
                        eprintln!("--rounds needs a positive number");
                        return ExitCode::FAILURE;
                    }
                };
                i += 1;
            }
            "--bench" => {}
            other => {
                eprintln!("unknown option {other}; options: --rounds N");
                return ExitCode::FAILURE;
            }
        }
        i += 1;
    }
    let system = actix::System::new();
    let result = system.block_on(async move {
        let broker = TansuBroker::start(Storage::Memory);
        println!(
            "second member to both holding partitions: tansu {TANSU_VERSION}, {PARTITIONS} partitions, {STRATEGY}, heartbeat 1 s"
        );
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let k = konsumer_run(&broker, round).await?;
            let r = rdkafka_run(&broker, round).await?;
            println!(
                "round {round}: konsumer {:>7.1} ms   rdkafka {:>7.1} ms",
                k.as_secs_f64() * 1e3,
                r.as_secs_f64() * 1e3
            );
            ours.push(k);
            theirs.push(r);
        }
        let (k, r) = (median(ours), median(theirs));
        println!(
            "median: konsumer {:.1} ms, rdkafka {:.1} ms; konsumer / rdkafka = {:.2}",
            k.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3,
            k.as_secs_f64() / r.as_secs_f64()
        );
        Ok::<(), String>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error}");
            ExitCode::FAILURE
        }
    }
}
