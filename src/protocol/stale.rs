//! Finding the partition errors in a response that mean the client's metadata is stale, so the
//! cluster view can refresh at once instead of waiting for its interval.

use kafka_protocol::messages::ResponseKind;

use crate::error::{is_stale_metadata, KafkaCode};

/// One partition (or a whole topic, when `partition` is `None`) that a broker refused because
/// the client's view of leaders is out of date.
#[derive(Debug, Clone, PartialEq)]
pub struct StalePartition {
    pub topic: String,
    pub partition: Option<i32>,
    pub code: KafkaCode,
}

/// The stale-metadata errors in a partition-routed response (Produce, Fetch, ListOffsets,
/// OffsetForLeaderEpoch, DeleteRecords). Other responses yield nothing.
pub fn stale_partitions(response: &ResponseKind) -> Vec<StalePartition> {
    let mut out = Vec::new();
    let mut add = |topic: &str, partition: i32, code: i16| {
        if let Some(code) = KafkaCode::try_from_code(code).filter(|c| is_stale_metadata(*c)) {
            out.push(StalePartition {
                topic: topic.to_owned(),
                partition: Some(partition),
                code,
            });
        }
    };
    match response {
        ResponseKind::Produce(r) => {
            for t in &r.responses {
                for p in &t.partition_responses {
                    add(&t.name, p.index, p.error_code);
                }
            }
        }
        ResponseKind::Fetch(r) => {
            for t in &r.responses {
                for p in &t.partitions {
                    add(&t.topic, p.partition_index, p.error_code);
                }
            }
        }
        ResponseKind::ListOffsets(r) => {
            for t in &r.topics {
                for p in &t.partitions {
                    add(&t.name, p.partition_index, p.error_code);
                }
            }
        }
        ResponseKind::OffsetForLeaderEpoch(r) => {
            for t in &r.topics {
                for p in &t.partitions {
                    add(&t.topic, p.partition, p.error_code);
                }
            }
        }
        ResponseKind::DeleteRecords(r) => {
            for t in &r.topics {
                for p in &t.partitions {
                    add(&t.name, p.partition_index, p.error_code);
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::list_offsets_response::*;
    use kafka_protocol::messages::{ListOffsetsResponse, MetadataResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn finds_not_leader_in_list_offsets() {
        let response =
            ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    ListOffsetsPartitionResponse::default().with_partition_index(0),
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(1)
                        .with_error_code(6),
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(2)
                        .with_error_code(1), // OffsetOutOfRange: not a metadata problem
                ])]);
        assert_eq!(
            stale_partitions(&ResponseKind::ListOffsets(response)),
            vec![StalePartition {
                topic: "t".into(),
                partition: Some(1),
                code: KafkaCode::NotLeaderOrFollower
            }]
        );
        assert!(stale_partitions(&ResponseKind::Metadata(MetadataResponse::default())).is_empty());
    }
}
