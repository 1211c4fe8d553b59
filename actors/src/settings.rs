//! A consumer service's settings as data (TOML, JSON, YAML, environment... through serde),
//! turned into the typed configurations and validated before anything connects.
//!
//! Only `brokers`, `group_id` and a subscription are required; every other field falls back to
//! the typed configuration's default (the Java client's where it has one). Durations are in
//! milliseconds, as in the Java client's property names. Unknown fields are an error, so a typo
//! is never silently ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use konsumer::consumer::{AfterRetries, ConsumerConfig, FailurePolicy, OffsetReset};
use konsumer::group::{GroupConfig, TopicSubscription};
use konsumer::records::Isolation;
use konsumer::sasl::{SaslConfig, Secret};
use konsumer::{ClientConfig, Error, TlsConfig};
use serde::{Deserialize, Serialize};

/// See the module doc.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// `bootstrap.servers`: host:port of at least one broker.
    pub brokers: Vec<String>,
    pub client_id: Option<String>,
    pub group_id: String,
    #[serde(default)]
    pub topics: Vec<String>,
    /// Regular expressions: every topic matching one of `include` and none of `exclude`.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Assignor names in order of preference: range, roundrobin, sticky, cooperative-sticky.
    #[serde(default)]
    pub assignors: Vec<String>,
    pub group_instance_id: Option<String>,
    pub session_timeout_ms: Option<u64>,
    pub rebalance_timeout_ms: Option<u64>,
    pub heartbeat_interval_ms: Option<u64>,
    pub fetch_max_wait_ms: Option<u64>,
    pub fetch_min_bytes: Option<i32>,
    pub fetch_max_bytes: Option<i32>,
    pub partition_max_bytes: Option<i32>,
    /// `read_uncommitted` (default) or `read_committed`.
    pub isolation: Option<String>,
    pub buffer_max_records: Option<usize>,
    pub buffer_max_bytes: Option<usize>,
    pub max_batch_records: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub commit_interval_ms: Option<u64>,
    /// `earliest`, `latest` (default) or `none`.
    pub offset_reset: Option<String>,
    pub in_order_done: Option<bool>,
    pub failure_policy: Option<PolicySettings>,
    #[serde(default)]
    pub topic_failure_policies: BTreeMap<String, PolicySettings>,
    #[serde(default)]
    pub max_message_age_ms: BTreeMap<String, u64>,
    pub drain_timeout_ms: Option<u64>,
    /// The sidechannel topic (default `konsumer-sidechannel-offsets`; empty disables it).
    pub sidechannel_topic: Option<String>,
    pub sidechannel_wait_ms: Option<u64>,
    /// Threads decoding one large fetch answer side by side (default 2).
    pub decode_threads: Option<usize>,
    /// Check each fetched batch's CRC (default true).
    pub check_crcs: Option<bool>,
    /// TLS to every broker (`security.protocol` SSL / SASL_SSL).
    pub tls: Option<TlsSettings>,
    /// SASL authentication with every broker (SASL_PLAINTEXT / SASL_SSL).
    pub sasl: Option<SaslSettings>,
}

/// TLS settings as data (see [`TlsConfig`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the CA certificates to trust; absent: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key, for brokers that demand mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Accept any broker certificate. Named to be noticed; logged at every connect.
    #[serde(default)]
    pub danger_accept_invalid_certs: bool,
}

/// SASL settings as data. The password comes from `password`, or from the environment
/// variable `password_env` names (so the config file need not hold it); never both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSettings {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: String,
    pub username: String,
    pub password: Option<Password>,
    pub password_env: Option<String>,
}

/// A password in settings: `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl SaslSettings {
    fn to_config(&self) -> Result<SaslConfig, Error> {
        let mechanism = self.mechanism.parse()?;
        let password = match (&self.password, &self.password_env) {
            (Some(password), None) => Secret::new(password.0.clone()),
            (None, Some(variable)) => Secret::from_env(variable)?,
            (Some(_), Some(_)) => {
                return Err(bad(
                    "sasl.password",
                    "set `password` or `password_env`, not both",
                ))
            }
            (None, None) => return Err(bad("sasl.password", "set `password` or `password_env`")),
        };
        Ok(SaslConfig::new(mechanism, self.username.clone(), password))
    }
}

/// A handler failure policy as data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    pub retries: Option<u32>,
    pub backoff_initial_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    /// `stop` (default), `skip` or `dead_letter` (needs `dead_letter_topic`).
    pub then: Option<String>,
    pub dead_letter_topic: Option<String>,
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn bad(field: &'static str, detail: impl Into<String>) -> Error {
    Error::Config {
        field,
        detail: detail.into(),
    }
}

impl PolicySettings {
    fn to_policy(&self, field: &'static str) -> Result<FailurePolicy, Error> {
        let mut policy = FailurePolicy::default();
        if let Some(v) = self.retries {
            policy.retries = v;
        }
        if let Some(v) = self.backoff_initial_ms {
            policy.backoff.initial = ms(v);
        }
        if let Some(v) = self.backoff_max_ms {
            policy.backoff.max = ms(v);
        }
        policy.then = match (self.then.as_deref(), &self.dead_letter_topic) {
            (None | Some("stop"), None) => AfterRetries::Stop,
            (Some("skip"), None) => AfterRetries::Skip,
            (Some("dead_letter") | None, Some(topic)) => AfterRetries::DeadLetter {
                topic: topic.clone(),
            },
            (Some("dead_letter"), None) => {
                return Err(bad(field, "`dead_letter` needs `dead_letter_topic`"))
            }
            (Some(other), Some(_)) if other != "dead_letter" => {
                return Err(bad(
                    field,
                    format!("`dead_letter_topic` is set but `then` is `{other}`"),
                ))
            }
            (Some(other), _) => {
                return Err(bad(
                    field,
                    format!("`then` must be stop, skip or dead_letter, not `{other}`"),
                ))
            }
        };
        Ok(policy)
    }
}

impl ServiceSettings {
    /// The typed configurations, each validated; the first problem is returned, naming its
    /// field.
    pub fn into_configs(self) -> Result<(ClientConfig, GroupConfig, ConsumerConfig), Error> {
        let mut client = ClientConfig::new(self.brokers.iter().cloned());
        if let Some(id) = &self.client_id {
            client.client_id = id.clone();
        }
        client.tls = self.tls.as_ref().map(|tls| TlsConfig {
            ca_file: tls.ca_file.clone(),
            client_cert_file: tls.client_cert_file.clone(),
            client_key_file: tls.client_key_file.clone(),
            danger_accept_invalid_certs: tls.danger_accept_invalid_certs,
        });
        client.sasl = self
            .sasl
            .as_ref()
            .map(SaslSettings::to_config)
            .transpose()?;
        client.validate()?;

        if self.group_id.is_empty() {
            return Err(bad("group_id", "must not be empty"));
        }
        let mut group = GroupConfig::new(self.group_id.clone(), Vec::<String>::new());
        group.subscription = TopicSubscription {
            topics: self.topics.clone(),
            include: self.include.clone(),
            exclude: self.exclude.clone(),
        };
        if !self.assignors.is_empty() {
            let names: Vec<&str> = self.assignors.iter().map(String::as_str).collect();
            group = group.with_assignors(&names)?;
        }
        group.group_instance_id = self.group_instance_id.clone();
        if let Some(v) = self.session_timeout_ms {
            group.session_timeout = ms(v);
        }
        if let Some(v) = self.rebalance_timeout_ms {
            group.rebalance_timeout = ms(v);
        }
        if let Some(v) = self.heartbeat_interval_ms {
            group.heartbeat_interval = ms(v);
        }
        group.validate()?;

        let mut consumer = ConsumerConfig::default();
        if let Some(v) = self.fetch_max_wait_ms {
            consumer.fetch_max_wait = ms(v);
        }
        if let Some(v) = self.fetch_min_bytes {
            consumer.fetch_min_bytes = v;
        }
        if let Some(v) = self.fetch_max_bytes {
            consumer.fetch_max_bytes = v;
        }
        if let Some(v) = self.partition_max_bytes {
            consumer.partition_max_bytes = v;
        }
        consumer.isolation = match self.isolation.as_deref() {
            None | Some("read_uncommitted") => Isolation::ReadUncommitted,
            Some("read_committed") => Isolation::ReadCommitted,
            Some(other) => {
                return Err(bad(
                    "isolation",
                    format!("must be read_uncommitted or read_committed, not `{other}`"),
                ))
            }
        };
        if let Some(v) = self.buffer_max_records {
            consumer.buffer_max_records = v;
        }
        if let Some(v) = self.buffer_max_bytes {
            consumer.buffer_max_bytes = v;
        }
        if let Some(v) = self.max_batch_records {
            consumer.max_batch_records = v;
        }
        if let Some(v) = self.max_in_flight {
            consumer.max_in_flight = v;
        }
        if let Some(v) = self.decode_threads {
            consumer.decode_threads = v;
        }
        if let Some(v) = self.check_crcs {
            consumer.check_crcs = v;
        }
        if let Some(v) = self.commit_interval_ms {
            consumer.commit_interval = ms(v);
        }
        consumer.offset_reset = match self.offset_reset.as_deref() {
            None | Some("latest") => OffsetReset::Latest,
            Some("earliest") => OffsetReset::Earliest,
            Some("none") => OffsetReset::None,
            Some(other) => {
                return Err(bad(
                    "offset_reset",
                    format!("must be earliest, latest or none, not `{other}`"),
                ))
            }
        };
        if let Some(v) = self.in_order_done {
            consumer.in_order_done = v;
        }
        if let Some(p) = &self.failure_policy {
            consumer.failure_policy = p.to_policy("failure_policy")?;
        }
        for (topic, p) in &self.topic_failure_policies {
            consumer
                .topic_failure_policies
                .insert(topic.clone(), p.to_policy("topic_failure_policies")?);
        }
        for (topic, v) in &self.max_message_age_ms {
            consumer.max_message_age.insert(topic.clone(), ms(*v));
        }
        consumer.drain_timeout = self.drain_timeout_ms.map(ms);
        if let Some(topic) = &self.sidechannel_topic {
            consumer.sidechannel_topic = topic.clone();
        }
        if let Some(v) = self.sidechannel_wait_ms {
            consumer.sidechannel_wait = ms(v);
        }
        consumer.validate()?;
        Ok((client, group, consumer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> ServiceSettings {
        serde_json::from_str(json).expect("valid settings JSON")
    }

    fn field_of(result: Result<(ClientConfig, GroupConfig, ConsumerConfig), Error>) -> String {
        match result {
            Err(Error::Config { field, .. }) => field.to_owned(),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn security_settings_reach_the_client_config_and_hide_the_password() {
        let settings = parse(
            r#"{
                "brokers": ["a:1"], "group_id": "g", "topics": ["t"],
                "tls": {"ca_file": "/etc/kafka/ca.pem"},
                "sasl": {"mechanism": "scram-sha-512", "username": "svc",
                         "password": "settings-secret-913"}
            }"#,
        );
        assert!(!format!("{settings:?}").contains("settings-secret-913"));
        let (client, _, _) = settings.into_configs().expect("valid");
        let tls = client.tls.as_ref().expect("tls");
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/kafka/ca.pem"))
        );
        let sasl = client.sasl.as_ref().expect("sasl");
        assert_eq!(sasl.mechanism.name(), "SCRAM-SHA-512");
        assert_eq!(sasl.password.expose(), "settings-secret-913");
        assert_eq!(client.security_protocol(), "SASL_SSL");
        assert!(!format!("{client:?}").contains("settings-secret-913"));

        std::env::set_var("KONSUMER_TEST_SETTINGS_PW", "from-the-environment");
        let (client, _, _) = parse(
            r#"{"brokers": ["a:1"], "group_id": "g", "topics": ["t"],
                "sasl": {"mechanism": "PLAIN", "username": "svc",
                         "password_env": "KONSUMER_TEST_SETTINGS_PW"}}"#,
        )
        .into_configs()
        .expect("valid");
        let sasl = client.sasl.expect("sasl");
        assert_eq!(sasl.password.expose(), "from-the-environment");

        for (sasl, field) in [
            (
                r#"{"mechanism": "GSSAPI", "username": "u", "password": "p"}"#,
                "sasl.mechanism",
            ),
            (
                r#"{"mechanism": "PLAIN", "username": "u"}"#,
                "sasl.password",
            ),
            (
                r#"{"mechanism": "PLAIN", "username": "u", "password_env": "KONSUMER_UNSET_VAR_X"}"#,
                "sasl.password",
            ),
        ] {
            let json = format!(
                r#"{{"brokers": ["a:1"], "group_id": "g", "topics": ["t"], "sasl": {sasl}}}"#
            );
            assert_eq!(field_of(parse(&json).into_configs()), field, "{sasl}");
        }
    }

    #[test]
    fn minimal_settings_take_the_defaults() {
        let (client, group, consumer) =
            parse(r#"{"brokers": ["localhost:9092"], "group_id": "g", "topics": ["orders"]}"#)
                .into_configs()
                .expect("valid");
        assert_eq!(client.bootstrap, ["localhost:9092"]);
        assert_eq!(group.group_id, "g");
        assert_eq!(group.subscription.topics, ["orders"]);
        assert_eq!(consumer, ConsumerConfig::default());
    }

    #[test]
    fn every_field_reaches_its_typed_config() {
        let (client, group, consumer) = parse(
            r#"{
                "brokers": ["a:1", "b:2"], "client_id": "svc", "group_id": "g",
                "topics": ["orders"], "include": ["^audit-.*"], "exclude": ["^audit-tmp"],
                "assignors": ["sticky", "range"], "group_instance_id": "pod-1",
                "session_timeout_ms": 10000, "rebalance_timeout_ms": 20000,
                "heartbeat_interval_ms": 2000, "fetch_max_wait_ms": 100, "fetch_min_bytes": 10,
                "fetch_max_bytes": 2000000, "partition_max_bytes": 100000,
                "isolation": "read_committed", "buffer_max_records": 50,
                "buffer_max_bytes": 4096, "max_batch_records": 10, "max_in_flight": 4,
                "commit_interval_ms": 250, "offset_reset": "earliest", "in_order_done": true,
                "failure_policy": {"retries": 1, "then": "skip"},
                "topic_failure_policies": {"orders": {"dead_letter_topic": "orders.dlq"}},
                "max_message_age_ms": {"audit-x": 60000}, "drain_timeout_ms": 3000,
                "sidechannel_topic": "offsets.handover", "sidechannel_wait_ms": 150,
                "decode_threads": 3, "check_crcs": false
            }"#,
        )
        .into_configs()
        .expect("valid");
        assert_eq!(client.client_id, "svc");
        assert_eq!(group.group_instance_id.as_deref(), Some("pod-1"));
        let assignors: Vec<&str> = group.assignors.iter().map(|a| a.name()).collect();
        assert_eq!(assignors, ["sticky", "range"]);
        assert_eq!(group.session_timeout, ms(10_000));
        assert_eq!(group.subscription.include, ["^audit-.*"]);
        assert_eq!(consumer.isolation, Isolation::ReadCommitted);
        assert_eq!(consumer.offset_reset, OffsetReset::Earliest);
        assert_eq!(consumer.max_in_flight, 4);
        assert_eq!(consumer.decode_threads, 3);
        assert!(!consumer.check_crcs);
        assert!(consumer.in_order_done);
        assert_eq!(consumer.failure_policy.retries, 1);
        assert_eq!(consumer.failure_policy.then, AfterRetries::Skip);
        assert_eq!(
            consumer.policy_for("orders").then,
            AfterRetries::DeadLetter {
                topic: "orders.dlq".into()
            }
        );
        assert_eq!(consumer.max_message_age.get("audit-x"), Some(&ms(60_000)));
        assert_eq!(consumer.drain_timeout, Some(ms(3_000)));
        assert_eq!(consumer.sidechannel_topic, "offsets.handover");
        assert_eq!(consumer.sidechannel_wait, ms(150));
    }

    #[test]
    fn bad_settings_name_their_field() {
        let base = r#""brokers": ["a:1"], "group_id": "g", "topics": ["t"]"#;
        let cases = [
            (
                r#""brokers": [], "group_id": "g", "topics": ["t"]"#,
                "bootstrap",
            ),
            (
                r#""brokers": ["a:1"], "group_id": "", "topics": ["t"]"#,
                "group_id",
            ),
            (&format!(r#"{base}, "isolation": "dirty""#)[..], "isolation"),
            (
                &format!(r#"{base}, "offset_reset": "smallest""#)[..],
                "offset_reset",
            ),
            (
                &format!(r#"{base}, "max_in_flight": 0"#)[..],
                "max_in_flight",
            ),
            (
                &format!(r#"{base}, "failure_policy": {{"then": "dead_letter"}}"#)[..],
                "failure_policy",
            ),
            (
                &format!(r#"{base}, "failure_policy": {{"then": "retry_forever"}}"#)[..],
                "failure_policy",
            ),
            (
                &format!(r#"{base}, "sidechannel_topic": "a b""#)[..],
                "sidechannel_topic",
            ),
            (
                &format!(r#"{base}, "session_timeout_ms": 3000, "heartbeat_interval_ms": 2000"#)[..],
                "heartbeat_interval",
            ),
        ];
        for (json, field) in cases {
            let settings = parse(&format!("{{{json}}}"));
            assert_eq!(field_of(settings.into_configs()), field, "{json}");
        }
    }

    #[test]
    fn unknown_fields_and_unknown_assignors_are_refused() {
        let typo = serde_json::from_str::<ServiceSettings>(
            r#"{"brokers": ["a:1"], "group_id": "g", "topic": ["t"]}"#,
        );
        assert!(typo.is_err(), "a misspelt field was accepted");
        let unknown = parse(
            r#"{"brokers": ["a:1"], "group_id": "g", "topics": ["t"], "assignors": ["fair"]}"#,
        );
        assert!(unknown.into_configs().is_err());
    }
}
