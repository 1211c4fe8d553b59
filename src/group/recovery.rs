//! What a group member does about an error: the seeds' error table, in one match so that
//! every step (find, join, sync, heartbeat, commit) handles a code the same way.

use crate::error::{Error, KafkaCode};

/// The member's next move after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The coordinator moved or its connection broke: look it up again (after a backoff),
    /// keeping the membership.
    FindCoordinator,
    /// The group is rebalancing or moved past our generation: join again. A normal event.
    Rejoin,
    /// The coordinator no longer knows the member: forget the member id, join as new.
    ResetMember,
    /// Transient: the same step again after a backoff, without reporting it.
    Retry,
    /// Anything else: report it with context, then try again after a pause.
    Report,
}

/// Classifies `error` by the seeds' table.
pub fn recovery(error: &Error) -> Recovery {
    match error {
        Error::Broker { code, .. } => match code {
            KafkaCode::NotCoordinator | KafkaCode::CoordinatorNotAvailable => {
                Recovery::FindCoordinator
            }
            KafkaCode::UnknownMemberId => Recovery::ResetMember,
            KafkaCode::RebalanceInProgress | KafkaCode::IllegalGeneration => Recovery::Rejoin,
            KafkaCode::CoordinatorLoadInProgress => Recovery::Retry,
            _ => Recovery::Report,
        },
        Error::Io { .. }
        | Error::ConnectionClosed { .. }
        | Error::Connect { .. }
        | Error::Timeout { .. }
        | Error::UnknownBroker { .. } => Recovery::FindCoordinator,
        _ => Recovery::Report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Context;

    fn broker(code: KafkaCode) -> Error {
        Error::Broker {
            code,
            context: Context::default(),
        }
    }

    #[test]
    fn the_error_table() {
        use Recovery::*;
        for (code, expected) in [
            (KafkaCode::NotCoordinator, FindCoordinator),
            (KafkaCode::CoordinatorNotAvailable, FindCoordinator),
            (KafkaCode::UnknownMemberId, ResetMember),
            (KafkaCode::RebalanceInProgress, Rejoin),
            (KafkaCode::IllegalGeneration, Rejoin),
            (KafkaCode::CoordinatorLoadInProgress, Retry),
            (KafkaCode::GroupAuthorizationFailed, Report),
            (KafkaCode::FencedInstanceId, Report),
            (KafkaCode::InconsistentGroupProtocol, Report),
        ] {
            assert_eq!(recovery(&broker(code)), expected, "{code:?}");
        }
        let io = Error::Io {
            broker: "b".into(),
            kind: std::io::ErrorKind::ConnectionReset,
            reason: "reset".into(),
        };
        assert_eq!(recovery(&io), FindCoordinator);
        assert_eq!(recovery(&Error::Shutdown("x".into())), Report);
    }
}
