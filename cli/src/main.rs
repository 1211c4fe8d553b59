//! `konsumer`: a command-line Kafka client built on konsumer-actors: `produce`, `consume`,
//! `group describe`.
//!
//! One module per subcommand, each with its clap `Args` and an `async fn run`; adding a
//! subcommand is a variant in [`Command`] and an arm in [`run`]. Shared pieces: the connection
//! flags ([`ConnectArgs`]), the error type ([`error::CliError`], printed to stderr with exit
//! code 1) and the stderr logger behind `-v` ([`log`]).

mod consume;
mod describe;
mod error;
mod log;
mod produce;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use actix::Addr;
use clap::{ArgAction, Args, Parser, Subcommand};
use konsumer_actors::core::sasl::{SaslConfig, Secret};
use konsumer_actors::core::TlsConfig;
use konsumer_actors::{ClientConfig, Cluster};

use crate::error::CliError;

#[derive(Debug, Parser)]
#[command(
    name = "konsumer",
    version,
    about = "A Kafka command-line client built on konsumer"
)]
struct Cli {
    /// Log to stderr: -v info, -vv debug, -vvv trace.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce the lines of standard input (`key<TAB>value`, or a value alone) to a topic.
    Produce(produce::ProduceArgs),
    /// Consume topics in a consumer group: one `topic/partition/offset<TAB>key<TAB>value` line
    /// per record; only printed records are committed.
    Consume(consume::ConsumeArgs),
    /// Consumer groups.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Show a group's state, members, and per partition its committed offset, end offset and lag.
    Describe(describe::DescribeArgs),
}

/// How to reach the cluster: shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Bootstrap brokers: host:port, comma-separated.
    #[arg(
        short,
        long,
        value_delimiter = ',',
        required = true,
        value_name = "HOST:PORT"
    )]
    pub brokers: Vec<String>,

    /// Client id sent with every request.
    #[arg(long, default_value = "konsumer-cli")]
    pub client_id: String,

    /// Time allowed for reaching a first broker, and for each request (e.g. 500ms, 10s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Connect with TLS, verifying brokers against the system's CA roots (or --tls-ca-file).
    /// Implied by any other --tls-* flag.
    #[arg(long)]
    pub tls: bool,

    /// PEM file of the CA certificates to trust instead of the system's roots.
    #[arg(long, value_name = "PEM")]
    pub tls_ca_file: Option<PathBuf>,

    /// PEM client certificate chain, for brokers that demand mutual TLS (needs --tls-key-file).
    #[arg(long, value_name = "PEM", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of --tls-cert-file.
    #[arg(long, value_name = "PEM", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// DANGEROUS: accept any broker certificate (no protection against interception).
    #[arg(long)]
    pub tls_danger_accept_invalid_certs: bool,

    /// Authenticate with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (needs --sasl-username).
    #[arg(long, value_name = "MECHANISM", requires = "sasl_username")]
    pub sasl_mechanism: Option<String>,

    /// The SASL user.
    #[arg(long, value_name = "NAME", requires = "sasl_mechanism")]
    pub sasl_username: Option<String>,

    /// The environment variable holding the SASL password (a password on the command line
    /// would show in the process list).
    #[arg(long, value_name = "VAR", default_value = "KONSUMER_SASL_PASSWORD")]
    pub sasl_password_env: String,
}

impl ConnectArgs {
    /// The client configuration; the SASL password is read from the environment here.
    pub fn client_config(&self) -> Result<ClientConfig, konsumer_actors::Error> {
        let mut config = ClientConfig::new(self.brokers.iter().cloned());
        config.client_id = self.client_id.clone();
        config.bootstrap_timeout = self.timeout;
        config.request_timeout = self.timeout;
        config.connect_timeout = self.timeout.min(config.connect_timeout);
        let wants_tls = self.tls
            || self.tls_ca_file.is_some()
            || self.tls_cert_file.is_some()
            || self.tls_danger_accept_invalid_certs;
        if wants_tls {
            config.tls = Some(TlsConfig {
                ca_file: self.tls_ca_file.clone(),
                client_cert_file: self.tls_cert_file.clone(),
                client_key_file: self.tls_key_file.clone(),
                danger_accept_invalid_certs: self.tls_danger_accept_invalid_certs,
            });
        }
        if let (Some(mechanism), Some(username)) = (&self.sasl_mechanism, &self.sasl_username) {
            let mechanism = mechanism.parse()?;
            let password = Secret::from_env(&self.sasl_password_env)?;
            config.sasl = Some(SaslConfig::new(mechanism, username.clone(), password));
        }
        Ok(config)
    }

    /// Bootstraps a [`Cluster`].
    pub async fn cluster(&self, log: &slog::Logger) -> Result<Addr<Cluster>, CliError> {
        let config = self.client_config().map_err(|e| self.connect_error(e))?;
        Cluster::connect(config, log.clone())
            .await
            .map_err(|source| self.connect_error(source))
    }

    pub fn connect_error(&self, source: konsumer_actors::Error) -> CliError {
        CliError::Connect {
            brokers: self.brokers.join(","),
            source,
        }
    }
}

/// `250ms`, `10s`, `2m`, or plain seconds (`10`, `1.5`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 500ms, 10s or 2m)"))?;
    let duration = Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("`{text}` is not a usable duration"))?;
    if duration.is_zero() {
        return Err("the duration must be greater than zero".into());
    }
    Ok(duration)
}

async fn run(command: Command, log: slog::Logger) -> Result<(), CliError> {
    match command {
        Command::Produce(args) => produce::run(args, log).await,
        Command::Consume(args) => consume::run(args, log).await,
        Command::Group {
            command: GroupCommand::Describe(args),
        } => describe::run(args, log).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = log::logger(cli.verbose);
    let result = actix::System::new().block_on(run(cli.command, log));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn brokers_are_comma_separated_and_shared_by_subcommands() {
        let cli = Cli::try_parse_from([
            "konsumer",
            "group",
            "describe",
            "g1",
            "--brokers",
            "a:1,b:2",
            "-vv",
        ])
        .unwrap();
        assert_eq!(cli.verbose, 2);
        let Command::Group {
            command: GroupCommand::Describe(args),
        } = cli.command
        else {
            panic!("parsed as another command");
        };
        assert_eq!(args.group, "g1");
        assert_eq!(args.connect.brokers, ["a:1", "b:2"]);
    }
}
