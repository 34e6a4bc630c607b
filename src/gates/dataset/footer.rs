//! A Parquet file's footer walked once, cheaply, before the parquet crate decodes it: a mirror
//! of that crate's decoder, pinned to **parquet 60.1.0**. Upgrading the crate must re-check
//! this file and [`schema`] against its `parquet_thrift.rs`, `parquet_macros.rs`,
//! `file/metadata/thrift/mod.rs` and `basic.rs` (a new field, a new hand-written arm, a new
//! reader option default), and so must enabling its `encryption` feature (which makes it
//! decode `FileMetaData` 8–9 and `ColumnChunk` 8–9, skipped here).
//!
//! Why: the footer is Thrift (compact protocol). Fields the parquet crate does not read it
//! skips, and its skipper takes a collection's declared size on trust while a boolean element
//! costs it no input: a list or map of booleans "of 2,147,483,647 elements" in 5 bytes is two
//! billion loop turns (seconds of CPU; found by the dataset fuzz target). A legitimately
//! encoded element always takes at least one byte (a boolean in a collection is a byte; a map
//! entry two), so a collection claiming more elements than the bytes left is damaged: refused
//! here, in time linear in the footer's size.
//!
//! Why a mirror: the crate decodes a field it knows by the type its schema gives that id,
//! whatever type the field's header claims; only unknown ids are skipped by the header's type.
//! A walk by wire types alone loses step with the crate after one damaged type nibble, and a
//! bomb after it goes unseen. So this walk reads known ids as the crate does ([`schema`]:
//! lists checked against the element type the crate expects, booleans from the field header,
//! unions as one field then a stop, empty-struct variants as one stop byte), and skips unknown
//! ids exactly as its `skip_till_depth` does (nesting limit 64; booleans in skipped collections
//! take no input, which this walk counts against the footer's length, so that nested lists of
//! such booleans are bounded too).
//!
//! Only an impossible collection refuses a file. Wherever the crate fails (end of input, an
//! invalid type nibble or element type, a list of the wrong element type, a union with a
//! second field, a field id overflowing, a boolean field with a non-boolean header, skipping
//! past depth 64), this walk stops and leaves the file to the crate, which reports the error
//! and decodes nothing after it. Checks the crate makes on decoded values (enum values, UTF-8,
//! a row group's column count, required fields) the walk does not make: it walks on, which
//! costs nothing and can only refuse a file the crate would refuse anyway. There is no point
//! where the crate's reading could not be mirrored: what it consumes depends only on the bytes
//! and on the reader options, whose defaults stagegate uses (`ParquetRecordBatchReaderBuilder::
//! try_new`; see [`schema`] for the options that change what is read).
//!
//! Hand-written rather than a Thrift crate: the point is to walk *without* trusting sizes, and
//! to read as this particular decoder reads, damaged input included.

mod schema;

use schema::{Kind, Shape, Ty};

/// What the walk concluded.
#[derive(Debug, PartialEq)]
pub enum Walk {
    /// No collection claims more than it can hold (or the walk stopped where the parquet
    /// crate fails and reports the problem itself).
    Plausible,
    /// A list, set or map claims `claimed` elements where at most `room` can be: damaged.
    Impossible { claimed: u64, room: u64 },
}

/// Walk the footer of a whole file (`tail` = its last bytes, at least the footer and the
/// 8-byte trailer). Files too short to have a footer are left to the parquet crate.
pub fn check(tail: &[u8]) -> Walk {
    let Some(trailer) = tail.len().checked_sub(8) else {
        return Walk::Plausible;
    };
    let mut len = [0u8; 4];
    len.copy_from_slice(&tail[trailer..trailer + 4]);
    let len = u32::from_le_bytes(len) as usize;
    match trailer.checked_sub(len) {
        Some(start) => walk_file_meta_data(&tail[start..trailer]),
        None => Walk::Plausible,
    }
}

/// Walk an encoded `FileMetaData` (the footer without its trailer) as the crate decodes it.
pub fn walk_file_meta_data(bytes: &[u8]) -> Walk {
    walk(bytes, |w| w.shape(&schema::FILE_META_DATA))
}

/// Whether the walk reads a whole file's footer to its last byte, as the crate's decode of a
/// real footer does: the walk and the crate in step throughout (tests of real files).
#[cfg(test)]
pub fn walks_to_the_end(file: &[u8]) -> bool {
    let Some(trailer) = file.len().checked_sub(8) else {
        return false;
    };
    let mut len = [0u8; 4];
    len.copy_from_slice(&file[trailer..trailer + 4]);
    let Some(start) = trailer.checked_sub(u32::from_le_bytes(len) as usize) else {
        return false;
    };
    let footer = &file[start..trailer];
    let mut w = Walker {
        buf: footer,
        at: 0,
        free: footer.len() as u64,
    };
    w.shape(&schema::FILE_META_DATA).is_ok() && w.at == footer.len()
}

/// Walk the bytes as the crate's skipper would skip a struct (an unknown struct field).
#[cfg(test)]
fn walk_skipped_struct(bytes: &[u8]) -> Walk {
    walk(bytes, |w| w.skip(STRUCT, SKIP_DEPTH))
}

fn walk(bytes: &[u8], f: impl FnOnce(&mut Walker) -> Result<(), Stop>) -> Walk {
    let mut w = Walker {
        buf: bytes,
        at: 0,
        free: bytes.len() as u64,
    };
    match f(&mut w) {
        Err(Stop::Impossible(claimed, room)) => Walk::Impossible { claimed, room },
        Ok(()) | Err(Stop::CrateFails) => Walk::Plausible,
    }
}

// Compact-protocol type codes (a field header's low nibble; list element types alike, where a
// boolean is 1 or 2).
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

/// The crate's `skip` starts every skipped field at this depth and fails at 0.
const SKIP_DEPTH: u8 = 64;

enum Stop {
    /// The parquet crate fails here (and decodes nothing after): the walk ends.
    CrateFails,
    /// A collection claims `.0` elements where at most `.1` can be.
    Impossible(u64, u64),
}

struct Walker<'a> {
    buf: &'a [u8],
    at: usize,
    /// Boolean elements the crate's skipper may still skip without consuming input: one per
    /// byte of footer, as each is a byte of its own in a real encoding.
    free: u64,
}

impl Walker<'_> {
    fn left(&self) -> u64 {
        (self.buf.len() - self.at) as u64
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        let b = *self.buf.get(self.at).ok_or(Stop::CrateFails)?;
        self.at += 1;
        Ok(b)
    }

    fn skip_bytes(&mut self, n: u64) -> Result<(), Stop> {
        if n > self.left() {
            return Err(Stop::CrateFails); // the crate's end of input
        }
        self.at += n as usize; // fits: n is at most what is left of the buffer
        Ok(())
    }

    /// The crate's `read_vlq`: no limit on its length; bits past 64 wrap as its
    /// `wrapping_shl` does, so that a damaged varint yields the value the crate sees.
    fn varint(&mut self) -> Result<u64, Stop> {
        let (mut v, mut shift) = (0u64, 0u32);
        loop {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).wrapping_shl(shift);
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift = shift.wrapping_add(7);
        }
    }

    /// The crate's `read_zig_zag`.
    fn zigzag(&mut self) -> Result<i64, Stop> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// `n` elements of at least `each` bytes must fit in what is left.
    fn claim(&self, n: u64, each: u64) -> Result<(), Stop> {
        let room = self.left() / each;
        if n > room {
            return Err(Stop::Impossible(n, room));
        }
        Ok(())
    }

    /// `n` elements the skipper turns over without consuming input.
    fn charge(&mut self, n: u64) -> Result<(), Stop> {
        if n > self.free {
            return Err(Stop::Impossible(n, self.free));
        }
        self.free -= n;
        Ok(())
    }

    /// The crate's `read_field_begin`: `None` at a stop (any header whose type is 0), else
    /// the field's wire type and id.
    fn field_header(&mut self, last_id: i16) -> Result<Option<(u8, i16)>, Stop> {
        let h = self.byte()?;
        let t = h & 0x0f;
        if t == 0 {
            return Ok(None);
        }
        if t > UUID {
            return Err(Stop::CrateFails); // types 14 and 15 do not exist
        }
        let id = match h >> 4 {
            // A long-form id: an i16 the crate truncates from its zigzag varint.
            0 => self.zigzag()? as i16,
            delta => last_id
                .checked_add(i16::from(delta))
                .ok_or(Stop::CrateFails)?,
        };
        Ok(Some((t, id)))
    }

    /// The crate's `read_list_begin`: element type (booleans as 2) and size.
    fn list_header(&mut self) -> Result<(u8, u64), Stop> {
        let h = self.byte()?;
        if h == 0 {
            return Ok((BYTE, 0)); // some writers' empty list; the crate calls it a list of bytes
        }
        let elem = element_type(h & 0x0f)?;
        let n = match h >> 4 {
            15 => self.varint()?,
            n => u64::from(n),
        };
        if n > i32::MAX as u64 {
            return Err(Stop::CrateFails); // the crate takes the size as an i32
        }
        Ok((elem, n))
    }

    /// A struct or union the crate decodes by its schema.
    fn shape(&mut self, shape: &Shape) -> Result<(), Stop> {
        if let Kind::Union { skips_unknown } = shape.kind {
            // One field (none is an error), then the next header must be a stop.
            let (t, id) = self.field_header(0)?.ok_or(Stop::CrateFails)?;
            match shape.field(id) {
                Some(ty) => self.known(ty, t)?,
                None if skips_unknown => self.skip(t, SKIP_DEPTH)?,
                None => return Err(Stop::CrateFails),
            }
            return match self.byte()? & 0x0f {
                0 => Ok(()),
                _ => Err(Stop::CrateFails),
            };
        }
        let (mut last_id, mut once_seen) = (0i16, false);
        while let Some((t, id)) = self.field_header(last_id)? {
            match shape.field(id) {
                Some(Ty::Once(_)) if once_seen => self.skip(t, SKIP_DEPTH)?,
                Some(Ty::Once(ty)) => {
                    self.known(ty, t)?;
                    once_seen = true;
                }
                Some(ty) => self.known(ty, t)?,
                None => self.skip(t, SKIP_DEPTH)?,
            }
            last_id = id;
        }
        Ok(())
    }

    /// A known field's value, read by its schema type `ty`; `wire` is the header's type,
    /// which only a boolean field looks at.
    fn known(&mut self, ty: &Ty, wire: u8) -> Result<(), Stop> {
        match ty {
            Ty::Bool if wire == BOOL_TRUE || wire == BOOL_FALSE => Ok(()),
            Ty::Bool => Err(Stop::CrateFails), // `bool_val` of a non-boolean header
            _ => self.value(ty),
        }
    }

    /// A value of schema type `ty` outside a field header (a list element, or a field's
    /// value once its header is read).
    fn value(&mut self, ty: &Ty) -> Result<(), Stop> {
        match ty {
            Ty::Bool => match self.byte()? {
                0..=2 => Ok(()),
                _ => Err(Stop::CrateFails), // `read_bool`
            },
            Ty::I8 => self.skip_bytes(1),
            Ty::I16 | Ty::I32 | Ty::I64 => self.varint().map(drop),
            Ty::Double => self.skip_bytes(8),
            Ty::Binary => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            Ty::Empty => match self.byte()? {
                0 => Ok(()),
                _ => Err(Stop::CrateFails), // `skip_empty_struct`: "Empty struct has fields"
            },
            Ty::Struct(shape) => self.shape(shape),
            Ty::List(elem) => {
                let (t, n) = self.list_header()?;
                if t != elem.element_code() {
                    return Err(Stop::CrateFails); // `validate_list_type`
                }
                self.claim(n, 1)?;
                for _ in 0..n {
                    self.value(elem)?;
                }
                Ok(())
            }
            Ty::Once(ty) => self.value(ty),
        }
    }

    /// The crate's `skip_till_depth`: a value of wire type `t`, skipped.
    fn skip(&mut self, t: u8, depth: u8) -> Result<(), Stop> {
        if depth == 0 {
            return Err(Stop::CrateFails); // "cannot parse past"
        }
        match t {
            BOOL_TRUE | BOOL_FALSE => Ok(()), // no input, in a field or as an element
            BYTE => self.skip_bytes(1),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.skip_bytes(8),
            BINARY => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            UUID => self.skip_bytes(16),
            STRUCT => {
                // Field ids do not matter to the skipper, which passes 0 as the last id.
                while let Some((t, _)) = self.field_header(0)? {
                    self.skip(t, depth - 1)?;
                }
                Ok(())
            }
            LIST | SET => {
                let (elem, n) = self.list_header()?;
                self.claim(n, 1)?;
                if elem == BOOL_FALSE {
                    self.charge(n)?;
                }
                for _ in 0..n {
                    self.skip(elem, depth - 1)?;
                }
                Ok(())
            }
            MAP => {
                let n = self.varint()?;
                if n > i32::MAX as u64 {
                    return Err(Stop::CrateFails);
                }
                if n == 0 {
                    return Ok(()); // no key/value type byte follows
                }
                let kv = self.byte()?;
                let (k, v) = (element_type(kv >> 4)?, element_type(kv & 0x0f)?);
                self.claim(n, 2)?;
                for side in [k, v] {
                    if side == BOOL_FALSE {
                        self.charge(n)?;
                    }
                }
                for _ in 0..n {
                    self.skip(k, depth - 1)?;
                    self.skip(v, depth - 1)?;
                }
                Ok(())
            }
            _ => Err(Stop::CrateFails), // not a type (a stop is never skipped)
        }
    }
}

/// A list or map element type as the crate reads it (`ElementType::try_from`): booleans as 1
/// or 2 (returned as 2), 0, 14 and 15 are errors.
fn element_type(code: u8) -> Result<u8, Stop> {
    match code {
        BOOL_TRUE | BOOL_FALSE => Ok(BOOL_FALSE),
        BYTE..=UUID => Ok(code),
        _ => Err(Stop::CrateFails),
    }
}

#[cfg(test)]
mod tests;
