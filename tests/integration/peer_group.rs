//! Mixed consumer groups on tansu: konsumer members and librdkafka 2.12 members (through the
//! `rdkafka` crate) in the same group, with range, roundrobin and cooperative-sticky. For each
//! strategy, one group is led by a konsumer member and one by a librdkafka member, so each
//! side must read the assignment the other side's leader computed. Every partition must be
//! owned exactly once, evenly, and range and roundrobin groups must then stay put (no
//! rebalance loop) for `KONSUMER_INTEROP_STABLE_SECS` seconds (default 60).
//!
//! Cooperative-sticky groups do not settle on tansu 0.6, whoever is in them: its coordinator
//! answers each JoinGroup at once and starts a new generation whenever a member's metadata
//! changes, and cooperative metadata (owned partitions, generation) changes with every
//! rebalance. A group of four librdkafka members alone keeps rebalancing there (see
//! DESIGN.md's tansu quirks), and tansu moves its leadership around. So on tansu the
//! cooperative groups only have to reach exact, even coverage, before and after the window.
//! The same mixed groups also run on the mocked cluster served over TCP, whose coordinator
//! keeps Kafka's join and sync barriers: there every strategy, cooperative-sticky included,
//! must reach coverage under the intended leader and then stay put.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use crate::real_group::{group_config, Member};
use konsumer_actors::testkit::listener::consumer_versions;
use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
use konsumer_actors::testkit::MockCluster;

const PARTITIONS: i32 = 12;

/// Counts the rebalances a librdkafka member goes through.
struct Counting {
    rebalances: Arc<AtomicUsize>,
}

impl ClientContext for Counting {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if std::env::var_os("KONSUMER_INTEROP_DEBUG").is_some() {
            eprintln!("librdkafka {level:?} {fac}: {log_message}");
        }
    }
}

impl ConsumerContext for Counting {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
    }
}

/// A librdkafka member polling on its own thread, publishing what it owns.
struct Peer {
    name: String,
    stop: Arc<AtomicBool>,
    owned: Arc<Mutex<Option<Vec<i32>>>>,
    rebalances: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    fn start(name: &str, bootstrap: &str, group: &str, topic: &str, strategy: &str) -> Peer {
        let stop = Arc::new(AtomicBool::new(false));
        let owned = Arc::new(Mutex::new(None));
        let rebalances = Arc::new(AtomicUsize::new(0));
        let mut config = RdConfig::new();
        if std::env::var_os("KONSUMER_INTEROP_DEBUG").is_some() {
            config
                .set("debug", "cgrp")
                .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
        let consumer: BaseConsumer<Counting> = config
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("client.id", name)
            .set("partition.assignment.strategy", strategy)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create_with_context(Counting {
                rebalances: rebalances.clone(),
            })
            .expect("librdkafka consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let thread = {
            let (stop, owned, topic) = (stop.clone(), owned.clone(), topic.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let _ = consumer.poll(Duration::from_millis(100));
                    let mine = consumer.assignment().ok().map(|list| {
                        let mut ps: Vec<i32> = list
                            .elements()
                            .iter()
                            .filter(|e| e.topic() == topic)
                            .map(|e| e.partition())
                            .collect();
                        ps.sort_unstable();
                        ps
                    });
                    *owned.lock().unwrap_or_else(|e| e.into_inner()) = mine;
                }
                consumer.unsubscribe();
                for _ in 0..10 {
                    let _ = consumer.poll(Duration::from_millis(50));
                }
            })
        };
        Peer {
            name: name.to_owned(),
            stop,
            owned,
            rebalances,
            thread: Some(thread),
        }
    }

    fn owned(&self) -> Option<Vec<i32>> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

/// One mixed group: what its members own, by name.
struct Group {
    name: String,
    topic: String,
    ours: Vec<Member>,
    peers: Vec<Peer>,
}

impl Group {
    /// (member name, partitions, generation if a konsumer member) for every member.
    async fn snapshot(&self) -> Vec<(String, Option<Vec<i32>>, Option<i32>)> {
        let mut out = Vec::new();
        for m in &self.ours {
            let membership = m.membership().await;
            let generation = membership.as_ref().map(|s| s.generation);
            let owned = membership.filter(|s| s.generation >= 0).map(|s| {
                s.assignment
                    .partitions
                    .get(&self.topic)
                    .cloned()
                    .unwrap_or_default()
            });
            out.push((m.name.clone(), owned, generation));
        }
        for p in &self.peers {
            out.push((p.name.clone(), p.owned(), None));
        }
        out
    }

    /// Every partition owned exactly once, `PARTITIONS / members` each.
    async fn covered(&self) -> Result<(), String> {
        let snapshot = self.snapshot().await;
        let members = snapshot.len() as i32;
        let mut all = Vec::new();
        for (name, owned, _) in &snapshot {
            let Some(owned) = owned else {
                return Err(format!("{name} has no assignment yet: {snapshot:?}"));
            };
            if owned.len() as i32 != PARTITIONS / members {
                return Err(format!("{name} owns {owned:?}: {snapshot:?}"));
            }
            all.extend(owned.iter().copied());
        }
        all.sort_unstable();
        if all != (0..PARTITIONS).collect::<Vec<_>>() {
            return Err(format!("not each partition once: {snapshot:?}"));
        }
        Ok(())
    }

    /// How many konsumer members say they lead their generation.
    async fn konsumer_leaders(&self) -> usize {
        let mut leaders = 0;
        for m in &self.ours {
            if m.membership().await.is_some_and(|s| s.leader) {
                leaders += 1;
            }
        }
        leaders
    }

    /// Waits for exact coverage at a moment when a konsumer member leads (`konsumer_leads`)
    /// or none does (a librdkafka member leads), and all konsumer members share a generation.
    async fn wait_covered_led(&self, konsumer_leads: bool, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let covered = self.covered().await;
            let leaders = self.konsumer_leaders().await;
            let generations: Vec<_> = self
                .snapshot()
                .await
                .into_iter()
                .filter_map(|s| s.2)
                .collect();
            let one_generation = generations.windows(2).all(|w| w[0] == w[1]);
            if covered.is_ok() && leaders == usize::from(konsumer_leads) && one_generation {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "group {}: no moment with exact coverage under a {} leader: {covered:?}, konsumer leaders {leaders}, generations {generations:?}",
                    self.name,
                    if konsumer_leads { "konsumer" } else { "librdkafka" }
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_covered(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.covered().await {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => {
                    let logs: Vec<String> = self
                        .ours
                        .iter()
                        .map(|m| format!("--- {} ---\n{}", m.name, m.log.lines().join("\n")))
                        .collect();
                    panic!("group {}: {why}\n{}", self.name, logs.join("\n"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// Starts the group of `strategy`: two members of the leading side first (one of them becomes
/// the leader), then two of the other side.
async fn mixed_group(
    bootstrap: &str,
    create_topic: &dyn Fn(&str),
    strategy: &str,
    konsumer_leads: bool,
) -> Group {
    let lead = if konsumer_leads {
        "konsumer"
    } else {
        "rdkafka"
    };
    let name = format!("mixed-{strategy}-{lead}-led");
    let topic = format!("{name}-topic");
    create_topic(&topic);
    let mut group = Group {
        name: name.clone(),
        topic: topic.clone(),
        ours: Vec::new(),
        peers: Vec::new(),
    };
    let bootstrap = bootstrap.to_owned();
    for round in 0..2 {
        let ours_now = (round == 0) == konsumer_leads;
        for i in 0..2 {
            if ours_now {
                let config = group_config(&name, &topic, strategy);
                let member =
                    Member::start(&format!("konsumer-{i}"), bootstrap.clone(), config).await;
                group.ours.push(member);
            } else {
                let peer =
                    Peer::start(&format!("rdkafka-{i}"), &bootstrap, &name, &topic, strategy);
                group.peers.push(peer);
            }
        }
        if round == 0 {
            group.wait_covered(Duration::from_secs(60)).await;
        }
    }
    group
}

fn stable_for() -> Duration {
    Duration::from_secs(
        std::env::var("KONSUMER_INTEROP_STABLE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    )
}

#[actix::test]
async fn konsumer_and_librdkafka_members_share_groups_with_every_common_strategy() {
    let broker = TansuBroker::start(Storage::Memory);
    let create = |topic: &str| broker.create_topic(topic, PARTITIONS);
    // tansu cannot settle cooperative groups (module doc): their stability is not asserted.
    run_mixed_groups(&broker.bootstrap(), &create, false).await;
}

/// The same mixed groups on the mocked cluster served over TCP, whose coordinator keeps
/// Kafka's join and sync barriers: there, every strategy must settle and stay put,
/// cooperative-sticky included.
#[actix::test]
async fn konsumer_and_librdkafka_settle_on_a_coordinator_with_kafkas_barriers() {
    let mock = MockCluster::new();
    mock.set_versions(consumer_versions());
    let bootstrap = mock.serve_tcp(1).await.expect("mock listens");
    let create = |topic: &str| {
        mock.add_topic(topic, &[1; PARTITIONS as usize]);
    };
    run_mixed_groups(&bootstrap, &create, true).await;
}

async fn run_mixed_groups(bootstrap: &str, create: &dyn Fn(&str), cooperative_settles: bool) {
    let stable_for = stable_for();
    let mut groups = Vec::new();
    // KONSUMER_INTEROP_ONLY=<strategy>[:konsumer|rdkafka] narrows the run when debugging.
    let only = std::env::var("KONSUMER_INTEROP_ONLY").unwrap_or_default();
    for strategy in ["range", "roundrobin", "cooperative-sticky"] {
        for konsumer_leads in [true, false] {
            let lead = if konsumer_leads {
                "konsumer"
            } else {
                "rdkafka"
            };
            if !only.is_empty() && only != strategy && only != format!("{strategy}:{lead}") {
                continue;
            }
            groups.push((
                konsumer_leads,
                mixed_group(bootstrap, create, strategy, konsumer_leads).await,
            ));
        }
    }
    // All four members in, each partition once, while the intended side leads: the members
    // of the other side are then holding what that leader computed. (Checked together, because
    // tansu may move the leadership of a cooperative group between generations.)
    for (konsumer_leads, group) in &groups {
        if group.name.contains("cooperative") && !cooperative_settles {
            // tansu hands the leadership of a churning group around at will.
            group.wait_covered(Duration::from_secs(90)).await;
        } else {
            group
                .wait_covered_led(*konsumer_leads, Duration::from_secs(90))
                .await;
        }
    }
    // Then nothing moves (on tansu, eager strategies only; see the module doc).
    let mut before = Vec::new();
    for (_, group) in &groups {
        let generations: Vec<_> = group.snapshot().await.into_iter().map(|s| s.2).collect();
        let rebalances: Vec<usize> = group
            .peers
            .iter()
            .map(|p| p.rebalances.load(Ordering::SeqCst))
            .collect();
        before.push((generations, rebalances));
    }
    tokio::time::sleep(stable_for).await;
    for ((_, group), (generations, rebalances)) in groups.iter().zip(before) {
        if group.name.contains("cooperative") && !cooperative_settles {
            group.wait_covered(Duration::from_secs(60)).await;
            let now: Vec<_> = group.snapshot().await.into_iter().map(|s| s.2).collect();
            let peers_now: Vec<usize> = group
                .peers
                .iter()
                .map(|p| p.rebalances.load(Ordering::SeqCst))
                .collect();
            eprintln!(
                "group {} over {stable_for:?} (tansu does not settle cooperative groups): konsumer generations {generations:?} -> {now:?}, librdkafka rebalances {rebalances:?} -> {peers_now:?}",
                group.name
            );
            continue;
        }
        group
            .covered()
            .await
            .unwrap_or_else(|why| panic!("group {} after {stable_for:?}: {why}", group.name));
        let now: Vec<_> = group.snapshot().await.into_iter().map(|s| s.2).collect();
        assert_eq!(now, generations, "group {} rebalanced", group.name);
        let peers_now: Vec<usize> = group
            .peers
            .iter()
            .map(|p| p.rebalances.load(Ordering::SeqCst))
            .collect();
        assert_eq!(
            peers_now, rebalances,
            "group {}: librdkafka rebalanced",
            group.name
        );
    }
}
