//! A small GGUF v3 writer, used by tests, the tiny model and corruption tests.
//!
//! It writes what it is given: tensors may carry raw type codes and explicit offsets so tests
//! can produce invalid files on purpose.

use super::value::code;
use super::{GgmlType, MetadataArray, MetadataValue, DEFAULT_ALIGNMENT};

/// One tensor to write.
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// Name.
    pub name: String,
    /// ggml type code (normally `GgmlType::code()`).
    pub ty_code: u32,
    /// Shape, `ne[0]` first.
    pub dims: Vec<u64>,
    /// Bytes of the tensor.
    pub data: Vec<u8>,
    /// Offset relative to the data section; `None` = next aligned position.
    pub offset: Option<u64>,
}

/// Builds a GGUF file in memory.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<RawTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty version-3 file.
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Overrides the version field (for corruption tests).
    pub fn set_version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Adds a metadata pair (duplicates are written as given).
    pub fn add(&mut self, key: &str, value: MetadataValue) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Replaces the value of every `key` pair, or adds the pair if there is none.
    pub fn set(&mut self, key: &str, value: MetadataValue) -> &mut Self {
        let mut found = false;
        for (k, v) in &mut self.metadata {
            if k == key {
                *v = value.clone();
                found = true;
            }
        }
        if !found {
            self.add(key, value);
        }
        self
    }

    /// Adds a string metadata pair.
    pub fn add_str(&mut self, key: &str, value: &str) -> &mut Self {
        self.add(key, MetadataValue::String(value.to_string()))
    }

    /// Adds a `u32` metadata pair.
    pub fn add_u32(&mut self, key: &str, value: u32) -> &mut Self {
        self.add(key, MetadataValue::U32(value))
    }

    /// Adds an `f32` metadata pair.
    pub fn add_f32(&mut self, key: &str, value: f32) -> &mut Self {
        self.add(key, MetadataValue::F32(value))
    }

    /// Adds a tensor of a known type at the next aligned offset.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ty: GgmlType,
        dims: &[u64],
        data: Vec<u8>,
    ) -> &mut Self {
        self.add_raw_tensor(RawTensor {
            name: name.to_string(),
            ty_code: ty.code(),
            dims: dims.to_vec(),
            data,
            offset: None,
        })
    }

    /// Adds a tensor as given.
    pub fn add_raw_tensor(&mut self, t: RawTensor) -> &mut Self {
        self.tensors.push(t);
        self
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_integer())
            .and_then(|a| u64::try_from(a).ok())
            .filter(|a| a.is_power_of_two())
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Serializes the file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            write_str(&mut out, k);
            out.extend_from_slice(&v.code().to_le_bytes());
            write_value(&mut out, v);
        }
        // Lay out tensor data.
        let mut next = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let off = t.offset.unwrap_or(next.div_ceil(align) * align);
            offsets.push(off);
            next = next.max(off.saturating_add(t.data.len() as u64));
        }
        for (t, off) in self.tensors.iter().zip(&offsets) {
            write_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty_code.to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
        }
        let data_start = (out.len() as u64).div_ceil(align) * align;
        out.resize(data_start as usize, 0);
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            // Explicit offsets far past the end are written as metadata only.
            if t.offset.is_some() && off > (1 << 32) {
                continue;
            }
            let start = (data_start + off) as usize;
            let end = start + t.data.len();
            if out.len() < end {
                out.resize(end, 0);
            }
            out[start..end].copy_from_slice(&t.data);
        }
        out
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, v: &MetadataValue) {
    match v {
        MetadataValue::U8(x) => out.push(*x),
        MetadataValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::Bool(x) => out.push(u8::from(*x)),
        MetadataValue::String(s) => write_str(out, s),
        MetadataValue::Array(a) => write_array(out, a),
    }
}

fn write_array(out: &mut Vec<u8>, a: &MetadataArray) {
    out.extend_from_slice(&a.elem_code().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        MetadataArray::U8(v) => out.extend_from_slice(v),
        MetadataArray::I8(v) => le!(v),
        MetadataArray::U16(v) => le!(v),
        MetadataArray::I16(v) => le!(v),
        MetadataArray::U32(v) => le!(v),
        MetadataArray::I32(v) => le!(v),
        MetadataArray::U64(v) => le!(v),
        MetadataArray::I64(v) => le!(v),
        MetadataArray::F32(v) => le!(v),
        MetadataArray::F64(v) => le!(v),
        MetadataArray::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        MetadataArray::String(v) => v.iter().for_each(|s| write_str(out, s)),
        MetadataArray::Array(v) => v.iter().for_each(|x| write_array(out, x)),
    }
    let _ = code::ARRAY;
}
