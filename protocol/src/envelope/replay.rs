//! Replay protection: per sender, the highest sequence number seen and a sliding window of
//! [`REPLAY_WINDOW`] sequence numbers below it (RFC 6479-style ring bitmap). A sequence number is
//! accepted once, if it is above the highest seen or within the window below it and not yet seen.
//!
//! Senders choose their sequence numbers; they need not be dense (a receiver sees only the
//! messages addressed to it) but must increase. A sender that does not persist its counter can
//! start it at `now << 20` after a restart, which stays above every number it used before as long
//! as it sends fewer than 2^20 messages per second.
//!
//! The guard tracks at most a bounded number of senders; with only certified senders reaching it
//! (signatures are checked first) that bound is the consortium's size, not an attacker's choice.

use std::collections::HashMap;

use super::EnvelopeError;
use crate::ids::SiteId;
use crate::limits::{MAX_REPLAY_SENDERS, REPLAY_WINDOW};

const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

#[derive(Clone, Debug)]
struct Window {
    highest: u64,
    /// Bit `s % REPLAY_WINDOW` is set when sequence `s` (within the window) was seen.
    seen: [u64; WORDS],
}

impl Window {
    fn new(first: u64) -> Self {
        let mut w = Self {
            highest: first,
            seen: [0; WORDS],
        };
        w.set(first, true);
        w
    }

    fn slot(seq: u64) -> (usize, u64) {
        let bit = seq % REPLAY_WINDOW;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    fn get(&self, seq: u64) -> bool {
        let (w, m) = Self::slot(seq);
        self.seen.get(w).is_some_and(|x| x & m != 0)
    }

    fn set(&mut self, seq: u64, v: bool) {
        let (w, m) = Self::slot(seq);
        if let Some(x) = self.seen.get_mut(w) {
            if v { *x |= m } else { *x &= !m }
        }
    }

    fn check(&self, seq: u64) -> Result<(), EnvelopeError> {
        if seq > self.highest {
            return Ok(());
        }
        if self.highest - seq >= REPLAY_WINDOW || self.get(seq) {
            return Err(EnvelopeError::Replayed { sequence: seq });
        }
        Ok(())
    }

    fn accept(&mut self, seq: u64) -> Result<(), EnvelopeError> {
        self.check(seq)?;
        if seq > self.highest {
            let advance = seq - self.highest;
            if advance >= REPLAY_WINDOW {
                self.seen = [0; WORDS];
            } else {
                for s in self.highest + 1..seq {
                    self.set(s, false);
                }
            }
            self.highest = seq;
        }
        self.set(seq, true);
        Ok(())
    }
}

/// Per-sender replay state. See the module documentation.
#[derive(Clone, Debug)]
pub struct ReplayGuard {
    senders: HashMap<SiteId, Window>,
    max_senders: usize,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayGuard {
    /// A guard for up to [`MAX_REPLAY_SENDERS`] senders.
    pub fn new() -> Self {
        Self::with_max_senders(MAX_REPLAY_SENDERS)
    }

    pub fn with_max_senders(max_senders: usize) -> Self {
        Self {
            senders: HashMap::new(),
            max_senders,
        }
    }

    /// Whether `sequence` from `sender` would be accepted, without recording it.
    pub fn check(&self, sender: &SiteId, sequence: u64) -> Result<(), EnvelopeError> {
        match self.senders.get(sender) {
            Some(w) => w.check(sequence),
            None if self.senders.len() >= self.max_senders => Err(EnvelopeError::TooManySenders),
            None => Ok(()),
        }
    }

    /// Records `sequence` from `sender`, or refuses it as a replay.
    pub fn accept(&mut self, sender: &SiteId, sequence: u64) -> Result<(), EnvelopeError> {
        if let Some(w) = self.senders.get_mut(sender) {
            return w.accept(sequence);
        }
        if self.senders.len() >= self.max_senders {
            return Err(EnvelopeError::TooManySenders);
        }
        self.senders.insert(sender.clone(), Window::new(sequence));
        Ok(())
    }

    /// The highest sequence number accepted from `sender`.
    pub fn highest(&self, sender: &SiteId) -> Option<u64> {
        self.senders.get(sender).map(|w| w.highest)
    }

    /// Forgets a sender (e.g. when its certificate is revoked).
    pub fn forget(&mut self, sender: &SiteId) {
        self.senders.remove(sender);
    }
}
