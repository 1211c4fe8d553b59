//! Request and response framing: header version per API/version, correlation ids, and the
//! ApiVersions exchange that opens every connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader,
    ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::{Error, KafkaCode};
use crate::protocol::versions::ApiVersionTable;

/// Encodes one request as a complete frame: length prefix, header, body. The header version
/// follows the API's flexible-version threshold (v2 with tagged fields for flexible versions).
pub fn encode_request(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    request: &RequestKind,
) -> Result<Bytes, Error> {
    let encode_err = |detail: String| Error::Encode {
        api: api_key,
        version,
        detail,
    };
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0); // length, patched below
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .map_err(|e| encode_err(format!("header: {e:#}")))?;
    request
        .encode(&mut buf, version)
        .map_err(|e| encode_err(format!("{e:#}")))?;
    let size = i32::try_from(buf.len() - 4)
        .map_err(|_| encode_err(format!("{} bytes do not fit a frame", buf.len())))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// The correlation id at the start of a response frame (the first field of every response
/// header version), or `None` if the frame is too short to hold one.
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    frame.get(..4).map(|mut b| b.get_i32())
}

/// The header version of a response. ApiVersions is the exception to the flexible-versions rule:
/// its response header is always v0, so that a client can read the answer to a version it sent
/// before knowing what the broker supports.
fn response_header_version(api_key: ApiKey, version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    }
}

/// Decodes a response frame (without its length prefix) as the given API and version.
pub fn decode_response(
    api_key: ApiKey,
    version: i16,
    mut frame: Bytes,
    broker: &str,
) -> Result<ResponseKind, Error> {
    let decode_err = |detail: String| Error::Decode {
        api: api_key,
        version,
        broker: broker.to_owned(),
        detail,
    };
    ResponseHeader::decode(&mut frame, response_header_version(api_key, version))
        .map_err(|e| decode_err(format!("header: {e:#}")))?;
    ResponseKind::decode(api_key, &mut frame, version).map_err(|e| decode_err(format!("{e:#}")))
}

/// The ApiVersions exchange that opens a connection, as a small state machine the shell drives:
/// send [`request`](Self::request), feed the answer to [`on_response`](Self::on_response), and
/// repeat while it says [`ProbeStep::Retry`].
///
/// konsumer first asks with the newest ApiVersions version it knows. A broker that does not know
/// that version answers UNSUPPORTED_VERSION in a v0 body listing only its own ApiVersions range;
/// the probe then asks again at the broker's highest version.
#[derive(Debug, Clone)]
pub struct ApiVersionsProbe {
    version: i16,
    retried: bool,
}

/// What to do after an ApiVersions answer.
#[derive(Debug)]
pub enum ProbeStep {
    /// Send [`ApiVersionsProbe::request`] again (now at a version the broker supports).
    Retry,
    /// The broker's versions are known.
    Done(ApiVersionTable),
}

impl Default for ApiVersionsProbe {
    fn default() -> Self {
        ApiVersionsProbe {
            version: ApiKey::ApiVersions.valid_versions().max,
            retried: false,
        }
    }
}

impl ApiVersionsProbe {
    /// The ApiVersions version the next request uses.
    pub fn version(&self) -> i16 {
        self.version
    }

    /// The next ApiVersions request frame.
    pub fn request(&self, correlation_id: i32, client_id: &str) -> Result<Bytes, Error> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("konsumer"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        encode_request(
            ApiKey::ApiVersions,
            self.version,
            correlation_id,
            client_id,
            &RequestKind::ApiVersions(request),
        )
    }

    /// Reads the broker's answer (a frame without its length prefix).
    pub fn on_response(&mut self, mut frame: Bytes, broker: &str) -> Result<ProbeStep, Error> {
        let decode_err = |version, detail: String| Error::Decode {
            api: ApiKey::ApiVersions,
            version,
            broker: broker.to_owned(),
            detail,
        };
        ResponseHeader::decode(&mut frame, 0).map_err(|e| decode_err(0, format!("{e:#}")))?;
        // The error code is the first body field in every version.
        let code = frame
            .get(..2)
            .map(|mut b| b.get_i16())
            .ok_or_else(|| decode_err(self.version, "empty body".into()))?;
        if code == KafkaCode::UnsupportedVersion.code() && self.retried {
            // Refused even at the version the broker itself named: report, never loop.
            Error::check(code, || {
                crate::Context::broker(broker).with_api(ApiKey::ApiVersions)
            })?;
        }
        if code == KafkaCode::UnsupportedVersion.code() {
            let body = ApiVersionsResponse::decode(&mut frame, 0)
                .map_err(|e| decode_err(0, format!("{e:#}")))?;
            let theirs = body
                .api_keys
                .iter()
                .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                .ok_or_else(|| {
                    decode_err(0, "UNSUPPORTED_VERSION without an ApiVersions range".into())
                })?;
            let ours = ApiKey::ApiVersions.valid_versions();
            let version = theirs.max_version.min(ours.max);
            if version < ours.min.max(theirs.min_version) {
                return Err(Error::UnsupportedVersion {
                    api: ApiKey::ApiVersions,
                    broker: broker.to_owned(),
                    broker_range: Some((theirs.min_version, theirs.max_version)),
                    konsumer_range: (ours.min, ours.max),
                });
            }
            self.version = version;
            self.retried = true;
            return Ok(ProbeStep::Retry);
        }
        let body = ApiVersionsResponse::decode(&mut frame, self.version)
            .map_err(|e| decode_err(self.version, format!("{e:#}")))?;
        Error::check(body.error_code, || {
            crate::Context::broker(broker).with_api(ApiKey::ApiVersions)
        })?;
        Ok(ProbeStep::Done(ApiVersionTable::from_response(&body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use kafka_protocol::protocol::decode_request_header_from_buffer;

    fn body_after_header(frame: &Bytes) -> (RequestHeader, Bytes) {
        let mut b = frame.slice(4..);
        assert_eq!(
            (&frame[..4]).get_i32() as usize,
            frame.len() - 4,
            "length prefix"
        );
        let header = decode_request_header_from_buffer(&mut b).unwrap();
        (header, b)
    }

    #[test]
    fn request_header_version_follows_flexible_threshold() {
        // Metadata becomes flexible at v9: header v1 before, v2 (tagged fields) from then on.
        for (version, tagged_byte) in [(8i16, false), (9, true), (12, true)] {
            let frame = encode_request(
                ApiKey::Metadata,
                version,
                77,
                "cid",
                &RequestKind::Metadata(MetadataRequest::default()),
            )
            .unwrap();
            // size(4) key(2) version(2) correlation(4) client id len(2) "cid"(3) [tags(1)]
            assert_eq!(&frame[4..6], &3i16.to_be_bytes());
            assert_eq!(&frame[6..8], &version.to_be_bytes());
            assert_eq!(&frame[8..12], &77i32.to_be_bytes());
            assert_eq!(&frame[12..14], &3i16.to_be_bytes());
            assert_eq!(&frame[14..17], b"cid");
            if tagged_byte {
                assert_eq!(frame[17], 0, "empty tagged-field section in header v2");
            }
            let (header, mut body) = body_after_header(&frame);
            assert_eq!(header.correlation_id, 77);
            let decoded = MetadataRequest::decode(&mut body, version).unwrap();
            assert_eq!(decoded, MetadataRequest::default());
            assert!(body.is_empty());
        }
    }

    #[test]
    fn encode_error_names_api_and_version() {
        // allow_auto_topic_creation=false does not exist before Metadata v4.
        let req = MetadataRequest::default().with_allow_auto_topic_creation(false);
        let err =
            encode_request(ApiKey::Metadata, 1, 1, "c", &RequestKind::Metadata(req)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Encode {
                    api: ApiKey::Metadata,
                    version: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    fn response_frame(
        correlation_id: i32,
        header_version: i16,
        body: &impl Encodable,
        v: i16,
    ) -> Bytes {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, header_version)
            .unwrap();
        body.encode(&mut buf, v).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_flexible_response_with_header_v1() {
        let body = MetadataResponse::default().with_controller_id(3.into());
        let frame = response_frame(5, 1, &body, 12);
        assert_eq!(peek_correlation_id(&frame), Some(5));
        match decode_response(ApiKey::Metadata, 12, frame, "b").unwrap() {
            ResponseKind::Metadata(m) => assert_eq!(i32::from(m.controller_id), 3),
            other => panic!("{other:?}"),
        }
        assert_eq!(peek_correlation_id(&[1, 2]), None);
    }

    #[test]
    fn garbage_response_is_a_decode_error() {
        let err = decode_response(
            ApiKey::Metadata,
            12,
            Bytes::from_static(&[0, 0, 0, 1, 0xff]),
            "b",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Decode {
                    api: ApiKey::Metadata,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn api_versions_probe_falls_back_when_broker_is_older() {
        let mut probe = ApiVersionsProbe::default();
        let newest = probe.version();
        assert!(newest >= 3);
        let (header, _) = body_after_header(&probe.request(1, "c").unwrap());
        assert_eq!(header.request_api_version, newest);

        // An old broker: UNSUPPORTED_VERSION, v0 body, header v0, only key 18 listed.
        let refusal = ApiVersionsResponse::default()
            .with_error_code(35)
            .with_api_keys(vec![ApiVersion::default()
                .with_api_key(18)
                .with_min_version(0)
                .with_max_version(2)]);
        let step = probe
            .on_response(response_frame(1, 0, &refusal, 0), "b")
            .unwrap();
        assert!(matches!(step, ProbeStep::Retry));
        assert_eq!(probe.version(), 2);

        let answer = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default().with_api_key(18).with_max_version(2),
            ApiVersion::default()
                .with_api_key(3)
                .with_min_version(0)
                .with_max_version(7),
        ]);
        match probe
            .on_response(response_frame(2, 0, &answer, 2), "b")
            .unwrap()
        {
            ProbeStep::Done(table) => {
                assert_eq!(table.broker_range(ApiKey::Metadata), Some((0, 7)));
                assert_eq!(table.select(ApiKey::Metadata, None, "b").unwrap(), 7);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn api_versions_probe_does_not_loop_on_repeated_refusal() {
        let mut probe = ApiVersionsProbe::default();
        let refusal = ApiVersionsResponse::default()
            .with_error_code(35)
            .with_api_keys(vec![ApiVersion::default()
                .with_api_key(18)
                .with_max_version(1)]);
        assert!(matches!(
            probe.on_response(response_frame(1, 0, &refusal, 0), "b"),
            Ok(ProbeStep::Retry)
        ));
        // A second refusal at the version the broker itself named is an error, not a loop.
        let err = probe
            .on_response(response_frame(2, 0, &refusal, 0), "b")
            .unwrap_err();
        assert_eq!(err.kafka_code(), Some(KafkaCode::UnsupportedVersion));
    }
}
