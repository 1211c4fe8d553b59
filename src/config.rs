//! Client configuration shared by every connection and the cluster view.

use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::Error;
use crate::sasl::SaslConfig;

/// How konsumer reaches and talks to a cluster. Field names follow the Java client's settings
/// where one exists (`bootstrap.servers`, `client.id`, `request.timeout.ms`, ...).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` pairs tried in order until one answers.
    pub bootstrap: Vec<String>,
    /// Sent in every request header; brokers log it and use it for quotas.
    pub client_id: String,
    /// Time allowed for the TCP connect plus the ApiVersions exchange.
    pub connect_timeout: Duration,
    /// Time a request may take from the moment it is handed to a connection, including any
    /// wait for that connection to (re)connect.
    pub request_timeout: Duration,
    /// Time allowed for finding a first bootstrap broker that answers Metadata.
    pub bootstrap_timeout: Duration,
    /// Metadata is refreshed at least this often (`metadata.max.age.ms`), and at once when a
    /// broker says the client's view is stale.
    pub metadata_refresh_interval: Duration,
    /// Delay between reconnect attempts of one connection.
    pub reconnect_backoff: Backoff,
    /// Largest response frame accepted; a larger length prefix is a protocol error, refused
    /// before anything is allocated for it.
    pub max_response_bytes: usize,
    /// TLS on every connection (`security.protocol` SSL or SASL_SSL); `None`: plaintext.
    pub tls: Option<TlsConfig>,
    /// SASL authentication on every connection (SASL_PLAINTEXT or SASL_SSL); `None`: none.
    pub sasl: Option<SaslConfig>,
}

/// TLS settings. The broker's certificate is verified against `ca_file` (or the system's roots)
/// and against the broker's host name as the cluster advertises it, which is also sent as SNI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust (`ssl.ca.location`); `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to brokers that ask for one (mutual TLS); needs
    /// `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// Accept any certificate from any broker: encryption without authentication, open to a
    /// man in the middle. For tests only; every connection logs a warning while it is set.
    pub danger_accept_invalid_certs: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: vec!["127.0.0.1:9092".into()],
            client_id: "konsumer".into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            bootstrap_timeout: Duration::from_secs(30),
            metadata_refresh_interval: Duration::from_secs(300),
            reconnect_backoff: Backoff::default(),
            max_response_bytes: 256 * 1024 * 1024,
            tls: None,
            sasl: None,
        }
    }
}

impl ClientConfig {
    /// A default configuration for the given bootstrap brokers.
    pub fn new<S: Into<String>>(bootstrap: impl IntoIterator<Item = S>) -> Self {
        ClientConfig {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            ..ClientConfig::default()
        }
    }

    /// Kafka's name for the combination of TLS and SASL in use (`security.protocol`).
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        }
    }

    /// Checks every field; the error names the field and what is wrong with it.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, detail: String| Err(Error::Config { field, detail });
        if self.bootstrap.is_empty() {
            return bad("bootstrap", "at least one host:port is needed".into());
        }
        for address in &self.bootstrap {
            match address.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => return bad("bootstrap", format!("`{address}` is not host:port")),
            }
        }
        if self.client_id.len() > i16::MAX as usize {
            return bad("client_id", "longer than a Kafka string can hold".into());
        }
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("bootstrap_timeout", self.bootstrap_timeout),
            ("metadata_refresh_interval", self.metadata_refresh_interval),
        ] {
            if value.is_zero() {
                return bad(field, "must be greater than zero".into());
            }
        }
        let b = &self.reconnect_backoff;
        if b.initial.is_zero() || b.initial > b.max {
            return bad(
                "reconnect_backoff",
                format!("need 0 < initial <= max, got {:?}..{:?}", b.initial, b.max),
            );
        }
        if b.multiplier < 1.0 || !(0.0..1.0).contains(&b.jitter) {
            return bad(
                "reconnect_backoff",
                "multiplier must be >= 1 and jitter in [0, 1)".into(),
            );
        }
        if self.max_response_bytes < 1024 || self.max_response_bytes > i32::MAX as usize {
            return bad(
                "max_response_bytes",
                format!("{} is outside 1 KiB..2 GiB", self.max_response_bytes),
            );
        }
        if let Some(tls) = &self.tls {
            if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
                return bad(
                    "tls.client_cert_file",
                    "a client certificate needs its key (client_key_file) and a key its \
                     certificate"
                        .into(),
                );
            }
        }
        if let Some(sasl) = &self.sasl {
            sasl.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        ClientConfig::new(["localhost:9092", "[::1]:9093"])
            .validate()
            .unwrap();
    }

    #[test]
    fn bad_values_name_their_field() {
        let field_of = |c: ClientConfig| match c.validate() {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(
            field_of(ClientConfig::new(Vec::<String>::new())),
            "bootstrap"
        );
        assert_eq!(field_of(ClientConfig::new(["nohost"])), "bootstrap");
        assert_eq!(field_of(ClientConfig::new(["h:notaport"])), "bootstrap");
        let c = ClientConfig {
            request_timeout: Duration::ZERO,
            ..ClientConfig::default()
        };
        assert_eq!(field_of(c), "request_timeout");
        let mut c = ClientConfig::default();
        c.reconnect_backoff.initial = Duration::from_secs(60);
        assert_eq!(field_of(c), "reconnect_backoff");
        let c = ClientConfig {
            max_response_bytes: usize::MAX,
            ..ClientConfig::default()
        };
        assert_eq!(field_of(c), "max_response_bytes");
        let c = ClientConfig {
            tls: Some(TlsConfig {
                client_cert_file: Some("client.pem".into()),
                ..TlsConfig::default()
            }),
            ..ClientConfig::default()
        };
        assert_eq!(field_of(c), "tls.client_cert_file");
        let c = ClientConfig {
            sasl: Some(SaslConfig::new(
                crate::sasl::SaslMechanism::ScramSha512,
                "",
                "pw".into(),
            )),
            ..ClientConfig::default()
        };
        assert_eq!(field_of(c), "sasl.username");
    }

    #[test]
    fn security_protocol_names_follow_kafka() {
        let mut c = ClientConfig::default();
        assert_eq!(c.security_protocol(), "PLAINTEXT");
        c.tls = Some(TlsConfig::default());
        assert_eq!(c.security_protocol(), "SSL");
        c.sasl = Some(SaslConfig::new(
            crate::sasl::SaslMechanism::Plain,
            "u",
            "very-secret-pw".into(),
        ));
        assert_eq!(c.security_protocol(), "SASL_SSL");
        assert!(!format!("{c:?}").contains("very-secret-pw"));
    }
}
