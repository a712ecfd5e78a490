//! The bounds-checked byte cursor and the parse of header, metadata and tensor infos.
//!
//! Every read goes through [`Cursor::take`], which checks the end of the input with checked
//! arithmetic; counts are checked against the named caps in the parent module and against the
//! bytes remaining before anything is allocated.

use std::collections::HashMap;

use super::value::code;
use super::{
    GgmlType, GgufError, MetadataArray, MetadataValue, TensorInfo, DEFAULT_ALIGNMENT,
    MAX_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_DIMS, MAX_KV_COUNT, MAX_STRING_LEN,
    MAX_TENSOR_COUNT, MAX_TENSOR_NAME_LEN,
};

/// `GGUF` read as a little-endian u32.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"GGUF");

/// The parse result before it is wrapped into `Gguf`.
pub(crate) struct Parsed {
    pub version: u32,
    pub metadata: Vec<(String, MetadataValue)>,
    pub index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    pub data_offset: u64,
    pub alignment: u64,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], GgufError> {
        let truncated = GgufError::Truncated {
            what,
            offset: self.offset(),
        };
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let s = self.bytes.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, GgufError> {
        let offset = self.offset();
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(GgufError::InvalidBool { value, offset }),
        }
    }

    /// A length-prefixed UTF-8 string of at most `cap` bytes.
    fn string(&mut self, what: &'static str, cap: u64) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        if len > cap {
            return Err(GgufError::TooLarge {
                what,
                value: len,
                cap,
            });
        }
        let offset = self.offset();
        let len = usize::try_from(len).map_err(|_| GgufError::Truncated { what, offset })?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| GgufError::InvalidUtf8 { what, offset })
    }

    /// Checks that `count` elements of at least `min_size` bytes each can still fit.
    fn check_fits(&self, count: u64, min_size: u64, what: &'static str) -> Result<(), GgufError> {
        let need = count.checked_mul(min_size);
        match need {
            Some(n) if n <= self.remaining() as u64 => Ok(()),
            _ => Err(GgufError::Truncated {
                what,
                offset: self.offset(),
            }),
        }
    }

    fn value(
        &mut self,
        ty: u32,
        type_offset: u64,
        depth: usize,
    ) -> Result<MetadataValue, GgufError> {
        const W: &str = "metadata value";
        Ok(match ty {
            code::U8 => MetadataValue::U8(self.u8(W)?),
            code::I8 => MetadataValue::I8(i8::from_le_bytes(self.array(W)?)),
            code::U16 => MetadataValue::U16(u16::from_le_bytes(self.array(W)?)),
            code::I16 => MetadataValue::I16(i16::from_le_bytes(self.array(W)?)),
            code::U32 => MetadataValue::U32(self.u32(W)?),
            code::I32 => MetadataValue::I32(i32::from_le_bytes(self.array(W)?)),
            code::U64 => MetadataValue::U64(self.u64(W)?),
            code::I64 => MetadataValue::I64(i64::from_le_bytes(self.array(W)?)),
            code::F32 => MetadataValue::F32(f32::from_le_bytes(self.array(W)?)),
            code::F64 => MetadataValue::F64(f64::from_le_bytes(self.array(W)?)),
            code::BOOL => MetadataValue::Bool(self.bool(W)?),
            code::STRING => MetadataValue::String(self.string("metadata string", MAX_STRING_LEN)?),
            code::ARRAY => MetadataValue::Array(self.array_value(depth + 1)?),
            ty => {
                return Err(GgufError::UnknownValueType {
                    ty,
                    offset: type_offset,
                })
            }
        })
    }

    fn vec<T>(
        &mut self,
        count: usize,
        mut f: impl FnMut(&mut Self) -> Result<T, GgufError>,
    ) -> Result<Vec<T>, GgufError> {
        let mut v = Vec::with_capacity(count);
        for _ in 0..count {
            v.push(f(self)?);
        }
        Ok(v)
    }

    fn array_value(&mut self, depth: usize) -> Result<MetadataArray, GgufError> {
        const W: &str = "array element";
        if depth > MAX_ARRAY_DEPTH {
            return Err(GgufError::TooLarge {
                what: "array nesting depth",
                value: depth as u64,
                cap: MAX_ARRAY_DEPTH as u64,
            });
        }
        let type_offset = self.offset();
        let ty = self.u32("array element type")?;
        let count = self.u64("array length")?;
        if count > MAX_ARRAY_LEN {
            return Err(GgufError::TooLarge {
                what: "array length",
                value: count,
                cap: MAX_ARRAY_LEN,
            });
        }
        // Minimum encoded size per element, so a huge count fails before allocating.
        let min_size = match ty {
            code::U8 | code::I8 | code::BOOL => 1,
            code::U16 | code::I16 => 2,
            code::U32 | code::I32 | code::F32 => 4,
            code::U64 | code::I64 | code::F64 | code::STRING => 8,
            code::ARRAY => 12,
            ty => {
                return Err(GgufError::UnknownValueType {
                    ty,
                    offset: type_offset,
                })
            }
        };
        self.check_fits(count, min_size, "array elements")?;
        let n = count as usize; // fits: count * min_size <= remaining bytes
        Ok(match ty {
            code::U8 => MetadataArray::U8(self.take(n, W)?.to_vec()),
            code::I8 => MetadataArray::I8(self.vec(n, |c| Ok(i8::from_le_bytes(c.array(W)?)))?),
            code::U16 => MetadataArray::U16(self.vec(n, |c| Ok(u16::from_le_bytes(c.array(W)?)))?),
            code::I16 => MetadataArray::I16(self.vec(n, |c| Ok(i16::from_le_bytes(c.array(W)?)))?),
            code::U32 => MetadataArray::U32(self.vec(n, |c| c.u32(W))?),
            code::I32 => MetadataArray::I32(self.vec(n, |c| Ok(i32::from_le_bytes(c.array(W)?)))?),
            code::U64 => MetadataArray::U64(self.vec(n, |c| c.u64(W))?),
            code::I64 => MetadataArray::I64(self.vec(n, |c| Ok(i64::from_le_bytes(c.array(W)?)))?),
            code::F32 => MetadataArray::F32(self.vec(n, |c| Ok(f32::from_le_bytes(c.array(W)?)))?),
            code::F64 => MetadataArray::F64(self.vec(n, |c| Ok(f64::from_le_bytes(c.array(W)?)))?),
            code::BOOL => MetadataArray::Bool(self.vec(n, |c| c.bool(W))?),
            code::STRING => {
                MetadataArray::String(self.vec(n, |c| c.string("array string", MAX_STRING_LEN))?)
            }
            _ => MetadataArray::Array(self.vec(n, |c| c.array_value(depth + 1))?),
        })
    }
}

/// Parses a GGUF v3 file: `bytes` holds at least its header, `file_len` is the length of the
/// whole file, which every tensor must lie within.
pub(crate) fn parse(bytes: &[u8], file_len: u64) -> Result<Parsed, GgufError> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.u32("magic")?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic(magic));
    }
    let version = c.u32("version")?;
    if version != 3 {
        return Err(GgufError::UnsupportedVersion(version));
    }
    let n_tensors = c.u64("tensor count")?;
    if n_tensors > MAX_TENSOR_COUNT {
        return Err(GgufError::TooLarge {
            what: "tensor count",
            value: n_tensors,
            cap: MAX_TENSOR_COUNT,
        });
    }
    let n_kv = c.u64("metadata count")?;
    if n_kv > MAX_KV_COUNT {
        return Err(GgufError::TooLarge {
            what: "metadata count",
            value: n_kv,
            cap: MAX_KV_COUNT,
        });
    }
    // Each key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes.
    c.check_fits(n_kv, 13, "metadata")?;

    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut index = HashMap::with_capacity(n_kv as usize);
    for _ in 0..n_kv {
        let key = c.string("metadata key", MAX_STRING_LEN)?;
        let type_offset = c.offset();
        let ty = c.u32("metadata value type")?;
        let value = c.value(ty, type_offset, 0)?;
        if index.contains_key(&key) {
            return Err(GgufError::DuplicateKey(key));
        }
        index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }

    let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_integer() {
            Some(a) if a > 0 && a <= i128::from(MAX_ALIGNMENT) && (a as u64).is_power_of_two() => {
                a as u64
            }
            Some(a) => return Err(GgufError::BadAlignment(a.clamp(0, u64::MAX.into()) as u64)),
            None => {
                return Err(GgufError::WrongType {
                    key: "general.alignment".into(),
                    expected: "u32",
                    found: v.type_name(),
                })
            }
        },
    };

    // Each tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
    c.check_fits(n_tensors, 24, "tensor infos")?;
    struct Raw {
        name: String,
        ty: GgmlType,
        dims: Vec<u64>,
        rel: u64,
        size: u64,
    }
    let mut raws = Vec::with_capacity(n_tensors as usize);
    let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
    for i in 0..n_tensors as usize {
        let name = c.string("tensor name", MAX_TENSOR_NAME_LEN)?;
        let n_dims = c.u32("tensor dimension count")?;
        if n_dims as usize > MAX_DIMS {
            return Err(GgufError::TooLarge {
                what: "tensor dimension count",
                value: n_dims.into(),
                cap: MAX_DIMS as u64,
            });
        }
        if n_dims == 0 {
            return Err(GgufError::BadShape {
                name,
                reason: "no dimensions",
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = c.u64("tensor dimension")?;
            if d > i64::MAX as u64 {
                return Err(GgufError::TooLarge {
                    what: "tensor dimension",
                    value: d,
                    cap: i64::MAX as u64,
                });
            }
            dims.push(d);
        }
        let ty_code = c.u32("tensor type")?;
        let rel = c.u64("tensor offset")?;
        let Some(ty) = GgmlType::from_u32(ty_code) else {
            return Err(GgufError::UnknownTensorType { name, ty: ty_code });
        };
        if dims.contains(&0) {
            return Err(GgufError::BadShape {
                name,
                reason: "a dimension is zero",
            });
        }
        let overflow = |name: String, dims: Vec<u64>| GgufError::ShapeOverflow { name, dims };
        let Some(n_elements) = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)) else {
            return Err(overflow(name, dims));
        };
        let _ = n_elements;
        if dims[0] % ty.block_size() != 0 {
            return Err(GgufError::BadShape {
                name,
                reason: row_length_reason(ty),
            });
        }
        let n_rows = dims[1..].iter().product::<u64>(); // cannot overflow: divides n_elements
        let Some(size) = ty.row_bytes(dims[0]).and_then(|r| r.checked_mul(n_rows)) else {
            return Err(overflow(name, dims));
        };
        if rel % alignment != 0 {
            return Err(GgufError::Misaligned {
                name,
                offset: rel,
                alignment,
            });
        }
        if tensor_index.contains_key(&name) {
            return Err(GgufError::DuplicateTensor(name));
        }
        tensor_index.insert(name.clone(), i);
        raws.push(Raw {
            name,
            ty,
            dims,
            rel,
            size,
        });
    }

    let data_offset = c.offset().div_ceil(alignment) * alignment; // pos <= len, no overflow
    let mut tensors = Vec::with_capacity(raws.len());
    for r in raws {
        let abs = data_offset.checked_add(r.rel);
        let end = abs.and_then(|a| a.checked_add(r.size));
        match (abs, end) {
            (Some(offset), Some(end)) if end <= file_len => tensors.push(TensorInfo {
                name: r.name,
                ty: r.ty,
                dims: r.dims,
                offset,
                size: r.size,
            }),
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    name: r.name,
                    offset: abs.unwrap_or(r.rel),
                    size: r.size,
                    file_len,
                })
            }
        }
    }

    Ok(Parsed {
        version,
        metadata,
        index,
        tensors,
        tensor_index,
        data_offset,
        alignment,
    })
}

/// Why a row of `ty` whose length is not a whole number of blocks is refused, naming the
/// K-quants (llama.cpp stores matrices whose rows do not fit 256-blocks in another type).
fn row_length_reason(ty: GgmlType) -> &'static str {
    match ty {
        GgmlType::Q2_K => "a Q2_K row must be a multiple of 256 elements",
        GgmlType::Q3_K => "a Q3_K row must be a multiple of 256 elements",
        GgmlType::Q4_K => "a Q4_K row must be a multiple of 256 elements",
        GgmlType::Q5_K => "a Q5_K row must be a multiple of 256 elements",
        GgmlType::Q6_K => "a Q6_K row must be a multiple of 256 elements",
        GgmlType::Q8_K => "a Q8_K row must be a multiple of 256 elements",
        _ => "row length is not a multiple of the type's block size",
    }
}
