//! GGUF v3 reader over a byte slice: metadata parsed into owned values, tensor data accessed
//! zero-copy by byte range.
//!
//! The reader never panics on hostile input: every read is bounds-checked, every count is
//! checked against a named cap (below) and against the bytes left, and every tensor is checked
//! to lie inside the file, be aligned, and have a byte size matching its type and shape.

mod error;
mod ggml_type;
mod reader;
mod value;
pub mod writer;

use std::collections::HashMap;

pub use error::GgufError;
pub use ggml_type::GgmlType;
pub use value::{MetadataArray, MetadataValue};

/// Longest metadata string (key or value) accepted, in bytes.
pub const MAX_STRING_LEN: u64 = 1 << 24;
/// Longest tensor name accepted, in bytes.
pub const MAX_TENSOR_NAME_LEN: u64 = 1024;
/// Most elements in one metadata array.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Deepest nesting of metadata arrays.
pub const MAX_ARRAY_DEPTH: usize = 4;
/// Most tensors in one file.
pub const MAX_TENSOR_COUNT: u64 = 1 << 16;
/// Most dimensions of one tensor.
pub const MAX_DIMS: usize = 4;
/// Most metadata key-value pairs in one file.
pub const MAX_KV_COUNT: u64 = 1 << 16;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest `general.alignment` accepted.
pub const MAX_ALIGNMENT: u64 = 1 << 16;

/// Where one tensor lies in the file and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Element type.
    pub ty: GgmlType,
    /// Shape, `ne[0]` (the contiguous row length) first, as in the file.
    pub dims: Vec<u64>,
    /// Absolute byte offset in the file.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: version, owned metadata, tensor infos and the data section offset.
#[derive(Debug, Clone)]
pub struct Gguf {
    version: u32,
    metadata: Vec<(String, MetadataValue)>,
    index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: u64,
    alignment: u64,
}

impl Gguf {
    /// Parses and validates a GGUF v3 file held in `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Gguf, GgufError> {
        Self::parse_prefix(bytes, bytes.len() as u64)
    }

    /// Parses the header of a GGUF file of `file_len` bytes from a prefix of it that holds at
    /// least everything before the tensor data (see [`Gguf::header_with_len`]). Tensor bounds
    /// are checked against `file_len`; their data cannot be read through this `Gguf`'s
    /// `tensor_data` unless the caller has the whole file.
    pub fn parse_prefix(bytes: &[u8], file_len: u64) -> Result<Gguf, GgufError> {
        let p = reader::parse(bytes, file_len)?;
        Ok(Gguf {
            version: p.version,
            metadata: p.metadata,
            index: p.index,
            tensors: p.tensors,
            tensor_index: p.tensor_index,
            data_offset: p.data_offset,
            alignment: p.alignment,
        })
    }

    /// A self-contained copy of a file's header: the bytes before the tensor data followed by
    /// the file's length (u64 little-endian), for [`Gguf::parse_header`]. `bytes` is the file.
    pub fn header_with_len(&self, bytes: &[u8]) -> Vec<u8> {
        let prefix = self.header_prefix(bytes);
        let mut out = Vec::with_capacity(prefix.len() + 8);
        out.extend_from_slice(prefix);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out
    }

    /// The bytes of `bytes` (the file) before the tensor data.
    pub fn header_prefix<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        let end = usize::try_from(self.data_offset).map_or(bytes.len(), |o| o.min(bytes.len()));
        &bytes[..end]
    }

    /// Parses what [`Gguf::header_with_len`] produced.
    pub fn parse_header(header: &[u8]) -> Result<Gguf, GgufError> {
        let split = header.len().checked_sub(8).ok_or(GgufError::Truncated {
            what: "header length trailer",
            offset: 0,
        })?;
        let (prefix, len) = header.split_at(split);
        let mut le = [0u8; 8];
        le.copy_from_slice(len);
        Self::parse_prefix(prefix, u64::from_le_bytes(le))
    }

    /// The file's GGUF version (always 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Absolute offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Alignment of tensor data (`general.alignment` or 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The metadata value for `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// All metadata keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.metadata.iter().map(|(k, _)| k.as_str())
    }

    fn require(&self, key: &str) -> Result<&MetadataValue, GgufError> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    fn wrong(key: &str, expected: &'static str, v: &MetadataValue) -> GgufError {
        GgufError::WrongType {
            key: key.to_string(),
            expected,
            found: v.type_name(),
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            MetadataValue::String(s) => Ok(s),
            v => Err(Self::wrong(key, "string", v)),
        }
    }

    fn get_int<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let v = self.require(key)?;
        let i = v
            .as_integer()
            .ok_or_else(|| Self::wrong(key, expected, v))?;
        T::try_from(i).map_err(|_| GgufError::OutOfRange {
            key: key.to_string(),
            value: i.to_string(),
            expected,
        })
    }

    /// An integer value of any integer type that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get_int(key, "u32")
    }

    /// An integer value of any integer type that fits in `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_int(key, "u64")
    }

    /// An `f32` or `f64` value, as `f32`.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match *self.require(key)? {
            MetadataValue::F32(f) => Ok(f),
            MetadataValue::F64(f) => Ok(f as f32),
            ref v => Err(Self::wrong(key, "f32", v)),
        }
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match *self.require(key)? {
            MetadataValue::Bool(b) => Ok(b),
            ref v => Err(Self::wrong(key, "bool", v)),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<&[String], GgufError> {
        match self.require(key)? {
            MetadataValue::Array(MetadataArray::String(v)) => Ok(v),
            v => Err(Self::wrong(key, "array<string>", v)),
        }
    }

    /// An array of `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<&[i32], GgufError> {
        match self.require(key)? {
            MetadataValue::Array(MetadataArray::I32(v)) => Ok(v),
            v => Err(Self::wrong(key, "array<i32>", v)),
        }
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of tensor `t` inside `bytes` (the same bytes that were parsed; bounds were
    /// checked at parse). Returns an empty slice if `bytes` is not the parsed file.
    pub fn tensor_data<'a>(&self, bytes: &'a [u8], t: &TensorInfo) -> &'a [u8] {
        let (Ok(start), Ok(size)) = (usize::try_from(t.offset), usize::try_from(t.size)) else {
            return &[];
        };
        start
            .checked_add(size)
            .and_then(|end| bytes.get(start..end))
            .unwrap_or(&[])
    }
}
