"""Reference values for tests/quant from Debian's python3-torch (1.13).

  torch_quant_reference.py prepack IN.pt OUT.pt
      IN holds table.<name> (N, D) float32, ids, offsets (B + 1, last = len(ids)),
      psw (per-sample weights). OUT gets, per table and type t in int8/int4/int2:
      <t>.<name> (torch.ops.quantized.embedding_bag_*_prepack), sum.<t>.<name>
      and weighted.<t>.<name> (embedding_bag_*_rowwise_offsets, SUM, with
      include_last_offset).
  torch_quant_reference.py module IN.pt OUT.pt
      IN: a quantized EmbeddingBagCollection's state_dict saved by recmod
      (prefix m.), plus ids.<table>, offsets.<table>, type.<table> (0 int8,
      1 int4, 2 int2). Checks the keys/dtypes TorchRec uses and writes
      pooled.<table>: the torch op's SUM over the fused rows rebuilt from
      weight / weight_qscale / weight_qbias.
"""
import sys

import torch

Q = torch.ops.quantized
PREPACK = {"int8": Q.embedding_bag_byte_prepack, "int4": Q.embedding_bag_4bit_prepack,
           "int2": Q.embedding_bag_2bit_prepack}
LOOKUP = {"int8": Q.embedding_bag_byte_rowwise_offsets, "int4": Q.embedding_bag_4bit_rowwise_offsets,
          "int2": Q.embedding_bag_2bit_rowwise_offsets}


def lookup(t, packed, ids, offsets, psw):
    return LOOKUP[t](packed, ids, offsets, False, 0, False, psw, None, True)


def prepack(src, dst):
    inp = torch.load(src)
    out = {}
    for key, w in inp.items():
        if not key.startswith("table."):
            continue
        name = key[len("table."):]
        for t, op in PREPACK.items():
            packed = op(w)
            out[f"{t}.{name}"] = packed
            out[f"sum.{t}.{name}"] = lookup(t, packed, inp["ids"], inp["offsets"], None)
            out[f"weighted.{t}.{name}"] = lookup(t, packed, inp["ids"], inp["offsets"], inp["psw"])
    torch.save(out, dst)


def module(src, dst):
    inp = torch.load(src)
    out = {}
    for key in inp:
        if not key.startswith("type."):
            continue
        name = key[len("type."):]
        t = ["int8", "int4", "int2"][int(inp[key])]
        w = inp[f"m.embedding_bags.{name}.weight"]
        s = inp[f"m.embedding_bags.{name}.weight_qscale"]
        b = inp[f"m.embedding_bags.{name}.weight_qbias"]
        assert w.dtype == torch.uint8 and w.dim() == 2, (name, w.dtype, w.shape)
        want = torch.float32 if t == "int8" else torch.float16
        assert s.dtype == want and b.dtype == want and s.shape == (w.shape[0], 1) and b.shape == s.shape, name
        fused = torch.cat([w, s.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8)], 1)
        out[f"pooled.{name}"] = lookup(t, fused, inp[f"ids.{name}"], inp[f"offsets.{name}"], None)
    torch.save(out, dst)


if __name__ == "__main__":
    {"prepack": prepack, "module": module}[sys.argv[1]](sys.argv[2], sys.argv[3])
