//! The typed lifecycle of a migration: its [`Phase`] and the [`Action`]s
//! whose steps the state schema records. Their text forms are exactly the
//! strings stored in `pgshift.migrations.phase` and `pgshift.steps.action`,
//! and are written nowhere else.

use std::fmt;
use std::str::FromStr;

/// Where a migration stands: starting → active → completing → completed,
/// or (from starting or active) → rolling_back → rolled_back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `start` runs: the old version's views exist, the expand is under way.
    Starting,
    /// Both versions are live.
    Active,
    /// `complete` runs: only the new version is live.
    Completing,
    /// The new version is the physical schema.
    Completed,
    /// `rollback` runs: only the old version is live.
    RollingBack,
    /// Everything `start` added is gone.
    RolledBack,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 6] = [
        Phase::Starting,
        Phase::Active,
        Phase::Completing,
        Phase::Completed,
        Phase::RollingBack,
        Phase::RolledBack,
    ];

    /// The stored text: `starting`, `active`, `completing`, `completed`,
    /// `rolling_back` or `rolled_back`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Active => "active",
            Phase::Completing => "completing",
            Phase::Completed => "completed",
            Phase::RollingBack => "rolling_back",
            Phase::RolledBack => "rolled_back",
        }
    }

    /// True for the two phases a migration ends in.
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Completed | Phase::RolledBack)
    }

    /// The stored texts of the phases for which `keep` holds, for SQL
    /// parameters (`phase = ANY($n)`).
    pub fn texts(keep: impl Fn(Phase) -> bool) -> Vec<&'static str> {
        Phase::ALL
            .into_iter()
            .filter(|p| keep(*p))
            .map(Phase::as_str)
            .collect()
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored phase or action that pgshift does not know: the state schema
/// was written by another program or a newer pgshift.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the state schema holds the {what} {value:?}, which this pgshift does not know; was it written by a newer pgshift?"
)]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for Phase {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Phase, UnknownName> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "phase",
                value: s.to_string(),
            })
    }
}

/// One of the three commands whose steps a plan holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Start,
    Complete,
    Rollback,
}

impl Action {
    /// Every action, in the order a plan lists them.
    pub const ALL: [Action; 3] = [Action::Start, Action::Complete, Action::Rollback];

    /// The stored text: `start`, `complete` or `rollback`, also the
    /// command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Complete => "complete",
            Action::Rollback => "rollback",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Action, UnknownName> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "action",
                value: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests;
