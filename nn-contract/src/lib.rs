//! The `wasi:nn` tensor contract (graph encoding `ggml`) between the edge-llm guest and a host
//! backend: the tensor names, and the encoding and decoding of every tensor, for both sides.
//!
//! | call | inputs | outputs |
//! | --- | --- | --- |
//! | `compute` | [`TOKENS`]: I32 `[n]`; optional [`N_PAST`]: I32 `[1]`; optional [`N_RESERVE`]: I32 `[1]` | [`LOGITS`]: FP32 `[1, n_vocab]`, last position |
//! | `compute` | [`GGUF_HEADER`]: U8 `[0]` | [`GGUF_HEADER`]: U8 `[len]`: the file's bytes before the tensor data, then the file length (u64 LE) |
//! | `compute` | [`TOKENS`]: I32 `[n]`; optional [`N_PAST`]: I32 `[1]`; [`HIDDEN_STATES`]: U8 `[0]` | [`HIDDEN_STATES`]: FP32 `[n, n_embd]`, every appended token's final normed hidden state (no logits) |
//!
//! `n-past` first truncates the execution context's KV cache to that many positions (0 starts
//! over); without it the tokens are appended. `n-reserve` tells the host how many positions
//! the context will hold before it is truncated again (a request's prompt plus its
//! `max_tokens`), so that a host with bounded KV memory can refuse the request at once rather
//! than midway. All numbers are little-endian.
//!
//! The crate has no dependencies and knows nothing of `wasi:nn` bindings: each side converts
//! its binding's tensor type to an [`ElementType`] and hands the dimensions and bytes over as a
//! [`TensorRef`] to decode, or turns an encoded [`Tensor`] into its binding's tensor.
//!
//! ```
//! use edge_llm_nn_contract as nn;
//!
//! // Guest: a forward request.
//! let tokens = nn::encode_tokens(&[1, 2, 3]).unwrap();
//! let n_past = nn::encode_n_past(5).unwrap();
//! // Host: decoding it, answering.
//! let request = nn::decode_request([(nn::TOKENS, tokens.as_ref()), (nn::N_PAST, n_past.as_ref())]).unwrap();
//! assert_eq!(request, nn::Request::Forward { tokens: vec![1, 2, 3], n_past: Some(5), reserve: None });
//! let logits = nn::encode_logits(&[0.5, -1.0]).unwrap();
//! // Guest: reading the answer.
//! let mut out = Vec::new();
//! nn::decode_logits(logits.as_ref(), &mut out).unwrap();
//! assert_eq!(out, [0.5, -1.0]);
//! ```

use std::fmt;

/// Input of a forward pass: the token ids to append, I32 `[n]`.
pub const TOKENS: &str = "tokens";
/// Optional input of a forward pass: keep this many cached positions first, I32 `[1]`.
pub const N_PAST: &str = "n-past";
/// Optional input of a forward pass: positions the context will hold, at most, until its next
/// truncation (its cache memory may be set aside for them), I32 `[1]`.
pub const N_RESERVE: &str = "n-reserve";
/// Input U8 `[0]` asking for the model's header, and the output U8 `[len]` holding it.
pub const GGUF_HEADER: &str = "gguf-header";
/// Output of a forward pass: the last position's logits, FP32 `[1, n_vocab]`.
pub const LOGITS: &str = "logits";

/// Input U8 `[0]` asking a forward pass for hidden states instead of logits, and the output
/// FP32 `[n, n_embd]` holding them: each appended token's hidden state after the final norm
/// (what the output projection would read), for embeddings.
pub const HIDDEN_STATES: &str = "hidden-states";

/// Every input name the contract defines.
pub const INPUT_NAMES: [&str; 5] = [TOKENS, N_PAST, N_RESERVE, GGUF_HEADER, HIDDEN_STATES];

/// Length of the file-length trailer of a [`GGUF_HEADER`] output.
pub const FILE_LEN_BYTES: usize = 8;

/// A tensor's element type (`wasi:nn`'s `tensor-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// IEEE half precision.
    Fp16,
    /// IEEE single precision.
    Fp32,
    /// IEEE double precision.
    Fp64,
    /// bfloat16.
    Bf16,
    /// Unsigned byte.
    U8,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fp16 => "FP16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bf16 => "BF16",
            Self::U8 => "U8",
            Self::I32 => "I32",
            Self::I64 => "I64",
        })
    }
}

/// An encoded tensor, ready to become a `wasi:nn` tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// Element type.
    pub ty: ElementType,
    /// Dimensions.
    pub dims: Vec<u32>,
    /// Little-endian element bytes.
    pub data: Vec<u8>,
}

impl Tensor {
    /// A view of this tensor, for decoding.
    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef {
            ty: self.ty,
            dims: &self.dims,
            data: &self.data,
        }
    }
}

/// A borrowed tensor to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorRef<'a> {
    /// Element type.
    pub ty: ElementType,
    /// Dimensions.
    pub dims: &'a [u32],
    /// Little-endian element bytes.
    pub data: &'a [u8],
}

/// Why a tensor or a set of tensors does not follow the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractError {
    /// A tensor the contract requires is absent.
    Missing {
        /// Its name.
        tensor: &'static str,
    },
    /// An input the contract does not define.
    UnknownInput {
        /// Its name.
        name: String,
    },
    /// A tensor has the wrong element type.
    WrongType {
        /// Its name.
        tensor: &'static str,
        /// The contract's type.
        expected: ElementType,
        /// The type it has.
        found: ElementType,
    },
    /// A tensor has the wrong dimensions.
    WrongShape {
        /// Its name.
        tensor: &'static str,
        /// The contract's shape, in words.
        expected: &'static str,
        /// The dimensions it has.
        found: Vec<u32>,
    },
    /// A tensor's data is not as long as its dimensions and element type say.
    WrongLength {
        /// Its name.
        tensor: &'static str,
        /// Bytes its dimensions call for.
        expected: u64,
        /// Bytes it has.
        found: usize,
    },
    /// A value cannot be represented (a negative count or id, a value beyond I32, more
    /// elements than a dimension holds).
    OutOfRange {
        /// The tensor's name.
        tensor: &'static str,
        /// The value.
        value: i128,
    },
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { tensor } => write!(f, "no `{tensor}` tensor"),
            Self::UnknownInput { name } => write!(f, "unknown input `{name}`"),
            Self::WrongType {
                tensor,
                expected,
                found,
            } => write!(f, "`{tensor}` must be {expected}, got {found}"),
            Self::WrongShape {
                tensor,
                expected,
                found,
            } => write!(f, "`{tensor}` must have shape {expected}, got {found:?}"),
            Self::WrongLength {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "`{tensor}` must hold {expected} bytes for its shape, got {found}"
            ),
            Self::OutOfRange { tensor, value } => {
                write!(f, "`{tensor}` cannot hold the value {value}")
            }
        }
    }
}

impl std::error::Error for ContractError {}

/// What a `compute` call asks for, decoded from its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The model's header ([`GGUF_HEADER`] present; other inputs are ignored).
    Header,
    /// A forward pass: truncate the cache to `n_past` positions if given, append `tokens`,
    /// return the last position's logits.
    Forward {
        /// Token ids to append.
        tokens: Vec<u32>,
        /// Cached positions to keep first.
        n_past: Option<usize>,
        /// Positions the context will hold at most until its next truncation.
        reserve: Option<usize>,
    },
    /// A forward pass for embeddings ([`HIDDEN_STATES`] present): truncate the cache to
    /// `n_past` positions if given, append `tokens`, return every appended token's final
    /// normed hidden state.
    Hidden {
        /// Token ids to append.
        tokens: Vec<u32>,
        /// Cached positions to keep first.
        n_past: Option<usize>,
    },
}

/// Decodes a `compute` call's named inputs (host side): an unknown name is an error; a
/// [`GGUF_HEADER`] input asks for the header; otherwise [`TOKENS`] is required and
/// [`N_PAST`] and [`N_RESERVE`] optional.
pub fn decode_request<'a>(
    inputs: impl IntoIterator<Item = (&'a str, TensorRef<'a>)>,
) -> Result<Request, ContractError> {
    let (mut tokens, mut n_past, mut reserve, mut header, mut hidden) =
        (None, None, None, None, None);
    for (name, tensor) in inputs {
        match name {
            TOKENS => tokens = Some(tensor),
            N_PAST => n_past = Some(tensor),
            N_RESERVE => reserve = Some(tensor),
            GGUF_HEADER => header = Some(tensor),
            HIDDEN_STATES => hidden = Some(tensor),
            other => {
                return Err(ContractError::UnknownInput {
                    name: other.to_string(),
                })
            }
        }
    }
    if let Some(request) = header {
        decode_header_request(request)?;
        return Ok(Request::Header);
    }
    let tokens = decode_tokens(tokens.ok_or(ContractError::Missing { tensor: TOKENS })?)?;
    let n_past = n_past.map(decode_n_past).transpose()?;
    let reserve = reserve.map(decode_n_reserve).transpose()?;
    match hidden {
        Some(flag) => {
            check_flag(HIDDEN_STATES, flag)?;
            Ok(Request::Hidden { tokens, n_past })
        }
        None => Ok(Request::Forward {
            tokens,
            n_past,
            reserve,
        }),
    }
}

/// Checks a U8 `[0]` request flag.
fn check_flag(name: &'static str, t: TensorRef<'_>) -> Result<(), ContractError> {
    check_type(name, t, ElementType::U8)?;
    if t.dims != [0] {
        return Err(wrong_shape(name, "[0]", t));
    }
    check_length(name, t, 0)
}

/// The [`HIDDEN_STATES`] input asking a forward pass for hidden states: U8 `[0]`.
pub fn hidden_states_request() -> Tensor {
    Tensor {
        ty: ElementType::U8,
        dims: vec![0],
        data: Vec::new(),
    }
}

/// The [`HIDDEN_STATES`] output: FP32 `[n, n_embd]` from `states` (`n * n_embd` values,
/// row-major).
pub fn encode_hidden_states(states: &[f32], n_embd: usize) -> Result<Tensor, ContractError> {
    let out_of_range = |value: usize| ContractError::OutOfRange {
        tensor: HIDDEN_STATES,
        value: value as i128,
    };
    if n_embd == 0 || !states.len().is_multiple_of(n_embd) {
        return Err(out_of_range(states.len()));
    }
    let n = u32::try_from(states.len() / n_embd).map_err(|_| out_of_range(states.len()))?;
    let width = u32::try_from(n_embd).map_err(|_| out_of_range(n_embd))?;
    Ok(Tensor {
        ty: ElementType::Fp32,
        dims: vec![n, width],
        data: states.iter().flat_map(|v| v.to_le_bytes()).collect(),
    })
}

/// Decodes the [`HIDDEN_STATES`] output into `out` (cleared first); returns `(n, n_embd)`.
pub fn decode_hidden_states(
    t: TensorRef<'_>,
    out: &mut Vec<f32>,
) -> Result<(usize, usize), ContractError> {
    check_type(HIDDEN_STATES, t, ElementType::Fp32)?;
    let (n, width) = match t.dims {
        [n, width] => (*n, *width),
        _ => return Err(wrong_shape(HIDDEN_STATES, "[n, n_embd]", t)),
    };
    check_length(HIDDEN_STATES, t, u64::from(n) * u64::from(width) * 4)?;
    out.clear();
    out.extend(
        t.data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    Ok((n as usize, width as usize))
}

/// The tensor named `name` among a `compute` call's outputs (guest side).
pub fn find_output<'a>(
    outputs: impl IntoIterator<Item = (&'a str, TensorRef<'a>)>,
    name: &'static str,
) -> Result<TensorRef<'a>, ContractError> {
    outputs
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t)
        .ok_or(ContractError::Missing { tensor: name })
}

/// The [`TOKENS`] input: I32 `[n]`. Ids above `i32::MAX` are out of range.
pub fn encode_tokens(ids: &[u32]) -> Result<Tensor, ContractError> {
    encode_i32s(TOKENS, ids.iter().map(|&id| i128::from(id)), ids.len())
}

/// Decodes the [`TOKENS`] input; a negative id is out of range.
pub fn decode_tokens(t: TensorRef<'_>) -> Result<Vec<u32>, ContractError> {
    check_type(TOKENS, t, ElementType::I32)?;
    let n = match t.dims {
        [n] => *n,
        _ => return Err(wrong_shape(TOKENS, "[n]", t)),
    };
    check_length(TOKENS, t, u64::from(n) * 4)?;
    decode_i32s(TOKENS, t.data)
}

/// The [`N_PAST`] input: I32 `[1]`. Counts above `i32::MAX` are out of range.
pub fn encode_n_past(n_past: usize) -> Result<Tensor, ContractError> {
    encode_count(N_PAST, n_past)
}

/// Decodes the [`N_PAST`] input; a negative count is out of range.
pub fn decode_n_past(t: TensorRef<'_>) -> Result<usize, ContractError> {
    decode_count(N_PAST, t)
}

/// The [`N_RESERVE`] input: I32 `[1]`. Counts above `i32::MAX` are out of range.
pub fn encode_n_reserve(positions: usize) -> Result<Tensor, ContractError> {
    encode_count(N_RESERVE, positions)
}

/// Decodes the [`N_RESERVE`] input; a negative count is out of range.
pub fn decode_n_reserve(t: TensorRef<'_>) -> Result<usize, ContractError> {
    decode_count(N_RESERVE, t)
}

/// A count input `name`: I32 `[1]`.
fn encode_count(name: &'static str, n: usize) -> Result<Tensor, ContractError> {
    let value = i128::try_from(n).unwrap_or(i128::MAX);
    encode_i32s(name, [value], 1)
}

/// Decodes a count input `name`; a negative count is out of range.
fn decode_count(name: &'static str, t: TensorRef<'_>) -> Result<usize, ContractError> {
    check_type(name, t, ElementType::I32)?;
    if t.dims != [1] {
        return Err(wrong_shape(name, "[1]", t));
    }
    check_length(name, t, 4)?;
    let n = decode_i32s(name, t.data)?;
    Ok(n.first().map_or(0, |&n| n as usize))
}

/// The [`GGUF_HEADER`] input asking for the header: U8 `[0]`.
pub fn header_request() -> Tensor {
    Tensor {
        ty: ElementType::U8,
        dims: vec![0],
        data: Vec::new(),
    }
}

/// Checks a [`GGUF_HEADER`] input: U8 `[0]`.
pub fn decode_header_request(t: TensorRef<'_>) -> Result<(), ContractError> {
    check_type(GGUF_HEADER, t, ElementType::U8)?;
    if t.dims != [0] {
        return Err(wrong_shape(GGUF_HEADER, "[0]", t));
    }
    check_length(GGUF_HEADER, t, 0)
}

/// A model's header as the [`GGUF_HEADER`] output carries it: the file's bytes before the
/// tensor data, then the file's length (u64 little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufHeader<'a> {
    bytes: &'a [u8],
}

impl<'a> GgufHeader<'a> {
    /// Reads the layout from `bytes` (e.g. the kernel's `Gguf::header_with_len`); it must hold
    /// at least the length trailer.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, ContractError> {
        if bytes.len() < FILE_LEN_BYTES {
            return Err(ContractError::WrongShape {
                tensor: GGUF_HEADER,
                expected: "[len] with len >= 8",
                found: vec![bytes.len() as u32],
            });
        }
        Ok(Self { bytes })
    }

    /// The whole layout: prefix, then the length trailer (what the kernel's
    /// `Gguf::parse_header` reads).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The file's bytes before the tensor data.
    pub fn prefix(&self) -> &'a [u8] {
        &self.bytes[..self.bytes.len() - FILE_LEN_BYTES]
    }

    /// The file's length in bytes.
    pub fn file_len(&self) -> u64 {
        let mut le = [0u8; FILE_LEN_BYTES];
        le.copy_from_slice(&self.bytes[self.bytes.len() - FILE_LEN_BYTES..]);
        u64::from_le_bytes(le)
    }
}

/// The [`GGUF_HEADER`] output: U8 `[len]`, `prefix` then `file_len` (u64 LE).
pub fn encode_header(prefix: &[u8], file_len: u64) -> Result<Tensor, ContractError> {
    let mut data = Vec::with_capacity(prefix.len() + FILE_LEN_BYTES);
    data.extend_from_slice(prefix);
    data.extend_from_slice(&file_len.to_le_bytes());
    let len = u32::try_from(data.len()).map_err(|_| ContractError::OutOfRange {
        tensor: GGUF_HEADER,
        value: data.len() as i128,
    })?;
    Ok(Tensor {
        ty: ElementType::U8,
        dims: vec![len],
        data,
    })
}

/// Decodes the [`GGUF_HEADER`] output; it must hold at least the length trailer.
pub fn decode_header(t: TensorRef<'_>) -> Result<GgufHeader<'_>, ContractError> {
    check_type(GGUF_HEADER, t, ElementType::U8)?;
    let len = match t.dims {
        [len] => *len,
        _ => return Err(wrong_shape(GGUF_HEADER, "[len]", t)),
    };
    check_length(GGUF_HEADER, t, u64::from(len))?;
    GgufHeader::from_bytes(t.data)
}

/// The [`LOGITS`] output: FP32 `[1, n_vocab]`.
pub fn encode_logits(logits: &[f32]) -> Result<Tensor, ContractError> {
    logits_tensor(logits_data(logits))
}

/// The [`LOGITS`] output's data: each logit's 4 little-endian bytes, collected into exactly
/// sized memory and flattened, one pass with wide moves (collecting the bytes one by one took
/// ~0.1 ns each, ~20 µs a token). A backend may make it where the logits are, apart from the
/// tensor ([`logits_tensor`]).
pub fn logits_data(logits: &[f32]) -> Vec<u8> {
    logits
        .iter()
        .map(|v| v.to_le_bytes())
        .collect::<Vec<[u8; 4]>>()
        .into_flattened()
}

/// The [`LOGITS`] output holding `data` ([`logits_data`]).
pub fn logits_tensor(data: Vec<u8>) -> Result<Tensor, ContractError> {
    let n = data.len() / 4;
    if !data.len().is_multiple_of(4) {
        return Err(ContractError::WrongLength {
            tensor: LOGITS,
            expected: n as u64 * 4,
            found: data.len(),
        });
    }
    let n = u32::try_from(n).map_err(|_| ContractError::OutOfRange {
        tensor: LOGITS,
        value: n as i128,
    })?;
    Ok(Tensor {
        ty: ElementType::Fp32,
        dims: vec![1, n],
        data,
    })
}

/// Checks the [`LOGITS`] output and returns how many logits it holds (its data is that many
/// little-endian `f32`s, which a little-endian reader may take as they are).
pub fn logits_len(t: TensorRef<'_>) -> Result<usize, ContractError> {
    check_type(LOGITS, t, ElementType::Fp32)?;
    let n = match t.dims {
        [1, n] => *n,
        _ => return Err(wrong_shape(LOGITS, "[1, n_vocab]", t)),
    };
    check_length(LOGITS, t, u64::from(n) * 4)?;
    Ok(n as usize)
}

/// Decodes the [`LOGITS`] output into `out` (cleared first, so a caller can reuse it).
pub fn decode_logits(t: TensorRef<'_>, out: &mut Vec<f32>) -> Result<(), ContractError> {
    let n = logits_len(t)?;
    out.clear();
    out.reserve(n);
    out.extend(
        t.data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    Ok(())
}

fn encode_i32s(
    tensor: &'static str,
    values: impl IntoIterator<Item = i128>,
    n: usize,
) -> Result<Tensor, ContractError> {
    let len = u32::try_from(n).map_err(|_| ContractError::OutOfRange {
        tensor,
        value: n as i128,
    })?;
    let mut data = Vec::with_capacity(n * 4);
    for value in values {
        let v = i32::try_from(value).map_err(|_| ContractError::OutOfRange { tensor, value })?;
        data.extend_from_slice(&v.to_le_bytes());
    }
    Ok(Tensor {
        ty: ElementType::I32,
        dims: vec![len],
        data,
    })
}

fn decode_i32s(tensor: &'static str, data: &[u8]) -> Result<Vec<u32>, ContractError> {
    data.chunks_exact(4)
        .map(|b| {
            let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            u32::try_from(v).map_err(|_| ContractError::OutOfRange {
                tensor,
                value: i128::from(v),
            })
        })
        .collect()
}

fn check_type(
    tensor: &'static str,
    t: TensorRef<'_>,
    expected: ElementType,
) -> Result<(), ContractError> {
    if t.ty == expected {
        Ok(())
    } else {
        Err(ContractError::WrongType {
            tensor,
            expected,
            found: t.ty,
        })
    }
}

fn check_length(
    tensor: &'static str,
    t: TensorRef<'_>,
    expected: u64,
) -> Result<(), ContractError> {
    if t.data.len() as u64 == expected {
        Ok(())
    } else {
        Err(ContractError::WrongLength {
            tensor,
            expected,
            found: t.data.len(),
        })
    }
}

fn wrong_shape(tensor: &'static str, expected: &'static str, t: TensorRef<'_>) -> ContractError {
    ContractError::WrongShape {
        tensor,
        expected,
        found: t.dims.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ty: ElementType, dims: &'static [u32], data: &'static [u8]) -> TensorRef<'static> {
        TensorRef { ty, dims, data }
    }

    #[test]
    fn tokens_are_i32_little_endian() {
        let tensor = encode_tokens(&[1, 0x0102_0304, 0]).expect("encodes");
        assert_eq!(tensor.ty, ElementType::I32);
        assert_eq!(tensor.dims, [3]);
        assert_eq!(tensor.data, [1, 0, 0, 0, 4, 3, 2, 1, 0, 0, 0, 0]);
        assert_eq!(decode_tokens(tensor.as_ref()), Ok(vec![1, 0x0102_0304, 0]));
        assert_eq!(
            encode_tokens(&[u32::MAX]),
            Err(ContractError::OutOfRange {
                tensor: TOKENS,
                value: i128::from(u32::MAX)
            })
        );
    }

    #[test]
    fn malformed_tokens_are_typed_errors() {
        let data: &[u8] = &[1, 0, 0, 0];
        assert!(matches!(
            decode_tokens(t(ElementType::I64, &[1], data)),
            Err(ContractError::WrongType {
                expected: ElementType::I32,
                found: ElementType::I64,
                ..
            })
        ));
        assert!(matches!(
            decode_tokens(t(ElementType::I32, &[1, 1], data)),
            Err(ContractError::WrongShape { .. })
        ));
        assert_eq!(
            decode_tokens(t(ElementType::I32, &[2], data)),
            Err(ContractError::WrongLength {
                tensor: TOKENS,
                expected: 8,
                found: 4
            })
        );
        assert_eq!(
            decode_tokens(t(ElementType::I32, &[1], &[0xff, 0xff, 0xff, 0xff])),
            Err(ContractError::OutOfRange {
                tensor: TOKENS,
                value: -1
            })
        );
        assert_eq!(decode_tokens(t(ElementType::I32, &[0], &[])), Ok(vec![]));
    }

    #[test]
    fn n_past_is_one_i32() {
        let tensor = encode_n_past(300).expect("encodes");
        assert_eq!(
            (tensor.dims.as_slice(), tensor.data.as_slice()),
            (&[1][..], &[44, 1, 0, 0][..])
        );
        assert_eq!(decode_n_past(tensor.as_ref()), Ok(300));
        assert!(encode_n_past(1 << 31).is_err());
        assert!(matches!(
            decode_n_past(t(ElementType::I32, &[2], &[0; 8])),
            Err(ContractError::WrongShape { .. })
        ));
        assert!(decode_n_past(t(ElementType::I32, &[1], &[0xff; 4])).is_err());
    }

    #[test]
    fn header_is_prefix_then_u64_length() {
        let tensor = encode_header(b"GGUF..", 0x0102).expect("encodes");
        assert_eq!(tensor.ty, ElementType::U8);
        assert_eq!(tensor.dims, [14]);
        assert_eq!(&tensor.data[6..], &[2, 1, 0, 0, 0, 0, 0, 0]);
        let header = decode_header(tensor.as_ref()).expect("decodes");
        assert_eq!(header.prefix(), b"GGUF..");
        assert_eq!(header.file_len(), 0x0102);
        assert_eq!(header.as_bytes(), tensor.data.as_slice());
        assert_eq!(GgufHeader::from_bytes(&tensor.data), Ok(header));
        assert!(GgufHeader::from_bytes(&[0; 7]).is_err());
        let empty = encode_header(&[], 7).expect("encodes");
        assert_eq!(decode_header(empty.as_ref()).map(|h| h.file_len()), Ok(7));
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        assert!(matches!(
            decode_header(t(ElementType::U8, &[4], &[0; 4])),
            Err(ContractError::WrongShape { .. })
        ));
        assert!(matches!(
            decode_header(t(ElementType::I32, &[2], &[0; 8])),
            Err(ContractError::WrongType { .. })
        ));
        assert!(matches!(
            decode_header(t(ElementType::U8, &[9], &[0; 8])),
            Err(ContractError::WrongLength { .. })
        ));
        assert_eq!(decode_header_request(header_request().as_ref()), Ok(()));
        assert!(decode_header_request(t(ElementType::U8, &[1], &[0])).is_err());
    }

    #[test]
    fn logits_are_fp32_one_row() {
        let tensor = encode_logits(&[1.0, -2.5]).expect("encodes");
        assert_eq!(tensor.dims, [1, 2]);
        assert!(matches!(
            logits_tensor(vec![0; 7]),
            Err(ContractError::WrongLength { .. })
        ));
        let mut out = vec![9.0];
        decode_logits(tensor.as_ref(), &mut out).expect("decodes");
        assert_eq!(out, [1.0, -2.5]);
        assert!(matches!(
            decode_logits(t(ElementType::Fp32, &[2], &[0; 8]), &mut out),
            Err(ContractError::WrongShape { .. })
        ));
        assert!(matches!(
            decode_logits(t(ElementType::Fp32, &[1, 3], &[0; 8]), &mut out),
            Err(ContractError::WrongLength { .. })
        ));
        assert!(matches!(
            decode_logits(t(ElementType::Fp16, &[1, 4], &[0; 8]), &mut out),
            Err(ContractError::WrongType { .. })
        ));
    }

    #[test]
    fn requests_decode_by_name() {
        let tokens = encode_tokens(&[7, 8]).expect("encodes");
        let header = header_request();
        assert_eq!(
            decode_request([(TOKENS, tokens.as_ref())]),
            Ok(Request::Forward {
                tokens: vec![7, 8],
                n_past: None,
                reserve: None
            })
        );
        let reserve = encode_n_reserve(300).expect("encodes");
        assert_eq!(
            decode_request([(TOKENS, tokens.as_ref()), (N_RESERVE, reserve.as_ref())]),
            Ok(Request::Forward {
                tokens: vec![7, 8],
                n_past: None,
                reserve: Some(300)
            })
        );
        let negative = encode_i32s(N_RESERVE, [-1], 1).expect("encodes");
        assert!(
            decode_request([(TOKENS, tokens.as_ref()), (N_RESERVE, negative.as_ref())]).is_err()
        );
        assert_eq!(
            decode_request([(TOKENS, tokens.as_ref()), (GGUF_HEADER, header.as_ref())]),
            Ok(Request::Header)
        );
        assert_eq!(
            decode_request([]),
            Err(ContractError::Missing { tensor: TOKENS })
        );
        assert_eq!(
            decode_request([("prompt", tokens.as_ref())]),
            Err(ContractError::UnknownInput {
                name: "prompt".into()
            })
        );
    }

    #[test]
    fn outputs_are_found_by_name() {
        let logits = encode_logits(&[0.0]).expect("encodes");
        assert!(find_output([(LOGITS, logits.as_ref())], LOGITS).is_ok());
        assert_eq!(
            find_output([("output", logits.as_ref())], GGUF_HEADER),
            Err(ContractError::Missing {
                tensor: GGUF_HEADER
            })
        );
        assert_eq!(
            ContractError::Missing {
                tensor: GGUF_HEADER
            }
            .to_string(),
            "no `gguf-header` tensor"
        );
    }

    #[test]
    fn hidden_states_ask_and_answer() {
        let tokens = encode_tokens(&[7, 8]).expect("encodes");
        let flag = hidden_states_request();
        let request = decode_request([(TOKENS, tokens.as_ref()), (HIDDEN_STATES, flag.as_ref())]);
        assert_eq!(
            request,
            Ok(Request::Hidden {
                tokens: vec![7, 8],
                n_past: None
            })
        );
        let bad = decode_request([
            (TOKENS, tokens.as_ref()),
            (HIDDEN_STATES, t(ElementType::U8, &[1], &[0])),
        ]);
        assert!(matches!(bad, Err(ContractError::WrongShape { .. })));
        let states = encode_hidden_states(&[1.0, -2.0, 0.5, 3.0, 0.0, 4.0], 3).expect("encodes");
        assert_eq!(states.dims, [2, 3]);
        let mut out = Vec::new();
        assert_eq!(decode_hidden_states(states.as_ref(), &mut out), Ok((2, 3)));
        assert_eq!(out, [1.0, -2.0, 0.5, 3.0, 0.0, 4.0]);
        assert!(encode_hidden_states(&[1.0, 2.0], 3).is_err());
        assert!(matches!(
            decode_hidden_states(t(ElementType::Fp32, &[1, 2], &[0; 4]), &mut out),
            Err(ContractError::WrongLength { .. })
        ));
    }
}
