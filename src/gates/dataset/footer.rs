//! A Parquet file's footer walked once, cheaply, before the parquet crate decodes it.
//!
//! The footer is Thrift (compact protocol). When the parquet crate meets a field it does not
//! know, it skips it, and its skipper takes a list's declared size on trust: a list of
//! booleans "of 2,147,483,647 elements" costs it two billion loop turns while consuming no
//! input. A few bytes of footer cost seconds of CPU; a few kilobytes, hours (found by the
//! dataset fuzz target: a 600-byte file held a core for 3 s). A real list element always
//! takes at least one byte on the wire (booleans in lists are one byte each; a map entry
//! two), so a collection that claims more elements than the bytes left to hold them is
//! damaged, whatever its type: refused here, in time linear in the footer's size.
//!
//! Only that rule refuses a file. Anything else this walker does not follow (a type it does
//! not know, a truncated field) is left to the parquet crate, whose own message names it.
//! The walk reads the protocol as the parquet crate does (type 0 ends a struct, a zero list
//! header is an empty list), but not its schema: the crate decodes a known field by its id,
//! whatever wire type it carries, so a footer whose fields lie about their types can still
//! lead its skipper astray. What the walk refuses is the plain case, which a single damaged
//! byte can make.
//! Hand-written rather than a Thrift crate: the point is to walk *without* trusting sizes,
//! which is exactly what a general decoder does not promise.

/// What the walk concluded.
#[derive(Debug, PartialEq)]
pub enum Walk {
    /// No collection claims more than it can hold (or the walker stopped where the parquet
    /// crate will report the problem itself).
    Plausible,
    /// A list, set or map claims `claimed` elements with `left` bytes left: damaged.
    Impossible { claimed: u64, left: usize },
}

/// Structs nested deeper than this are left to the parquet crate (which stops at 64 too).
const MAX_DEPTH: u32 = 64;

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
        Some(start) => walk_struct(&tail[start..trailer]),
        None => Walk::Plausible,
    }
}

/// Walk one encoded struct (the footer's `FileMetaData`).
pub fn walk_struct(bytes: &[u8]) -> Walk {
    let mut w = Walker { buf: bytes, at: 0 };
    match w.element(STRUCT, 0, false) {
        Err(Stop::Impossible(claimed, left)) => Walk::Impossible { claimed, left },
        Ok(()) | Err(Stop::Unfollowed) => Walk::Plausible,
    }
}

// Compact-protocol type codes.
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

enum Stop {
    /// Something the parquet crate will report in its own words.
    Unfollowed,
    Impossible(u64, usize),
}

struct Walker<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Walker<'_> {
    fn left(&self) -> usize {
        self.buf.len() - self.at
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        let b = *self.buf.get(self.at).ok_or(Stop::Unfollowed)?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<(), Stop> {
        if n > self.left() as u64 {
            return Err(Stop::Unfollowed);
        }
        self.at += n as usize;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, Stop> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Stop::Unfollowed)
    }

    /// A collection of `n` elements of at least `each` bytes must fit in what is left.
    fn claim(&self, n: u64, each: u64) -> Result<(), Stop> {
        if n.saturating_mul(each) > self.left() as u64 {
            return Err(Stop::Impossible(n, self.left()));
        }
        Ok(())
    }

    /// One value of compact type `t`; `in_collection` because a boolean field carries its
    /// value in the field header, while a boolean list element is a byte of its own.
    fn element(&mut self, t: u8, depth: u32, in_collection: bool) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Unfollowed);
        }
        match t {
            BOOL_TRUE | BOOL_FALSE if in_collection => self.skip(1),
            BOOL_TRUE | BOOL_FALSE => Ok(()),
            BYTE => self.skip(1),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.skip(8),
            UUID => self.skip(16),
            BINARY => {
                let n = self.varint()?;
                self.skip(n)
            }
            LIST | SET => {
                let header = self.byte()?;
                if header == 0 {
                    return Ok(()); // how some writers mark an empty list; the parquet crate too
                }
                let n = match header >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                self.claim(n, 1)?;
                for _ in 0..n {
                    self.element(header & 0x0f, depth + 1, true)?;
                }
                Ok(())
            }
            MAP => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                self.claim(n, 2)?;
                for _ in 0..n {
                    self.element(kv >> 4, depth + 1, true)?;
                    self.element(kv & 0x0f, depth + 1, true)?;
                }
                Ok(())
            }
            STRUCT => loop {
                // Type 0 ends the struct whatever the delta bits say, as in the parquet
                // crate: reading it any other way would lose step with what it decodes.
                let header = self.byte()?;
                if header & 0x0f == 0 {
                    return Ok(());
                }
                if header >> 4 == 0 {
                    self.varint()?; // a long-form field id
                }
                self.element(header & 0x0f, depth + 1, false)?;
            },
            _ => Err(Stop::Unfollowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A struct whose field 1 is a list of booleans claiming `n` elements (long form).
    fn bool_list(n: u32) -> Vec<u8> {
        let mut b = vec![0x19, 0xf1]; // field 1: list; header: long size, element type bool
        let mut v = n;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                b.push(byte);
                break;
            }
            b.push(byte | 0x80);
        }
        b
    }

    #[test]
    fn a_list_claiming_more_than_it_can_hold_is_impossible() {
        let mut footer = bool_list(i32::MAX as u32);
        footer.extend([1, 2, 0]); // three bytes of "elements", then the struct's stop
        assert_eq!(
            walk_struct(&footer),
            Walk::Impossible {
                claimed: i32::MAX as u64,
                left: 3
            }
        );
    }

    #[test]
    fn real_encodings_are_plausible() {
        // Field 1 (i32 5), field 2 (binary "ab"), field 3 (list of 3 bools, a byte each),
        // field 4 (map of one i32 -> binary), field 5 (struct with one bool-true field), stop.
        let footer = [
            0x15, 0x0a, 0x18, 0x02, b'a', b'b', 0x19, 0x31, 1, 2, 1, 0x1b, 0x01, 0x58, 0x02, 0x01,
            b'x', 0x1c, 0x11, 0x00, 0x00,
        ];
        assert_eq!(walk_struct(&footer), Walk::Plausible);
        // A list of exactly as many bools as bytes left is possible.
        let mut fits = bool_list(3);
        fits.extend([1, 1, 1, 0]);
        assert_eq!(walk_struct(&fits), Walk::Plausible);
    }

    #[test]
    fn what_the_walker_does_not_follow_is_left_to_parquet() {
        assert_eq!(walk_struct(&[]), Walk::Plausible);
        assert_eq!(walk_struct(&[0x1e]), Walk::Plausible); // unknown type 14
        assert_eq!(check(b"PAR1"), Walk::Plausible); // too short for a trailer
        let mut file = b"PAR1".to_vec();
        file.extend(u32::MAX.to_le_bytes()); // a footer longer than the file
        file.extend(b"PAR1");
        assert_eq!(check(&file), Walk::Plausible);
    }

    /// The parquet crate ends a struct at any header of type 0 (a damaged byte turned a stop
    /// 0x00 into 0x10 in the fuzz smoke test): the walk must stay in step to see what follows.
    #[test]
    fn a_stop_with_delta_bits_ends_the_struct() {
        let mut footer = vec![0x1c, 0x15, 0x02, 0x10]; // struct { i32 }, stopped by 0x10
        footer.extend(&bool_list(i32::MAX as u32)[..]);
        footer.push(0);
        assert!(matches!(walk_struct(&footer), Walk::Impossible { .. }));
        // An empty list written as a bare 0 header, then the impossible one.
        let mut footer = vec![0x19, 0x00];
        footer.extend(&bool_list(i32::MAX as u32)[..]);
        footer.push(0);
        assert!(matches!(walk_struct(&footer), Walk::Impossible { .. }));
    }

    #[test]
    fn deep_nesting_stops_the_walk_without_recursion_trouble() {
        let footer = vec![0x1c; 100_000]; // struct in struct in struct…
        assert_eq!(walk_struct(&footer), Walk::Plausible);
    }
}
