//! Envelopes in and out: the header of every message we send (with a sequence number that
//! never repeats), signing and sealing, and opening what a member sent (signature, consortium,
//! addressee, time window, replay, seal) with the audit entry of what arrived. Both
//! [`super::inbound`] and [`super::outbound`] use these; neither imports the other's.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use fedanno_protocol::envelope::{
    Envelope, EnvelopeError, Header, OpenContext, Opened, PayloadKind, ReplayGuard,
};
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::limits::{MAX_CLOCK_SKEW_SECS, MAX_ENVELOPE_BYTES};
use fedanno_protocol::wire::{Frame, RefusalReason, Response};
use ring::rand::SystemRandom;

use super::AppError;
use super::context::Context;
use super::members::MemberInfo;
use crate::network::audit::AuditEvent;
use crate::network::kinds::Arrival;
use crate::site::clock::now;

/// The sequence counter of our envelopes and the replay guard of our peers'.
pub(crate) struct Envelopes {
    sequence: AtomicU64,
    replay: Mutex<ReplayGuard>,
}

impl Envelopes {
    /// Sequence numbers start above `min_sequence` (one above every sequence this site's
    /// audit log shows it sent) and above a clock-based floor, so that a site whose log was
    /// lost still starts above what peers remember of it.
    pub(super) fn new(min_sequence: u64) -> Self {
        Envelopes {
            sequence: AtomicU64::new((now() << 20).max(min_sequence)),
            replay: Mutex::new(ReplayGuard::default()),
        }
    }
}

impl Context {
    /// A header for a message from us.
    pub(super) fn header(
        &self,
        recipient: Option<SiteId>,
        kind: PayloadKind,
        reader_study: Option<&str>,
    ) -> Header {
        Header {
            version: fedanno_protocol::PROTOCOL_VERSION,
            consortium: self.identity().consortium().to_string(),
            sender: self.identity().site().clone(),
            recipient,
            study: reader_study.map(str::to_owned),
            round: 0,
            sequence: self.envelopes().sequence.fetch_add(1, Ordering::SeqCst),
            timestamp: now(),
            kind,
        }
    }

    /// Signs `payload` under `header`, or seals it to `recipients` as well.
    pub(super) fn envelope(
        &self,
        header: Header,
        payload: &[u8],
        seal_to: Option<&[(SiteId, [u8; 32])]>,
    ) -> Result<Envelope, AppError> {
        let signing = self.identity().signing();
        match seal_to {
            None => Ok(Envelope::sign(header, payload, signing)),
            Some(recipients) => {
                // The transport tap sees what is sealed, too.
                self.net().observe(payload);
                Envelope::seal(header, payload, recipients, signing, &SystemRandom::new())
                    .map_err(|e| AppError::BadReply(e.to_string()))
            }
        }
    }

    /// Verifies and opens an envelope sent on `member`'s connection.
    pub(super) fn open(
        &self,
        member: &MemberInfo,
        env_bytes: &[u8],
        max: usize,
    ) -> Result<(Envelope, Opened), Rejection> {
        let env = Envelope::from_bytes_limited(env_bytes, max)
            .map_err(|e| Rejection::malformed(e.to_string(), None))?;
        let hash = env.message_hash();
        if env.header().sender != member.site {
            return Err(Rejection::malformed(
                format!(
                    "envelope claims sender {} on {}'s connection",
                    env.header().sender,
                    member.site
                ),
                Some(hash),
            ));
        }
        let opened = self
            .open_checked(&env)
            .map_err(|e| Rejection::of(e, &member.site, hash))?;
        Ok((env, opened))
    }

    fn open_checked(&self, env: &Envelope) -> Result<Opened, EnvelopeError> {
        let members = self.members();
        let sender_key = |s: &SiteId| members.signing_key(s);
        let ctx = OpenContext {
            consortium: self.identity().consortium(),
            me: self.identity().site(),
            my_sealing_secret: Some(self.identity().sealing()),
            sender_key: &sender_key,
            now: now(),
            max_skew_secs: MAX_CLOCK_SKEW_SECS,
        };
        let mut replay = self
            .envelopes()
            .replay
            .lock()
            .map_err(|_| EnvelopeError::Malformed)?;
        env.open(&ctx, &mut replay)
    }

    /// Records that an opened message arrived.
    pub(super) async fn received(
        &self,
        o: &Opened,
        kind: Arrival,
        bytes: u64,
    ) -> Result<(), AppError> {
        self.audit()
            .record(AuditEvent::Received {
                from: o.header.sender.clone(),
                kind: kind.as_str().into(),
                study: o.header.study.clone(),
                round: o.header.round,
                sequence: o.header.sequence,
                message_hash: o.message_hash,
                bytes,
            })
            .await?;
        Ok(())
    }

    /// Opens and audits `member`'s response to one of our requests.
    pub(super) async fn open_response(
        &self,
        member: &MemberInfo,
        reply: &[u8],
    ) -> Result<(Opened, Response), AppError> {
        let bytes = match Frame::from_bytes(reply).map_err(|e| AppError::BadReply(e.to_string()))? {
            Frame::Refused { reason } => return Err(AppError::Refused(format!("{reason:?}"))),
            Frame::Hello { .. }
            | Frame::Challenge { .. }
            | Frame::Proof { .. }
            | Frame::Welcome { .. } => {
                return Err(AppError::BadReply(
                    "a membership proof instead of a response".into(),
                ));
            }
            Frame::Envelope { bytes } => bytes,
        };
        match self.open(member, &bytes, MAX_ENVELOPE_BYTES) {
            Ok((_, opened)) => {
                let resp = Response::from_bytes(&opened.payload)
                    .map_err(|e| AppError::BadReply(e.to_string()))?;
                self.received(
                    &opened,
                    Arrival::Response,
                    Frame::envelope_frame_len(bytes.len()),
                )
                .await?;
                Ok((opened, resp))
            }
            Err(r) => {
                self.reject(member.site.as_str(), r.reason.clone(), r.hash)
                    .await;
                Err(AppError::BadReply(r.reason))
            }
        }
    }

    /// Audits a message that failed its checks (and wakes whoever waits on activity).
    pub(super) async fn reject(&self, from: &str, reason: String, hash: Option<[u8; 32]>) {
        tracing::warn!(from = %from, reason = %reason, "rejected a message");
        if let Err(e) = self
            .audit()
            .record(AuditEvent::Rejected {
                from: from.to_string(),
                reason,
                message_hash: hash,
            })
            .await
        {
            tracing::error!(error = %e, "cannot audit a rejection");
        }
        self.bump();
    }
}

/// Why an envelope was rejected, with its hash when it could be parsed, and the code a
/// refusal answers with.
pub(super) struct Rejection {
    pub reason: String,
    pub hash: Option<[u8; 32]>,
    pub code: RefusalReason,
}

impl Rejection {
    fn malformed(reason: String, hash: Option<[u8; 32]>) -> Self {
        Self {
            reason,
            hash,
            code: RefusalReason::Malformed,
        }
    }

    fn of(e: EnvelopeError, sender: &SiteId, hash: [u8; 32]) -> Self {
        let reason = match &e {
            // Almost always a clock that is off at one of the two sites: say so.
            EnvelopeError::OutsideWindow { timestamp, now } => format!(
                "{e}: the clocks of this site and {sender} differ by {} s (at most {MAX_CLOCK_SKEW_SECS} s allowed); check the time synchronisation (NTP) of both machines",
                timestamp.abs_diff(*now),
            ),
            _ => e.to_string(),
        };
        let code = match e {
            EnvelopeError::Replayed { .. } | EnvelopeError::OutsideWindow { .. } => {
                RefusalReason::Replay
            }
            _ => RefusalReason::Malformed,
        };
        Self {
            reason,
            hash: Some(hash),
            code,
        }
    }
}
