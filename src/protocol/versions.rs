//! ApiVersions negotiation: per API, the highest version both konsumer and the broker support.

use std::collections::HashMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use crate::error::Error;

/// The oldest version of each API that konsumer will speak, and why. A broker whose newest
/// version is older gets a clear [`Error::UnsupportedVersion`] naming the API when that API is
/// first used. APIs not listed here may be used at any version `kafka-protocol` knows.
/// (These correspond to Kafka 0.11 / 1.0 brokers and later.)
pub const MINIMUM_VERSIONS: &[(ApiKey, i16, &str)] = &[
    (
        ApiKey::Produce,
        3,
        "RecordBatch v2 (magic 2): headers and producer ids",
    ),
    (
        ApiKey::Fetch,
        4,
        "isolation level, last stable offset and aborted transactions",
    ),
    (
        ApiKey::ListOffsets,
        1,
        "one offset per partition, lookup by timestamp",
    ),
    (
        ApiKey::Metadata,
        1,
        "a null topic list means all topics; controller id",
    ),
    (
        ApiKey::OffsetCommit,
        2,
        "offsets kept by Kafka, with generation and member id",
    ),
    (
        ApiKey::OffsetFetch,
        1,
        "offsets kept by Kafka rather than ZooKeeper",
    ),
    (ApiKey::FindCoordinator, 0, "group coordinator lookup"),
    (
        ApiKey::JoinGroup,
        1,
        "a rebalance timeout separate from the session timeout",
    ),
    (ApiKey::SyncGroup, 0, "assignment distribution"),
    (ApiKey::Heartbeat, 0, "group liveness"),
    (ApiKey::LeaveGroup, 0, "leaving a group on close"),
    (ApiKey::ApiVersions, 0, "version negotiation itself"),
    (
        ApiKey::CreateTopics,
        0,
        "topic creation for admin and tests",
    ),
    (
        ApiKey::SaslHandshake,
        1,
        "SASL frames carried by SaslAuthenticate",
    ),
    (ApiKey::SaslAuthenticate, 0, "SASL authentication"),
];

/// The versions konsumer can speak for `api`: what `kafka-protocol` encodes, from konsumer's
/// minimum up.
pub fn konsumer_range(api: ApiKey) -> (i16, i16) {
    let known = api.valid_versions();
    let minimum = MINIMUM_VERSIONS
        .iter()
        .find(|(key, _, _)| *key == api)
        .map_or(known.min, |(_, min, _)| (*min).max(known.min));
    (minimum, known.max)
}

/// What one broker supports, as its ApiVersions answer said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiVersionTable {
    broker: HashMap<i16, (i16, i16)>,
}

impl ApiVersionTable {
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        Self::from_ranges(
            response
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version)),
        )
    }

    /// Builds a table from `(api key, min, max)` triples, e.g. for a mocked broker.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (i16, i16, i16)>) -> Self {
        ApiVersionTable {
            broker: ranges
                .into_iter()
                .map(|(key, min, max)| (key, (min, max)))
                .collect(),
        }
    }

    /// A table claiming every version `kafka-protocol` knows, for every API.
    pub fn everything() -> Self {
        Self::from_ranges(ApiKey::iter().map(|k| {
            let r = k.valid_versions();
            (k as i16, r.min, r.max)
        }))
    }

    /// The broker's range for `api`, if it supports the API at all.
    pub fn broker_range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.broker.get(&(api as i16)).copied()
    }

    /// The version to use: the highest that both sides support, no higher than `at_most` when
    /// the caller caps it (e.g. because it has not implemented a newer version's semantics).
    pub fn select(&self, api: ApiKey, at_most: Option<i16>, broker: &str) -> Result<i16, Error> {
        let (our_min, our_max) = konsumer_range(api);
        let our_max = at_most.map_or(our_max, |cap| cap.min(our_max));
        let theirs = self.broker_range(api);
        let unsupported = || Error::UnsupportedVersion {
            api,
            broker: broker.to_owned(),
            broker_range: theirs,
            konsumer_range: (our_min, our_max),
        };
        let (their_min, their_max) = theirs.ok_or_else(unsupported)?;
        let version = our_max.min(their_max);
        if version < our_min.max(their_min) {
            return Err(unsupported());
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_common_version() {
        let table = ApiVersionTable::from_ranges([(1, 0, 11), (3, 0, 200), (18, 0, 3)]);
        assert_eq!(table.select(ApiKey::Fetch, None, "b").unwrap(), 11);
        // The broker claims more than kafka-protocol knows: ours caps it.
        let ours = ApiKey::Metadata.valid_versions().max;
        assert_eq!(table.select(ApiKey::Metadata, None, "b").unwrap(), ours);
        // The caller can cap further.
        assert_eq!(table.select(ApiKey::Fetch, Some(7), "b").unwrap(), 7);
    }

    #[test]
    fn broker_older_than_minimum_is_a_clear_error() {
        let table = ApiVersionTable::from_ranges([(1, 0, 3)]);
        let err = table
            .select(ApiKey::Fetch, None, "10.0.0.1:9092")
            .unwrap_err();
        match &err {
            Error::UnsupportedVersion {
                api,
                broker_range,
                konsumer_range,
                ..
            } => {
                assert_eq!(*api, ApiKey::Fetch);
                assert_eq!(*broker_range, Some((0, 3)));
                assert_eq!(konsumer_range.0, 4);
            }
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("Fetch") && text.contains("10.0.0.1:9092"),
            "{text}"
        );
    }

    #[test]
    fn missing_api_and_disjoint_ranges_are_errors() {
        let table = ApiVersionTable::from_ranges([(3, 20, 30)]);
        assert!(matches!(
            table.select(ApiKey::Produce, None, "b"),
            Err(Error::UnsupportedVersion {
                broker_range: None,
                ..
            })
        ));
        assert!(matches!(
            table.select(ApiKey::Metadata, None, "b"),
            Err(Error::UnsupportedVersion { .. })
        ));
        // A cap below our minimum can never be satisfied.
        let table = ApiVersionTable::from_ranges([(1, 0, 12)]);
        assert!(table.select(ApiKey::Fetch, Some(2), "b").is_err());
    }

    #[test]
    fn minimums_lie_within_what_kafka_protocol_encodes() {
        for (api, min, why) in MINIMUM_VERSIONS {
            let known = api.valid_versions();
            assert!(
                *min <= known.max,
                "{api:?} minimum {min} ({why}) above {known}"
            );
            let (lo, hi) = konsumer_range(*api);
            assert!(lo <= hi, "{api:?}");
        }
        let all = ApiVersionTable::everything();
        for (api, _, _) in MINIMUM_VERSIONS {
            assert_eq!(
                all.select(*api, None, "b").unwrap(),
                api.valid_versions().max
            );
        }
    }
}
