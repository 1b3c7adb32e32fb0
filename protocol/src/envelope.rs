//! The envelope every application payload travels in: a header (version, consortium, sender,
//! recipient, study, round, sequence, time, kind), a payload that is plain or sealed
//! ([`Envelope::seal`] documents the construction), and the sender's Ed25519 signature over
//! `"fedanno-envelope-v1\0" ‖ header bytes ‖ payload bytes` — the exact bytes received.
//!
//! Wire form: `postcard({ body: bytes, signature: [u8; 64] })` where `body` is
//! `postcard(header) ‖ postcard(payload)`. Decoding checks the total size first, then every
//! length against `limits`, rejects trailing and non-canonical bytes, and keeps the body bytes so
//! that the signature is checked over what arrived, never over a re-encoding.
//!
//! [`Envelope::open`] does the receiving side's checks in a fixed order, cheapest and
//! least-trusting first, and records the sequence number in the [`ReplayGuard`] only after
//! everything else succeeded, so a forged or undecryptable message cannot burn a sequence number.

use std::fmt;

use ring::signature::Ed25519KeyPair;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use x25519_dalek::StaticSecret;

use crate::PROTOCOL_VERSION;
use crate::cert::{Signed, peek_version, validate_consortium_name};
use crate::codec::{self, CodecError, bounded};
use crate::crypto::{self, DOMAIN_ENVELOPE};
use crate::ids::SiteId;
use crate::limits::{MAX_ENVELOPE_BYTES, MAX_NAME_LEN};

mod replay;
mod seal;

pub use replay::ReplayGuard;
pub(crate) use seal::Entropy;
use seal::{Sealed, open_sealed, seal_payload};

/// Why an envelope was refused. Never contains payload bytes or key material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("envelope is truncated")]
    Truncated,
    #[error("envelope of {len} bytes exceeds the limit of {max} bytes")]
    Oversized { len: usize, max: usize },
    #[error("envelope is malformed")]
    Malformed,
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    #[error("envelope is for another consortium")]
    WrongConsortium,
    #[error("sender is not a known member")]
    UnknownSender,
    #[error("signature does not verify")]
    BadSignature,
    #[error("envelope is not addressed to this site")]
    NotForUs,
    #[error("sequence number {sequence} was already seen or is too old")]
    Replayed { sequence: u64 },
    #[error("timestamp {timestamp} is outside the accepted window around {now}")]
    OutsideWindow { timestamp: u64, now: u64 },
    #[error("sealed payload does not open")]
    SealBroken,
    #[error("too many recipients")]
    TooManyRecipients,
    #[error("a recipient's sealing key is unusable (low order)")]
    BadRecipientKey,
    #[error("the replay guard tracks too many senders")]
    TooManySenders,
    #[error("the random number generator failed")]
    RandomnessFailed,
}

impl From<CodecError> for EnvelopeError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Truncated => EnvelopeError::Truncated,
            CodecError::Oversized { len, max } => EnvelopeError::Oversized { len, max },
            _ => EnvelopeError::Malformed,
        }
    }
}

/// What the payload is, so the receiver knows which message type to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadKind {
    Request,
    Response,
    Gossip,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u16,
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub consortium: String,
    pub sender: SiteId,
    /// `None` = broadcast.
    pub recipient: Option<SiteId>,
    #[serde(deserialize_with = "bounded::opt_string::<_, MAX_NAME_LEN>")]
    pub study: Option<String>,
    pub round: u64,
    /// Per sender, increasing; see [`ReplayGuard`].
    pub sequence: u64,
    /// Unix seconds at the sender.
    pub timestamp: u64,
    pub kind: PayloadKind,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Payload {
    Plain(#[serde(deserialize_with = "bounded::bytes::<_, MAX_ENVELOPE_BYTES>")] Vec<u8>),
    Sealed(Sealed),
}

/// The signed part, decoded from (and encoded to) the body bytes.
#[derive(Serialize, Deserialize)]
struct Body {
    header: Header,
    payload: Payload,
}

/// A signed (and possibly sealed) application message.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    signed: Signed<MAX_ENVELOPE_BYTES>,
    header: Header,
    payload: Payload,
    hash: [u8; 32],
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("header", &self.header)
            .field("sealed", &self.is_sealed())
            .field("body_len", &self.signed.body.len())
            .finish()
    }
}

/// What the receiver needs to open envelopes.
pub struct OpenContext<'a> {
    pub consortium: &'a str,
    pub me: &'a SiteId,
    pub my_sealing_secret: Option<&'a StaticSecret>,
    /// The Ed25519 key of a currently certified, unrevoked sender, or `None`.
    pub sender_key: &'a dyn Fn(&SiteId) -> Option<[u8; 32]>,
    pub now: u64,
    pub max_skew_secs: u64,
}

impl fmt::Debug for OpenContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenContext")
            .field("consortium", &self.consortium)
            .field("me", &self.me)
            .field("has_sealing_secret", &self.my_sealing_secret.is_some())
            .field("now", &self.now)
            .field("max_skew_secs", &self.max_skew_secs)
            .finish()
    }
}

/// An authenticated, fresh, opened envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    pub header: Header,
    pub payload: Vec<u8>,
    /// SHA-256 of the envelope bytes, for audit entries and receipts.
    pub message_hash: [u8; 32],
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .field("message_hash", &crate::cert::hex(&self.message_hash))
            .finish()
    }
}

impl Envelope {
    /// Signs a plain payload. The caller keeps the payload within the limits
    /// ([`MAX_ENVELOPE_BYTES`], or `MAX_GOSSIP_BYTES` for gossip); receivers refuse larger ones.
    pub fn sign(header: Header, payload: &[u8], key: &Ed25519KeyPair) -> Envelope {
        Self::assemble(header, Payload::Plain(payload.to_vec()), key)
    }

    /// Seals the payload to the recipients' X25519 keys, then signs.
    ///
    /// Construction:
    /// 1. a fresh random 32-byte content key `K` and a fresh random ephemeral X25519 secret `e`
    ///    (public `E`) per envelope;
    /// 2. `ciphertext = ChaCha20-Poly1305(K, nonce = 0, aad = header bytes, payload)`;
    /// 3. per recipient `i` (site id `id_i`, X25519 key `R_i`):
    ///    `W_i = HKDF-SHA256(salt = "fedanno-seal-v1\0", ikm = X25519(e, R_i), info = E ‖ R_i ‖ id_i)`,
    ///    `wrapped_i = ChaCha20-Poly1305(W_i, nonce = 0, aad = SHA-256(header bytes), K)`.
    ///
    /// Nonces are never reused, by construction: `K` is random and encrypts one message; each
    /// `W_i` comes from a one-envelope ephemeral secret and a distinct recipient, and encrypts one
    /// message. Both ciphertexts are bound to the exact header. Fails with `TooManyRecipients`,
    /// `BadRecipientKey` (low-order key), `Malformed` (no or duplicate recipients),
    /// `Oversized`, or `RandomnessFailed`.
    pub fn seal(
        header: Header,
        payload: &[u8],
        recipients: &[(SiteId, [u8; 32])],
        key: &Ed25519KeyPair,
        rng: &dyn ring::rand::SecureRandom,
    ) -> Result<Envelope, EnvelopeError> {
        Self::seal_with(header, payload, recipients, key, rng)
    }

    pub(crate) fn seal_with(
        header: Header,
        payload: &[u8],
        recipients: &[(SiteId, [u8; 32])],
        key: &Ed25519KeyPair,
        rng: &(impl Entropy + ?Sized),
    ) -> Result<Envelope, EnvelopeError> {
        let header_bytes = codec::encode(&header);
        let sealed = seal_payload(&header_bytes, payload, recipients, rng)?;
        let env = Self::assemble(header, Payload::Sealed(sealed), key);
        let len = env.to_bytes().len();
        if len > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::Oversized {
                len,
                max: MAX_ENVELOPE_BYTES,
            });
        }
        Ok(env)
    }

    fn assemble(header: Header, payload: Payload, key: &Ed25519KeyPair) -> Envelope {
        let body = Body { header, payload };
        let bytes = codec::encode(&body);
        let signature = crypto::sign(key, DOMAIN_ENVELOPE, &bytes);
        let signed = Signed {
            body: bytes,
            signature,
        };
        let hash = crypto::sha256(&codec::encode(&signed));
        Envelope {
            signed,
            header: body.header,
            payload: body.payload,
            hash,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(&self.signed)
    }

    /// Decodes an envelope of at most [`MAX_ENVELOPE_BYTES`].
    pub fn from_bytes(b: &[u8]) -> Result<Envelope, EnvelopeError> {
        Self::from_bytes_limited(b, MAX_ENVELOPE_BYTES)
    }

    /// Decodes an envelope of at most `max` bytes (capped at [`MAX_ENVELOPE_BYTES`]); gossip
    /// passes [`crate::limits::MAX_GOSSIP_BYTES`].
    pub fn from_bytes_limited(b: &[u8], max: usize) -> Result<Envelope, EnvelopeError> {
        let max = max.min(MAX_ENVELOPE_BYTES);
        if b.len() > max {
            return Err(EnvelopeError::Oversized { len: b.len(), max });
        }
        let signed: Signed<MAX_ENVELOPE_BYTES> = codec::decode(b, max)?;
        match peek_version(&signed.body) {
            Some(PROTOCOL_VERSION) => {}
            Some(v) => return Err(EnvelopeError::UnsupportedVersion(v)),
            None => return Err(EnvelopeError::Malformed),
        }
        let body: Body = codec::decode(&signed.body, max)?;
        validate_consortium_name(&body.header.consortium).map_err(|_| EnvelopeError::Malformed)?;
        if let Payload::Sealed(s) = &body.payload {
            s.validate()?;
        }
        Ok(Envelope {
            hash: crypto::sha256(b),
            signed,
            header: body.header,
            payload: body.payload,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self.payload, Payload::Sealed(_))
    }

    /// The site ids a sealed envelope is sealed to (empty for a plain one).
    pub fn sealed_recipients(&self) -> Vec<&SiteId> {
        match &self.payload {
            Payload::Plain(_) => Vec::new(),
            Payload::Sealed(s) => s.recipient_ids().collect(),
        }
    }

    /// SHA-256 of [`Self::to_bytes`].
    pub fn message_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// Verifies version, consortium, sender signature, addressee, time window and replay, then
    /// opens the seal with our X25519 secret if sealed. The sequence number is recorded only if
    /// all of that succeeds.
    pub fn open(
        &self,
        ctx: &OpenContext<'_>,
        replay: &mut ReplayGuard,
    ) -> Result<Opened, EnvelopeError> {
        let h = &self.header;
        if h.version != PROTOCOL_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(h.version));
        }
        if h.consortium != ctx.consortium {
            return Err(EnvelopeError::WrongConsortium);
        }
        let key = (ctx.sender_key)(&h.sender).ok_or(EnvelopeError::UnknownSender)?;
        if !crypto::verify(
            &key,
            DOMAIN_ENVELOPE,
            &self.signed.body,
            &self.signed.signature,
        ) {
            return Err(EnvelopeError::BadSignature);
        }
        if h.recipient.as_ref().is_some_and(|r| r != ctx.me) {
            return Err(EnvelopeError::NotForUs);
        }
        if h.timestamp.abs_diff(ctx.now) > ctx.max_skew_secs {
            return Err(EnvelopeError::OutsideWindow {
                timestamp: h.timestamp,
                now: ctx.now,
            });
        }
        replay.check(&h.sender, h.sequence)?;
        let payload = match &self.payload {
            Payload::Plain(p) => p.clone(),
            Payload::Sealed(s) => {
                let secret = ctx.my_sealing_secret.ok_or(EnvelopeError::NotForUs)?;
                let header_bytes = codec::encode(h);
                open_sealed(s, &header_bytes, ctx.me, secret)?
            }
        };
        replay.accept(&h.sender, h.sequence)?;
        Ok(Opened {
            header: h.clone(),
            payload,
            message_hash: self.hash,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
