//! Cluster: bootstrap, the metadata cache, and routing requests to the right broker.
//!
//! The metadata is an immutable snapshot (`Arc<ClusterMetadata>`) replaced whole on every
//! refresh, with a generation number, so readers never see half an update. It is refreshed on
//! an interval and at once when a routed response says it is stale (NotLeader,
//! UnknownTopicOrPartition, ...) or a broker cannot be reached. Only one refresh runs at a time;
//! requests for another join it.
//!
//! Connections come from a [`Connector`]: real supervised [`BrokerConnection`]s, or a mocked
//! broker in tests. There is one connection per broker and [`Purpose`], so a long-poll Fetch
//! never delays group traffic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use konsumer::error::is_stale_metadata;
use konsumer::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use konsumer::kafka_protocol::messages::{
    CreateTopicsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::protocol::stale::stale_partitions;
use konsumer::{ClientConfig, Context as ErrorContext, Error, KafkaCode};
use slog::{debug, info, warn, Logger};
use tokio::sync::oneshot;

use crate::broker::BrokerConnection;
use crate::messages::{
    Call, Close, ConnectionFor, CreateTopics, GetMetadata, Purpose, Reply, Route, Target,
};

/// Makes connections to brokers. The real one starts supervised [`BrokerConnection`]s; the test
/// kit's hands out mocked brokers.
pub trait Connector: Send + Sync + 'static {
    fn connect(&self, address: &str, purpose: Purpose) -> Recipient<Call>;
}

/// Starts a supervised [`BrokerConnection`] on the current arbiter for each connection.
pub struct TcpConnector {
    config: Arc<ClientConfig>,
    log: Logger,
}

impl TcpConnector {
    pub fn new(config: Arc<ClientConfig>, log: Logger) -> Self {
        TcpConnector { config, log }
    }
}

impl Connector for TcpConnector {
    fn connect(&self, address: &str, purpose: Purpose) -> Recipient<Call> {
        let log = self.log.new(slog::o!("purpose" => format!("{purpose:?}")));
        BrokerConnection::start_supervised(address, self.config.clone(), &log).recipient()
    }
}

/// One broker as the metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition's placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// `None` while the partition has no leader (an election is under way).
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub in_sync_replicas: Vec<i32>,
    pub error: Option<KafkaCode>,
}

/// One topic: its partitions ordered by partition number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub is_internal: bool,
    pub error: Option<KafkaCode>,
    pub partitions: Vec<PartitionInfo>,
}

/// A snapshot of the cluster: brokers, controller, topics, partitions and leaders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Increases with every refresh.
    pub generation: u64,
    pub cluster_id: Option<String>,
    pub controller_id: Option<i32>,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
}

impl ClusterMetadata {
    fn from_response(response: MetadataResponse, generation: u64) -> Self {
        let brokers = response
            .brokers
            .into_iter()
            .map(|b| {
                let info = BrokerInfo {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                };
                (info.node_id, info)
            })
            .collect();
        let topics = response
            .topics
            .into_iter()
            .filter_map(|t| {
                let name = t.name?.0.to_string();
                let mut partitions: Vec<PartitionInfo> = t
                    .partitions
                    .into_iter()
                    .map(|p| PartitionInfo {
                        partition: p.partition_index,
                        leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.into_iter().map(|n| n.0).collect(),
                        in_sync_replicas: p.isr_nodes.into_iter().map(|n| n.0).collect(),
                        error: KafkaCode::try_from_code(p.error_code),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                let info = TopicInfo {
                    name: name.clone(),
                    is_internal: t.is_internal,
                    error: KafkaCode::try_from_code(t.error_code),
                    partitions,
                };
                Some((name, info))
            })
            .collect();
        ClusterMetadata {
            generation,
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller_id: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
            brokers,
            topics,
        }
    }

    /// The leader of a partition, or why there is none.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<i32, Error> {
        let info = self.topics.get(topic).ok_or_else(|| Error::UnknownTopic {
            topic: topic.to_owned(),
        })?;
        info.partitions
            .iter()
            .find(|p| p.partition == partition)
            .and_then(|p| p.leader)
            .ok_or_else(|| Error::NoLeader {
                topic: topic.to_owned(),
                partition,
            })
    }

    /// The number of partitions of a topic, if the metadata knows it.
    pub fn partition_count(&self, topic: &str) -> Option<usize> {
        self.topics.get(topic).map(|t| t.partitions.len())
    }
}

type MetadataWaiter = oneshot::Sender<Result<Arc<ClusterMetadata>, Error>>;

/// The cluster view and request router. Start it with [`Cluster::connect`].
pub struct Cluster {
    config: Arc<ClientConfig>,
    log: Logger,
    connector: Arc<dyn Connector>,
    metadata: Arc<ClusterMetadata>,
    connections: HashMap<(String, Purpose), Recipient<Call>>,
    refreshing: bool,
    refresh_waiters: Vec<MetadataWaiter>,
    closed: bool,
}

impl Cluster {
    /// Bootstraps from `config.bootstrap` over TCP: tries each address in turn until one
    /// answers Metadata, all within `config.bootstrap_timeout`.
    pub async fn connect(config: ClientConfig, log: Logger) -> Result<Addr<Cluster>, Error> {
        config.validate()?;
        let config = Arc::new(config);
        let connector = Arc::new(TcpConnector::new(config.clone(), log.clone()));
        Self::connect_with(config, log, connector).await
    }

    /// As [`connect`](Self::connect), with connections made by `connector` (e.g. a mock).
    pub async fn connect_with(
        config: Arc<ClientConfig>,
        log: Logger,
        connector: Arc<dyn Connector>,
    ) -> Result<Addr<Cluster>, Error> {
        config.validate()?;
        let cluster = Cluster {
            config,
            log,
            connector,
            metadata: Arc::new(ClusterMetadata::default()),
            connections: HashMap::new(),
            refreshing: false,
            refresh_waiters: Vec::new(),
            closed: false,
        }
        .start();
        match cluster.send(Bootstrap).await {
            Ok(Ok(())) => Ok(cluster),
            Ok(Err(error)) => {
                cluster.do_send(Close);
                Err(error)
            }
            Err(_) => Err(Error::Shutdown("cluster".into())),
        }
    }

    fn connection(&mut self, address: &str, purpose: Purpose) -> Recipient<Call> {
        let connector = &self.connector;
        self.connections
            .entry((address.to_owned(), purpose))
            .or_insert_with(|| connector.connect(address, purpose))
            .clone()
    }

    /// The broker and connection for `target`. When the metadata cannot place the target (no
    /// leader, unknown broker), a refresh starts, so a retry soon after can succeed.
    fn resolve(
        &mut self,
        target: &Target,
        purpose: Purpose,
        ctx: &mut Context<Self>,
    ) -> Result<(i32, Recipient<Call>), Error> {
        let resolved = self.resolve_now(target, purpose);
        if matches!(
            resolved,
            Err(Error::NoLeader { .. } | Error::UnknownBroker { .. })
        ) {
            self.refresh(None, ctx);
        }
        resolved
    }

    fn resolve_now(
        &mut self,
        target: &Target,
        purpose: Purpose,
    ) -> Result<(i32, Recipient<Call>), Error> {
        let node = match target {
            Target::Broker(node) => *node,
            Target::Leader { topic, partition } => self.metadata.leader(topic, *partition)?,
            Target::Controller => match self.metadata.controller_id {
                Some(node) => node,
                None => self.any_broker()?,
            },
            Target::Any => self.any_broker()?,
        };
        let address = self
            .metadata
            .brokers
            .get(&node)
            .ok_or(Error::UnknownBroker { node_id: node })?
            .address();
        Ok((node, self.connection(&address, purpose)))
    }

    /// A broker chosen at random, spreading general traffic across the cluster.
    fn any_broker(&self) -> Result<i32, Error> {
        let brokers = &self.metadata.brokers;
        if brokers.is_empty() {
            return Err(Error::UnknownBroker { node_id: -1 });
        }
        let pick = fastrand::usize(..brokers.len());
        brokers
            .keys()
            .nth(pick)
            .copied()
            .ok_or(Error::UnknownBroker { node_id: -1 })
    }

    /// Starts a metadata refresh unless one is running; `waiter` (if any) gets its result.
    fn refresh(&mut self, waiter: Option<MetadataWaiter>, ctx: &mut Context<Self>) {
        if self.closed {
            if let Some(waiter) = waiter {
                let _ = waiter.send(Err(Error::Shutdown("cluster".into())));
            }
            return;
        }
        self.refresh_waiters.extend(waiter);
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        // Known brokers in random order; the bootstrap list if none is known.
        let mut addresses: Vec<String> = self
            .metadata
            .brokers
            .values()
            .map(BrokerInfo::address)
            .collect();
        fastrand::shuffle(&mut addresses);
        if addresses.is_empty() {
            addresses = self.config.bootstrap.clone();
        }
        let candidates: Vec<(String, Recipient<Call>)> = addresses
            .into_iter()
            .map(|a| {
                let c = self.connection(&a, Purpose::General);
                (a, c)
            })
            .collect();
        let per_try = self.config.request_timeout;
        let fetching = async move {
            let mut last = None;
            for (address, connection) in candidates {
                match fetch_metadata(&connection, per_try).await {
                    Ok(response) => return Ok(response),
                    Err(error) => last = Some((address, error)),
                }
            }
            Err(last)
        };
        ctx.spawn(fetching.into_actor(self).map(|result, act, _ctx| {
            act.refreshing = false;
            let outcome = match result {
                Ok(response) => Ok(act.apply(response)),
                Err(last) => {
                    let error = match last {
                        Some((address, error)) => {
                            warn!(act.log, "metadata refresh failed on every broker";
                                "last_broker" => address, "error" => %error);
                            error
                        }
                        None => Error::UnknownBroker { node_id: -1 },
                    };
                    Err(error)
                }
            };
            for waiter in act.refresh_waiters.drain(..) {
                let _ = waiter.send(outcome.clone());
            }
        }));
    }

    /// Installs a new snapshot and drops connections to brokers that left the cluster.
    fn apply(&mut self, response: MetadataResponse) -> Arc<ClusterMetadata> {
        let next = ClusterMetadata::from_response(response, self.metadata.generation + 1);
        if next.brokers != self.metadata.brokers {
            info!(self.log, "cluster brokers";
                "brokers" => ?next.brokers.values().map(|b| (b.node_id, b.address())).collect::<Vec<_>>(),
                "controller" => ?next.controller_id);
        }
        debug!(self.log, "metadata refreshed";
            "generation" => next.generation, "topics" => next.topics.len());
        let live: Vec<String> = next.brokers.values().map(BrokerInfo::address).collect();
        self.connections
            .retain(|(address, _), _| live.contains(address));
        self.metadata = Arc::new(next);
        self.metadata.clone()
    }
}

async fn fetch_metadata(
    connection: &Recipient<Call>,
    timeout: Duration,
) -> Result<MetadataResponse, Error> {
    // All topics: a `None` topic list (Metadata v1+).
    let request = Call::new(MetadataRequest::default().with_topics(None)).with_timeout(timeout);
    connection
        .send(request)
        .await
        .map_err(|_| Error::Shutdown("broker connection".into()))??
        .into_typed::<MetadataRequest>("metadata")
}

impl Actor for Cluster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.config.metadata_refresh_interval, |act, ctx| {
            act.refresh(None, ctx)
        });
    }
}

/// First contact: each bootstrap address in turn, sharing `bootstrap_timeout` among those
/// still to try, so one dead address cannot use up the whole budget.
struct Bootstrap;

impl Message for Bootstrap {
    type Result = Result<(), Error>;
}

impl Handler<Bootstrap> for Cluster {
    type Result = ResponseActFuture<Self, Result<(), Error>>;

    fn handle(&mut self, _: Bootstrap, _ctx: &mut Context<Self>) -> Self::Result {
        let addresses = self.config.bootstrap.clone();
        let budget = self.config.bootstrap_timeout;
        let connector = self.connector.clone();
        let log = self.log.clone();
        let trying = async move {
            let started = Instant::now();
            let mut last = String::from("no address tried");
            let mut refused = None;
            for (i, address) in addresses.iter().enumerate() {
                let left = budget.saturating_sub(started.elapsed());
                if left.is_zero() {
                    break;
                }
                let share = left / (addresses.len() - i) as u32;
                let connection = connector.connect(address, Purpose::General);
                match fetch_metadata(&connection, share).await {
                    Ok(response) => return Ok((address.clone(), connection, response)),
                    Err(error) => {
                        warn!(log, "bootstrap broker did not answer";
                            "broker" => address, "error" => %error);
                        last = error.to_string();
                        if matches!(
                            error,
                            Error::Authentication { .. }
                                | Error::SaslMechanismUnsupported { .. }
                                | Error::Tls { .. }
                        ) {
                            refused = Some(error);
                        }
                        // Nobody else holds it: the connection stops by itself.
                        drop(connection);
                    }
                }
            }
            // A broker that refused our credentials or TLS answered: say that, typed, rather
            // than "no broker answered".
            if let Some(error) = refused {
                return Err(error);
            }
            Err(Error::Bootstrap {
                tried: addresses,
                after: started.elapsed(),
                last,
            })
        };
        Box::pin(trying.into_actor(self).map(|result, act, _ctx| {
            let (address, connection, response) = result?;
            act.connections
                .insert((address, Purpose::General), connection);
            let metadata = act.apply(response);
            info!(act.log, "bootstrapped";
                "cluster_id" => ?metadata.cluster_id, "brokers" => metadata.brokers.len());
            Ok(())
        }))
    }
}

impl Handler<GetMetadata> for Cluster {
    type Result = ResponseFuture<Result<Arc<ClusterMetadata>, Error>>;

    fn handle(&mut self, msg: GetMetadata, ctx: &mut Context<Self>) -> Self::Result {
        if !msg.refresh {
            let current = self.metadata.clone();
            return Box::pin(async move { Ok(current) });
        }
        let (waiter, answer) = oneshot::channel();
        self.refresh(Some(waiter), ctx);
        Box::pin(async move {
            answer
                .await
                .map_err(|_| Error::Shutdown("cluster".into()))?
        })
    }
}

impl Handler<ConnectionFor> for Cluster {
    type Result = Result<(i32, Recipient<Call>), Error>;

    fn handle(&mut self, msg: ConnectionFor, ctx: &mut Context<Self>) -> Self::Result {
        self.resolve(&msg.target, msg.purpose, ctx)
    }
}

impl Handler<Route> for Cluster {
    type Result = ResponseActFuture<Self, Result<Reply, Error>>;

    fn handle(&mut self, route: Route, ctx: &mut Context<Self>) -> Self::Result {
        let resolved = self.resolve(&route.target, route.purpose, ctx);
        let call = route.call;
        let sending = async move {
            let (node, connection) = resolved?;
            let reply = connection
                .send(call)
                .await
                .map_err(|_| Error::Shutdown(format!("connection to broker {node}")))?;
            reply.map(|r| (node, r))
        };
        Box::pin(
            sending
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok((node, reply)) => {
                        let stale = stale_partitions(&reply.response);
                        if let Some(first) = stale.first() {
                            info!(act.log, "broker says metadata is stale; refreshing";
                        "broker" => node, "topic" => &first.topic,
                        "partition" => ?first.partition, "error" => ?first.code,
                        "partitions" => stale.len());
                            act.refresh(None, ctx);
                        }
                        Ok(reply)
                    }
                    Err(error) => {
                        let stale = error.kafka_code().is_some_and(is_stale_metadata);
                        if stale
                            || matches!(
                                error,
                                Error::Connect { .. }
                                    | Error::Io { .. }
                                    | Error::ConnectionClosed { .. }
                                    | Error::Timeout { .. }
                            )
                        {
                            act.refresh(None, ctx);
                        }
                        Err(error)
                    }
                }),
        )
    }
}

impl Handler<CreateTopics> for Cluster {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: CreateTopics, ctx: &mut Context<Self>) -> Self::Result {
        let me = ctx.address();
        let topics: Vec<CreatableTopic> = msg
            .topics
            .iter()
            .map(|t| {
                CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                    .with_num_partitions(t.partitions)
                    .with_replication_factor(t.replication_factor)
                    .with_configs(
                        t.configs
                            .iter()
                            .map(|(name, value)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(name.clone()))
                                    .with_value(Some(StrBytes::from_string(value.clone())))
                            })
                            .collect(),
                    )
            })
            .collect();
        let request = CreateTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(msg.timeout.as_millis().min(i32::MAX as u128) as i32);
        let wanted: Vec<(String, usize)> = msg
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions.max(0) as usize))
            .collect();
        let timeout = msg.timeout;
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            let route = Route {
                target: Target::Controller,
                purpose: Purpose::General,
                call: Call::new(request).with_timeout(timeout),
            };
            let reply = me
                .send(route)
                .await
                .map_err(|_| Error::Shutdown("cluster".into()))??;
            let response = reply.into_typed::<CreateTopicsRequest>("controller")?;
            for topic in &response.topics {
                Error::check(topic.error_code, || {
                    ErrorContext::default()
                        .with_api(konsumer::protocol::ApiKey::CreateTopics)
                        .with_topic(topic.name.0.to_string())
                })?;
            }
            // The controller has accepted; wait until the metadata shows every partition
            // with a leader, so the caller can use the topics at once.
            loop {
                let metadata = me
                    .send(GetMetadata { refresh: true })
                    .await
                    .map_err(|_| Error::Shutdown("cluster".into()))??;
                let ready = wanted.iter().all(|(name, count)| {
                    metadata.topics.get(name).is_some_and(|t| {
                        t.partitions.len() >= *count
                            && t.partitions.iter().all(|p| p.leader.is_some())
                    })
                });
                if ready {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    let (topic, _) = wanted
                        .iter()
                        .find(|(n, _)| metadata.leader(n, 0).is_err())
                        .or(wanted.first())
                        .cloned()
                        .unwrap_or_default();
                    return Err(Error::NoLeader {
                        topic,
                        partition: 0,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }
}

impl Handler<Close> for Cluster {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        self.closed = true;
        // Dropping our handles lets each connection stop once no one else holds it.
        self.connections.clear();
        for waiter in self.refresh_waiters.drain(..) {
            let _ = waiter.send(Err(Error::Shutdown("cluster".into())));
        }
        ctx.stop();
    }
}

/// Typed helpers over the Cluster's address.
pub trait ClusterExt {
    /// Sends a typed request to `target` and returns the typed response.
    fn request<R: konsumer::protocol::KafkaRequest>(
        &self,
        target: Target,
        purpose: Purpose,
        request: R,
    ) -> impl std::future::Future<Output = Result<R::Response, Error>>;
}

impl ClusterExt for Addr<Cluster> {
    async fn request<R: konsumer::protocol::KafkaRequest>(
        &self,
        target: Target,
        purpose: Purpose,
        request: R,
    ) -> Result<R::Response, Error> {
        let route = Route {
            target,
            purpose,
            call: Call::new(request),
        };
        self.send(route)
            .await
            .map_err(|_| Error::Shutdown("cluster".into()))??
            .into_typed::<R>("cluster")
    }
}
