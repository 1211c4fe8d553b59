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
    fn response_from_rejects_other_apis() {
        let metadata = ResponseKind::Metadata(MetadataResponse::default());
        assert!(MetadataRequest::response_from(metadata.clone()).is_some());
        assert!(FetchRequest::response_from(metadata).is_none());
    }
}
