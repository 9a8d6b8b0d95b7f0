//! Which key signs, which are published, and which are gone, derived from the
//! activation times alone so that every instance computes the same answer.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not yet signing: verifiers learn of it before it is used.
    Pending,
    /// The one key that signs now.
    Active,
    /// Superseded, still published while tokens it signed may be alive.
    Retired,
    /// Superseded long enough ago that nothing it signed is still valid.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub state: KeyState,
    /// When the next key took over (if it has).
    pub retired_at: Option<DateTime<Utc>>,
    /// When the last token this key can have signed expires.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Phase {
    pub fn is_published(&self) -> bool {
        self.state != KeyState::Expired
    }
}

/// `activations` must be sorted ascending. Returns one phase per key.
pub fn phases(
    activations: &[DateTime<Utc>],
    now: DateTime<Utc>,
    access_ttl: Duration,
) -> Vec<Phase> {
    let active = activations.iter().rposition(|a| *a <= now);
    activations
        .iter()
        .enumerate()
        .map(|(i, _)| match active {
            Some(a) if i == a => Phase {
                state: KeyState::Active,
                retired_at: None,
                expires_at: None,
            },
            Some(a) if i < a => {
                let retired_at = activations[i + 1];
                let expires_at = retired_at + access_ttl;
                let state = if now < expires_at {
                    KeyState::Retired
                } else {
                    KeyState::Expired
                };
                Phase {
                    state,
                    retired_at: Some(retired_at),
                    expires_at: Some(expires_at),
                }
            }
            _ => Phase {
                state: KeyState::Pending,
                retired_at: None,
                expires_at: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn newest_activated_key_signs_and_predecessors_linger_for_one_ttl() {
        let ttl = Duration::seconds(600);
        let keys = [at(0), at(1000), at(2000)];
        let states = |now| {
            phases(&keys, at(now), ttl)
                .into_iter()
                .map(|p| p.state)
                .collect::<Vec<_>>()
        };
        use KeyState::*;
        assert_eq!(states(500), vec![Active, Pending, Pending]);
        assert_eq!(states(1000), vec![Retired, Active, Pending]);
        assert_eq!(states(1599), vec![Retired, Active, Pending]);
        assert_eq!(states(1600), vec![Expired, Active, Pending]);
        assert_eq!(states(2100), vec![Expired, Retired, Active]);
        let p = &phases(&keys, at(2100), ttl)[1];
        assert_eq!(p.retired_at, Some(at(2000)));
        assert_eq!(p.expires_at, Some(at(2600)));
    }

    #[test]
    fn nothing_signs_before_the_first_activation() {
        let phases = phases(&[at(10)], at(5), Duration::seconds(1));
        assert_eq!(phases[0].state, KeyState::Pending);
    }
}
