//! A bounded structural pre-scan of a DICOM Part 10 byte stream, run before the header parser.
//!
//! dicom-parser allocates (and zero-fills) a value buffer of whatever length an element declares,
//! so a hostile 4 GiB length in a 2 KiB file costs 4 GiB of memory. This scanner walks the
//! element structure (file meta, then the data set in its transfer syntax, into sequences and
//! items) without allocating, checks every defined length against the bytes actually present and
//! against the element cap, and finds where the top-level Pixel Data starts, so the parser is
//! only ever handed a prefix it can read safely. It reports structure problems as
//! [`PrescanError`]s that never include element values.

use dicom_core::Tag;
use dicom_core::VR;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_dictionary_std::StandardDataDictionary;
use thiserror::Error;

/// Where a pre-scanned stream's parts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prescan {
    /// Offset of the `DICM` magic (128 with a preamble, 0 without).
    pub magic_offset: usize,
    /// Offset of the top-level Pixel Data element, if the stream has one.
    pub pixel_data_offset: Option<usize>,
    /// Transfer syntax UID from the file meta group (padding trimmed).
    pub transfer_syntax: String,
}

impl Prescan {
    /// The byte range a header parser should read: from the magic to Pixel Data (or the end).
    pub fn header_range(&self, len: usize) -> std::ops::Range<usize> {
        self.magic_offset..self.pixel_data_offset.unwrap_or(len)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PrescanError {
    #[error("not a DICOM file (no 'DICM' magic)")]
    NotDicom,
    #[error("the file meta group has no transfer syntax")]
    MissingTransferSyntax,
    #[error("unsupported transfer syntax {0}")]
    UnsupportedTransferSyntax(String),
    #[error("truncated: element ({group:04X},{element:04X}) extends past the end of the file")]
    Truncated { group: u16, element: u16 },
    #[error(
        "element ({group:04X},{element:04X}) declares {len} bytes, more than the {cap}-byte limit"
    )]
    ElementTooLong {
        group: u16,
        element: u16,
        len: u64,
        cap: u64,
    },
    #[error("malformed structure near element ({group:04X},{element:04X})")]
    Malformed { group: u16, element: u16 },
    #[error("sequences nested deeper than {0} levels")]
    TooDeep(usize),
    /// More bytes are needed to finish the scan (the buffer is a prefix of the file).
    #[error("header continues past the bytes read")]
    NeedMore,
}

/// Limits for one scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    pub max_element_bytes: u64,
    pub max_depth: usize,
}

const UNDEFINED: u32 = 0xFFFF_FFFF;
pub const DEFLATED_EXPLICIT_LE: &str = "1.2.840.10008.1.2.1.99";
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    ImplicitLe,
    ExplicitLe,
    ExplicitBe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// A sequence whose items hold data sets.
    Sequence { end: Option<usize>, enc: Encoding },
    /// An item holding a data set.
    Item { end: Option<usize>, enc: Encoding },
    /// Encapsulated pixel data (or another undefined-length value) whose items hold raw bytes.
    Fragments { enc: Encoding },
}

impl Frame {
    fn end(&self) -> Option<usize> {
        match *self {
            Frame::Sequence { end, .. } | Frame::Item { end, .. } => end,
            Frame::Fragments { .. } => None,
        }
    }

    /// The encoding of what the container holds.
    fn encoding(&self) -> Encoding {
        match *self {
            Frame::Sequence { enc, .. } | Frame::Item { enc, .. } | Frame::Fragments { enc } => enc,
        }
    }
}

/// Scans `buf`. `complete` says whether `buf` holds the whole file: if it does not, a structure
/// that runs past its end yields [`PrescanError::NeedMore`] instead of `Truncated`.
pub fn scan(buf: &[u8], complete: bool, limits: ScanLimits) -> Result<Prescan, PrescanError> {
    let magic_offset = if buf.get(128..132) == Some(b"DICM") {
        128
    } else if buf.get(0..4) == Some(b"DICM") {
        0
    } else if !complete && buf.len() < 132 {
        return Err(PrescanError::NeedMore);
    } else {
        return Err(PrescanError::NotDicom);
    };
    let mut s = Scanner {
        buf,
        complete,
        limits,
        pos: magic_offset + 4,
    };
    let transfer_syntax = s.meta_group()?;
    let enc = match transfer_syntax.as_str() {
        IMPLICIT_LE => Encoding::ImplicitLe,
        EXPLICIT_BE => Encoding::ExplicitBe,
        DEFLATED_EXPLICIT_LE => {
            return Err(PrescanError::UnsupportedTransferSyntax(transfer_syntax));
        }
        _ => Encoding::ExplicitLe,
    };
    let pixel_data_offset = s.data_set(enc)?;
    Ok(Prescan {
        magic_offset,
        pixel_data_offset,
        transfer_syntax,
    })
}

struct Scanner<'a> {
    buf: &'a [u8],
    complete: bool,
    limits: ScanLimits,
    pos: usize,
}

struct Header {
    tag: Tag,
    vr: Option<VR>,
    len: u32,
    header_len: usize,
}

impl Scanner<'_> {
    fn short(&self, tag: Tag) -> PrescanError {
        if self.complete {
            PrescanError::Truncated {
                group: tag.0,
                element: tag.1,
            }
        } else {
            PrescanError::NeedMore
        }
    }

    fn bytes(&self, at: usize, n: usize, tag: Tag) -> Result<&[u8], PrescanError> {
        at.checked_add(n)
            .and_then(|end| self.buf.get(at..end))
            .ok_or_else(|| self.short(tag))
    }

    fn u16_at(&self, at: usize, enc: Encoding, tag: Tag) -> Result<u16, PrescanError> {
        let b = self.bytes(at, 2, tag)?;
        let a = [b[0], b[1]];
        Ok(if enc == Encoding::ExplicitBe {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }

    fn u32_at(&self, at: usize, enc: Encoding, tag: Tag) -> Result<u32, PrescanError> {
        let b = self.bytes(at, 4, tag)?;
        let a = [b[0], b[1], b[2], b[3]];
        Ok(if enc == Encoding::ExplicitBe {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }

    fn header(&self, enc: Encoding) -> Result<Header, PrescanError> {
        let unknown = Tag(0, 0);
        let group = self.u16_at(self.pos, enc, unknown)?;
        let element = self.u16_at(self.pos + 2, enc, unknown)?;
        let tag = Tag(group, element);
        if group == 0xFFFE || enc == Encoding::ImplicitLe {
            let len = self.u32_at(self.pos + 4, enc, tag)?;
            let vr = if group == 0xFFFE {
                None
            } else {
                implicit_vr(tag)
            };
            return Ok(Header {
                tag,
                vr,
                len,
                header_len: 8,
            });
        }
        let vr_bytes = self.bytes(self.pos + 4, 2, tag)?;
        let vr = VR::from_binary([vr_bytes[0], vr_bytes[1]]);
        let long = match vr {
            Some(vr) => has_long_length(vr),
            // An unknown VR code: treat as a long-form header like UN (PS3.5 §7.1.2).
            None => true,
        };
        if long {
            let len = self.u32_at(self.pos + 8, enc, tag)?;
            Ok(Header {
                tag,
                vr: vr.or(Some(VR::UN)),
                len,
                header_len: 12,
            })
        } else {
            let len = u32::from(self.u16_at(self.pos + 6, enc, tag)?);
            Ok(Header {
                tag,
                vr,
                len,
                header_len: 8,
            })
        }
    }

    fn check_len(&self, h: &Header) -> Result<usize, PrescanError> {
        let len = u64::from(h.len);
        if len > self.limits.max_element_bytes {
            return Err(PrescanError::ElementTooLong {
                group: h.tag.0,
                element: h.tag.1,
                len,
                cap: self.limits.max_element_bytes,
            });
        }
        let start = self.pos + h.header_len;
        let end = start
            .checked_add(h.len as usize)
            .ok_or_else(|| self.short(h.tag))?;
        if end > self.buf.len() {
            return Err(self.short(h.tag));
        }
        Ok(end)
    }

    /// Reads the file meta group (always explicit VR little endian) as the header parser does:
    /// it must start with its group length (0002,0000) UL, and it ends where that length says
    /// (after the element that reaches it); group-2 elements after that belong to the data set
    /// and are read in its transfer syntax, by the parser and by [`Scanner::data_set`] alike.
    /// Returns the transfer syntax.
    fn meta_group(&mut self) -> Result<String, PrescanError> {
        let length_tag = Tag(0x0002, 0x0000);
        let h = self.header(Encoding::ExplicitLe)?;
        if h.tag != length_tag || h.len != 4 {
            return Err(malformed(length_tag));
        }
        let end = self.check_len(&h)?;
        let group_length = self.u32_at(self.pos + h.header_len, Encoding::ExplicitLe, h.tag)?;
        self.pos = end;
        let meta_end = end
            .checked_add(group_length as usize)
            .ok_or(malformed(length_tag))?;
        let mut ts = None;
        while self.pos < meta_end {
            let h = self.header(Encoding::ExplicitLe)?;
            if h.tag.0 != 0x0002 || h.len == UNDEFINED {
                return Err(malformed(h.tag));
            }
            let end = self.check_len(&h)?;
            if h.tag == Tag(0x0002, 0x0010) {
                let raw = self.bytes(self.pos + h.header_len, h.len as usize, h.tag)?;
                let s = String::from_utf8_lossy(raw);
                ts = Some(s.trim_end_matches(['\0', ' ']).trim().to_string());
            }
            self.pos = end;
        }
        ts.filter(|t| !t.is_empty())
            .ok_or(PrescanError::MissingTransferSyntax)
    }

    /// Walks the data set; returns the offset of the top-level Pixel Data, if any.
    fn data_set(&mut self, enc: Encoding) -> Result<Option<usize>, PrescanError> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            close_ended(&mut stack, self.pos)?;
            if self.pos >= self.buf.len() {
                return if !self.complete {
                    Err(PrescanError::NeedMore)
                } else if stack.is_empty() {
                    Ok(None)
                } else {
                    Err(PrescanError::Truncated {
                        group: 0,
                        element: 0,
                    })
                };
            }
            let cur_enc = stack.last().map_or(enc, Frame::encoding);
            let h = self.header(cur_enc)?;
            if stack.is_empty() && (h.tag == Tag(0x7FE0, 0x0010) || h.tag == Tag(0xFFFC, 0xFFFC)) {
                return Ok(Some(self.pos));
            }
            if h.tag.0 == 0xFFFE {
                self.item_or_delimiter(&h, &mut stack, cur_enc)?;
            } else if matches!(
                stack.last(),
                Some(Frame::Fragments { .. } | Frame::Sequence { .. })
            ) {
                // Only items may appear directly inside a sequence or fragment list.
                return Err(malformed(h.tag));
            } else if h.len == UNDEFINED {
                self.pos += h.header_len;
                let frame = undefined_length_frame(&h, cur_enc)?;
                self.push(&mut stack, frame)?;
            } else if h.vr == Some(VR::SQ) {
                // A defined-length sequence: bound it, then walk its items.
                let _ = self.check_len(&h)?;
                self.pos += h.header_len;
                let end = self.pos + h.len as usize;
                self.push(
                    &mut stack,
                    Frame::Sequence {
                        end: Some(end),
                        enc: cur_enc,
                    },
                )?;
            } else {
                self.pos = self.check_len(&h)?;
            }
        }
    }

    /// An item (of a sequence, or a fragment of encapsulated data) or a delimitation item.
    fn item_or_delimiter(
        &mut self,
        h: &Header,
        stack: &mut Vec<Frame>,
        cur_enc: Encoding,
    ) -> Result<(), PrescanError> {
        match h.tag.1 {
            0xE000 => match stack.last() {
                Some(Frame::Fragments { .. }) => {
                    if h.len == UNDEFINED {
                        return Err(malformed(h.tag));
                    }
                    self.pos = self.check_len(h)?;
                }
                Some(Frame::Sequence { .. }) => {
                    let end = if h.len == UNDEFINED {
                        self.pos += h.header_len;
                        None
                    } else {
                        self.check_len(h)?;
                        self.pos += h.header_len;
                        Some(self.pos + h.len as usize)
                    };
                    self.push(stack, Frame::Item { end, enc: cur_enc })?;
                }
                _ => return Err(malformed(h.tag)),
            },
            0xE00D => {
                match stack.pop() {
                    Some(Frame::Item { end: None, .. }) => {}
                    _ => return Err(malformed(h.tag)),
                }
                self.pos += h.header_len;
            }
            0xE0DD => {
                match stack.pop() {
                    Some(Frame::Sequence { end: None, .. } | Frame::Fragments { .. }) => {}
                    _ => return Err(malformed(h.tag)),
                }
                self.pos += h.header_len;
            }
            _ => return Err(malformed(h.tag)),
        }
        Ok(())
    }

    fn push(&self, stack: &mut Vec<Frame>, f: Frame) -> Result<(), PrescanError> {
        if stack.len() >= self.limits.max_depth {
            return Err(PrescanError::TooDeep(self.limits.max_depth));
        }
        stack.push(f);
        Ok(())
    }
}

fn malformed(tag: Tag) -> PrescanError {
    PrescanError::Malformed {
        group: tag.0,
        element: tag.1,
    }
}

/// Pops the containers whose defined length ends at `pos`; a position past an end is malformed.
fn close_ended(stack: &mut Vec<Frame>, pos: usize) -> Result<(), PrescanError> {
    while let Some(end) = stack.last().and_then(Frame::end) {
        match pos.cmp(&end) {
            std::cmp::Ordering::Less => break,
            std::cmp::Ordering::Equal => {
                stack.pop();
            }
            std::cmp::Ordering::Greater => return Err(malformed(Tag(0, 0))),
        }
    }
    Ok(())
}

/// The container an undefined-length element opens.
fn undefined_length_frame(h: &Header, cur_enc: Encoding) -> Result<Frame, PrescanError> {
    Ok(match h.vr {
        Some(VR::SQ) => Frame::Sequence {
            end: None,
            enc: cur_enc,
        },
        // CP-246: an undefined-length UN is a sequence in implicit VR little endian.
        Some(VR::UN) if h.tag != Tag(0x7FE0, 0x0010) => Frame::Sequence {
            end: None,
            enc: Encoding::ImplicitLe,
        },
        // Encapsulated pixel data (nested, e.g. in an icon image).
        Some(VR::OB | VR::OW | VR::UN) => Frame::Fragments { enc: cur_enc },
        // Implicit VR with an unknown tag: only a sequence may have undefined length.
        None if cur_enc == Encoding::ImplicitLe => Frame::Sequence {
            end: None,
            enc: cur_enc,
        },
        _ => return Err(malformed(h.tag)),
    })
}

fn has_long_length(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::SV
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::UV
    )
}

/// The VR the standard dictionary gives a tag, for implicit VR streams (only SQ matters here).
fn implicit_vr(tag: Tag) -> Option<VR> {
    StandardDataDictionary
        .by_tag(tag)
        .and_then(|entry| match entry.vr() {
            VirtualVr::Exact(vr) => Some(vr),
            VirtualVr::Px | VirtualVr::Ox => Some(VR::OW),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ScanLimits = ScanLimits {
        max_element_bytes: 1 << 20,
        max_depth: 16,
    };

    fn elem_le(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], value: &[u8]) {
        out.extend_from_slice(&g.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        out.extend_from_slice(vr);
        if has_long_length(VR::from_binary(*vr).unwrap()) {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(value);
    }

    /// A Part 10 file: preamble, magic, a meta group of its group length and the transfer
    /// syntax, then `extra_meta` (group-2 bytes after the meta group's declared end) and `body`.
    fn file_with(ts: &str, extra_meta: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        let mut ts_v = ts.as_bytes().to_vec();
        if ts_v.len() % 2 == 1 {
            ts_v.push(0);
        }
        let mut meta = Vec::new();
        elem_le(&mut meta, 0x0002, 0x0010, b"UI", &ts_v);
        elem_le(
            &mut out,
            0x0002,
            0x0000,
            b"UL",
            &(meta.len() as u32).to_le_bytes(),
        );
        out.extend_from_slice(&meta);
        out.extend_from_slice(extra_meta);
        out.extend_from_slice(body);
        out
    }

    fn file(ts: &str, body: &[u8]) -> Vec<u8> {
        file_with(ts, &[], body)
    }

    #[test]
    fn group_2_after_the_declared_meta_length_is_read_in_the_data_sets_syntax() {
        // (0002,0100) written as explicit OB with reserved bytes FF E8 and a 4-byte value, after
        // the end the group length declares: the header parser reads it in the data set's
        // implicit VR, where "OB" and the reserved bytes make a length of 3.9 GB.
        let mut extra = Vec::new();
        extra.extend_from_slice(&0x0002u16.to_le_bytes());
        extra.extend_from_slice(&0x0100u16.to_le_bytes());
        extra.extend_from_slice(b"OB\xFF\xE8");
        extra.extend_from_slice(&4u32.to_le_bytes());
        extra.extend_from_slice(b"1234");
        let f = file_with(IMPLICIT_LE, &extra, &[]);
        assert!(
            matches!(
                scan(&f, true, LIMITS),
                Err(PrescanError::ElementTooLong { group: 2, element: 0x0100, len, .. }) if len > 3_900_000_000
            ),
            "{:?}",
            scan(&f, true, LIMITS)
        );
        // Without the group length, the meta group is refused as the parser refuses it.
        let mut bare = vec![0u8; 128];
        bare.extend_from_slice(b"DICM");
        elem_le(&mut bare, 0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2\0");
        assert!(matches!(
            scan(&bare, true, LIMITS),
            Err(PrescanError::Malformed {
                group: 2,
                element: 0
            })
        ));
    }

    #[test]
    fn finds_pixel_data_and_checks_lengths() {
        let mut body = Vec::new();
        elem_le(&mut body, 0x0008, 0x0060, b"CS", b"CT");
        // A sequence with one defined-length item holding one element.
        let mut item = Vec::new();
        elem_le(&mut item, 0x0008, 0x1150, b"UI", b"1.2");
        let mut seq = Vec::new();
        seq.extend_from_slice(&0xFFFEu16.to_le_bytes());
        seq.extend_from_slice(&0xE000u16.to_le_bytes());
        seq.extend_from_slice(&(item.len() as u32).to_le_bytes());
        seq.extend_from_slice(&item);
        elem_le(&mut body, 0x0008, 0x1140, b"SQ", &seq);
        let pd_at = body.len();
        elem_le(&mut body, 0x7FE0, 0x0010, b"OW", &[0u8; 32]);
        let f = file("1.2.840.10008.1.2.1", &body);
        let p = scan(&f, true, LIMITS).unwrap();
        assert_eq!(p.transfer_syntax, "1.2.840.10008.1.2.1");
        let meta_len = f.len() - body.len();
        assert_eq!(p.pixel_data_offset, Some(meta_len + pd_at));
        // A prefix that stops inside the sequence needs more bytes.
        assert_eq!(
            scan(&f[..meta_len + 20], false, LIMITS),
            Err(PrescanError::NeedMore)
        );
        assert!(matches!(
            scan(&f[..meta_len + 20], true, LIMITS),
            Err(PrescanError::Truncated { .. })
        ));
    }

    #[test]
    fn huge_declared_length_is_refused_without_allocating() {
        let mut body = Vec::new();
        body.extend_from_slice(&0x0010u16.to_le_bytes());
        body.extend_from_slice(&0x1000u16.to_le_bytes());
        body.extend_from_slice(b"UT\0\0");
        body.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        body.extend_from_slice(b"short");
        let f = file("1.2.840.10008.1.2.1", &body);
        assert!(matches!(
            scan(&f, true, LIMITS),
            Err(PrescanError::ElementTooLong { .. })
        ));
        let big = ScanLimits {
            max_element_bytes: u64::MAX,
            max_depth: 16,
        };
        assert!(matches!(
            scan(&f, true, big),
            Err(PrescanError::Truncated { .. })
        ));
    }

    #[test]
    fn not_dicom_and_deflate() {
        assert_eq!(
            scan(b"hello world", true, LIMITS),
            Err(PrescanError::NotDicom)
        );
        assert_eq!(scan(&[0u8; 300], true, LIMITS), Err(PrescanError::NotDicom));
        let f = file(DEFLATED_EXPLICIT_LE, &[]);
        assert!(matches!(
            scan(&f, true, LIMITS),
            Err(PrescanError::UnsupportedTransferSyntax(_))
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut body = Vec::new();
        for _ in 0..40 {
            elem_undefined_sq(&mut body);
        }
        let f = file("1.2.840.10008.1.2.1", &body);
        assert_eq!(scan(&f, true, LIMITS), Err(PrescanError::TooDeep(16)));
    }

    fn elem_undefined_sq(out: &mut Vec<u8>) {
        out.extend_from_slice(&0x0008u16.to_le_bytes());
        out.extend_from_slice(&0x1140u16.to_le_bytes());
        out.extend_from_slice(b"SQ\0\0");
        out.extend_from_slice(&UNDEFINED.to_le_bytes());
        out.extend_from_slice(&0xFFFEu16.to_le_bytes());
        out.extend_from_slice(&0xE000u16.to_le_bytes());
        out.extend_from_slice(&UNDEFINED.to_le_bytes());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut body = Vec::new();
        elem_le(&mut body, 0x0008, 0x0060, b"CS", b"CT");
        elem_le(&mut body, 0x7FE0, 0x0010, b"OW", &[0u8; 8]);
        let base = file("1.2.840.10008.1.2.1", &body);
        for _ in 0..20_000 {
            let mut f = base.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % f.len();
                f[i] = (x >> 32) as u8;
            }
            let cut = (x >> 40) as usize % (f.len() + 1);
            let _ = scan(&f[..cut], x & 1 == 0, LIMITS);
            let _ = scan(&f, true, LIMITS);
        }
    }
}
