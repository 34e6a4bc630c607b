//! The walk against hand-made footers; real files are in `read.rs`'s tests.

use super::*;

/// Field 100 (long form: header 0x09, then the zigzag id) holding a list of booleans
/// claiming i32::MAX elements: the fuzz target's bomb.
const BOMB: [u8; 9] = [0x09, 0xc8, 0x01, 0xf1, 0xff, 0xff, 0xff, 0xff, 0x07];

/// `FileMetaData { 1: 2, 2: [SchemaElement { 4: "a" }] }` with field 2's header as given,
/// then `tail`, then the stop.
fn meta(schema_header: u8, tail: &[u8]) -> Vec<u8> {
    let mut b = vec![0x15, 0x04, schema_header, 0x1c, 0x48, 0x01, b'a', 0x00];
    b.extend(tail);
    b.push(0x00);
    b
}

/// How far the walk got: the whole footer, for a real one.
fn walked(bytes: &[u8]) -> Option<usize> {
    let mut w = Walker {
        buf: bytes,
        at: 0,
        free: bytes.len() as u64,
    };
    w.shape(&schema::FILE_META_DATA).ok().map(|()| w.at)
}

#[test]
fn a_skipped_list_claiming_more_than_it_can_hold_is_impossible() {
    let footer = meta(0x19, &BOMB);
    assert_eq!(walked(&footer[..footer.len() - BOMB.len() - 1]), None); // cut: the crate fails
    assert_eq!(
        walk_file_meta_data(&footer),
        Walk::Impossible {
            claimed: i32::MAX as u64,
            room: 1
        }
    );
    assert_eq!(walked(&meta(0x19, &[])), Some(9));
}

/// The crate reads field 2 as the schema list whatever its header's type says (the fuzz
/// smoke test's finding: 0x19 changed to 0x11). A walk by wire types takes 0x16 for an
/// i64 (the list header as its varint), then the schema element's stop for the end of the
/// footer, and never sees the bomb the crate then skips.
#[test]
fn a_known_field_is_walked_by_its_schema_type_whatever_its_header_says() {
    for lie in [0x11, 0x12, 0x16, 0x18, 0x1b, 0x1d] {
        let footer = meta(lie, &BOMB);
        assert!(
            matches!(walk_file_meta_data(&footer), Walk::Impossible { .. }),
            "{lie:#x}"
        );
    }
    // Types 14 and 15 do not exist: the crate fails on the header, and so may the walk.
    assert_eq!(walk_file_meta_data(&meta(0x1e, &BOMB)), Walk::Plausible);
    // A schema list whose element type is not a struct: the crate fails there.
    let mut wrong = meta(0x19, &BOMB);
    wrong[3] = 0x15;
    assert_eq!(walk_file_meta_data(&wrong), Walk::Plausible);
    // A repeated schema field is skipped by its wire type, as the crate skips it once it
    // has a schema: as a list here, whose bomb is seen.
    let mut again = vec![0x09, 0x04]; // field 2 again (long form), a list…
    again.extend(&BOMB[3..]); // …of booleans claiming i32::MAX
    assert!(matches!(
        walk_file_meta_data(&meta(0x19, &again)),
        Walk::Impossible { .. }
    ));
}

/// Row group → column chunk → column metadata → statistics, the last two with headers
/// lying about their types, and the bomb in an unknown field of the statistics.
#[test]
fn a_bomb_inside_nested_known_structs_is_found() {
    let mut f = vec![0x16, 0x04]; // FileMetaData 3: num_rows 2 (after fields 1–2)
    f.extend([0x19, 0x1c]); // 4: list of one RowGroup
    f.extend([0x19, 0x1c]); //   1: list of one ColumnChunk
    f.extend([0x26, 0x00]); //     2: file_offset 0
    f.extend([0x15]); //           3: ColumnMetaData, header type i32 (a lie)
    f.extend([0x15, 0x02]); //       1: type INT64
    f.extend([0x14, 0x05]); //       2: encodings, header i16 (a lie): no i32s
    f.extend([0xa5]); //             12: statistics, header i32 (a lie)
    f.extend([0x38, 0x01]); //         3: null_count, header binary (a lie): 1
    f.extend(BOMB); //                 100: the bomb
    f.extend([0x00, 0x00, 0x00]); // ends of Statistics, ColumnMetaData, ColumnChunk
    f.extend([0x00]); //             end of RowGroup
    let footer = meta(0x19, &f);
    assert!(matches!(
        walk_file_meta_data(&footer),
        Walk::Impossible { claimed, .. } if claimed == i32::MAX as u64
    ));
}

/// An unknown field of a known nested struct (a schema element's field 50), and inside a
/// skipped struct (an unknown struct field of `FileMetaData`).
#[test]
fn a_bomb_in_an_unknown_field_of_a_nested_struct_is_found() {
    let mut footer = vec![0x15, 0x04, 0x19, 0x1c, 0x48, 0x01, b'a'];
    footer.extend([0x09, 0x64]); // field 50, long form: a list…
    footer.extend(&BOMB[3..]);
    footer.extend([0x00, 0x00]);
    assert!(matches!(
        walk_file_meta_data(&footer),
        Walk::Impossible { .. }
    ));
    let mut skipped = vec![0x0c, 0xc8, 0x01, 0x1c]; // field 100: struct { struct {
    skipped.extend(BOMB);
    skipped.extend([0x00, 0x00]);
    assert!(matches!(
        walk_file_meta_data(&meta(0x19, &skipped)),
        Walk::Impossible { .. }
    ));
}

/// Maps: booleans as keys or values cost the skipper no input either.
#[test]
fn a_map_claiming_more_than_it_can_hold_is_impossible() {
    for kv in [0x11, 0x12, 0x21, 0x15, 0x51] {
        let map = [0x0b, 0xc8, 0x01, 0xff, 0xff, 0xff, 0xff, 0x07, kv];
        assert!(
            matches!(
                walk_file_meta_data(&meta(0x19, &map)),
                Walk::Impossible { .. }
            ),
            "{kv:#x}"
        );
    }
    // A real map of one i32 → binary, then a map with no entries (no type byte).
    let ok = [
        0x0b, 0xc8, 0x01, 0x01, 0x58, 0x02, 0x01, b'x', 0x0b, 0xca, 0x01, 0x00,
    ];
    assert_eq!(walk_file_meta_data(&meta(0x19, &ok)), Walk::Plausible);
}

/// Lists of lists of booleans: each inner list fits what is left, but the skipper turns
/// over all of them without consuming input; their sum is bounded by the footer's length.
#[test]
fn nested_boolean_lists_are_bounded_by_the_footer_length() {
    let mut lists = vec![0x09, 0xc8, 0x01, 0xe9]; // field 100: a list of 14 lists
    for _ in 0..14 {
        lists.extend([0xf1, 40]); // each of 40 booleans
    }
    lists.extend([0; 40]);
    assert!(matches!(
        walk_file_meta_data(&meta(0x19, &lists)),
        Walk::Impossible { claimed: 40, .. }
    ));
    // A skipped list of three booleans, a byte each: the crate's skipper consumes none of
    // them and reads those bytes as field headers; the walk follows it (to the end of
    // input, where the crate fails).
    let bools = [0x09, 0xc8, 0x01, 0x31, 0x01, 0x02, 0x02, 0x04];
    assert_eq!(walk_file_meta_data(&meta(0x19, &bools)), Walk::Plausible);
}

#[test]
fn unions_read_one_field_then_a_stop() {
    // A schema element with a logical type: TIMESTAMP(isAdjustedToUTC, MILLIS), Integer(8,
    // signed), an unknown variant (skipped), then the bomb after it.
    let mut f = vec![0x15, 0x04, 0x19, 0x3c]; // 1: 2, 2: list of three schema elements
    // "a": 10 = Timestamp (id 8; header says bool) { 1: true, 2: TimeUnit { 1: MILLIS {} } }
    f.extend([
        0x48, 0x01, b'a', 0x6c, 0x81, 0x11, 0x1c, 0x1c, 0x00, 0x00, 0x00, 0x00, 0x00,
    ]);
    // "b": 10 = Integer { 1: 8 (one byte), 2: true }
    f.extend([
        0x48, 0x01, b'b', 0x6c, 0xac, 0x13, 0x08, 0x11, 0x00, 0x00, 0x00,
    ]);
    // "c": 10 = variant 20 (long form), unknown to the crate: an empty struct, skipped
    f.extend([0x48, 0x01, b'c', 0x6c, 0x0c, 0x28, 0x00, 0x00, 0x00]);
    let mut good = f.clone();
    good.push(0x00);
    assert_eq!(walked(&good), Some(good.len()));
    f.extend(BOMB);
    f.push(0x00);
    assert!(matches!(walk_file_meta_data(&f), Walk::Impossible { .. }));
    // A union with a second field: the crate fails, so the walk stops before the bomb.
    let mut two = vec![
        0x15, 0x04, 0x19, 0x1c, 0x48, 0x01, b'a', 0x6c, 0x1c, 0x00, 0x2c,
    ];
    two.extend([0x00, 0x00, 0x00]);
    two.extend(BOMB);
    two.push(0x00);
    assert_eq!(walk_file_meta_data(&two), Walk::Plausible);
}

#[test]
fn what_the_crate_fails_on_ends_the_walk() {
    assert_eq!(walk_file_meta_data(&[]), Walk::Plausible);
    assert_eq!(walk_file_meta_data(&[0x1e]), Walk::Plausible); // unknown type 14
    assert_eq!(check(b"PAR1"), Walk::Plausible); // too short for a trailer
    let mut file = b"PAR1".to_vec();
    file.extend(u32::MAX.to_le_bytes()); // a footer longer than the file
    file.extend(b"PAR1");
    assert_eq!(check(&file), Walk::Plausible);
    // A boolean field whose header is not boolean (Integer's is_signed as an i32): the
    // crate fails there, and the walk ends before the bomb.
    let mut bad_bool = vec![
        0x15, 0x04, 0x19, 0x1c, 0x48, 0x01, b'a', 0x6c, 0xac, 0x13, 0x08,
    ];
    bad_bool.extend([0x15, 0x02, 0x00, 0x00, 0x00]);
    bad_bool.extend(BOMB);
    bad_bool.push(0x00);
    assert_eq!(walk_file_meta_data(&bad_bool), Walk::Plausible);
}

/// Type 0 ends a struct whatever the delta bits say, as in the crate (a damaged byte
/// turned a stop 0x00 into 0x10 in the fuzz smoke test).
#[test]
fn a_stop_with_delta_bits_ends_the_struct() {
    let mut skipped = vec![0x0c, 0xc8, 0x01, 0x15, 0x02, 0x10]; // struct { i32 }, stop 0x10
    skipped.extend(BOMB);
    assert!(matches!(
        walk_file_meta_data(&meta(0x19, &skipped)),
        Walk::Impossible { .. }
    ));
    // An empty list written as a bare 0 header in a skipped field, then the bomb.
    let mut empty = vec![0x09, 0xc8, 0x01, 0x00];
    empty.extend(BOMB);
    assert!(matches!(
        walk_file_meta_data(&meta(0x19, &empty)),
        Walk::Impossible { .. }
    ));
}

#[test]
fn deep_nesting_stops_where_the_skipper_does() {
    let footer = vec![0x1c; 100_000]; // struct in struct in struct…
    assert_eq!(walk_skipped_struct(&footer), Walk::Plausible);
    assert_eq!(walk_file_meta_data(&footer), Walk::Plausible);
    // 63 levels are skipped, the bomb inside them is seen.
    let mut deep = vec![0x1c; 62];
    deep.extend(BOMB);
    assert!(matches!(
        walk_skipped_struct(&deep),
        Walk::Impossible { .. }
    ));
    // At 63 levels the crate's skipper fails before reaching it, and so does the walk.
    let mut deeper = vec![0x1c; 63];
    deeper.extend(BOMB);
    assert_eq!(walk_skipped_struct(&deeper), Walk::Plausible);
}

/// Long varints: the crate reads any number of continuation bytes.
#[test]
fn long_varints_are_read_as_the_crate_reads_them() {
    let mut f = vec![0x16]; // 3: num_rows, a 20-byte varint
    f.extend([0x80; 19]);
    f.push(0x01);
    f.extend(BOMB);
    assert!(matches!(
        walk_file_meta_data(&meta(0x19, &f)),
        Walk::Impossible { .. }
    ));
}
