//! The server side of SASL for the TCP mock broker ([`MockCluster::serve_tcp_with_sasl`]):
//! what a Kafka broker with a SASL listener does on each connection.
//!
//! - Before authentication only ApiVersions, SaslHandshake and SaslAuthenticate are served;
//!   any other request closes the connection (as Kafka does).
//! - SaslHandshake names a mechanism: an enabled one is accepted, any other is refused with
//!   `UNSUPPORTED_SASL_MECHANISM` and the list of enabled ones.
//! - SaslAuthenticate carries PLAIN's message or SCRAM's (checked by the core's
//!   [`ScramServer`] against credentials derived from the users' passwords). A failure is
//!   answered with `SASL_AUTHENTICATION_FAILED`, then the connection is closed.
//!
//! Every attempt is recorded ([`MockSasl::attempts`]), so tests can count authentications, e.g.
//! after a supervised reconnect.
//!
//! [`MockCluster::serve_tcp_with_sasl`]: super::MockCluster::serve_tcp_with_sasl

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use konsumer::kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::sasl::{
    parse_plain_message, SaslMechanism, ScramCredential, ScramHash, ScramServer, ScramServerStep,
};
use konsumer::KafkaCode;

/// Iterations of the mock's SCRAM credentials: Kafka's minimum.
const ITERATIONS: u32 = 4096;

/// A SASL listener's configuration: the mechanisms it enables and its users.
#[derive(Clone)]
pub struct MockSasl {
    mechanisms: Vec<SaslMechanism>,
    users: Arc<HashMap<String, String>>,
    attempts: Arc<Mutex<Vec<SaslAttempt>>>,
}

/// One authentication attempt the mock saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslAttempt {
    pub mechanism: SaslMechanism,
    /// The user the client named (`None` if its message could not be read).
    pub user: Option<String>,
    pub succeeded: bool,
}

impl MockSasl {
    pub fn new(mechanisms: &[SaslMechanism]) -> Self {
        MockSasl {
            mechanisms: mechanisms.to_vec(),
            users: Arc::default(),
            attempts: Arc::default(),
        }
    }

    /// Adds a user with this password (for every enabled mechanism).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        Arc::make_mut(&mut self.users).insert(name.to_owned(), password.to_owned());
        self
    }

    /// The attempts so far, in order.
    pub fn attempts(&self) -> Vec<SaslAttempt> {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record(&self, mechanism: SaslMechanism, user: Option<String>, succeeded: bool) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SaslAttempt {
                mechanism,
                user,
                succeeded,
            });
    }

    fn credential(&self, hash: ScramHash, user: &str) -> Option<ScramCredential> {
        let password = self.users.get(user)?;
        // A salt of the mock's own per user: fixed, so a test can be replayed.
        let salt = format!("konsumer-mock-salt-{user}");
        Some(ScramCredential::derive(
            hash,
            password,
            salt.as_bytes(),
            ITERATIONS,
        ))
    }
}

/// What the listener does with one request on a SASL connection.
pub(crate) enum Gate {
    /// Authenticated (or ApiVersions): answer it as any broker would.
    Pass,
    /// Answer with this; close the connection afterwards when `close` is set.
    Answer {
        response: Box<ResponseKind>,
        close: bool,
    },
    /// Close the connection without an answer.
    Refuse(String),
}

enum Phase {
    AwaitHandshake,
    AwaitAuthenticate(SaslMechanism, Option<Box<ScramServer>>),
    Authenticated,
}

/// One connection's SASL state.
pub(crate) struct SaslSession {
    sasl: MockSasl,
    phase: Phase,
}

impl SaslSession {
    pub(crate) fn new(sasl: MockSasl) -> Self {
        SaslSession {
            sasl,
            phase: Phase::AwaitHandshake,
        }
    }

    pub(crate) fn gate(&mut self, api: ApiKey, request: &RequestKind) -> Gate {
        if api == ApiKey::ApiVersions {
            return Gate::Pass;
        }
        match (&mut self.phase, request) {
            (Phase::Authenticated, RequestKind::SaslHandshake(_)) => {
                Gate::Refuse("SaslHandshake after authentication".into())
            }
            (Phase::Authenticated, _) => Gate::Pass,
            (Phase::AwaitHandshake, RequestKind::SaslHandshake(handshake)) => {
                let offered = self
                    .sasl
                    .mechanisms
                    .iter()
                    .map(|m| StrBytes::from_static_str(m.name()))
                    .collect();
                let wanted = self
                    .sasl
                    .mechanisms
                    .iter()
                    .copied()
                    .find(|m| m.name() == handshake.mechanism.as_str());
                let mut response = SaslHandshakeResponse::default().with_mechanisms(offered);
                match wanted {
                    None => {
                        response.error_code = KafkaCode::UnsupportedSaslMechanism.code();
                        Gate::Answer {
                            response: Box::new(ResponseKind::SaslHandshake(response)),
                            close: true,
                        }
                    }
                    Some(mechanism) => {
                        let scram = match mechanism {
                            SaslMechanism::Plain => None,
                            SaslMechanism::ScramSha256 => {
                                Some(Box::new(self.scram(ScramHash::Sha256)))
                            }
                            SaslMechanism::ScramSha512 => {
                                Some(Box::new(self.scram(ScramHash::Sha512)))
                            }
                        };
                        self.phase = Phase::AwaitAuthenticate(mechanism, scram);
                        Gate::Answer {
                            response: Box::new(ResponseKind::SaslHandshake(response)),
                            close: false,
                        }
                    }
                }
            }
            (Phase::AwaitAuthenticate(mechanism, scram), RequestKind::SaslAuthenticate(auth)) => {
                let mechanism = *mechanism;
                let (user, outcome) = match scram {
                    None => match parse_plain_message(&auth.auth_bytes) {
                        Some((user, password)) => {
                            let ok = self.sasl.users.get(&user).map(String::as_str)
                                == Some(password.expose());
                            let outcome = if ok { Ok(Vec::new()) } else { Err(()) };
                            (Some(user), outcome)
                        }
                        None => (None, Err(())),
                    },
                    Some(server) => match server.on_client_message(&auth.auth_bytes) {
                        ScramServerStep::Continue(next) => {
                            let response =
                                SaslAuthenticateResponse::default().with_auth_bytes(next.into());
                            return Gate::Answer {
                                response: Box::new(ResponseKind::SaslAuthenticate(response)),
                                close: false,
                            };
                        }
                        ScramServerStep::Authenticated { user, last } => (Some(user), Ok(last)),
                        // The mock does not learn the user name of a failed first message.
                        ScramServerStep::Failed(_) => (None, Err(())),
                    },
                };
                self.sasl.record(mechanism, user, outcome.is_ok());
                match outcome {
                    Ok(last) => {
                        self.phase = Phase::Authenticated;
                        let response =
                            SaslAuthenticateResponse::default().with_auth_bytes(last.into());
                        Gate::Answer {
                            response: Box::new(ResponseKind::SaslAuthenticate(response)),
                            close: false,
                        }
                    }
                    Err(()) => {
                        let response = SaslAuthenticateResponse::default()
                            .with_error_code(KafkaCode::SaslAuthenticationFailed.code())
                            .with_error_message(Some(StrBytes::from_static_str(
                                "Authentication failed: invalid credentials",
                            )));
                        Gate::Answer {
                            response: Box::new(ResponseKind::SaslAuthenticate(response)),
                            close: true,
                        }
                    }
                }
            }
            (_, _) => Gate::Refuse(format!("{api:?} before SASL authentication")),
        }
    }

    fn scram(&self, hash: ScramHash) -> ScramServer {
        let sasl = self.sasl.clone();
        let nonce: Vec<u8> = (0..18).map(|_| fastrand::u8(..)).collect();
        ScramServer::new(hash, &nonce, move |user| sasl.credential(hash, user))
    }
}
