//! The footer's Thrift structs as the parquet crate 60.1.0 decodes them (built without its
//! `encryption` feature, read with `ArrowReaderOptions`' defaults): for each struct, the field
//! ids it reads and the type it reads each as, whatever type the field's header carries. An id
//! missing from a table is skipped by its wire type, as the crate does: fields the crate does
//! not know, and fields it knows but does not read (`ColumnMetaData` 3 and 8, `RowGroup` 6,
//! the encryption fields `FileMetaData` 8–9 and `ColumnChunk` 8–9).
//!
//! Sources, under `parquet-60.1.0/src/`: `file/metadata/thrift/mod.rs` (`FileMetaData`,
//! `RowGroup`, `ColumnChunk` and `ColumnMetaData` are decoded by hand there; the rest by
//! `thrift_struct!`), `basic.rs` (`LogicalType` and its structs, `ColumnOrder`, enums),
//! `file/metadata/mod.rs` (`KeyValue`, `PageEncodingStats`, `SortingColumn`).

/// How the parquet crate reads a known field or a list element.
#[derive(Debug)]
pub enum Ty {
    /// A struct field's value is its header's type (1 true, 2 false; anything else is an
    /// error); a list element is a byte (0, 1 or 2).
    Bool,
    /// One raw byte (`i8`).
    I8,
    /// Zigzag varints. Enums are `I32`. The three differ only as list element types, which
    /// the crate checks against the list header.
    I16,
    I32,
    I64,
    Double,
    /// A length, then that many bytes: `binary` and `string`.
    Binary,
    /// A union's empty-struct variant: the crate reads one byte, which must be a stop.
    Empty,
    Struct(&'static Shape),
    List(&'static Ty),
    /// `FileMetaData.schema`: decoded the first time; once a schema is decoded, a repeated
    /// field 2 is skipped by its wire type.
    Once(&'static Ty),
}

impl Ty {
    /// The element type a list header must carry for a list of these (the crate's
    /// `validate_list_type`).
    pub fn element_code(&self) -> u8 {
        match self {
            Ty::Bool => 2,
            Ty::I8 => 3,
            Ty::I16 => 4,
            Ty::I32 => 5,
            Ty::I64 => 6,
            Ty::Double => 7,
            Ty::Binary => 8,
            Ty::List(_) => 9,
            Ty::Empty | Ty::Struct(_) => 12,
            Ty::Once(t) => t.element_code(),
        }
    }
}

/// A struct, or a union (exactly one field, then a stop).
#[derive(Debug)]
pub struct Shape {
    pub fields: &'static [(i16, Ty)],
    pub kind: Kind,
}

#[derive(Debug, PartialEq)]
pub enum Kind {
    Struct,
    /// `skips_unknown`: an unknown variant is skipped by its wire type (`LogicalType`,
    /// `ColumnOrder`); otherwise it is an error (`TimeUnit`).
    Union {
        skips_unknown: bool,
    },
}

impl Shape {
    pub fn field(&self, id: i16) -> Option<&'static Ty> {
        self.fields.iter().find(|(i, _)| *i == id).map(|(_, t)| t)
    }
}

const fn strukt(fields: &'static [(i16, Ty)]) -> Shape {
    Shape {
        fields,
        kind: Kind::Struct,
    }
}

pub static FILE_META_DATA: Shape = strukt(&[
    (1, Ty::I32),
    (2, Ty::Once(&Ty::List(&Ty::Struct(&SCHEMA_ELEMENT)))),
    (3, Ty::I64),
    (4, Ty::List(&Ty::Struct(&ROW_GROUP))),
    (5, Ty::List(&Ty::Struct(&KEY_VALUE))),
    (6, Ty::Binary),
    (7, Ty::List(&Ty::Struct(&COLUMN_ORDER))),
]);

static SCHEMA_ELEMENT: Shape = strukt(&[
    (1, Ty::I32),
    (2, Ty::I32),
    (3, Ty::I32),
    (4, Ty::Binary),
    (5, Ty::I32),
    (6, Ty::I32),
    (7, Ty::I32),
    (8, Ty::I32),
    (9, Ty::I32),
    (10, Ty::Struct(&LOGICAL_TYPE)),
]);

static LOGICAL_TYPE: Shape = Shape {
    fields: &[
        (1, Ty::Empty),
        (2, Ty::Empty),
        (3, Ty::Empty),
        (4, Ty::Empty),
        (5, Ty::Struct(&DECIMAL_TYPE)),
        (6, Ty::Empty),
        (7, Ty::Struct(&TIMESTAMP_TYPE)), // TimeType is TimestampType
        (8, Ty::Struct(&TIMESTAMP_TYPE)),
        (10, Ty::Struct(&INT_TYPE)),
        (11, Ty::Empty),
        (12, Ty::Empty),
        (13, Ty::Empty),
        (14, Ty::Empty),
        (15, Ty::Empty),
        (16, Ty::Struct(&VARIANT_TYPE)),
        (17, Ty::Struct(&GEOMETRY_TYPE)),
        (18, Ty::Struct(&GEOGRAPHY_TYPE)),
        (19, Ty::Empty),
    ],
    kind: Kind::Union {
        skips_unknown: true,
    },
};

static DECIMAL_TYPE: Shape = strukt(&[(1, Ty::I32), (2, Ty::I32)]);
static TIMESTAMP_TYPE: Shape = strukt(&[(1, Ty::Bool), (2, Ty::Struct(&TIME_UNIT))]);
static TIME_UNIT: Shape = Shape {
    fields: &[(1, Ty::Empty), (2, Ty::Empty), (3, Ty::Empty)],
    kind: Kind::Union {
        skips_unknown: false,
    },
};
static INT_TYPE: Shape = strukt(&[(1, Ty::I8), (2, Ty::Bool)]);
static VARIANT_TYPE: Shape = strukt(&[(1, Ty::I8)]);
static GEOMETRY_TYPE: Shape = strukt(&[(1, Ty::Binary)]);
static GEOGRAPHY_TYPE: Shape = strukt(&[(1, Ty::Binary), (2, Ty::I32)]);

static ROW_GROUP: Shape = strukt(&[
    // Hand-decoded: no list size check, but the count must equal the schema's columns.
    (1, Ty::List(&Ty::Struct(&COLUMN_CHUNK))),
    (2, Ty::I64),
    (3, Ty::I64),
    (4, Ty::List(&Ty::Struct(&SORTING_COLUMN))),
    (5, Ty::I64),
    (7, Ty::I16),
]);

static SORTING_COLUMN: Shape = strukt(&[(1, Ty::I32), (2, Ty::Bool), (3, Ty::Bool)]);

static COLUMN_CHUNK: Shape = strukt(&[
    (1, Ty::Binary),
    (2, Ty::I64),
    (3, Ty::Struct(&COLUMN_META_DATA)),
    (4, Ty::I64),
    (5, Ty::I32),
    (6, Ty::I64),
    (7, Ty::I32),
]);

static COLUMN_META_DATA: Shape = strukt(&[
    (1, Ty::I32),
    (2, Ty::List(&Ty::I32)), // encodings, read as a mask: no list size check
    (4, Ty::I32),
    (5, Ty::I64),
    (6, Ty::I64),
    (7, Ty::I64),
    (9, Ty::I64),
    (10, Ty::I64),
    (11, Ty::I64),
    // 12, 13 and 16 are read unless the reader options skip them (`12 if !skip_col_stats`…);
    // the defaults skip none. 13 is read as a mask (`encoding_stats_as_mask`, default true),
    // which reads the same bytes as the full list.
    (12, Ty::Struct(&STATISTICS)),
    (13, Ty::List(&Ty::Struct(&PAGE_ENCODING_STATS))),
    (14, Ty::I64),
    (15, Ty::I32),
    (16, Ty::Struct(&SIZE_STATISTICS)),
    (17, Ty::Struct(&GEOSPATIAL_STATISTICS)),
]);

static STATISTICS: Shape = strukt(&[
    (1, Ty::Binary),
    (2, Ty::Binary),
    (3, Ty::I64),
    (4, Ty::I64),
    (5, Ty::Binary),
    (6, Ty::Binary),
    (7, Ty::Bool),
    (8, Ty::Bool),
    (9, Ty::I64),
]);

static PAGE_ENCODING_STATS: Shape = strukt(&[(1, Ty::I32), (2, Ty::I32), (3, Ty::I32)]);

static SIZE_STATISTICS: Shape = strukt(&[
    (1, Ty::I64),
    (2, Ty::List(&Ty::I64)),
    (3, Ty::List(&Ty::I64)),
]);

static GEOSPATIAL_STATISTICS: Shape =
    strukt(&[(1, Ty::Struct(&BOUNDING_BOX)), (2, Ty::List(&Ty::I32))]);

static BOUNDING_BOX: Shape = strukt(&[
    (1, Ty::Double),
    (2, Ty::Double),
    (3, Ty::Double),
    (4, Ty::Double),
    (5, Ty::Double),
    (6, Ty::Double),
    (7, Ty::Double),
    (8, Ty::Double),
]);

static KEY_VALUE: Shape = strukt(&[(1, Ty::Binary), (2, Ty::Binary)]);

/// Hand-decoded in `basic.rs`: variants 1–3 are empty structs, any other is skipped.
static COLUMN_ORDER: Shape = Shape {
    fields: &[(1, Ty::Empty), (2, Ty::Empty), (3, Ty::Empty)],
    kind: Kind::Union {
        skips_unknown: true,
    },
};
