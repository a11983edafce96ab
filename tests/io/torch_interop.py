#!/usr/bin/env python3
"""Checks recmod's checkpoints against PyTorch's own torch.save / torch.load.

usage: torch_interop.py RECMOD_FILE OUT_FILE
       torch_interop.py --fixtures OUT_DIR
  RECMOD_FILE: written by recmod's save_tensors with the tensors expected() lists;
               torch.load must give a dict with exactly those tensors.
  OUT_FILE:    written here with torch.save(dict(module.state_dict())), for recmod's
               load_tensors to read back. (A bare state_dict() is an OrderedDict with
               _metadata, which libtorch 1.13's unpickler cannot read.)
  --fixtures:  writes the torch.save(module.state_dict()) files that checkpoint_test.cpp
               reads (tests/io/data/state_dict_*.pt were made so, by Debian's torch 1.13):
               module.pt (Embedding + Linear + BatchNorm1d), views.pt (buffers that are
               views of one storage, offsets, strides, 100 0-d views), dtypes.pt
               (state_dict(keep_vars=True): a Parameter and buffers of ten dtypes).
Exit status 0 when all checks pass; messages on stderr otherwise.
"""
import os
import sys

import torch
from torch import nn


def expected():
    return {
        "embedding_bags.t1.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4,
        "steps": torch.tensor([5, -7], dtype=torch.int64),
        "half_ones": torch.full((2, 2), 0.5, dtype=torch.float64),
        "flags": torch.tensor([True, False]),
        "scalar": torch.tensor(3.25),
        "column_view": torch.arange(6, dtype=torch.float32).reshape(2, 3)[:, 1],
    }


def check_recmod_file(path):
    # weights_only: what torch.load does by default since PyTorch 2.6 (and all
    # a user should need for a file of tensors); supported since 1.13.
    loaded = torch.load(path, weights_only=True)
    assert isinstance(loaded, dict), f"{path}: expected a dict, got {type(loaded)}"
    want = expected()
    assert set(loaded) == set(want), f"keys {sorted(loaded)} != {sorted(want)}"
    for key, tensor in want.items():
        got = loaded[key]
        assert got.dtype == tensor.dtype, f"{key}: dtype {got.dtype} != {tensor.dtype}"
        assert got.shape == tensor.shape, f"{key}: shape {tuple(got.shape)} != {tuple(tensor.shape)}"
        assert torch.equal(got, tensor), f"{key}: values differ: {got} vs {tensor}"


def write_state_dict(path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(6, dtype=torch.float32).reshape(2, 3))
        model[0].bias.copy_(torch.tensor([-1.0, 1.0]))
    torch.save(dict(model.state_dict()), path)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(4, 3)
        self.linear = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.arange(12, dtype=torch.float32).reshape(4, 3) / 8 - 0.5)
            self.linear.weight.copy_(torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.25)
            self.linear.bias.copy_(torch.tensor([-1.0, 1.0]))
            self.norm.weight.copy_(torch.tensor([2.0, 3.0]))
            self.norm.bias.copy_(torch.tensor([0.5, -0.5]))
            self.norm.running_mean.copy_(torch.tensor([0.25, -0.75]))
            self.norm.running_var.copy_(torch.tensor([1.5, 2.0]))
            self.norm.num_batches_tracked.fill_(7)


class Views(nn.Module):
    def __init__(self):
        super().__init__()
        base = torch.arange(20, dtype=torch.float32).reshape(4, 5)
        self.register_buffer("base", base)
        self.register_buffer("block", base[1:3, 1:4])  # offset 6, strides (5, 1)
        self.register_buffer("column", base[:, 2])  # offset 2, stride 5
        self.register_buffer("transposed", base.t())
        self.register_buffer("tail", torch.arange(10, dtype=torch.int64)[6:])  # its base is not saved
        many = torch.arange(100, dtype=torch.int16) * 3
        for i in range(100):  # enough memo entries for LONG_BINPUT / LONG_BINGET
            self.register_buffer(f"many_{i}", many[i])


class Dtypes(nn.Module):
    def __init__(self):
        super().__init__()
        self.param = nn.Parameter(torch.tensor([1.5, -2.0]))
        self.register_buffer("f64", torch.tensor([0.1, -2.5, 1e300], dtype=torch.float64))
        self.register_buffer("f16", torch.tensor([0.5, -1.25, 65504.0], dtype=torch.float16))
        self.register_buffer("bf16", torch.tensor([1.0, -3.0, 256.0], dtype=torch.bfloat16))
        self.register_buffer("i64", torch.tensor(-(2**40), dtype=torch.int64))
        self.register_buffer("i32", torch.tensor([2**31 - 1, -(2**31), 0], dtype=torch.int32))
        self.register_buffer("i16", torch.tensor([-32768, 32767], dtype=torch.int16))
        self.register_buffer("i8", torch.tensor([-128, 127], dtype=torch.int8))
        self.register_buffer("u8", torch.tensor([0, 255], dtype=torch.uint8))
        self.register_buffer("flags", torch.tensor([True, False, True]))
        self.register_buffer("empty", torch.zeros(0, 3))


def write_fixtures(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.save(Tiny().state_dict(), os.path.join(out_dir, "state_dict_module.pt"))
    torch.save(Views().state_dict(), os.path.join(out_dir, "state_dict_views.pt"))
    torch.save(Dtypes().state_dict(keep_vars=True), os.path.join(out_dir, "state_dict_dtypes.pt"))


if __name__ == "__main__":
    if sys.argv[1] == "--fixtures":
        write_fixtures(sys.argv[2])
        print("torch_interop: fixtures written")
        sys.exit(0)
    check_recmod_file(sys.argv[1])
    write_state_dict(sys.argv[2])
    print("torch_interop: ok")
