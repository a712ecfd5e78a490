//! The typed error of the GGUF reader: every rejection names what is wrong and where.

use thiserror::Error;

/// Why a GGUF file (or a metadata lookup) was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GgufError {
    /// The file ends before `what` could be read at byte `offset`.
    #[error("truncated GGUF: file ends while reading {what} at byte {offset}")]
    Truncated {
        /// The item being read.
        what: &'static str,
        /// Byte offset of the item.
        offset: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: bad magic {0:#010x}")]
    BadMagic(u32),
    /// Only GGUF version 3 is supported.
    #[error("unsupported GGUF version {0} (only version 3 is supported)")]
    UnsupportedVersion(u32),
    /// A count or length exceeds one of the reader's named caps.
    #[error("{what} is {value}, more than the cap of {cap}")]
    TooLarge {
        /// The quantity that is too large.
        what: &'static str,
        /// Its value in the file.
        value: u64,
        /// The cap it exceeds.
        cap: u64,
    },
    /// A string is not valid UTF-8.
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The string being read.
        what: &'static str,
        /// Byte offset of the string.
        offset: u64,
    },
    /// A metadata value type code is unknown.
    #[error("unknown metadata value type {ty} at byte {offset}")]
    UnknownValueType {
        /// The type code.
        ty: u32,
        /// Byte offset of the code.
        offset: u64,
    },
    /// A boolean byte is neither 0 nor 1.
    #[error("invalid boolean byte {value} at byte {offset}")]
    InvalidBool {
        /// The byte found.
        value: u8,
        /// Its offset.
        offset: u64,
    },
    /// The same metadata key occurs twice.
    #[error("duplicate metadata key `{0}`")]
    DuplicateKey(String),
    /// The same tensor name occurs twice.
    #[error("duplicate tensor name `{0}`")]
    DuplicateTensor(String),
    /// A required metadata key is absent.
    #[error("missing metadata key `{0}`")]
    MissingKey(String),
    /// A metadata key has a value of the wrong type.
    #[error("metadata key `{key}` has type {found}, expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// The type the caller asked for.
        expected: &'static str,
        /// The type in the file.
        found: &'static str,
    },
    /// An integer metadata value does not fit the requested type.
    #[error("metadata key `{key}` = {value} does not fit in {expected}")]
    OutOfRange {
        /// The key.
        key: String,
        /// The value in the file, printed.
        value: String,
        /// The requested type.
        expected: &'static str,
    },
    /// `general.alignment` is zero, not a power of two, or too large.
    #[error("bad general.alignment {0} (must be a power of two between 1 and 65536)")]
    BadAlignment(u64),
    /// A tensor's type code is not a known ggml type.
    #[error("tensor `{name}` has unknown ggml type {ty}")]
    UnknownTensorType {
        /// Tensor name.
        name: String,
        /// The type code.
        ty: u32,
    },
    /// A tensor's shape is invalid for its type (zero dims, row not a multiple of the block size).
    #[error("tensor `{name}` has a bad shape: {reason}")]
    BadShape {
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The element count or byte size of a tensor overflows 64 bits.
    #[error("tensor `{name}`: size of shape {dims:?} overflows")]
    ShapeOverflow {
        /// Tensor name.
        name: String,
        /// Its dims.
        dims: Vec<u64>,
    },
    /// A tensor's bytes do not lie inside the file.
    #[error("tensor `{name}` at bytes {offset}..+{size} lies outside the file ({file_len} bytes)")]
    TensorOutOfBounds {
        /// Tensor name.
        name: String,
        /// Absolute offset (or the relative offset if the absolute one overflows).
        offset: u64,
        /// Byte size.
        size: u64,
        /// File length.
        file_len: u64,
    },
    /// A tensor's offset is not a multiple of the alignment.
    #[error("tensor `{name}` offset {offset} is not aligned to {alignment}")]
    Misaligned {
        /// Tensor name.
        name: String,
        /// Offset relative to the data section.
        offset: u64,
        /// Required alignment.
        alignment: u64,
    },
}
