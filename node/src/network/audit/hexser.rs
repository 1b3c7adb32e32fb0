//! Serde helpers for fixed-size byte strings: raw bytes in binary formats (the protocol's
//! `codec::byte_array`: postcard encodes them exactly as `[u8; N]` would, with no length
//! prefix), lower-case hex in human-readable ones (JSON exports); and the JSON form of the
//! protocol receipt an entry holds ([`receipt`]).

use fedanno_protocol::codec::byte_array;
use serde::de::Error as _;
use serde::{Deserializer, Serializer};

fn ser_fixed<S: Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&crate::site::identity::hex(bytes))
    } else {
        byte_array::serialize(bytes, s)
    }
}

fn de_fixed<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    if d.is_human_readable() {
        let s: String = serde::Deserialize::deserialize(d)?;
        parse_hex::<N>(&s).ok_or_else(|| D::Error::custom(format!("expected {N} hex bytes")))
    } else {
        byte_array::deserialize(d)
    }
}

/// Parses exactly `N` bytes of hex (either case).
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub mod hash {
    use super::*;
    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        ser_fixed(h, s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        de_fixed::<D, 32>(d)
    }
}

pub mod sig {
    use super::*;
    pub fn serialize<S: Serializer>(h: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        ser_fixed(h, s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        de_fixed::<D, 64>(d)
    }
}

pub mod opt_hash {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct W(#[serde(with = "super::hash")] [u8; 32]);

    pub fn serialize<S: Serializer>(h: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        h.map(W).serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

/// The protocol's receipt inside an audit entry: its own (postcard) encoding in binary formats,
/// so an entry's bytes are the receipt's wire bytes; hashes and signature as hex in
/// human-readable ones, like every other hash of an entry (JSON exports).
pub mod receipt {
    use fedanno_protocol::ids::SiteId;
    use fedanno_protocol::wire::Receipt;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// How a receipt reads in JSON.
    #[derive(Serialize, Deserialize)]
    struct Json {
        receiver: SiteId,
        #[serde(with = "super::hash")]
        message_hash: [u8; 32],
        log_size: u64,
        #[serde(with = "super::hash")]
        log_root: [u8; 32],
        #[serde(with = "super::sig")]
        signature: [u8; 64],
    }

    pub fn serialize<S: Serializer>(r: &Receipt, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return r.serialize(s);
        }
        let Receipt {
            receiver,
            message_hash,
            log_size,
            log_root,
            signature,
        } = r.clone();
        Json {
            receiver,
            message_hash,
            log_size,
            log_root,
            signature,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Receipt, D::Error> {
        if !d.is_human_readable() {
            return Receipt::deserialize(d);
        }
        let Json {
            receiver,
            message_hash,
            log_size,
            log_root,
            signature,
        } = Json::deserialize(d)?;
        Ok(Receipt {
            receiver,
            message_hash,
            log_size,
            log_root,
            signature,
        })
    }
}
