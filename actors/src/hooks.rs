//! Offset hooks: the user's say in where a partition starts and where it jumps.
//!
//! Three moments need a decision the group cannot make for the application (the seeds'
//! StartingOffset, OffsetOutOfRange and MaxMessageAge hooks):
//! - a partition is assigned: start at the committed offset, or somewhere else?
//! - the broker answers OffsetOutOfRange (the position was deleted or is past the end);
//! - the records fetched are older than the topic's `max_message_age`.
//!
//! Each hook is a plain function answering a [`StartAt`]; the service resolves it (ListOffsets
//! for earliest, latest and timestamps). Without a hook the [`ConsumerConfig`] policies apply:
//! committed offset else `offset_reset`; `offset_reset`; the first record younger than the age.

use std::sync::Arc;

use konsumer::consumer::{ConsumerConfig, OffsetReset};

/// Where a partition starts (or jumps to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// This offset.
    Offset(i64),
    /// The oldest record still in the log.
    Earliest,
    /// The end of the log: only records produced from now on.
    Latest,
    /// The first record with a timestamp (ms since the epoch) at or after this one; the end of
    /// the log if there is none.
    Timestamp(i64),
    /// Not at all: the partition stops and [`ConsumerEvent::PartitionStopped`]
    /// (crate::ConsumerEvent::PartitionStopped) says why.
    Stop,
}

impl From<OffsetReset> for StartAt {
    fn from(reset: OffsetReset) -> Self {
        match reset {
            OffsetReset::Earliest => StartAt::Earliest,
            OffsetReset::Latest => StartAt::Latest,
            OffsetReset::None => StartAt::Stop,
        }
    }
}

/// `(topic, partition, committed offset)` -> where to start. `committed` is the group's
/// committed offset, or the newer offset the partition's previous owner handed over through
/// the sidechannel; `None` if there is neither.
pub type StartingOffsetHook = Arc<dyn Fn(&str, i32, Option<i64>) -> StartAt + Send + Sync>;

/// `(topic, partition, offset the broker refused)` -> where to go instead.
pub type OutOfRangeHook = Arc<dyn Fn(&str, i32, i64) -> StartAt + Send + Sync>;

/// `(topic, partition, offset reached, oldest timestamp wanted in ms)` -> where to go.
pub type MaxMessageAgeHook = Arc<dyn Fn(&str, i32, i64, i64) -> StartAt + Send + Sync>;

/// The hooks a service runs; `None` means the configured policy.
#[derive(Clone, Default)]
pub struct OffsetHooks {
    pub starting_offset: Option<StartingOffsetHook>,
    pub out_of_range: Option<OutOfRangeHook>,
    pub max_message_age: Option<MaxMessageAgeHook>,
}

impl OffsetHooks {
    /// Where an assigned partition starts.
    pub fn start(
        &self,
        config: &ConsumerConfig,
        topic: &str,
        partition: i32,
        committed: Option<i64>,
    ) -> StartAt {
        match &self.starting_offset {
            Some(hook) => hook(topic, partition, committed),
            None => committed.map_or(config.offset_reset.into(), StartAt::Offset),
        }
    }

    /// Where a partition goes after OffsetOutOfRange at `offset`.
    pub fn out_of_range(
        &self,
        config: &ConsumerConfig,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> StartAt {
        match &self.out_of_range {
            Some(hook) => hook(topic, partition, offset),
            None => config.offset_reset.into(),
        }
    }

    /// Where a partition goes whose records at `offset` are older than `since` (ms).
    pub fn too_old(&self, topic: &str, partition: i32, offset: i64, since: i64) -> StartAt {
        match &self.max_message_age {
            Some(hook) => hook(topic, partition, offset, since),
            None => StartAt::Timestamp(since),
        }
    }
}

impl std::fmt::Debug for OffsetHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetHooks")
            .field("starting_offset", &self.starting_offset.is_some())
            .field("out_of_range", &self.out_of_range.is_some())
            .field("max_message_age", &self.max_message_age.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_hooks_the_configured_policies_decide() {
        let hooks = OffsetHooks::default();
        let mut config = ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        };
        assert_eq!(hooks.start(&config, "t", 0, Some(7)), StartAt::Offset(7));
        assert_eq!(hooks.start(&config, "t", 0, None), StartAt::Earliest);
        assert_eq!(hooks.out_of_range(&config, "t", 0, 9), StartAt::Earliest);
        config.offset_reset = OffsetReset::None;
        assert_eq!(hooks.start(&config, "t", 0, None), StartAt::Stop);
        assert_eq!(hooks.out_of_range(&config, "t", 0, 9), StartAt::Stop);
        assert_eq!(hooks.too_old("t", 0, 3, 1_000), StartAt::Timestamp(1_000));
    }

    #[test]
    fn a_hook_overrides_its_policy_and_sees_the_partition() {
        let hooks = OffsetHooks {
            starting_offset: Some(Arc::new(|topic, partition, committed| {
                if topic == "audit" && partition == 2 {
                    StartAt::Offset(committed.unwrap_or(0) + 100)
                } else {
                    StartAt::Latest
                }
            })),
            out_of_range: Some(Arc::new(|_, _, offset| StartAt::Offset(offset - 1))),
            max_message_age: Some(Arc::new(|_, _, _, _| StartAt::Stop)),
        };
        let config = ConsumerConfig::default();
        assert_eq!(
            hooks.start(&config, "audit", 2, Some(5)),
            StartAt::Offset(105)
        );
        assert_eq!(hooks.start(&config, "audit", 1, Some(5)), StartAt::Latest);
        assert_eq!(hooks.out_of_range(&config, "t", 0, 9), StartAt::Offset(8));
        assert_eq!(hooks.too_old("t", 0, 3, 1_000), StartAt::Stop);
    }
}
