//! SA-v1 secure aggregation (ARCHITECTURE.md, "Secure aggregation"): full-graph pairwise
//! masking over a signed roster, with restart-on-dropout and the differencing guards.
//!
//! One round, for one [`Roster`] (signed by the coordinator as a [`SignedRoster`]):
//! 1. every roster site signs a fresh X25519 public key bound to the roster hash ([`RoundKey`]);
//!    the coordinator forwards the whole bundle, and each site checks it with
//!    [`verify_key_bundle`] before deriving anything;
//! 2. each site u sends y_u = x_u + Σ_{v after u} PRG(s_uv) − Σ_{v before u} PRG(s_uv) (mod 2^128)
//!    ([`mask_input`]), where "before/after" is roster order and s_uv is [`pair_seed`];
//! 3. if every roster site submitted, the masks cancel in [`aggregate`]. Otherwise the round is
//!    aborted (no seed is ever revealed) and retried with a new roster and fresh keys; the retry's
//!    signed roster carries the coordinator's [`AbortCertificate`] of what it received, and honest
//!    sites refuse a retry that excludes a site which provably submitted ([`check_retry`], using
//!    the sites' own [`SubmissionStatement`]s).
//!
//! The PRG is pinned forever: ChaCha20 (RFC 8439 §2.3, 20 rounds), key = the 32-byte pair seed,
//! 96-bit nonce all zero, block counter from 0; each u128 element is the next 16 keystream bytes
//! read little-endian ([`mask_stream`]). The block function is implemented here (about 40 lines,
//! checked against the RFC 8439 vectors and, in tests, against RustCrypto's `chacha20`), so that
//! the pure protocol crate needs no cipher-trait stack to expand a mask.
//!
//! Signatures are Ed25519 over `domain ‖ postcard(all fields except the signature)`, with one
//! domain per object ([`DOMAIN_ROSTER`], [`DOMAIN_ROUND_KEY`], [`DOMAIN_ABORT`],
//! [`DOMAIN_STATEMENT`]). [`Roster::hash`] and [`MaskedInput::hash`] are SHA-256 of the canonical
//! postcard bytes, so a receiver can hash the exact bytes it received.
//!
//! Inputs are elements of Z_2^128: integers via [`encode_signed`], reals via [`encode_fixed`].

use ring::signature::Ed25519KeyPair;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use crate::codec::{self, CodecError, bounded, byte_array};
use crate::crypto;
use crate::ids::SiteId;
use crate::limits::MAX_NAME_LEN;

/// Domain of a signed roster (coordinator key over roster ‖ previous abort certificate).
pub const DOMAIN_ROSTER: &[u8] = b"fedanno-secagg-roster-v1\0";
/// Domain of a round key (site key over roster hash ‖ site ‖ X25519 public key).
pub const DOMAIN_ROUND_KEY: &[u8] = b"fedanno-secagg-key-v1\0";
/// Domain of an abort certificate (coordinator key over its fields).
pub const DOMAIN_ABORT: &[u8] = b"fedanno-secagg-abort-v1\0";
/// Domain of a submission statement (site key over roster hash ‖ site ‖ submitted).
pub const DOMAIN_STATEMENT: &[u8] = b"fedanno-secagg-statement-v1\0";
/// HKDF salt of the pair-seed derivation ([`pair_seed`]).
pub const MASK_SALT: &[u8] = b"fedanno-secagg-mask-v1\0";
/// Most elements in one vector.
pub const MAX_DIM: usize = 1 << 17;
/// Most sites in one roster.
pub const MAX_ROSTER: usize = 256;
/// Fewest sites in one roster: with 2 sites each learns the other's input from the sum.
pub const MIN_ROSTER: usize = 3;
/// Largest fraction width accepted by [`encode_fixed`] and [`decode_fixed`].
pub const MAX_FRAC_BITS: u32 = 126;
/// Largest encoded roster, signed roster, round key, abort certificate or statement, in bytes
/// (a full signed roster with a full previous certificate is about 26 KiB).
pub const MAX_SECAGG_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest encoded [`MaskedInput`], in bytes: a u128 takes at most 19 bytes in postcard.
pub const MAX_MASKED_INPUT_BYTES: usize = 256 + MAX_DIM * 19;

/// Why a secure-aggregation object or step was refused. Never contains vector values, seeds or
/// key bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SecAggError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("signature does not verify")]
    BadSignature,
    #[error("study or schema id must be 1 to {MAX_NAME_LEN} bytes without control characters")]
    BadName,
    #[error("roster sites are not sorted ascending")]
    RosterUnsorted,
    #[error("site appears more than once")]
    DuplicateSite,
    #[error("roster of {len} sites is below the minimum of {min}")]
    RosterTooSmall { len: usize, min: usize },
    #[error("roster of {len} sites exceeds the maximum of {max}")]
    RosterTooLarge { len: usize, max: usize },
    #[error("dimension {dim} is outside 1..={max}")]
    BadDimension { dim: usize, max: usize },
    #[error("vector has {got} elements, the roster says {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("site is not in the roster")]
    NotInRoster,
    #[error("a site cannot pair with itself")]
    SameSite,
    #[error("object is bound to another roster")]
    WrongRoster,
    #[error("expected {expected} entries, one per roster site, got {got}")]
    WrongCount { expected: usize, got: usize },
    #[error("entries are not in roster order")]
    OutOfOrder,
    #[error("no signing key known for a roster site")]
    UnknownSiteKey,
    #[error("public key is of low order (all-zero shared secret)")]
    LowOrderKey,
    #[error("two sites published the same round public key")]
    DuplicatePublicKey,
    #[error("the bundle's key for this site is not the site's own round key")]
    OwnKeyMismatch,
    #[error("a retry (attempt > 0) must carry the previous attempt's abort certificate")]
    MissingPrevious,
    #[error(
        "previous abort certificate is not for this study and input, or not for the previous attempt"
    )]
    PreviousMismatch,
    #[error("retry excludes a site that submitted to the previous attempt")]
    ExcludedSubmitter,
    #[error(
        "abort certificate lists every roster site as submitted, so the retry must keep the same sites"
    )]
    CompleteAbort,
    #[error("fraction width {0} exceeds {MAX_FRAC_BITS}")]
    BadFracBits(u32),
    #[error("value is not finite")]
    NotFinite,
    #[error("value is out of the fixed-point range")]
    OutOfRange,
    #[error("aggregate is out of range (likely wrapped)")]
    LikelyWrapped,
}

macro_rules! secagg_bytes {
    ($t:ty, $max:expr) => {
        impl $t {
            /// The canonical postcard encoding.
            pub fn to_bytes(&self) -> Vec<u8> {
                codec::encode(self)
            }
            /// Decodes one canonical value of at most the limit's bytes.
            pub fn from_bytes(b: &[u8]) -> Result<Self, CodecError> {
                codec::decode(b, $max)
            }
        }
    };
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.chars().any(char::is_control)
}

/// Sorted strictly ascending (hence unique).
fn check_sorted_unique<'a>(sites: impl Iterator<Item = &'a SiteId>) -> Result<(), SecAggError> {
    let mut prev: Option<&SiteId> = None;
    for s in sites {
        if let Some(p) = prev {
            if s == p {
                return Err(SecAggError::DuplicateSite);
            }
            if s < p {
                return Err(SecAggError::RosterUnsorted);
            }
        }
        prev = Some(s);
    }
    Ok(())
}

fn check_roster_len(len: usize, min: usize) -> Result<(), SecAggError> {
    if len > MAX_ROSTER {
        return Err(SecAggError::RosterTooLarge {
            len,
            max: MAX_ROSTER,
        });
    }
    if len < min {
        return Err(SecAggError::RosterTooSmall { len, min });
    }
    Ok(())
}

fn check_sig(ok: bool) -> Result<(), SecAggError> {
    if ok {
        Ok(())
    } else {
        Err(SecAggError::BadSignature)
    }
}

/// The sites, input and parameters of one aggregation attempt, as the coordinator announces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub study: String,
    /// Identifies the input being aggregated (hash of phase, iteration, parameters).
    pub input: [u8; 32],
    /// 0, 1, … retries of the same input.
    pub attempt: u32,
    /// Vector schema id.
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub schema: String,
    pub dim: u32,
    /// Sorted ascending, unique, [`MIN_ROSTER`]..=[`MAX_ROSTER`].
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_ROSTER>")]
    pub sites: Vec<SiteId>,
    /// The study's minimum number of contributors.
    pub min_sites: u32,
    pub coordinator: SiteId,
    /// Unix seconds.
    pub deadline: u64,
}

secagg_bytes!(Roster, MAX_SECAGG_MESSAGE_BYTES);

impl Roster {
    /// SHA-256 of the canonical postcard encoding: binds keys, inputs and seeds to this exact
    /// attempt (study, input, attempt number, schema, dimension, sites, coordinator, deadline).
    pub fn hash(&self) -> [u8; 32] {
        crypto::sha256(&codec::encode(self))
    }

    /// Checks the form: study and schema names, `1 <= dim <= MAX_DIM`, sites sorted ascending and
    /// unique, at least `max(MIN_ROSTER, min_sites)` and at most [`MAX_ROSTER`] sites.
    pub fn validate(&self) -> Result<(), SecAggError> {
        if !valid_name(&self.study) || !valid_name(&self.schema) {
            return Err(SecAggError::BadName);
        }
        let dim = self.dim_usize();
        if dim == 0 || dim > MAX_DIM {
            return Err(SecAggError::BadDimension { dim, max: MAX_DIM });
        }
        let min = usize::try_from(self.min_sites)
            .unwrap_or(usize::MAX)
            .max(MIN_ROSTER);
        check_roster_len(self.sites.len(), min)?;
        check_sorted_unique(self.sites.iter())
    }

    /// Position of a site in the roster (the roster is sorted, so this is a binary search).
    pub fn index_of(&self, s: &SiteId) -> Option<usize> {
        self.sites.binary_search(s).ok()
    }

    /// `dim` as a `usize` (saturating, so an absurd value still fails the range check).
    pub fn dim_usize(&self) -> usize {
        usize::try_from(self.dim).unwrap_or(usize::MAX)
    }
}

/// A roster signed by the coordinator, together with the abort certificate of the previous
/// attempt when this is a retry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRoster {
    pub roster: Roster,
    pub previous: Option<AbortCertificate>,
    #[serde(with = "byte_array")]
    pub signature: [u8; 64],
}

secagg_bytes!(SignedRoster, MAX_SECAGG_MESSAGE_BYTES);

impl SignedRoster {
    /// Signs `postcard(roster, previous)` under [`DOMAIN_ROSTER`].
    pub fn sign(roster: Roster, previous: Option<AbortCertificate>, key: &Ed25519KeyPair) -> Self {
        let msg = codec::encode(&(&roster, &previous));
        let signature = crypto::sign(key, DOMAIN_ROSTER, &msg);
        Self {
            roster,
            previous,
            signature,
        }
    }

    /// Checks, with the key of `roster.coordinator` (which the caller looks up and checks is
    /// entitled to coordinate): the roster's form ([`Roster::validate`]); the
    /// signature; that a retry (`attempt > 0`) carries a previous certificate and a first attempt
    /// does not; and that the previous certificate verifies under the same key, is for the same
    /// study and input and for attempt `roster.attempt − 1`, and that the retry keeps every site
    /// the certificate lists as submitted (a certificate listing *every* site of its roster
    /// requires the retry to have exactly the same sites, since the coordinator then already
    /// holds their sum).
    pub fn verify(&self, coordinator_key: &[u8; 32]) -> Result<(), SecAggError> {
        self.roster.validate()?;
        let msg = codec::encode(&(&self.roster, &self.previous));
        check_sig(crypto::verify(
            coordinator_key,
            DOMAIN_ROSTER,
            &msg,
            &self.signature,
        ))?;
        match (&self.previous, self.roster.attempt.checked_sub(1)) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(SecAggError::MissingPrevious),
            (Some(_), None) => Err(SecAggError::PreviousMismatch),
            (Some(prev), Some(prev_attempt)) => {
                prev.verify(coordinator_key)?;
                if prev.study != self.roster.study
                    || prev.input != self.roster.input
                    || prev.attempt != prev_attempt
                {
                    return Err(SecAggError::PreviousMismatch);
                }
                if prev.submitted.len() == prev.roster.len() && prev.roster != self.roster.sites {
                    return Err(SecAggError::CompleteAbort);
                }
                if prev.submitters().any(|s| self.roster.index_of(s).is_none()) {
                    return Err(SecAggError::ExcludedSubmitter);
                }
                Ok(())
            }
        }
    }
}

/// The coordinator's signed account of an aborted attempt: which roster sites' masked inputs it
/// received, with the hash of each ([`MaskedInput::hash`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortCertificate {
    pub roster_hash: [u8; 32],
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub study: String,
    pub input: [u8; 32],
    pub attempt: u32,
    /// The aborted roster's sites, sorted ascending.
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_ROSTER>")]
    pub roster: Vec<SiteId>,
    /// Masked-input hashes received, sorted by site, each site at most once.
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_ROSTER>")]
    pub submitted: Vec<(SiteId, [u8; 32])>,
    #[serde(with = "byte_array")]
    pub signature: [u8; 64],
}

secagg_bytes!(AbortCertificate, MAX_SECAGG_MESSAGE_BYTES);

impl AbortCertificate {
    fn message(&self) -> Vec<u8> {
        codec::encode(&(
            &self.roster_hash,
            &self.study,
            &self.input,
            self.attempt,
            &self.roster,
            &self.submitted,
        ))
    }

    /// Signs the certificate for `roster` under [`DOMAIN_ABORT`]. `submitted` is sorted by site
    /// (the canonical order); listing a site twice or a site outside the roster yields a
    /// certificate that [`Self::verify`] refuses.
    pub fn sign(
        roster: &Roster,
        mut submitted: Vec<(SiteId, [u8; 32])>,
        key: &Ed25519KeyPair,
    ) -> Self {
        submitted.sort();
        let mut cert = Self {
            roster_hash: roster.hash(),
            study: roster.study.clone(),
            input: roster.input,
            attempt: roster.attempt,
            roster: roster.sites.clone(),
            submitted,
            signature: [0; 64],
        };
        cert.signature = crypto::sign(key, DOMAIN_ABORT, &cert.message());
        cert
    }

    /// Checks the signature by the coordinator's key and the form: study name, roster sorted,
    /// unique and of [`MIN_ROSTER`]..=[`MAX_ROSTER`] sites, submitters sorted, unique and in the
    /// roster.
    pub fn verify(&self, coordinator_key: &[u8; 32]) -> Result<(), SecAggError> {
        if !valid_name(&self.study) {
            return Err(SecAggError::BadName);
        }
        check_roster_len(self.roster.len(), MIN_ROSTER)?;
        check_sorted_unique(self.roster.iter())?;
        check_sorted_unique(self.submitters())?;
        if self
            .submitters()
            .any(|s| self.roster.binary_search(s).is_err())
        {
            return Err(SecAggError::NotInRoster);
        }
        check_sig(crypto::verify(
            coordinator_key,
            DOMAIN_ABORT,
            &self.message(),
            &self.signature,
        ))
    }

    /// The sites the coordinator says submitted.
    pub fn submitters(&self) -> impl Iterator<Item = &SiteId> {
        self.submitted.iter().map(|(s, _)| s)
    }
}

/// A site's per-round X25519 public key, bound to one roster and signed with its Ed25519 site key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundKey {
    pub roster_hash: [u8; 32],
    pub site: SiteId,
    pub public: [u8; 32],
    #[serde(with = "byte_array")]
    pub signature: [u8; 64],
}

secagg_bytes!(RoundKey, MAX_SECAGG_MESSAGE_BYTES);

impl RoundKey {
    /// Signs `postcard(roster hash, site, X25519 public of secret)` under [`DOMAIN_ROUND_KEY`].
    /// The secret must be fresh for this roster and never used for anything else.
    pub fn sign(
        roster: &Roster,
        site: SiteId,
        secret: &StaticSecret,
        key: &Ed25519KeyPair,
    ) -> Self {
        let roster_hash = roster.hash();
        let public = crypto::x25519_public(secret);
        let signature = crypto::sign(
            key,
            DOMAIN_ROUND_KEY,
            &codec::encode(&(&roster_hash, &site, &public)),
        );
        Self {
            roster_hash,
            site,
            public,
            signature,
        }
    }

    /// Checks the signature by the site's Ed25519 key.
    pub fn verify(&self, site_key: &[u8; 32]) -> Result<(), SecAggError> {
        let msg = codec::encode(&(&self.roster_hash, &self.site, &self.public));
        check_sig(crypto::verify(
            site_key,
            DOMAIN_ROUND_KEY,
            &msg,
            &self.signature,
        ))
    }
}

/// A site's own signed answer to "did you submit a masked input under roster H?" (used by honest
/// sites to refuse a retry that excludes a site which did submit: the differencing guard, see
/// [`check_retry`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionStatement {
    pub roster_hash: [u8; 32],
    pub site: SiteId,
    pub submitted: bool,
    #[serde(with = "byte_array")]
    pub signature: [u8; 64],
}

secagg_bytes!(SubmissionStatement, MAX_SECAGG_MESSAGE_BYTES);

impl SubmissionStatement {
    /// Signs `postcard(roster hash, site, submitted)` under [`DOMAIN_STATEMENT`].
    pub fn sign(roster: &Roster, site: SiteId, submitted: bool, key: &Ed25519KeyPair) -> Self {
        Self::sign_for(roster.hash(), site, submitted, key)
    }

    /// [`Self::sign`] for a roster known by its hash (a site answering about a past roster).
    pub fn sign_for(
        roster_hash: [u8; 32],
        site: SiteId,
        submitted: bool,
        key: &Ed25519KeyPair,
    ) -> Self {
        let signature = crypto::sign(
            key,
            DOMAIN_STATEMENT,
            &codec::encode(&(&roster_hash, &site, submitted)),
        );
        Self {
            roster_hash,
            site,
            submitted,
            signature,
        }
    }

    /// Checks the signature by the site's Ed25519 key.
    pub fn verify(&self, site_key: &[u8; 32]) -> Result<(), SecAggError> {
        let msg = codec::encode(&(&self.roster_hash, &self.site, self.submitted));
        check_sig(crypto::verify(
            site_key,
            DOMAIN_STATEMENT,
            &msg,
            &self.signature,
        ))
    }
}

/// The differencing guard on a retry, for an honest site holding submission statements gossiped
/// by other sites: refuses the (already [`SignedRoster::verify`]-ed) retry if a statement that
/// verifies under its site's key says that site submitted under the previous attempt's roster,
/// yet the retry excludes it. Statements about other rosters, with `submitted = false`, by sites
/// outside the previous roster or whose key is unknown or whose signature fails are ignored (they
/// prove nothing). A first attempt passes.
pub fn check_retry(
    signed: &SignedRoster,
    statements: &[SubmissionStatement],
    site_key: impl Fn(&SiteId) -> Option<[u8; 32]>,
) -> Result<(), SecAggError> {
    let Some(prev) = &signed.previous else {
        return Ok(());
    };
    for st in statements {
        let relevant = st.submitted
            && st.roster_hash == prev.roster_hash
            && prev.roster.binary_search(&st.site).is_ok()
            && signed.roster.index_of(&st.site).is_none();
        if relevant
            && let Some(k) = site_key(&st.site)
            && st.verify(&k).is_ok()
        {
            return Err(SecAggError::ExcludedSubmitter);
        }
    }
    Ok(())
}

/// One site's masked vector for one roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedInput {
    pub roster_hash: [u8; 32],
    pub site: SiteId,
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_DIM>")]
    pub values: Vec<u128>,
}

secagg_bytes!(MaskedInput, MAX_MASKED_INPUT_BYTES);

impl MaskedInput {
    /// SHA-256 of the canonical postcard encoding (what [`AbortCertificate`] lists).
    pub fn hash(&self) -> [u8; 32] {
        crypto::sha256(&codec::encode(self))
    }
}

/// Every structural check of a key bundle except signatures and key quality: one key per roster
/// site, in roster order, each for this roster.
fn check_bundle_shape(roster: &Roster, keys: &[RoundKey]) -> Result<(), SecAggError> {
    if keys.len() != roster.sites.len() {
        return Err(SecAggError::WrongCount {
            expected: roster.sites.len(),
            got: keys.len(),
        });
    }
    let hash = roster.hash();
    for (i, (k, site)) in keys.iter().zip(&roster.sites).enumerate() {
        if &k.site != site {
            return Err(match roster.index_of(&k.site) {
                None => SecAggError::NotInRoster,
                Some(_) if keys.iter().take(i).any(|e| e.site == k.site) => {
                    SecAggError::DuplicateSite
                }
                Some(_) => SecAggError::OutOfOrder,
            });
        }
        if k.roster_hash != hash {
            return Err(SecAggError::WrongRoster);
        }
    }
    Ok(())
}

/// A secret whose clamped scalar is a multiple of the cofactor 8, so X25519 with it is all-zero
/// exactly for the low-order public keys (RFC 7748 §6.1).
fn is_low_order(public: &[u8; 32]) -> bool {
    crypto::x25519(&StaticSecret::from([0x55; 32]), public).is_none()
}

/// Checks a bundle of round keys: exactly one per roster site, in roster order, each for this
/// roster, each signed by that site's key (looked up with `site_key`), no low-order public key,
/// and no public key used by two sites. Also checks the roster's form.
pub fn verify_key_bundle(
    roster: &Roster,
    keys: &[RoundKey],
    site_key: impl Fn(&SiteId) -> Option<[u8; 32]>,
) -> Result<(), SecAggError> {
    roster.validate()?;
    check_bundle_shape(roster, keys)?;
    for (i, k) in keys.iter().enumerate() {
        let pk = site_key(&k.site).ok_or(SecAggError::UnknownSiteKey)?;
        k.verify(&pk)?;
        if is_low_order(&k.public) {
            return Err(SecAggError::LowOrderKey);
        }
        if keys.iter().take(i).any(|e| e.public == k.public) {
            return Err(SecAggError::DuplicatePublicKey);
        }
    }
    Ok(())
}

/// The pair seed s_uv = HKDF-SHA256(salt = [`MASK_SALT`], ikm = X25519(secret, their_public),
/// info = "mask" ‖ roster hash ‖ len(min(a,b)) ‖ min(a,b) ‖ len(max(a,b)) ‖ max(a,b)), each
/// length one byte. Both sites compute the same seed. Refuses `a == b`, sites outside the roster,
/// and an all-zero shared secret (low-order key).
pub fn pair_seed(
    secret: &StaticSecret,
    their_public: &[u8; 32],
    roster: &Roster,
    a: &SiteId,
    b: &SiteId,
) -> Result<Zeroizing<[u8; 32]>, SecAggError> {
    if a == b {
        return Err(SecAggError::SameSite);
    }
    if roster.index_of(a).is_none() || roster.index_of(b).is_none() {
        return Err(SecAggError::NotInRoster);
    }
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let shared = crypto::x25519(secret, their_public).ok_or(SecAggError::LowOrderKey)?;
    // Site ids are at most MAX_SITE_ID_LEN (32) bytes, so one length byte always suffices.
    let len = |s: &SiteId| -> Result<[u8; 1], SecAggError> {
        u8::try_from(s.as_str().len())
            .map(|l| [l])
            .map_err(|_| SecAggError::NotInRoster)
    };
    let (lo_len, hi_len) = (len(lo)?, len(hi)?);
    let hash = roster.hash();
    let info: [&[u8]; 6] = [
        b"mask",
        &hash,
        &lo_len,
        lo.as_str().as_bytes(),
        &hi_len,
        hi.as_str().as_bytes(),
    ];
    let mut seed = Zeroizing::new([0u8; 32]);
    crypto::hkdf_sha256(MASK_SALT, &*shared, &info, &mut *seed).ok_or(SecAggError::LowOrderKey)?;
    Ok(seed)
}

const CHACHA_CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

macro_rules! quarter_round {
    ($s:ident, $a:literal, $b:literal, $c:literal, $d:literal) => {
        $s[$a] = $s[$a].wrapping_add($s[$b]);
        $s[$d] = ($s[$d] ^ $s[$a]).rotate_left(16);
        $s[$c] = $s[$c].wrapping_add($s[$d]);
        $s[$b] = ($s[$b] ^ $s[$c]).rotate_left(12);
        $s[$a] = $s[$a].wrapping_add($s[$b]);
        $s[$d] = ($s[$d] ^ $s[$a]).rotate_left(8);
        $s[$c] = $s[$c].wrapping_add($s[$d]);
        $s[$b] = ($s[$b] ^ $s[$c]).rotate_left(7);
    };
}

fn le_words<const N: usize>(bytes: &[u8]) -> [u32; N] {
    let mut out = [0u32; N];
    for (w, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = c
            .iter()
            .rev()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    }
    out
}

/// The ChaCha20 block function (RFC 8439 §2.3): the 16 output words of block `counter` under
/// `key` (8 little-endian words) and `nonce` (3 little-endian words).
fn chacha20_block(key: &[u32; 8], counter: u32, nonce: &[u32; 3]) -> [u32; 16] {
    let mut s = [0u32; 16];
    let input = CHACHA_CONSTANTS
        .iter()
        .chain(key)
        .chain(std::iter::once(&counter))
        .chain(nonce);
    for (w, i) in s.iter_mut().zip(input) {
        *w = *i;
    }
    let initial = s;
    for _ in 0..10 {
        quarter_round!(s, 0, 4, 8, 12);
        quarter_round!(s, 1, 5, 9, 13);
        quarter_round!(s, 2, 6, 10, 14);
        quarter_round!(s, 3, 7, 11, 15);
        quarter_round!(s, 0, 5, 10, 15);
        quarter_round!(s, 1, 6, 11, 12);
        quarter_round!(s, 2, 7, 8, 13);
        quarter_round!(s, 3, 4, 9, 14);
    }
    for (w, i) in s.iter_mut().zip(initial) {
        *w = w.wrapping_add(i);
    }
    s
}

/// Feeds the pinned PRG stream for `seed` into `out`, one u128 per element: element j is
/// keystream bytes 16j..16j+16 read little-endian (4 elements per 64-byte block).
fn for_each_mask(seed: &[u8; 32], out: &mut [u128], mut f: impl FnMut(&mut u128, u128)) {
    let key = le_words::<8>(seed);
    let nonce = [0u32; 3];
    let mut counter = 0u32;
    for chunk in out.chunks_mut(4) {
        let block = chacha20_block(&key, counter, &nonce);
        counter = counter.wrapping_add(1);
        for (slot, w) in chunk.iter_mut().zip(block.chunks_exact(4)) {
            let m = w
                .iter()
                .rev()
                .fold(0u128, |acc, &x| (acc << 32) | u128::from(x));
            f(slot, m);
        }
    }
}

/// The pinned PRG: ChaCha20 (RFC 8439; key = seed, 96-bit nonce all zero, block counter from 0)
/// keystream, 16 bytes little-endian per u128 element. `dim` is the caller's (at most
/// [`MAX_DIM`] in the protocol).
pub fn mask_stream(seed: &[u8; 32], dim: usize) -> Vec<u128> {
    let mut out = vec![0u128; dim];
    for_each_mask(seed, &mut out, |slot, m| *slot = m);
    out
}

/// y = x + Σ_{v after me in roster} PRG(s_uv) − Σ_{v before me} PRG(s_uv) (mod 2^128).
/// `keys` is the bundle already checked with [`verify_key_bundle`]; its shape is re-checked here,
/// and the bundle's key for `me` must be the public key of `secret`.
pub fn mask_input(
    x: &[u128],
    roster: &Roster,
    me: &SiteId,
    secret: &StaticSecret,
    keys: &[RoundKey],
) -> Result<MaskedInput, SecAggError> {
    roster.validate()?;
    let dim = roster.dim_usize();
    if x.len() != dim {
        return Err(SecAggError::DimensionMismatch {
            expected: dim,
            got: x.len(),
        });
    }
    check_bundle_shape(roster, keys)?;
    let my_index = roster.index_of(me).ok_or(SecAggError::NotInRoster)?;
    let own = keys.get(my_index).ok_or(SecAggError::NotInRoster)?;
    if own.public != crypto::x25519_public(secret) {
        return Err(SecAggError::OwnKeyMismatch);
    }
    // Every seed first, so that no error can leave a partly masked copy of x behind.
    let mut seeds = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        if i != my_index {
            seeds.push((
                i > my_index,
                pair_seed(secret, &k.public, roster, me, &k.site)?,
            ));
        }
    }
    let mut values = x.to_vec();
    for (after_me, seed) in &seeds {
        if *after_me {
            for_each_mask(seed, &mut values, |y, m| *y = y.wrapping_add(m));
        } else {
            for_each_mask(seed, &mut values, |y, m| *y = y.wrapping_sub(m));
        }
    }
    Ok(MaskedInput {
        roster_hash: roster.hash(),
        site: me.clone(),
        values,
    })
}

/// The sum (mod 2^128) of exactly one masked input per roster site, in any order, each for this
/// roster and of the roster's dimension: the masks cancel and the result is Σ x.
pub fn aggregate(roster: &Roster, inputs: &[MaskedInput]) -> Result<Vec<u128>, SecAggError> {
    roster.validate()?;
    if inputs.len() != roster.sites.len() {
        return Err(SecAggError::WrongCount {
            expected: roster.sites.len(),
            got: inputs.len(),
        });
    }
    let hash = roster.hash();
    let dim = roster.dim_usize();
    let mut seen = vec![false; roster.sites.len()];
    let mut sum = vec![0u128; dim];
    for input in inputs {
        let i = roster
            .index_of(&input.site)
            .ok_or(SecAggError::NotInRoster)?;
        let slot = seen.get_mut(i).ok_or(SecAggError::NotInRoster)?;
        if *slot {
            return Err(SecAggError::DuplicateSite);
        }
        *slot = true;
        if input.roster_hash != hash {
            return Err(SecAggError::WrongRoster);
        }
        if input.values.len() != dim {
            return Err(SecAggError::DimensionMismatch {
                expected: dim,
                got: input.values.len(),
            });
        }
        for (s, v) in sum.iter_mut().zip(&input.values) {
            *s = s.wrapping_add(*v);
        }
    }
    Ok(sum)
}

/// Two's-complement embedding of a signed integer into Z_2^128.
pub fn encode_signed(v: i128) -> u128 {
    v as u128
}

/// The inverse of [`encode_signed`].
pub fn decode_signed(v: u128) -> i128 {
    v as i128
}

fn scale(frac_bits: u32) -> Result<f64, SecAggError> {
    if frac_bits > MAX_FRAC_BITS {
        return Err(SecAggError::BadFracBits(frac_bits));
    }
    // frac_bits <= 126, so the conversion and the power are exact.
    Ok(2f64.powi(i32::try_from(frac_bits).map_err(|_| SecAggError::BadFracBits(frac_bits))?))
}

/// Fixed point: round(x·2^frac_bits) (half away from zero) as a two's-complement u128. Refuses a
/// non-finite x, `frac_bits > MAX_FRAC_BITS`, and |x|·2^frac_bits ≥ 2^100 (headroom for summing
/// up to 2^27 sites' values without wrapping).
pub fn encode_fixed(x: f64, frac_bits: u32) -> Result<u128, SecAggError> {
    if !x.is_finite() {
        return Err(SecAggError::NotFinite);
    }
    let scaled = (x * scale(frac_bits)?).round();
    if !scaled.is_finite() || scaled.abs() >= 2f64.powi(100) {
        return Err(SecAggError::OutOfRange);
    }
    // |scaled| < 2^100 is an integer, so the cast is exact.
    Ok(encode_signed(scaled as i128))
}

/// The inverse of [`encode_fixed`] (for a single value or a sum): the signed value divided by
/// 2^frac_bits. Errs when |value| ≥ 2^126, which a sum of in-range inputs never reaches (likely
/// wrapped).
pub fn decode_fixed(v: u128, frac_bits: u32) -> Result<f64, SecAggError> {
    let s = scale(frac_bits)?;
    let signed = decode_signed(v);
    if signed.unsigned_abs() >= 1u128 << 126 {
        return Err(SecAggError::LikelyWrapped);
    }
    Ok(signed as f64 / s)
}

#[cfg(test)]
mod tests;
