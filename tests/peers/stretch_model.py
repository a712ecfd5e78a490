"""Writes a GGUF model with its blocks repeated: `stretch_model.py SRC DST K` copies SRC's
metadata and tensors to DST with each `blk.N.*` tensor written K times (blocks N, N + n, ...,
N + (K - 1) n for n blocks), and `block_count` set to K n.

Every copy is its own tensor in the file, so a forward pass reads K times the weights of SRC,
with SRC's shapes, types and tokenizer. The model's text is meaningless; it exists to time
decoding where the weights do not fit the CPU's last-level cache (`just deep-model`).
"""

import sys

import gguf
import numpy as np


def copy_field(w: gguf.GGUFWriter, f) -> None:
    """Writes the metadata field `f` of a GGUFReader unchanged."""
    vt = f.types[0]

    def text(i: int) -> str:
        return bytes(f.parts[i]).decode("utf-8")

    if vt == gguf.GGUFValueType.STRING:
        w.add_string(f.name, text(f.data[0]))
    elif vt == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            values = [text(i) for i in f.data]
        else:
            values = [f.parts[i][0].item() for i in f.data]
        w.add_array(f.name, values)
    else:
        w.add_key_value(f.name, f.parts[f.data[0]][0].item(), vt)


def field_value(r: gguf.GGUFReader, key: str):
    """The value part of a GGUFReader's metadata field `key`."""
    return r.fields[key].parts[r.fields[key].data[0]]


def finish(w: gguf.GGUFWriter) -> None:
    """Writes the header, the metadata and the tensors added to `w`, and closes it."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    src, dst, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    r = gguf.GGUFReader(src)
    arch = bytes(field_value(r, "general.architecture")).decode("utf-8")
    count_key = f"{arch}.block_count"
    n_block = int(field_value(r, count_key)[0])
    w = gguf.GGUFWriter(dst, arch)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        if f.name == count_key:
            w.add_uint32(count_key, n_block * k)
        else:
            copy_field(w, f)

    def add(name: str, t) -> None:
        data = np.asarray(t.data)
        w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=t.tensor_type)

    for t in r.tensors:
        if not t.name.startswith("blk."):
            add(t.name, t)
    for rep in range(k):
        for t in r.tensors:
            if t.name.startswith("blk."):
                _, n, rest = t.name.split(".", 2)
                add(f"blk.{int(n) + rep * n_block}.{rest}", t)
    finish(w)


if __name__ == "__main__":
    main()
