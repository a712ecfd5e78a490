//! Owned metadata values and their GGUF type codes.

/// GGUF metadata value type codes.
pub(crate) mod code {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// One metadata value, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    /// `u8`
    U8(u8),
    /// `i8`
    I8(i8),
    /// `u16`
    U16(u16),
    /// `i16`
    I16(i16),
    /// `u32`
    U32(u32),
    /// `i32`
    I32(i32),
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f32`
    F32(f32),
    /// `f64`
    F64(f64),
    /// `bool`
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// Homogeneous array.
    Array(MetadataArray),
}

/// A homogeneous metadata array, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataArray {
    /// `u8` elements.
    U8(Vec<u8>),
    /// `i8` elements.
    I8(Vec<i8>),
    /// `u16` elements.
    U16(Vec<u16>),
    /// `i16` elements.
    I16(Vec<i16>),
    /// `u32` elements.
    U32(Vec<u32>),
    /// `i32` elements.
    I32(Vec<i32>),
    /// `u64` elements.
    U64(Vec<u64>),
    /// `i64` elements.
    I64(Vec<i64>),
    /// `f32` elements.
    F32(Vec<f32>),
    /// `f64` elements.
    F64(Vec<f64>),
    /// `bool` elements.
    Bool(Vec<bool>),
    /// String elements.
    String(Vec<String>),
    /// Nested arrays.
    Array(Vec<MetadataArray>),
}

impl MetadataValue {
    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetadataValue::U8(_) => "u8",
            MetadataValue::I8(_) => "i8",
            MetadataValue::U16(_) => "u16",
            MetadataValue::I16(_) => "i16",
            MetadataValue::U32(_) => "u32",
            MetadataValue::I32(_) => "i32",
            MetadataValue::U64(_) => "u64",
            MetadataValue::I64(_) => "i64",
            MetadataValue::F32(_) => "f32",
            MetadataValue::F64(_) => "f64",
            MetadataValue::Bool(_) => "bool",
            MetadataValue::String(_) => "string",
            MetadataValue::Array(a) => a.type_name(),
        }
    }

    /// The value as an `i128` if it is an integer type.
    pub(crate) fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            MetadataValue::U8(v) => v.into(),
            MetadataValue::I8(v) => v.into(),
            MetadataValue::U16(v) => v.into(),
            MetadataValue::I16(v) => v.into(),
            MetadataValue::U32(v) => v.into(),
            MetadataValue::I32(v) => v.into(),
            MetadataValue::U64(v) => v.into(),
            MetadataValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The GGUF type code of this value.
    pub(crate) fn code(&self) -> u32 {
        match self {
            MetadataValue::U8(_) => code::U8,
            MetadataValue::I8(_) => code::I8,
            MetadataValue::U16(_) => code::U16,
            MetadataValue::I16(_) => code::I16,
            MetadataValue::U32(_) => code::U32,
            MetadataValue::I32(_) => code::I32,
            MetadataValue::U64(_) => code::U64,
            MetadataValue::I64(_) => code::I64,
            MetadataValue::F32(_) => code::F32,
            MetadataValue::F64(_) => code::F64,
            MetadataValue::Bool(_) => code::BOOL,
            MetadataValue::String(_) => code::STRING,
            MetadataValue::Array(_) => code::ARRAY,
        }
    }
}

impl MetadataArray {
    /// A short name of the array's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetadataArray::U8(_) => "array<u8>",
            MetadataArray::I8(_) => "array<i8>",
            MetadataArray::U16(_) => "array<u16>",
            MetadataArray::I16(_) => "array<i16>",
            MetadataArray::U32(_) => "array<u32>",
            MetadataArray::I32(_) => "array<i32>",
            MetadataArray::U64(_) => "array<u64>",
            MetadataArray::I64(_) => "array<i64>",
            MetadataArray::F32(_) => "array<f32>",
            MetadataArray::F64(_) => "array<f64>",
            MetadataArray::Bool(_) => "array<bool>",
            MetadataArray::String(_) => "array<string>",
            MetadataArray::Array(_) => "array<array>",
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            MetadataArray::U8(v) => v.len(),
            MetadataArray::I8(v) => v.len(),
            MetadataArray::U16(v) => v.len(),
            MetadataArray::I16(v) => v.len(),
            MetadataArray::U32(v) => v.len(),
            MetadataArray::I32(v) => v.len(),
            MetadataArray::U64(v) => v.len(),
            MetadataArray::I64(v) => v.len(),
            MetadataArray::F32(v) => v.len(),
            MetadataArray::F64(v) => v.len(),
            MetadataArray::Bool(v) => v.len(),
            MetadataArray::String(v) => v.len(),
            MetadataArray::Array(v) => v.len(),
        }
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The GGUF type code of the elements.
    pub(crate) fn elem_code(&self) -> u32 {
        match self {
            MetadataArray::U8(_) => code::U8,
            MetadataArray::I8(_) => code::I8,
            MetadataArray::U16(_) => code::U16,
            MetadataArray::I16(_) => code::I16,
            MetadataArray::U32(_) => code::U32,
            MetadataArray::I32(_) => code::I32,
            MetadataArray::U64(_) => code::U64,
            MetadataArray::I64(_) => code::I64,
            MetadataArray::F32(_) => code::F32,
            MetadataArray::F64(_) => code::F64,
            MetadataArray::Bool(_) => code::BOOL,
            MetadataArray::String(_) => code::STRING,
            MetadataArray::Array(_) => code::ARRAY,
        }
    }
}
