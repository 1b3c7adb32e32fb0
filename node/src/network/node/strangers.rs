//! What refusing strangers costs the audit log. A peer that has not proven membership can
//! create identities and connections at will; if each refusal were an fsync'd audit entry, a
//! flood of them would be a write amplifier. So refusals of unproven peers are audited one by
//! one only up to [`INDIVIDUAL_PER_WINDOW`] per [`WINDOW`]; beyond that they are counted, and
//! one summary entry per window says how many were refused and why. Members' refusals are
//! always audited one by one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::context::Context;
use crate::network::audit::AuditEvent;
use crate::network::p2p::PeerId;

/// The accounting window of stranger refusals.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Stranger refusals audited one by one per window; the rest go into the window's summary.
pub const INDIVIDUAL_PER_WINDOW: u32 = 20;

struct Window {
    start: Instant,
    individual: u32,
    suppressed: BTreeMap<String, u32>,
}

/// The current window of stranger refusals.
pub(crate) struct StrangerAudit {
    window: Mutex<Window>,
}

impl Default for StrangerAudit {
    fn default() -> Self {
        StrangerAudit {
            window: Mutex::new(Window {
                start: Instant::now(),
                individual: 0,
                suppressed: BTreeMap::new(),
            }),
        }
    }
}

/// A reason without its variable parts, to group the window's summary by.
fn kind_of(reason: &str) -> String {
    reason
        .split([':', '(', '"'])
        .next()
        .unwrap_or(reason)
        .trim()
        .chars()
        .take(80)
        .collect()
}

impl StrangerAudit {
    /// Whether this refusal is audited one by one (else it was counted for the summary).
    fn individually(&self, reason: &str) -> bool {
        let Ok(mut w) = self.window.lock() else {
            return true;
        };
        if w.individual < INDIVIDUAL_PER_WINDOW {
            w.individual += 1;
            return true;
        }
        *w.suppressed.entry(kind_of(reason)).or_default() += 1;
        false
    }

    /// The summary of a window that is over, if it counted any refusal; a new window starts.
    fn take_summary(&self, now: Instant) -> Option<String> {
        let mut w = self.window.lock().ok()?;
        if now.duration_since(w.start) < WINDOW {
            return None;
        }
        let suppressed = std::mem::take(&mut w.suppressed);
        w.start = now;
        w.individual = 0;
        let total: u32 = suppressed.values().sum();
        (total > 0).then(|| {
            let by_reason: Vec<String> = suppressed
                .iter()
                .map(|(reason, n)| format!("{n} × {reason}"))
                .collect();
            format!(
                "{total} more refusals of peers that had not proven membership in the last {} s: {}",
                WINDOW.as_secs(),
                by_reason.join("; ")
            )
        })
    }
}

impl Context {
    /// Audits the refusal of an unproven `peer`, one by one or into the window's summary.
    pub(super) async fn audit_stranger(&self, peer: &PeerId, reason: String) {
        if self.strangers().individually(&reason) {
            super::membership::audit_refusal(self, peer, reason).await;
        }
    }

    /// Writes the summary of a window that is over (the sweep tick).
    pub(super) async fn flush_strangers(&self) {
        if let Some(summary) = self.strangers().take_summary(Instant::now()) {
            let event = AuditEvent::Refused {
                peer: "(unproven peers)".into(),
                reason: summary,
            };
            if let Err(e) = self.audit().record(event).await {
                tracing::error!(error = %e, "cannot audit the refusals of unproven peers");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_first_refusals_a_window_writes_one_summary() {
        let s = StrangerAudit::default();
        for _ in 0..INDIVIDUAL_PER_WINDOW {
            assert!(s.individually("no membership proof within 15 s"));
        }
        for i in 0..500 {
            let reason = if i % 2 == 0 {
                "no membership proof within 15 s".to_string()
            } else {
                format!("malformed answer: byte {i}")
            };
            assert!(!s.individually(&reason));
        }
        let start = s.window.lock().unwrap().start;
        assert_eq!(s.take_summary(start + Duration::from_secs(1)), None);
        let summary = s.take_summary(start + WINDOW).unwrap();
        assert!(summary.starts_with("500 more refusals"), "{summary}");
        assert!(summary.contains("250 × malformed answer"), "{summary}");
        assert!(
            summary.contains("250 × no membership proof within 15 s"),
            "{summary}"
        );
        // A new window: individual again, and nothing to summarise.
        assert!(s.individually("x"));
        assert_eq!(s.take_summary(start + WINDOW * 2), None);
    }
}
