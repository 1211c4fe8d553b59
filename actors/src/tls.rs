//! TLS for broker connections (rustls with the ring provider), and the stream a
//! [`BrokerConnection`](crate::BrokerConnection) runs on: a plain TCP stream or TLS over one.
//!
//! The broker's certificate is verified against the configured CA file or the system's roots,
//! and against the broker's host name as the cluster advertises it (also sent as SNI). Handshake
//! failures are reported as [`Error::Tls`] with the reason rustls found (unknown CA, name
//! mismatch, expiry, an alert from the broker), never as a bare I/O error.
//!
//! TLS and SASL are switched on in the [`ClientConfig`](crate::ClientConfig):
//!
//! ```no_run
//! use konsumer_actors::core::sasl::{SaslConfig, SaslMechanism, Secret};
//! use konsumer_actors::core::{ClientConfig, TlsConfig};
//!
//! # fn main() -> Result<(), konsumer_actors::Error> {
//! let config = ClientConfig {
//!     tls: Some(TlsConfig {
//!         ca_file: Some("/etc/kafka/ca.pem".into()),
//!         ..TlsConfig::default()
//!     }),
//!     sasl: Some(SaslConfig::new(
//!         SaslMechanism::ScramSha512,
//!         "orders-service",
//!         Secret::from_env("KAFKA_PASSWORD")?,
//!     )),
//!     ..ClientConfig::new(["kafka-1.example.com:9093"])
//! };
//! assert_eq!(config.security_protocol(), "SASL_SSL");
//! # Ok(()) }
//! ```

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use konsumer::protocol::ApiVersionsProbe;
use konsumer::{Error, TlsConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The ring provider, made once per process.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Fresh random bytes from the TLS provider's secure generator (for SCRAM nonces): keeps a
/// second source of randomness out of the dependency tree.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| Error::Config {
            field: "sasl",
            detail: "the system's secure random generator failed".into(),
        })?;
    Ok(bytes)
}

/// The system's CA roots, read once per process.
fn system_roots() -> &'static Result<Vec<CertificateDer<'static>>, String> {
    static ROOTS: OnceLock<Result<Vec<CertificateDer<'static>>, String>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
            return Err(format!(
                "no CA certificates found in the system's store ({})",
                errors.join("; ")
            ));
        }
        Ok(found.certs)
    })
}

/// A TLS client setup, built once per connection actor from [`TlsConfig`].
#[derive(Clone)]
pub struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
    /// What is trusted, for error messages: "the CA file ..." or "the system's roots".
    trusted: String,
    /// `danger_accept_invalid_certs` is on.
    pub insecure: bool,
}

impl TlsConnector {
    /// Reads the CA and client certificate files; a file that cannot be read or holds no
    /// usable certificate or key is a [`Error::Config`] naming the field and the file.
    pub fn new(config: &TlsConfig) -> Result<Self, Error> {
        let bad = |field, detail: String| Error::Config { field, detail };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("tls", e.to_string()))?;
        let (builder, trusted) = if config.danger_accept_invalid_certs {
            let verifier = Arc::new(AcceptAnyCertificate(provider()));
            let builder = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier);
            (builder, "any certificate (verification is off)".to_string())
        } else {
            let mut roots = RootCertStore::empty();
            let trusted = match &config.ca_file {
                Some(path) => {
                    let shown = path.display();
                    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
                        .and_then(|certs| certs.collect::<Result<_, _>>())
                        .map_err(|e| bad("tls.ca_file", format!("{shown}: {e}")))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(bad(
                            "tls.ca_file",
                            format!("{shown} holds no usable CA certificate"),
                        ));
                    }
                    format!("the CA file {shown}")
                }
                None => {
                    let certs = system_roots()
                        .as_ref()
                        .map_err(|e| bad("tls.ca_file", e.clone()))?;
                    roots.add_parsable_certificates(certs.iter().cloned());
                    "the system's CA roots".to_string()
                }
            };
            (builder.with_root_certificates(roots), trusted)
        };
        let tls = match (&config.client_cert_file, &config.client_key_file) {
            (Some(cert), Some(key)) => {
                let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<_, _>>())
                    .map_err(|e| bad("tls.client_cert_file", format!("{}: {e}", cert.display())))?;
                if chain.is_empty() {
                    let detail = format!("{} holds no certificate", cert.display());
                    return Err(bad("tls.client_cert_file", detail));
                }
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| bad("tls.client_key_file", format!("{}: {e}", key.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad("tls.client_key_file", e.to_string()))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(TlsConnector {
            connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            trusted,
            insecure: config.danger_accept_invalid_certs,
        })
    }

    /// The TLS handshake over `tcp` with `broker` (`host:port`): the host is the name the
    /// certificate must carry and the SNI sent. A handshake cut, or unanswered within `wait`,
    /// is followed by a plaintext probe, so that a plaintext listener is named as such.
    pub async fn handshake(
        &self,
        broker: &str,
        tcp: TcpStream,
        client_id: &str,
        wait: Duration,
    ) -> Result<TlsStream<TcpStream>, Error> {
        let host = host_of(broker);
        let name = ServerName::try_from(host.to_owned()).map_err(|_| Error::Tls {
            broker: broker.to_owned(),
            reason: format!("`{host}` is neither a DNS name nor an IP address"),
        })?;
        let error = match tokio::time::timeout(wait, self.connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => error,
            // A plaintext Kafka listener reads a ClientHello as the length of a huge request
            // and waits for the rest.
            Err(_) => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer to the TLS handshake within {wait:?}"),
            ),
        };
        let cut = matches!(
            error.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::TimedOut
        );
        let reason = if cut && speaks_plaintext_kafka(broker, client_id).await {
            "the broker's listener is plaintext (it answers Kafka requests without TLS), and this \
             client is configured for TLS"
                .to_string()
        } else {
            self.explain(&error, host)
        };
        Err(Error::Tls {
            broker: broker.to_owned(),
            reason,
        })
    }

    /// What went wrong in a handshake, in words a user can act on.
    fn explain(&self, error: &io::Error, host: &str) -> String {
        let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return format!("the connection failed during the TLS handshake: {error}");
        };
        match tls {
            rustls::Error::InvalidCertificate(problem) => match problem {
                CertificateError::UnknownIssuer => format!(
                    "the broker's certificate is signed by an unknown CA (trusted: {})",
                    self.trusted
                ),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => format!(
                    "name mismatch: the broker's certificate is not valid for `{host}` ({tls})"
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    format!("the broker's certificate has expired ({tls})")
                }
                _ => format!("the broker's certificate was refused: {tls}"),
            },
            rustls::Error::AlertReceived(_) => alert_reason(tls).unwrap_or_default(),
            rustls::Error::InvalidMessage(_) => {
                format!("the broker did not answer with TLS: {tls}")
            }
            other => other.to_string(),
        }
    }
}

/// How long a diagnostic probe (below) may take: it runs only after a connection failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `broker` completes (or answers with an alert) a TLS handshake: asked, on a fresh
/// connection, after a plaintext connection was cut before its first answer — so the error can
/// say for certain that the listener wants TLS instead of guessing.
pub async fn speaks_tls(broker: &str) -> bool {
    let probe = async {
        // Any certificate will do: the question is only whether the listener speaks TLS.
        let any = TlsConnector::new(&TlsConfig {
            danger_accept_invalid_certs: true,
            ..TlsConfig::default()
        })
        .ok()?;
        let tcp = TcpStream::connect(broker).await.ok()?;
        let name = ServerName::try_from(host_of(broker).to_owned()).ok()?;
        match any.connector.connect(name, tcp).await {
            Ok(_) => Some(true),
            // An alert is TLS too (e.g. a listener that requires a client certificate).
            Err(error) => Some(matches!(
                error
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>()),
                Some(rustls::Error::AlertReceived(_))
            )),
        }
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Some(true))
    )
}

/// Whether `broker` answers a plaintext ApiVersions request: asked, on a fresh connection,
/// after a TLS handshake was cut, to tell a plaintext listener from other failures.
pub async fn speaks_plaintext_kafka(broker: &str, client_id: &str) -> bool {
    let probe = async {
        let mut tcp = TcpStream::connect(broker).await.ok()?;
        let request = ApiVersionsProbe::default().request(7, client_id).ok()?;
        tcp.write_all(&request).await.ok()?;
        let mut head = [0u8; 8];
        tcp.read_exact(&mut head).await.ok()?;
        let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let correlation_id = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        Some((4..1 << 20).contains(&size) && correlation_id == 7)
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Some(true))
    )
}

/// The reason for a TLS alert the broker sent, if `error` is one. With TLS 1.3 a broker that
/// refuses the client's certificate (or its absence) says so after the client has finished its
/// side of the handshake, so the alert arrives on the first read.
pub fn alert_reason(error: &rustls::Error) -> Option<String> {
    let rustls::Error::AlertReceived(alert) = error else {
        return None;
    };
    let meaning = match alert {
        rustls::AlertDescription::CertificateRequired => {
            ": the broker requires a client certificate (tls.client_cert_file and \
             tls.client_key_file)"
        }
        rustls::AlertDescription::UnknownCA | rustls::AlertDescription::BadCertificate => {
            ": the broker does not accept this client certificate"
        }
        _ => "",
    };
    Some(format!(
        "the broker ended the TLS session with the alert {alert:?}{meaning}"
    ))
}

/// An I/O error that is really a TLS alert from the broker, as [`Error::Tls`].
pub fn alert_error(broker: &str, error: &io::Error) -> Option<Error> {
    let tls = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(Error::Tls {
        broker: broker.to_owned(),
        reason: alert_reason(tls)?,
    })
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(broker: &str) -> &str {
    let host = broker.rsplit_once(':').map_or(broker, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Whether the first bytes a plaintext client read are a TLS record (an alert or a
/// handshake message, TLS 1.0–1.3 record versions 0x0301..0x0304). A Kafka response there
/// would announce a frame of over 350 MB, so this cannot be mistaken for one.
pub fn looks_like_tls(first_bytes: &[u8]) -> bool {
    matches!(first_bytes, [0x15 | 0x16, 0x03, 0x00..=0x04, ..])
}

/// Verification switched off (`danger_accept_invalid_certs`): any certificate is accepted,
/// but the handshake signatures are still checked, so the session keys belong to whoever
/// holds the presented certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A broker connection's byte stream: plain TCP, or TLS over TCP.
pub enum BrokerStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The read half of a [`BrokerStream`]. Plain TCP splits into owned halves with no locking;
/// TLS needs tokio's split, because reading and writing share one TLS session.
pub enum BrokerReader {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The write half of a [`BrokerStream`].
pub enum BrokerWriter {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl BrokerStream {
    pub fn split(self) -> (BrokerReader, BrokerWriter) {
        match self {
            BrokerStream::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (BrokerReader::Plain(read), BrokerWriter::Plain(write))
            }
            BrokerStream::Tls(tls) => {
                let (read, write) = tokio::io::split(*tls);
                (BrokerReader::Tls(read), BrokerWriter::Tls(write))
            }
        }
    }
}

impl AsyncRead for BrokerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BrokerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BrokerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BrokerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BrokerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BrokerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BrokerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for BrokerReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerReader::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BrokerReader::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BrokerWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BrokerWriter::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BrokerWriter::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerWriter::Plain(s) => Pin::new(s).poll_flush(cx),
            BrokerWriter::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerWriter::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BrokerWriter::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_taken_from_broker_addresses() {
        assert_eq!(host_of("broker-1.example:9093"), "broker-1.example");
        assert_eq!(host_of("[::1]:9093"), "::1");
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
    }

    #[test]
    fn tls_records_are_recognised_and_kafka_frames_are_not() {
        assert!(looks_like_tls(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50]));
        assert!(looks_like_tls(&[0x16, 0x03, 0x01]));
        // An ApiVersions answer: a small length prefix.
        assert!(!looks_like_tls(&[0x00, 0x00, 0x01, 0x9c]));
        assert!(!looks_like_tls(&[0x15]));
    }

    #[test]
    fn unreadable_ca_files_are_config_errors_naming_the_file() {
        let config = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        match TlsConnector::new(&config) {
            Err(Error::Config { field, detail }) => {
                assert_eq!(field, "tls.ca_file");
                assert!(detail.contains("/nonexistent/ca.pem"), "{detail}");
            }
            other => panic!("expected a config error, got {:?}", other.err()),
        }
    }
}
