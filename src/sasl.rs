//! SASL authentication, sans-IO: the mechanisms (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and the
//! Kafka exchange that carries them (SaslHandshake v1, then SaslAuthenticate rounds, KIP-152).
//!
//! The connection drives a [`SaslExchange`]: it sends each request the exchange hands out and
//! feeds back the answer, until the exchange says it is done or fails with a typed error. The
//! SCRAM client nonce is passed in by the caller, so this module needs no randomness and the
//! exchange can be replayed in tests.
//!
//! SCRAM (RFC 5802) is written here as a message state machine; the arithmetic (PBKDF2 for
//! `Hi`, HMAC, SHA-2) comes from RustCrypto's crates. The password is not SASLprep-normalised,
//! as Kafka's own Java client does not normalise it either: both sides must use the same bytes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use sha2::{Digest, Sha256, Sha512};

use crate::error::{Error, KafkaCode};

/// A password or other secret: its `Debug` never shows it, it has no `Display`, and it is only
/// read through [`Secret::expose`], so it cannot end up in a log line or an error by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret read from an environment variable; the error names the variable, never a
    /// value.
    pub fn from_env(variable: &str) -> Result<Self, Error> {
        match std::env::var(variable) {
            Ok(value) => Ok(Secret(value)),
            Err(std::env::VarError::NotPresent) => Err(Error::Config {
                field: "sasl.password",
                detail: format!("environment variable {variable} is not set"),
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config {
                field: "sasl.password",
                detail: format!("environment variable {variable} is not valid UTF-8"),
            }),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

/// The SASL mechanisms konsumer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// Username and password in clear (RFC 4616): only over TLS in production.
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    /// The name Kafka uses in SaslHandshake and in `sasl.mechanism`.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ];
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SaslMechanism {
    type Err = Error;

    /// Case-insensitive: `PLAIN`, `SCRAM-SHA-256`, `scram-sha-512`, ...
    fn from_str(text: &str) -> Result<Self, Error> {
        SaslMechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| Error::Config {
                field: "sasl.mechanism",
                detail: format!("`{text}` is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
            })
    }
}

/// Who to authenticate as, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslConfig {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

impl SaslConfig {
    pub fn new(mechanism: SaslMechanism, username: impl Into<String>, password: Secret) -> Self {
        SaslConfig {
            mechanism,
            username: username.into(),
            password,
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.username.is_empty() {
            return Err(Error::Config {
                field: "sasl.username",
                detail: "must not be empty".into(),
            });
        }
        if self.password.is_empty() {
            return Err(Error::Config {
                field: "sasl.password",
                detail: "must not be empty".into(),
            });
        }
        if self.mechanism == SaslMechanism::Plain
            && (self.username.contains('\0') || self.password.expose().contains('\0'))
        {
            return Err(Error::Config {
                field: "sasl",
                detail: "PLAIN cannot carry a NUL character in the username or password".into(),
            });
        }
        Ok(())
    }
}

/// SCRAM iteration counts below this are refused (RFC 5802 §5.1 and Kafka's own minimum):
/// a server asking for fewer would make a stolen exchange cheap to brute-force.
pub const SCRAM_MIN_ITERATIONS: u32 = 4096;
/// Above this a server could make the client burn seconds of CPU per connection.
pub const SCRAM_MAX_ITERATIONS: u32 = 1 << 24;

/// One SCRAM hash: SHA-256 or SHA-512.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
        match self {
            ScramHash::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("any key length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with this hash's HMAC.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut out = vec![0; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            ScramHash::Sha512 => {
                let mut out = vec![0; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// The keys a SCRAM server stores for a user (RFC 5802 §3), derived from the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScramCredential(<redacted>)")
    }
}

impl ScramCredential {
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        }
    }
}

/// `saslname` escaping of RFC 5802 §5.1: `=` and `,` cannot appear bare in a username.
fn escape_username(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn unescape_username(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=3D") => out.push('='),
            Some("=2C") => out.push(','),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// `key=value` attributes of a SCRAM message, in order.
fn attributes(message: &str) -> Vec<(char, &str)> {
    message
        .split(',')
        .filter_map(|part| {
            let mut chars = part.chars();
            let key = chars.next()?;
            part.get(1..)?.strip_prefix('=').map(|value| (key, value))
        })
        .collect()
}

fn attribute<'a>(attributes: &[(char, &'a str)], key: char) -> Option<&'a str> {
    attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// The client side of one SCRAM exchange (no channel binding: gs2 header `n,,`).
#[derive(Clone)]
pub struct ScramClient {
    hash: ScramHash,
    username: String,
    password: Secret,
    nonce: String,
    state: ScramState,
}

#[derive(Clone)]
enum ScramState {
    Initial,
    /// The client-first message was sent; holds its bare part for the AuthMessage.
    SentFirst {
        first_bare: String,
    },
    /// The client-final message was sent; holds the server signature to expect.
    SentFinal {
        server_signature: Vec<u8>,
    },
    Done,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// `nonce`: fresh random bytes for this exchange (at least 16 recommended); they are
    /// base64-encoded into the printable client nonce.
    pub fn new(hash: ScramHash, username: &str, password: Secret, nonce: &[u8]) -> Self {
        ScramClient {
            hash,
            username: username.to_owned(),
            password,
            nonce: BASE64.encode(nonce),
            state: ScramState::Initial,
        }
    }

    /// The client-first message.
    pub fn first(&mut self) -> Vec<u8> {
        let first_bare = format!("n={},r={}", escape_username(&self.username), self.nonce);
        let message = format!("n,,{first_bare}");
        self.state = ScramState::SentFirst { first_bare };
        message.into_bytes()
    }

    /// Answers a server message: the client-final message after the server-first one, `None`
    /// once the server-final message has proven the server knows the password too. The error
    /// says what was wrong with the server's message.
    pub fn on_server_message(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let text = std::str::from_utf8(message)
            .map_err(|_| "the server's SCRAM message is not UTF-8".to_string())?;
        let attrs = attributes(text);
        if let Some(error) = attribute(&attrs, 'e') {
            // RFC 5802's server-error values for credentials that do not match.
            if matches!(error, "invalid-proof" | "unknown-user") {
                return Err(format!(
                    "authentication failed (bad username or password): the server says {error}"
                ));
            }
            return Err(format!("the server refused the exchange: {error}"));
        }
        match std::mem::replace(&mut self.state, ScramState::Done) {
            ScramState::SentFirst { first_bare } => {
                let nonce = attribute(&attrs, 'r').ok_or("server-first message has no nonce")?;
                if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
                    return Err("the server's nonce does not extend the client's".into());
                }
                let salt = attribute(&attrs, 's').ok_or("server-first message has no salt")?;
                let salt = BASE64
                    .decode(salt)
                    .map_err(|_| "the server's salt is not base64")?;
                let iterations: u32 = attribute(&attrs, 'i')
                    .ok_or("server-first message has no iteration count")?
                    .parse()
                    .map_err(|_| "the server's iteration count is not a number")?;
                if !(SCRAM_MIN_ITERATIONS..=SCRAM_MAX_ITERATIONS).contains(&iterations) {
                    return Err(format!(
                        "the server asks for {iterations} iterations, outside \
                         {SCRAM_MIN_ITERATIONS}..={SCRAM_MAX_ITERATIONS}"
                    ));
                }
                let hash = self.hash;
                let salted =
                    hash.salted_password(self.password.expose().as_bytes(), &salt, iterations);
                let client_key = hash.hmac(&salted, b"Client Key");
                let stored_key = hash.hash(&client_key);
                let without_proof = format!("c={},r={nonce}", BASE64.encode("n,,"));
                let auth_message = format!("{first_bare},{text},{without_proof}");
                let client_signature = hash.hmac(&stored_key, auth_message.as_bytes());
                let proof = xor(&client_key, &client_signature);
                let server_key = hash.hmac(&salted, b"Server Key");
                self.state = ScramState::SentFinal {
                    server_signature: hash.hmac(&server_key, auth_message.as_bytes()),
                };
                Ok(Some(
                    format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes(),
                ))
            }
            ScramState::SentFinal { server_signature } => {
                let verifier =
                    attribute(&attrs, 'v').ok_or("server-final message has no verifier")?;
                let verifier = BASE64
                    .decode(verifier)
                    .map_err(|_| "the server's verifier is not base64")?;
                if verifier != server_signature {
                    return Err(
                        "the server's signature is wrong: it does not know this user's \
                                credentials (is this the right broker?)"
                            .into(),
                    );
                }
                Ok(None)
            }
            ScramState::Initial | ScramState::Done => {
                Err("a SCRAM message arrived out of turn".into())
            }
        }
    }
}

/// Finds a user's stored SCRAM credential.
type CredentialLookup = Box<dyn Fn(&str) -> Option<ScramCredential> + Send>;

/// The server side of SCRAM, for test brokers (the test kit's mocked broker): checks a client
/// against a stored [`ScramCredential`] as a Kafka broker does.
pub struct ScramServer {
    hash: ScramHash,
    credential_for: CredentialLookup,
    nonce: String,
    state: ScramServerState,
}

enum ScramServerState {
    AwaitFirst,
    AwaitFinal {
        user: String,
        credential: ScramCredential,
        auth_prefix: String,
        nonce: String,
    },
    Done,
}

/// What a [`ScramServer`] answers to a client message.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramServerStep {
    /// Send these bytes and wait for the client's next message.
    Continue(Vec<u8>),
    /// The client is authenticated as this user; send these bytes (the server-final message).
    Authenticated { user: String, last: Vec<u8> },
    /// Authentication failed; the reason is for the broker's log, not for the client.
    Failed(String),
}

impl ScramServer {
    /// `credential_for(user)` looks a user up; `nonce` is the server's part of the nonce.
    pub fn new(
        hash: ScramHash,
        nonce: &[u8],
        credential_for: impl Fn(&str) -> Option<ScramCredential> + Send + 'static,
    ) -> Self {
        ScramServer {
            hash,
            credential_for: Box::new(credential_for),
            nonce: BASE64.encode(nonce),
            state: ScramServerState::AwaitFirst,
        }
    }

    pub fn on_client_message(&mut self, message: &[u8]) -> ScramServerStep {
        let fail = |why: &str| ScramServerStep::Failed(why.to_owned());
        let Ok(text) = std::str::from_utf8(message) else {
            return fail("client message is not UTF-8");
        };
        match std::mem::replace(&mut self.state, ScramServerState::Done) {
            ScramServerState::AwaitFirst => {
                let Some(bare) = text.strip_prefix("n,,") else {
                    return fail("client-first message without the gs2 header n,,");
                };
                let attrs = attributes(bare);
                let (Some(name), Some(client_nonce)) =
                    (attribute(&attrs, 'n'), attribute(&attrs, 'r'))
                else {
                    return fail("client-first message lacks n= or r=");
                };
                let Some(user) = unescape_username(name) else {
                    return fail("badly escaped username");
                };
                let Some(credential) = (self.credential_for)(&user) else {
                    return fail("unknown user");
                };
                let nonce = format!("{client_nonce}{}", self.nonce);
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    BASE64.encode(&credential.salt),
                    credential.iterations
                );
                self.state = ScramServerState::AwaitFinal {
                    user,
                    credential,
                    auth_prefix: format!("{bare},{server_first}"),
                    nonce,
                };
                ScramServerStep::Continue(server_first.into_bytes())
            }
            ScramServerState::AwaitFinal {
                user,
                credential,
                auth_prefix,
                nonce,
            } => {
                let Some((without_proof, proof)) = text.rsplit_once(",p=") else {
                    return fail("client-final message has no proof");
                };
                let attrs = attributes(without_proof);
                if attribute(&attrs, 'r') != Some(nonce.as_str()) {
                    return fail("client-final message carries another nonce");
                }
                if attribute(&attrs, 'c') != Some(BASE64.encode("n,,").as_str()) {
                    return fail("client-final message has unexpected channel binding");
                }
                let Ok(proof) = BASE64.decode(proof) else {
                    return fail("proof is not base64");
                };
                let auth_message = format!("{auth_prefix},{without_proof}");
                let signature = self
                    .hash
                    .hmac(&credential.stored_key, auth_message.as_bytes());
                let client_key = xor(&proof, &signature);
                if proof.len() != signature.len()
                    || self.hash.hash(&client_key) != credential.stored_key
                {
                    return fail("wrong password");
                }
                let server_signature = self
                    .hash
                    .hmac(&credential.server_key, auth_message.as_bytes());
                ScramServerStep::Authenticated {
                    user,
                    last: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
                }
            }
            ScramServerState::Done => fail("message after the exchange ended"),
        }
    }
}

/// The PLAIN message (RFC 4616): no authorization id, then username and password.
pub fn plain_message(username: &str, password: &Secret) -> Vec<u8> {
    format!("\0{username}\0{}", password.expose()).into_bytes()
}

/// Parses a PLAIN message into (username, password), for test brokers.
pub fn parse_plain_message(message: &[u8]) -> Option<(String, Secret)> {
    let text = std::str::from_utf8(message).ok()?;
    let mut parts = text.split('\0');
    let (_authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    Some((user.to_owned(), Secret::new(password)))
}

/// What the connection should do next in a [`SaslExchange`].
#[derive(Debug)]
pub enum SaslStep {
    /// Send this request (SaslHandshake or SaslAuthenticate) and pass its answer to
    /// [`SaslExchange::on_response`].
    Send(ApiKey, Box<RequestKind>),
    /// Authenticated. `session_lifetime` is the broker's KIP-368 limit, if it set one: the
    /// broker closes the connection after it, and the supervised connection reconnects and
    /// authenticates again.
    Done { session_lifetime: Option<Duration> },
}

/// One SASL authentication on one connection, as Kafka carries it: SaslHandshake v1 naming the
/// mechanism, then SaslAuthenticate requests carrying the mechanism's messages.
#[derive(Debug)]
pub struct SaslExchange {
    mechanism: SaslMechanism,
    broker: String,
    state: ExchangeState,
}

#[derive(Debug)]
enum ExchangeState {
    Handshake(MechanismClient),
    Authenticating(MechanismClient),
    Done,
}

#[derive(Debug)]
enum MechanismClient {
    /// Holds the single message still to send.
    Plain(Option<Vec<u8>>),
    Scram(ScramClient),
}

impl MechanismClient {
    fn first(&mut self) -> Vec<u8> {
        match self {
            MechanismClient::Plain(message) => message.take().unwrap_or_default(),
            MechanismClient::Scram(client) => client.first(),
        }
    }
}

impl SaslExchange {
    /// `nonce`: fresh random bytes (used by SCRAM only).
    pub fn new(config: &SaslConfig, broker: &str, nonce: &[u8]) -> Self {
        let client = match config.mechanism {
            SaslMechanism::Plain => {
                MechanismClient::Plain(Some(plain_message(&config.username, &config.password)))
            }
            SaslMechanism::ScramSha256 => MechanismClient::Scram(ScramClient::new(
                ScramHash::Sha256,
                &config.username,
                config.password.clone(),
                nonce,
            )),
            SaslMechanism::ScramSha512 => MechanismClient::Scram(ScramClient::new(
                ScramHash::Sha512,
                &config.username,
                config.password.clone(),
                nonce,
            )),
        };
        SaslExchange {
            mechanism: config.mechanism,
            broker: broker.to_owned(),
            state: ExchangeState::Handshake(client),
        }
    }

    /// The first request: SaslHandshake naming the mechanism.
    pub fn start(&self) -> SaslStep {
        SaslStep::Send(
            ApiKey::SaslHandshake,
            Box::new(RequestKind::SaslHandshake(
                SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(self.mechanism.name())),
            )),
        )
    }

    fn authenticate(bytes: Vec<u8>) -> SaslStep {
        SaslStep::Send(
            ApiKey::SaslAuthenticate,
            Box::new(RequestKind::SaslAuthenticate(
                SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
            )),
        )
    }

    fn failed(&self, detail: String) -> Error {
        Error::Authentication {
            broker: self.broker.clone(),
            mechanism: self.mechanism.name().into(),
            detail,
        }
    }

    /// Takes the answer to the last request sent.
    pub fn on_response(&mut self, response: ResponseKind) -> Result<SaslStep, Error> {
        match (
            std::mem::replace(&mut self.state, ExchangeState::Done),
            response,
        ) {
            (ExchangeState::Handshake(mut client), ResponseKind::SaslHandshake(answer)) => {
                if answer.error_code != 0 {
                    let offered: Vec<String> =
                        answer.mechanisms.iter().map(|m| m.to_string()).collect();
                    if answer.error_code == KafkaCode::UnsupportedSaslMechanism.code() {
                        return Err(Error::SaslMechanismUnsupported {
                            broker: self.broker.clone(),
                            wanted: self.mechanism.name().into(),
                            offered,
                        });
                    }
                    return Err(self.failed(format!(
                        "SaslHandshake refused with error code {} (broker offers {})",
                        answer.error_code,
                        offered.join(", ")
                    )));
                }
                let first = client.first();
                self.state = ExchangeState::Authenticating(client);
                Ok(Self::authenticate(first))
            }
            (ExchangeState::Authenticating(mut client), ResponseKind::SaslAuthenticate(answer)) => {
                if answer.error_code != 0 {
                    let said = answer
                        .error_message
                        .as_ref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    let detail = if answer.error_code == KafkaCode::SaslAuthenticationFailed.code()
                    {
                        format!("authentication failed (bad username or password){said}")
                    } else {
                        format!("SaslAuthenticate error code {}{said}", answer.error_code)
                    };
                    return Err(self.failed(detail));
                }
                let lifetime = (answer.session_lifetime_ms > 0)
                    .then(|| Duration::from_millis(answer.session_lifetime_ms as u64));
                match &mut client {
                    MechanismClient::Plain(_) => Ok(SaslStep::Done {
                        session_lifetime: lifetime,
                    }),
                    MechanismClient::Scram(scram) => {
                        match scram.on_server_message(&answer.auth_bytes) {
                            Ok(Some(next)) => {
                                self.state = ExchangeState::Authenticating(client);
                                Ok(Self::authenticate(next))
                            }
                            Ok(None) => Ok(SaslStep::Done {
                                session_lifetime: lifetime,
                            }),
                            Err(why) => Err(self.failed(why)),
                        }
                    }
                }
            }
            (_, _) => Err(Error::Protocol {
                broker: self.broker.clone(),
                detail: "an answer of the wrong API during SASL authentication".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};

    /// RFC 7677 §3's SCRAM-SHA-256 example: user `user`, password `pencil`, client nonce
    /// `rOprNGfwEbeRWgbNEkqO`, server nonce part `%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0`, salt
    /// `W22ZaJ0SNY7soEsUEjb6gQ==`, 4096 iterations.
    #[test]
    fn scram_sha_256_matches_the_rfc_7677_example() {
        let mut client = ScramClient::new(ScramHash::Sha256, "user", "pencil".into(), b"");
        client.nonce = "rOprNGfwEbeRWgbNEkqO".into();
        assert_eq!(client.first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = client.on_server_message(server_first).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_final = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        assert_eq!(client.on_server_message(server_final), Ok(None));
    }

    #[test]
    fn a_forged_server_signature_is_refused() {
        let mut client = ScramClient::new(ScramHash::Sha256, "user", "pencil".into(), b"");
        client.nonce = "rOprNGfwEbeRWgbNEkqO".into();
        client.first();
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        client.on_server_message(server_first).unwrap();
        let forged = b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        let error = client.on_server_message(forged).unwrap_err();
        assert!(error.contains("signature is wrong"), "{error}");
    }

    #[test]
    fn weak_or_foreign_server_first_messages_are_refused() {
        for (server_first, expected) in [
            ("r=abcXYZ,s=c2FsdA==,i=1000", "iterations"),
            ("r=zzz,s=c2FsdA==,i=4096", "nonce"),
            ("r=abc,s=c2FsdA==,i=4096", "nonce"),
            ("r=abcXYZ,s=***,i=4096", "salt"),
            ("e=unknown-user", "bad username or password"),
            ("e=other-error", "refused"),
        ] {
            let mut client = ScramClient::new(ScramHash::Sha512, "u", "p".into(), b"");
            client.nonce = "abc".into();
            client.first();
            let error = client
                .on_server_message(server_first.as_bytes())
                .unwrap_err();
            assert!(error.contains(expected), "{server_first}: {error}");
        }
    }

    /// Client against server, both hashes, with usernames that need escaping.
    #[test]
    fn client_and_server_agree_and_a_wrong_password_fails() {
        for hash in [ScramHash::Sha256, ScramHash::Sha512] {
            for (user, password, stored, expect_ok) in [
                ("alice", "s3cret", "s3cret", true),
                ("a=b,c", "pw", "pw", true),
                ("alice", "wrong", "s3cret", false),
            ] {
                let credential = ScramCredential::derive(hash, stored, b"salty", 4096);
                let expected_user = user.to_owned();
                let mut server = ScramServer::new(hash, b"server-nonce", move |name| {
                    (name == expected_user).then(|| credential.clone())
                });
                let mut client = ScramClient::new(hash, user, password.into(), b"client-nonce");
                let ScramServerStep::Continue(first) = server.on_client_message(&client.first())
                else {
                    panic!("server refused the first message");
                };
                let fin = client.on_server_message(&first).unwrap().unwrap();
                match server.on_client_message(&fin) {
                    ScramServerStep::Authenticated { user: who, last } => {
                        assert!(expect_ok, "{hash:?} {user} accepted a wrong password");
                        assert_eq!(who, user);
                        assert_eq!(client.on_server_message(&last), Ok(None));
                    }
                    ScramServerStep::Failed(why) => {
                        assert!(!expect_ok, "{hash:?} {user}: {why}");
                        assert_eq!(why, "wrong password");
                    }
                    ScramServerStep::Continue(_) => panic!("server wants a third message"),
                }
            }
        }
    }

    #[test]
    fn usernames_are_escaped_both_ways() {
        assert_eq!(escape_username("a=b,c"), "a=3Db=2Cc");
        assert_eq!(unescape_username("a=3Db=2Cc").as_deref(), Some("a=b,c"));
        assert_eq!(unescape_username("a=4Xb"), None);
    }

    #[test]
    fn plain_messages_round_trip() {
        let message = plain_message("bob", &"hunter2".into());
        assert_eq!(message, b"\0bob\0hunter2");
        let (user, password) = parse_plain_message(&message).unwrap();
        assert_eq!((user.as_str(), password.expose()), ("bob", "hunter2"));
        assert!(parse_plain_message(b"bob\0hunter2").is_none());
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config = SaslConfig::new(SaslMechanism::ScramSha512, "bob", "hunter2".into());
        let shown = format!("{config:?} {:?}", SaslExchange::new(&config, "b:1", b"n"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn mechanism_names_parse_case_insensitively() {
        assert_eq!(
            "scram-sha-512".parse::<SaslMechanism>().unwrap(),
            SaslMechanism::ScramSha512
        );
        assert_eq!(
            "PLAIN".parse::<SaslMechanism>().unwrap(),
            SaslMechanism::Plain
        );
        assert!(matches!(
            "GSSAPI".parse::<SaslMechanism>(),
            Err(Error::Config {
                field: "sasl.mechanism",
                ..
            })
        ));
    }

    /// The whole Kafka exchange against a broker that offers only SCRAM-SHA-512.
    #[test]
    fn the_exchange_reports_unsupported_mechanisms_and_bad_passwords() {
        let config = SaslConfig::new(SaslMechanism::Plain, "bob", "pw-secret-42".into());
        let mut exchange = SaslExchange::new(&config, "broker:9092", b"n");
        assert!(matches!(
            exchange.start(),
            SaslStep::Send(ApiKey::SaslHandshake, _)
        ));
        let refusal = SaslHandshakeResponse::default()
            .with_error_code(KafkaCode::UnsupportedSaslMechanism.code())
            .with_mechanisms(vec![StrBytes::from_static_str("SCRAM-SHA-512")]);
        match exchange.on_response(ResponseKind::SaslHandshake(refusal)) {
            Err(Error::SaslMechanismUnsupported {
                wanted, offered, ..
            }) => {
                assert_eq!(wanted, "PLAIN");
                assert_eq!(offered, ["SCRAM-SHA-512"]);
            }
            other => panic!("{other:?}"),
        }

        let mut exchange = SaslExchange::new(&config, "broker:9092", b"n");
        let ok = SaslHandshakeResponse::default();
        let step = exchange
            .on_response(ResponseKind::SaslHandshake(ok))
            .unwrap();
        let SaslStep::Send(ApiKey::SaslAuthenticate, request) = step else {
            panic!("expected SaslAuthenticate");
        };
        let RequestKind::SaslAuthenticate(request) = *request else {
            panic!("expected a SaslAuthenticate request");
        };
        assert_eq!(&request.auth_bytes[..], b"\0bob\0pw-secret-42");
        let refusal = SaslAuthenticateResponse::default()
            .with_error_code(KafkaCode::SaslAuthenticationFailed.code())
            .with_error_message(Some(StrBytes::from_static_str("Invalid credentials")));
        let error = exchange
            .on_response(ResponseKind::SaslAuthenticate(refusal))
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("bad username or password"), "{text}");
        assert!(
            text.contains("broker:9092") && text.contains("PLAIN"),
            "{text}"
        );
        assert!(!text.contains("pw-secret-42"), "{text}");
        assert!(!error.is_retriable());
    }
}
