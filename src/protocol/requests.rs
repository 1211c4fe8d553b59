//! Typed requests: each `kafka-protocol` request struct konsumer sends, tied to its API key and
//! response type, so the shell can offer `send(MetadataRequest) -> MetadataResponse` on top of a
//! connection that carries the untyped [`RequestKind`] / [`ResponseKind`] enums.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::Request;

/// A request konsumer can send, with its response type.
pub trait KafkaRequest: Request + Into<RequestKind> + Send + 'static {
    /// The API this request belongs to.
    const API: ApiKey;
    /// Extracts this request's response from the untyped enum (`None` if it is another API's).
    fn response_from(kind: ResponseKind) -> Option<Self::Response>;
}

macro_rules! kafka_requests {
    ($($api:ident => $request:ident, $response:ident;)*) => {
        $(
            impl KafkaRequest for $request {
                const API: ApiKey = ApiKey::$api;
                fn response_from(kind: ResponseKind) -> Option<$response> {
                    match kind {
                        ResponseKind::$api(response) => Some(response),
                        _ => None,
                    }
                }
            }
        )*
    };
}

kafka_requests! {
    Produce => ProduceRequest, ProduceResponse;
    Fetch => FetchRequest, FetchResponse;
    ListOffsets => ListOffsetsRequest, ListOffsetsResponse;
    Metadata => MetadataRequest, MetadataResponse;
    OffsetCommit => OffsetCommitRequest, OffsetCommitResponse;
    OffsetFetch => OffsetFetchRequest, OffsetFetchResponse;
    FindCoordinator => FindCoordinatorRequest, FindCoordinatorResponse;
    JoinGroup => JoinGroupRequest, JoinGroupResponse;
    Heartbeat => HeartbeatRequest, HeartbeatResponse;
    LeaveGroup => LeaveGroupRequest, LeaveGroupResponse;
    SyncGroup => SyncGroupRequest, SyncGroupResponse;
    DescribeGroups => DescribeGroupsRequest, DescribeGroupsResponse;
    ListGroups => ListGroupsRequest, ListGroupsResponse;
    SaslHandshake => SaslHandshakeRequest, SaslHandshakeResponse;
    SaslAuthenticate => SaslAuthenticateRequest, SaslAuthenticateResponse;
    ApiVersions => ApiVersionsRequest, ApiVersionsResponse;
    CreateTopics => CreateTopicsRequest, CreateTopicsResponse;
    DeleteTopics => DeleteTopicsRequest, DeleteTopicsResponse;
    CreatePartitions => CreatePartitionsRequest, CreatePartitionsResponse;
    DeleteGroups => DeleteGroupsRequest, DeleteGroupsResponse;
    DeleteRecords => DeleteRecordsRequest, DeleteRecordsResponse;
    InitProducerId => InitProducerIdRequest, InitProducerIdResponse;
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse;
    DescribeConfigs => DescribeConfigsRequest, DescribeConfigsResponse;
    DescribeCluster => DescribeClusterRequest, DescribeClusterResponse;
}

/// Moves a request into the shape its chosen `version` has, for the APIs whose fields were
/// restructured between versions. Callers build these requests in the old shape (the one
/// every broker version reads: `key`, `member_id`) without knowing which version the
/// connection will negotiate; the connection calls this once the version is chosen.
/// - FindCoordinator v4+ (KIP-699) carries a list of keys instead of one key.
/// - LeaveGroup v3+ (KIP-345) carries a list of members instead of one member id.
pub fn fit_to_version(request: &mut RequestKind, version: i16) {
    match request {
        RequestKind::FindCoordinator(r) if version >= 4 && r.coordinator_keys.is_empty() => {
            r.coordinator_keys = vec![std::mem::take(&mut r.key)];
        }
        RequestKind::LeaveGroup(r) if version >= 3 && r.members.is_empty() => {
            let member = leave_group_request::MemberIdentity::default()
                .with_member_id(std::mem::take(&mut r.member_id));
            r.members = vec![member];
        }
        RequestKind::LeaveGroup(r) if version < 3 && r.member_id.is_empty() => {
            // Built in the new shape for a static member: old versions cannot say who leaves
            // by instance id; the member id is the best they can do.
            if let Some(member) = r.members.pop() {
                r.member_id = member.member_id;
            }
            r.members.clear();
        }
        // Fields newer versions added, set by callers that do not know the version: left at
        // their defaults where the version lacks them (what the Java client does).
        RequestKind::OffsetCommit(r) => {
            if !(2..=4).contains(&version) {
                r.retention_time_ms = -1;
            }
            if version < 7 {
                r.group_instance_id = None;
            }
            if version < 6 {
                for p in r.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                    p.committed_leader_epoch = -1;
                }
            }
        }
        RequestKind::SyncGroup(r) => {
            if version < 5 {
                r.protocol_type = None;
                r.protocol_name = None;
            }
            if version < 3 {
                r.group_instance_id = None;
            }
        }
        RequestKind::Heartbeat(r) if version < 3 => r.group_instance_id = None,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_matches_kafka_protocol_key() {
        assert_eq!(
            MetadataRequest::API as i16,
            <MetadataRequest as Request>::KEY
        );
        assert_eq!(FetchRequest::API as i16, <FetchRequest as Request>::KEY);
        assert_eq!(
            SyncGroupRequest::API as i16,
            <SyncGroupRequest as Request>::KEY
        );
    }

    #[test]
    fn fit_to_version_moves_fields_into_the_new_shapes() {
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let find = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
        for version in 0..=6 {
            let mut kind = RequestKind::FindCoordinator(find.clone());
            fit_to_version(&mut kind, version);
            let RequestKind::FindCoordinator(r) = &kind else {
                unreachable!()
            };
            // Encodes at that version: no field the version lacks is set.
            r.encode(&mut bytes::BytesMut::new(), version).unwrap();
            if version >= 4 {
                assert_eq!(r.coordinator_keys, [StrBytes::from_static_str("g")]);
            } else {
                assert_eq!(r.key.as_str(), "g");
            }
        }
        let leave = LeaveGroupRequest::default().with_member_id(StrBytes::from_static_str("m-1"));
        for version in 0..=5 {
            let mut kind = RequestKind::LeaveGroup(leave.clone());
            fit_to_version(&mut kind, version);
            let RequestKind::LeaveGroup(r) = &kind else {
                unreachable!()
            };
            r.encode(&mut bytes::BytesMut::new(), version).unwrap();
            let id = if version >= 3 {
                r.members[0].member_id.clone()
            } else {
                r.member_id.clone()
            };
            assert_eq!(id.as_str(), "m-1", "v{version}");
        }
    }

    #[test]
    fn response_from_rejects_other_apis() {
        let metadata = ResponseKind::Metadata(MetadataResponse::default());
        assert!(MetadataRequest::response_from(metadata.clone()).is_some());
        assert!(FetchRequest::response_from(metadata).is_none());
    }
}
