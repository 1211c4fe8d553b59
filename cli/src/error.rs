//! What can make a subcommand fail. `main` prints it to stderr (`error: ...`) and exits with 1.

use konsumer_actors::Error;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No bootstrap broker answered (or the addresses are not host:port).
    #[error("cannot connect to {brokers}: {source}")]
    Connect { brokers: String, source: Error },

    /// A request failed; `what` says which one, and for what.
    #[error("{what}: {source}")]
    Kafka { what: String, source: Error },

    /// The producer could not be set up (an invalid setting).
    #[error("cannot start the producer: {0}")]
    Producer(Error),

    /// Reading the records from standard input failed.
    #[error("cannot read standard input: {0}")]
    Stdin(#[source] std::io::Error),

    /// Some records were not acknowledged. `details` has one line per (partition, cause).
    #[error("{failed} of {total} record(s) to topic {topic} were not acknowledged{}",
        details.iter().map(|d| format!("\n  {d}")).collect::<String>())]
    Delivery {
        topic: String,
        failed: u64,
        total: u64,
        details: Vec<String>,
    },

    /// The group is not known to its coordinator and has no committed offsets.
    #[error("consumer group {group:?} does not exist")]
    GroupNotFound { group: String },

    /// The consumer could not be set up (an invalid setting) or started.
    #[error("cannot start the consumer: {0}")]
    Consumer(Error),

    /// Writing the records to standard output failed.
    #[error("cannot write to standard output: {0}")]
    Stdout(#[source] std::io::Error),

    /// A consumed partition stopped; the records after its committed offset stay unconsumed.
    #[error("partition {topic}/{partition} stopped: {source}")]
    PartitionStopped {
        topic: String,
        partition: i32,
        source: Error,
    },

    /// SIGINT/SIGTERM handling could not be set up.
    #[error("cannot install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),

    /// The graceful shutdown did not finish in time.
    #[error("the consumer did not shut down within {0:?}; records printed since the last commit will be printed again")]
    ShutdownTimeout(std::time::Duration),

    /// A second signal cut the graceful shutdown short.
    #[error(
        "interrupted during shutdown; records printed since the last commit will be printed again"
    )]
    Interrupted,

    /// A broker's answer that cannot be used.
    #[error("unexpected answer from broker {broker}: {detail}")]
    Unexpected { broker: String, detail: String },
}

impl CliError {
    pub fn kafka(what: impl Into<String>) -> impl FnOnce(Error) -> CliError {
        let what = what.into();
        move |source| CliError::Kafka { what, source }
    }
}
