//! Heartbeat: keeps one member alive in its group.
//!
//! One heartbeat at a time: the next is scheduled `interval` after the previous *answer*, so
//! a slow coordinator slows the heartbeats down instead of piling them up (as the seeds did).
//! Heartbeats go out on their own connection ([`Purpose::Heartbeat`]), so they continue while
//! a JoinGroup blocks on the group connection; the broker answers those RebalanceInProgress,
//! which the Coordinator expects while it joins. Every answer goes to the Coordinator as a
//! [`HeartbeatOutcome`]; deciding what an error means (rejoin, find the coordinator again,
//! report) is the Coordinator's job, so that the error table lives in one place.
//!
//! Each heartbeat must be answered within half of what the session has left after one
//! interval, not within the whole session timeout: a heartbeat lost on a dead connection (a
//! black hole answers nothing and resets nothing) then fails while there is still time for the
//! connection to be replaced and a next heartbeat to arrive before the broker drops the member.
//!
//! [`Purpose::Heartbeat`]: crate::messages::Purpose::Heartbeat

use std::time::Duration;

use actix::prelude::*;
use konsumer::kafka_protocol::messages::{GroupId, HeartbeatRequest};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::{Context as ErrorContext, Error};
use slog::{debug, Logger};

use crate::messages::{Call, HeartbeatAs, HeartbeatOutcome, Reply};

pub struct Heartbeat {
    connection: Recipient<Call>,
    coordinator: Recipient<HeartbeatOutcome>,
    group_id: String,
    group_instance_id: Option<String>,
    member_id: String,
    generation: i32,
    interval: Duration,
    timeout: Duration,
    log: Logger,
}

impl Heartbeat {
    /// A heartbeat for `member_id` in `generation`, sent over `connection` every `interval`,
    /// in a group whose session lasts `session_timeout`; each answer must come within
    /// [`beat_timeout`] of them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        connection: Recipient<Call>,
        coordinator: Recipient<HeartbeatOutcome>,
        group_id: String,
        group_instance_id: Option<String>,
        member: HeartbeatAs,
        interval: Duration,
        session_timeout: Duration,
        log: Logger,
    ) -> Self {
        let timeout = beat_timeout(interval, session_timeout);
        Heartbeat {
            connection,
            coordinator,
            group_id,
            group_instance_id,
            member_id: member.member_id,
            generation: member.generation,
            interval,
            timeout,
            log,
        }
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group_id.clone())))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.group_instance_id.clone().map(StrBytes::from_string));
        let (generation, member_id) = (self.generation, self.member_id.clone());
        let group = self.group_id.clone();
        let call = Call::new(request).with_timeout(self.timeout);
        let sent = self.connection.send(call);
        ctx.spawn(
            async move {
                let reply: Result<Reply, Error> = sent
                    .await
                    .unwrap_or_else(|_| Err(Error::Shutdown("heartbeat connection".into())));
                let response = reply?.into_typed::<HeartbeatRequest>("heartbeat")?;
                Error::check(response.error_code, || {
                    ErrorContext::default()
                        .with_api(konsumer::protocol::ApiKey::Heartbeat)
                        .with_group(group)
                })
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                if let Err(error) = &result {
                    debug!(act.log, "heartbeat answered with an error"; "error" => %error,
                        "generation" => generation);
                }
                act.coordinator.do_send(HeartbeatOutcome {
                    generation,
                    member_id,
                    result,
                });
                ctx.run_later(act.interval, |act, ctx| act.beat(ctx));
            }),
        );
    }
}

/// How long one heartbeat may wait for its answer: half of the session left after one
/// interval (so a failed beat leaves time for another on a fresh connection), but never less
/// than the interval; the whole session when the interval leaves no room.
pub fn beat_timeout(interval: Duration, session_timeout: Duration) -> Duration {
    match session_timeout.checked_sub(interval) {
        Some(left) if left / 2 >= interval => left / 2,
        Some(_) if interval < session_timeout => interval,
        _ => session_timeout,
    }
}

impl Actor for Heartbeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(self.interval, |act, ctx| act.beat(ctx));
    }
}

impl Handler<HeartbeatAs> for Heartbeat {
    type Result = ();

    fn handle(&mut self, member: HeartbeatAs, _: &mut Context<Self>) {
        self.generation = member.generation;
        self.member_id = member.member_id;
    }
}

impl Handler<crate::messages::Close> for Heartbeat {
    type Result = ();

    fn handle(&mut self, _: crate::messages::Close, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_fails_early_enough_for_another_within_the_session() {
        let s = Duration::from_secs;
        // The tests' groups: a 6 s session, beats every second.
        assert_eq!(beat_timeout(s(1), s(6)), Duration::from_millis(2500));
        // Kafka's defaults: 45 s session, 3 s interval.
        assert_eq!(beat_timeout(s(3), s(45)), s(21));
        // Tight settings: never below the interval, never above the session.
        assert_eq!(beat_timeout(s(2), s(5)), s(2));
        assert_eq!(beat_timeout(s(5), s(5)), s(5));
        assert_eq!(beat_timeout(s(9), s(5)), s(5));
    }
}
