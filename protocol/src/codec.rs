//! The one canonical encoding of everything fedanno signs or sends: postcard.
//!
//! This module owns [`encode`] and [`decode`] and the serde helpers that keep decoding bounded
//! ([`bounded`]) and fixed-size byte arrays compact ([`byte_array`]). [`decode`] checks the input
//! length against a caller-supplied limit before doing anything else, rejects trailing bytes, and
//! rejects non-canonical encodings (postcard accepts over-long varints; we re-encode and compare),
//! so that for every value there is exactly one byte string that decodes to it. Signatures are
//! always computed over those exact bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Why bytes did not decode. Never contains the bytes themselves.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    Oversized { len: usize, max: usize },
    #[error("message is truncated")]
    Truncated,
    #[error("message has {count} trailing bytes")]
    TrailingBytes { count: usize },
    #[error("message is malformed")]
    Malformed,
    #[error("message is not in canonical form")]
    NonCanonical,
}

/// Encodes a value canonically (postcard).
///
/// Serialising the crate's types cannot fail: they contain no maps, no sequences of unknown
/// length and no non-serialisable values. Should a future type break that, the result is an
/// empty vector, which no decoder accepts, rather than a panic.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).unwrap_or_default()
}

/// Decodes exactly one canonical value from `b`, refusing inputs longer than `max` bytes before
/// reading them, trailing bytes, and non-canonical encodings.
pub fn decode<T: DeserializeOwned + Serialize>(b: &[u8], max: usize) -> Result<T, CodecError> {
    if b.len() > max {
        return Err(CodecError::Oversized { len: b.len(), max });
    }
    let (v, rest) = postcard::take_from_bytes::<T>(b).map_err(map_postcard)?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes { count: rest.len() });
    }
    if encode(&v) != b {
        return Err(CodecError::NonCanonical);
    }
    Ok(v)
}

fn map_postcard(e: postcard::Error) -> CodecError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => CodecError::Truncated,
        _ => CodecError::Malformed,
    }
}

/// Serde helpers for `[u8; N]` of any size, encoded as a postcard tuple (N raw bytes, no length
/// prefix), the same bytes serde produces for arrays up to 32.
pub mod byte_array {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(N)?;
        for b in v {
            t.serialize_element(b)?;
        }
        t.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        struct V<const N: usize>(PhantomData<[u8; N]>);
        impl<'de, const N: usize> Visitor<'de> for V<N> {
            type Value = [u8; N];
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
                let mut out = [0u8; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(N, V::<N>(PhantomData))
    }
}

/// Bounded deserialisers: each refuses a declared length above its limit before allocating.
/// Use as `#[serde(deserialize_with = "crate::codec::bounded::string::<_, MAX>")]`.
pub mod bounded {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    /// A UTF-8 string of at most `MAX` bytes.
    pub fn string<'de, D: Deserializer<'de>, const MAX: usize>(d: D) -> Result<String, D::Error> {
        struct V<const MAX: usize>;
        impl<const MAX: usize> Visitor<'_> for V<MAX> {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a string of at most {MAX} bytes")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
                if s.len() > MAX {
                    return Err(E::invalid_length(s.len(), &self));
                }
                Ok(s.to_owned())
            }
        }
        d.deserialize_str(V::<MAX>)
    }

    /// An optional string of at most `MAX` bytes.
    pub fn opt_string<'de, D: Deserializer<'de>, const MAX: usize>(
        d: D,
    ) -> Result<Option<String>, D::Error> {
        #[derive(Deserialize)]
        struct W<const MAX: usize>(#[serde(deserialize_with = "string::<_, MAX>")] String);
        Ok(Option::<W<MAX>>::deserialize(d)?.map(|w| w.0))
    }

    /// An optional byte string of at most `MAX` bytes.
    pub fn opt_bytes<'de, D: Deserializer<'de>, const MAX: usize>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct W<const MAX: usize>(#[serde(deserialize_with = "bytes::<_, MAX>")] Vec<u8>);
        Ok(Option::<W<MAX>>::deserialize(d)?.map(|w| w.0))
    }

    /// A byte string of at most `MAX` bytes.
    pub fn bytes<'de, D: Deserializer<'de>, const MAX: usize>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V<const MAX: usize>;
        impl<'de, const MAX: usize> Visitor<'de> for V<MAX> {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX} bytes")
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Vec<u8>, E> {
                if b.len() > MAX {
                    return Err(E::invalid_length(b.len(), &self));
                }
                Ok(b.to_vec())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<u8>, A::Error> {
                vec_from_seq::<_, u8, MAX>(seq, &self)
            }
        }
        d.deserialize_bytes(V::<MAX>)
    }

    /// A sequence of at most `MAX` elements.
    pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>, const MAX: usize>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        struct V<T, const MAX: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for V<T, MAX> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX} elements")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
                vec_from_seq::<_, T, MAX>(seq, &self)
            }
        }
        d.deserialize_seq(V::<T, MAX>(PhantomData))
    }

    fn vec_from_seq<'de, A: SeqAccess<'de>, T: Deserialize<'de>, const MAX: usize>(
        mut seq: A,
        exp: &dyn de::Expected,
    ) -> Result<Vec<T>, A::Error> {
        let declared = seq.size_hint().unwrap_or(0);
        if declared > MAX {
            return Err(de::Error::invalid_length(declared, exp));
        }
        // The declared length is within the limit, and the limits keep this allocation small.
        let mut out = Vec::with_capacity(declared);
        while let Some(v) = seq.next_element()? {
            if out.len() >= MAX {
                return Err(de::Error::invalid_length(out.len() + 1, exp));
            }
            out.push(v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        n: u64,
        #[serde(with = "byte_array")]
        sig: [u8; 40],
        #[serde(deserialize_with = "bounded::string::<_, 8>")]
        s: String,
        #[serde(deserialize_with = "bounded::opt_string::<_, 8>")]
        o: Option<String>,
        #[serde(deserialize_with = "bounded::bytes::<_, 4>")]
        b: Vec<u8>,
        #[serde(deserialize_with = "bounded::vec::<_, _, 3>")]
        v: Vec<u16>,
    }

    fn sample() -> Sample {
        Sample {
            n: 300,
            sig: [7; 40],
            s: "abc".into(),
            o: Some("x".into()),
            b: vec![1, 2],
            v: vec![1, 2, 3],
        }
    }

    #[test]
    fn golden_encoding() {
        let bytes = encode(&sample());
        let mut want = vec![0xac, 0x02];
        want.extend([7u8; 40]);
        want.extend([3, b'a', b'b', b'c', 1, 1, b'x', 2, 1, 2, 3, 1, 2, 3]);
        assert_eq!(bytes, want);
        assert_eq!(decode::<Sample>(&bytes, 100).unwrap(), sample());
    }

    #[test]
    fn must_fail() {
        let bytes = encode(&sample());
        assert_eq!(
            decode::<Sample>(&bytes, bytes.len() - 1),
            Err(CodecError::Oversized {
                len: bytes.len(),
                max: bytes.len() - 1
            })
        );
        assert_eq!(
            decode::<Sample>(&bytes[..bytes.len() - 1], 100),
            Err(CodecError::Truncated)
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            decode::<Sample>(&trailing, 100),
            Err(CodecError::TrailingBytes { count: 1 })
        );
        // Over-long varint for 300: 0xac 0x82 0x00 decodes in postcard but is not canonical.
        let mut overlong = vec![0xac, 0x82, 0x00];
        overlong.extend_from_slice(&bytes[2..]);
        assert_eq!(
            decode::<Sample>(&overlong, 100),
            Err(CodecError::NonCanonical)
        );
    }

    #[test]
    fn bounded_fields_refuse_long_values() {
        let mut s = sample();
        s.s = "123456789".into();
        assert_eq!(
            decode::<Sample>(&encode(&s), 100),
            Err(CodecError::Malformed)
        );
        let mut s = sample();
        s.o = Some("123456789".into());
        assert!(decode::<Sample>(&encode(&s), 100).is_err());
        let mut s = sample();
        s.b = vec![0; 5];
        assert!(decode::<Sample>(&encode(&s), 100).is_err());
        let mut s = sample();
        s.v = vec![0; 4];
        assert!(decode::<Sample>(&encode(&s), 100).is_err());
        // A declared length of 2^32 with no data behind it fails without allocating.
        let mut huge = encode(&sample());
        let tail = huge.split_off(huge.len() - 4);
        assert_eq!(tail, [3, 1, 2, 3]);
        huge.extend([0x80, 0x80, 0x80, 0x80, 0x10]);
        assert!(decode::<Sample>(&huge, 100).is_err());
    }
}
