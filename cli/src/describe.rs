//! `konsumer group describe G`: the group's state, protocol and members (with the partitions
//! each member was assigned), and per partition the committed offset, the log end offset and
//! the lag between them.
//!
//! - FindCoordinator (any broker) names the group's coordinator.
//! - DescribeGroups (coordinator): state, protocol, members; each member's assignment bytes are
//!   decoded with the consumer protocol ([`decode_assignment`]).
//! - OffsetFetch (coordinator): every committed offset of the group, whatever the topic. v8+
//!   asks in the batched-groups shape, v2..v7 with a null topic list (both mean "all topics");
//!   a v1-only broker is asked for the assigned partitions. The version is chosen from the
//!   coordinator's ApiVersions answer, because the two shapes are different fields.
//! - ListOffsets (latest, timestamp -1, read_uncommitted) to each partition's leader: the log
//!   end offset (high-water mark).
//!
//! The partitions shown are the union of the assigned ones and the committed ones, sorted by
//! topic and partition. Lag = end - committed; `-` where either is unknown (nothing committed,
//! or a topic that no longer exists).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use actix::Addr;
use clap::Args;
use futures_util::future::join_all;
use konsumer_actors::cluster::ClusterExt;
use konsumer_actors::core::group::{decode_assignment, TopicPartitions};
use konsumer_actors::core::kafka_protocol::messages::describe_groups_response::DescribedGroup;
use konsumer_actors::core::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use konsumer_actors::core::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use konsumer_actors::core::kafka_protocol::messages::{
    ApiVersionsRequest, BrokerId, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListOffsetsRequest, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use konsumer_actors::core::kafka_protocol::protocol::StrBytes;
use konsumer_actors::core::protocol::{ApiKey, ApiVersionTable};
use konsumer_actors::messages::{Close, GetMetadata, Route};
use konsumer_actors::{Call, Cluster, Context, Error, KafkaCode, Purpose, Target};
use slog::{debug, Logger};

use crate::error::CliError;
use crate::ConnectArgs;

/// Highest OffsetFetch version konsumer-cli speaks: v10 names topics by id.
const OFFSET_FETCH_MAX_VERSION: i16 = 9;
/// Attempts for a request that fails with a retriable error (coordinator loading or moving,
/// a leader election), with a doubling backoff from [`RETRY_BACKOFF`].
const ATTEMPTS: u32 = 6;
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The group id.
    pub group: String,

    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(args: DescribeArgs, log: Logger) -> Result<(), CliError> {
    let cluster = args.connect.cluster(&log).await?;
    let report = describe(&cluster, &args.group, &log).await;
    cluster.do_send(Close);
    print!("{}", report?.render());
    Ok(())
}

/// Everything the report shows, gathered from the brokers.
async fn describe(cluster: &Addr<Cluster>, group: &str, log: &Logger) -> Result<Report, CliError> {
    let (coordinator, described, committed) = retrying(|| async {
        let coordinator = find_coordinator(cluster, group).await?;
        debug!(log, "group coordinator"; "group" => group, "node" => coordinator);
        let described = describe_group(cluster, coordinator, group).await?;
        let assigned = assigned_partitions(&described);
        let committed = fetch_committed(cluster, coordinator, group, &assigned).await?;
        Ok((coordinator, described, committed))
    })
    .await
    .map_err(CliError::kafka(format!("cannot describe group {group:?}")))?;

    let absent = described.error_code == KafkaCode::GroupIdNotFound.code()
        || (described.group_state.as_str() == "Dead" && described.members.is_empty());
    if absent && committed.is_empty() {
        return Err(CliError::GroupNotFound {
            group: group.to_owned(),
        });
    }

    let mut partitions: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    for (topic, ps) in assigned_partitions(&described) {
        partitions.extend(ps.into_iter().map(|p| (topic.clone(), p)));
    }
    let ends = join_all(partitions.iter().map(|(topic, partition)| async move {
        let end = end_offset(cluster, topic, *partition)
            .await
            .map_err(CliError::kafka(format!(
                "cannot read the end offset of {topic}/{partition}"
            )))?;
        Ok::<_, CliError>(((topic.clone(), *partition), end))
    }))
    .await
    .into_iter()
    .collect::<Result<BTreeMap<_, _>, _>>()?;

    let coordinator_label = match cluster.send(GetMetadata { refresh: false }).await {
        Ok(Ok(metadata)) => match metadata.brokers.get(&coordinator) {
            Some(broker) => format!("{coordinator} ({})", broker.address()),
            None => coordinator.to_string(),
        },
        _ => coordinator.to_string(),
    };
    Ok(Report::build(
        group,
        coordinator_label,
        &described,
        absent,
        &committed,
        &ends,
    ))
}

/// Runs `attempt` again after a backoff while it fails with an error that may pass: the
/// coordinator loading or moving, a leader election, a connection closed under the request.
/// A timeout is not retried: it has used up the time the user allowed.
async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut delay = RETRY_BACKOFF;
    for _ in 1..ATTEMPTS {
        match attempt().await {
            Err(error) if error.is_retriable() && !matches!(error, Error::Timeout { .. }) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            done => return done,
        }
    }
    attempt().await
}

fn group_context(group: &str, api: ApiKey) -> Context {
    Context::default().with_api(api).with_group(group)
}

async fn route<R: konsumer_actors::core::protocol::KafkaRequest>(
    cluster: &Addr<Cluster>,
    node: i32,
    call: Call,
) -> Result<R::Response, Error> {
    let route = Route {
        target: Target::Broker(node),
        purpose: Purpose::Group,
        call,
    };
    cluster
        .send(route)
        .await
        .map_err(|_| Error::Shutdown("cluster".into()))??
        .into_typed::<R>(&format!("node {node}"))
}

/// The node id of the group's coordinator, asked of any broker.
async fn find_coordinator(cluster: &Addr<Cluster>, group: &str) -> Result<i32, Error> {
    // Built in the v0..v3 shape; the connection moves the key into `coordinator_keys` for v4+.
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_owned()))
        .with_key_type(0);
    let response = cluster
        .request(Target::Any, Purpose::General, request)
        .await?;
    let context = || group_context(group, ApiKey::FindCoordinator);
    let (code, node) = match response.coordinators.first() {
        Some(c) => (c.error_code, c.node_id.0),
        None => (response.error_code, response.node_id.0),
    };
    Error::check(code, context)?;
    if node < 0 {
        return Err(Error::Broker {
            code: KafkaCode::CoordinatorNotAvailable,
            context: context(),
        });
    }
    Ok(node)
}

/// The coordinator's description of the group. An unknown group is not an error here
/// (GROUP_ID_NOT_FOUND, or state `Dead` from older versions): it may still have offsets.
async fn describe_group(
    cluster: &Addr<Cluster>,
    coordinator: i32,
    group: &str,
) -> Result<DescribedGroup, Error> {
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
    let response = route::<DescribeGroupsRequest>(cluster, coordinator, Call::new(request)).await?;
    let described = response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
        .ok_or_else(|| Error::Protocol {
            broker: format!("node {coordinator}"),
            detail: format!("DescribeGroups answer does not mention group {group:?}"),
        })?;
    if described.error_code != KafkaCode::GroupIdNotFound.code() {
        Error::check(described.error_code, || {
            group_context(group, ApiKey::DescribeGroups)
        })?;
    }
    Ok(described)
}

/// The partitions the members were assigned, as far as their assignments can be read.
fn assigned_partitions(described: &DescribedGroup) -> TopicPartitions {
    let mut assigned = TopicPartitions::new();
    for member in &described.members {
        if let Ok(assignment) = member_assignment(described, &member.member_assignment) {
            for (topic, partitions) in assignment {
                assigned.entry(topic).or_default().extend(partitions);
            }
        }
    }
    for partitions in assigned.values_mut() {
        partitions.sort_unstable();
        partitions.dedup();
    }
    assigned
}

/// A member's assignment, for groups of the consumer protocol. Empty bytes: none (yet).
fn member_assignment(
    described: &DescribedGroup,
    bytes: &bytes::Bytes,
) -> Result<TopicPartitions, String> {
    let protocol_type = described.protocol_type.as_str();
    if !(protocol_type.is_empty() || protocol_type == "consumer") || bytes.is_empty() {
        return Ok(TopicPartitions::new());
    }
    decode_assignment(bytes).map(|a| a.partitions)
}

/// The group's committed offsets (only partitions with one).
async fn fetch_committed(
    cluster: &Addr<Cluster>,
    coordinator: i32,
    group: &str,
    assigned: &TopicPartitions,
) -> Result<BTreeMap<(String, i32), i64>, Error> {
    let broker = format!("node {coordinator}");
    let versions = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("konsumer-cli"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let versions = route::<ApiVersionsRequest>(cluster, coordinator, Call::new(versions)).await?;
    Error::check(versions.error_code, || {
        Context::broker(broker.clone()).with_api(ApiKey::ApiVersions)
    })?;
    let version = ApiVersionTable::from_response(&versions).select(
        ApiKey::OffsetFetch,
        Some(OFFSET_FETCH_MAX_VERSION),
        &broker,
    )?;
    let group_id = GroupId(StrBytes::from_string(group.to_owned()));
    let request = if version >= 8 {
        let wanted = OffsetFetchRequestGroup::default()
            .with_group_id(group_id)
            .with_topics(None);
        OffsetFetchRequest::default().with_groups(vec![wanted])
    } else if version >= 2 {
        OffsetFetchRequest::default()
            .with_group_id(group_id)
            .with_topics(None)
    } else {
        let topics = assigned
            .iter()
            .map(|(topic, partitions)| {
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partition_indexes(partitions.clone())
            })
            .collect();
        OffsetFetchRequest::default()
            .with_group_id(group_id)
            .with_topics(Some(topics))
    };
    let call = Call::new(request).with_max_version(version);
    let response = route::<OffsetFetchRequest>(cluster, coordinator, call).await?;
    committed_offsets(group, version, response)
}

/// The committed offsets in an OffsetFetch answer of `version`.
fn committed_offsets(
    group: &str,
    version: i16,
    response: OffsetFetchResponse,
) -> Result<BTreeMap<(String, i32), i64>, Error> {
    let context = |topic: Option<(&str, i32)>| {
        let context = group_context(group, ApiKey::OffsetFetch);
        match topic {
            Some((topic, partition)) => context.with_topic(topic).with_partition(partition),
            None => context,
        }
    };
    // A group nobody has heard of has no offsets.
    let group_error = |code: i16| {
        if code == KafkaCode::GroupIdNotFound.code() {
            Ok(())
        } else {
            Error::check(code, || context(None))
        }
    };
    let mut offsets = BTreeMap::new();
    let mut add = |topic: &str, partition: i32, offset: i64, code: i16| {
        Error::check(code, || context(Some((topic, partition))))?;
        // -1: nothing committed.
        if offset >= 0 {
            offsets.insert((topic.to_owned(), partition), offset);
        }
        Ok::<_, Error>(())
    };
    if version >= 8 {
        for answered in &response.groups {
            if answered.group_id.0.as_str() != group {
                continue;
            }
            group_error(answered.error_code)?;
            for topic in &answered.topics {
                for p in &topic.partitions {
                    add(
                        topic.name.0.as_str(),
                        p.partition_index,
                        p.committed_offset,
                        p.error_code,
                    )?;
                }
            }
        }
    } else {
        group_error(response.error_code)?;
        for topic in &response.topics {
            for p in &topic.partitions {
                add(
                    topic.name.0.as_str(),
                    p.partition_index,
                    p.committed_offset,
                    p.error_code,
                )?;
            }
        }
    }
    Ok(offsets)
}

/// The log end offset (high-water mark) of a partition, from its leader; `None` when the
/// topic or partition does not exist (any more).
async fn end_offset(
    cluster: &Addr<Cluster>,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, Error> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(0)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(-1)])]);
    let context = || {
        Context::default()
            .with_api(ApiKey::ListOffsets)
            .with_topic(topic)
            .with_partition(partition)
    };
    let answer = retrying(|| async {
        let target = Target::Leader {
            topic: topic.to_owned(),
            partition,
        };
        let response = cluster
            .request(target, Purpose::General, request.clone())
            .await?;
        let answered = response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| Error::Protocol {
                broker: format!("leader of {topic}/{partition}"),
                detail: "ListOffsets answer does not mention the partition".into(),
            })?;
        Error::check(answered.error_code, context)?;
        Ok(answered.offset)
    })
    .await;
    match answer {
        Ok(offset) => Ok((offset >= 0).then_some(offset)),
        Err(Error::UnknownTopic { .. }) => Ok(None),
        Err(error) if error.kafka_code() == Some(KafkaCode::UnknownTopicOrPartition) => Ok(None),
        Err(error) => Err(error),
    }
}

/// What `group describe` prints, built from the brokers' answers without further I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    group: String,
    coordinator: String,
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberRow>,
    partitions: Vec<PartitionRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MemberRow {
    member_id: String,
    client_id: String,
    host: String,
    instance_id: String,
    assignment: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionRow {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    end: Option<i64>,
    member_id: Option<String>,
}

impl PartitionRow {
    fn lag(&self) -> Option<i64> {
        Some(self.end? - self.committed?)
    }
}

/// `-` for an empty or missing field.
fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_owned()
    }
}

fn number(value: Option<i64>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

impl Report {
    fn build(
        group: &str,
        coordinator: String,
        described: &DescribedGroup,
        absent: bool,
        committed: &BTreeMap<(String, i32), i64>,
        ends: &BTreeMap<(String, i32), Option<i64>>,
    ) -> Report {
        let mut owners: BTreeMap<(String, i32), String> = BTreeMap::new();
        let mut members: Vec<MemberRow> = described
            .members
            .iter()
            .map(|member| {
                let member_id = member.member_id.to_string();
                let assignment = match member_assignment(described, &member.member_assignment) {
                    Ok(assignment) if assignment.is_empty() => "-".to_owned(),
                    Ok(assignment) => {
                        for (topic, partitions) in &assignment {
                            for p in partitions {
                                owners.insert((topic.clone(), *p), member_id.clone());
                            }
                        }
                        assignment
                            .iter()
                            .map(|(topic, partitions)| {
                                let mut partitions = partitions.clone();
                                partitions.sort_unstable();
                                let list: Vec<String> =
                                    partitions.iter().map(i32::to_string).collect();
                                format!("{topic}:{}", list.join(","))
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    }
                    Err(error) => format!("(undecodable: {error})"),
                };
                MemberRow {
                    member_id,
                    client_id: or_dash(member.client_id.as_str()),
                    host: or_dash(member.client_host.as_str()),
                    instance_id: or_dash(member.group_instance_id.as_deref().unwrap_or("")),
                    assignment,
                }
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));

        let keys: BTreeSet<&(String, i32)> = committed.keys().chain(ends.keys()).collect();
        let partitions = keys
            .into_iter()
            .map(|key| PartitionRow {
                topic: key.0.clone(),
                partition: key.1,
                committed: committed.get(key).copied(),
                end: ends.get(key).copied().flatten(),
                member_id: owners.get(key).cloned(),
            })
            .collect();
        Report {
            group: group.to_owned(),
            coordinator,
            state: if absent {
                "-".into()
            } else {
                or_dash(described.group_state.as_str())
            },
            protocol_type: or_dash(described.protocol_type.as_str()),
            protocol: or_dash(described.protocol_data.as_str()),
            members,
            partitions,
        }
    }

    fn render(&self) -> String {
        let total_lag: i64 = self.partitions.iter().filter_map(PartitionRow::lag).sum();
        let mut out = String::new();
        let header = [
            ("GROUP", self.group.clone()),
            ("COORDINATOR", self.coordinator.clone()),
            ("STATE", self.state.clone()),
            ("PROTOCOL-TYPE", self.protocol_type.clone()),
            ("PROTOCOL", self.protocol.clone()),
            ("MEMBERS", self.members.len().to_string()),
            ("TOTAL-LAG", total_lag.to_string()),
        ];
        for (name, value) in header {
            let _ = writeln!(out, "{name:<14} {value}");
        }
        out.push('\n');
        let members = self.members.iter().map(|m| {
            vec![
                m.member_id.clone(),
                m.client_id.clone(),
                m.host.clone(),
                m.instance_id.clone(),
                m.assignment.clone(),
            ]
        });
        out += &table(
            &[
                "MEMBER-ID",
                "CLIENT-ID",
                "HOST",
                "INSTANCE-ID",
                "ASSIGNMENT",
            ],
            members,
        );
        out.push('\n');
        let partitions = self.partitions.iter().map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                number(p.committed),
                number(p.end),
                number(p.lag()),
                p.member_id.clone().unwrap_or_else(|| "-".into()),
            ]
        });
        out += &table(
            &["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER-ID"],
            partitions,
        );
        out
    }
}

/// Left-aligned columns two spaces apart; no trailing spaces.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    lines.extend(rows);
    let mut widths = vec![0; header.len()];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (i, (cell, width)) in line.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let _ = write!(text, "{cell:<width$}");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsumer_actors::core::group::{encode_assignment, Assignment};
    use konsumer_actors::core::kafka_protocol::messages::describe_groups_response::DescribedGroupMember;
    use konsumer_actors::core::kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    };

    fn s(text: &str) -> StrBytes {
        StrBytes::from_string(text.to_owned())
    }

    fn member(
        id: &str,
        client: &str,
        instance: Option<&str>,
        partitions: &[(&str, &[i32])],
    ) -> DescribedGroupMember {
        let assignment = Assignment {
            partitions: partitions
                .iter()
                .map(|(t, ps)| ((*t).to_owned(), ps.to_vec()))
                .collect(),
            user_data: None,
        };
        DescribedGroupMember::default()
            .with_member_id(s(id))
            .with_client_id(s(client))
            .with_client_host(s("/10.0.0.7"))
            .with_group_instance_id(instance.map(s))
            .with_member_assignment(encode_assignment(&assignment, 0).expect("encodable"))
    }

    fn stable_group() -> DescribedGroup {
        DescribedGroup::default()
            .with_group_id(GroupId(s("g1")))
            .with_group_state(s("Stable"))
            .with_protocol_type(s("consumer"))
            .with_protocol_data(s("range"))
            .with_members(vec![
                member("m-b", "client-b", None, &[("orders", &[2])]),
                member(
                    "m-a",
                    "client-a",
                    Some("static-a"),
                    &[("orders", &[1, 0]), ("audit", &[0])],
                ),
            ])
    }

    #[test]
    fn assignments_are_decoded_and_partitions_get_their_owner_and_lag() {
        let described = stable_group();
        assert_eq!(
            assigned_partitions(&described),
            TopicPartitions::from([
                ("audit".to_owned(), vec![0]),
                ("orders".to_owned(), vec![0, 1, 2]),
            ])
        );
        let committed = BTreeMap::from([
            (("orders".to_owned(), 0), 2),
            (("orders".to_owned(), 1), 7),
            (("old".to_owned(), 0), 40),
        ]);
        let ends = BTreeMap::from([
            (("audit".to_owned(), 0), Some(0)),
            (("orders".to_owned(), 0), Some(5)),
            (("orders".to_owned(), 1), Some(7)),
            (("orders".to_owned(), 2), Some(3)),
            (("old".to_owned(), 0), None),
        ]);
        let report = Report::build(
            "g1",
            "1 (h:9092)".into(),
            &described,
            false,
            &committed,
            &ends,
        );
        assert_eq!(
            report.render(),
            "\
GROUP          g1
COORDINATOR    1 (h:9092)
STATE          Stable
PROTOCOL-TYPE  consumer
PROTOCOL       range
MEMBERS        2
TOTAL-LAG      3

MEMBER-ID  CLIENT-ID  HOST       INSTANCE-ID  ASSIGNMENT
m-a        client-a   /10.0.0.7  static-a     audit:0 orders:0,1
m-b        client-b   /10.0.0.7  -            orders:2

TOPIC   PARTITION  COMMITTED  END  LAG  MEMBER-ID
audit   0          -          0    -    m-a
old     0          40         -    -    -
orders  0          2          5    3    m-a
orders  1          7          7    0    m-a
orders  2          -          3    -    m-b
"
        );
    }

    #[test]
    fn undecodable_or_foreign_assignments_do_not_fail_the_report() {
        let described = DescribedGroup::default()
            .with_group_state(s("Stable"))
            .with_protocol_type(s("consumer"))
            .with_members(vec![DescribedGroupMember::default()
                .with_member_id(s("m"))
                .with_member_assignment(bytes::Bytes::from_static(&[
                    0, 0, 0, 0, 0, 9,
                ]))]);
        assert!(assigned_partitions(&described).is_empty());
        let report = Report::build(
            "g",
            "0".into(),
            &described,
            false,
            &BTreeMap::new(),
            &BTreeMap::new(),
        );
        assert!(
            report.members[0].assignment.starts_with("(undecodable"),
            "{report:?}"
        );

        // Kafka Connect's protocol: not ours to decode.
        let connect = stable_group().with_protocol_type(s("connect"));
        assert!(assigned_partitions(&connect).is_empty());
    }

    #[test]
    fn offsets_come_from_either_response_shape_and_uncommitted_ones_are_left_out() {
        let old =
            OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(12),
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(1)
                        .with_committed_offset(-1),
                ])]);
        let expected = BTreeMap::from([(("t".to_owned(), 0), 12)]);
        assert_eq!(committed_offsets("g", 7, old).unwrap(), expected);

        let batched =
            OffsetFetchResponse::default().with_groups(vec![OffsetFetchResponseGroup::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(vec![OffsetFetchResponseTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(0)
                            .with_committed_offset(12),
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(1)
                            .with_committed_offset(-1),
                    ])])]);
        assert_eq!(committed_offsets("g", 8, batched).unwrap(), expected);

        let unknown =
            OffsetFetchResponse::default().with_groups(vec![OffsetFetchResponseGroup::default()
                .with_group_id(GroupId(s("g")))
                .with_error_code(KafkaCode::GroupIdNotFound.code())]);
        assert!(committed_offsets("g", 9, unknown).unwrap().is_empty());

        let refused = OffsetFetchResponse::default()
            .with_error_code(KafkaCode::GroupAuthorizationFailed.code());
        let error = committed_offsets("g", 7, refused).unwrap_err();
        assert_eq!(
            error.kafka_code(),
            Some(KafkaCode::GroupAuthorizationFailed)
        );
    }
}
