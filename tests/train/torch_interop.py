#!/usr/bin/env python3
"""Checks recmod's checkpoints against PyTorch's own torch.save / torch.load.

usage: torch_interop.py RECMOD_FILE OUT_FILE
  RECMOD_FILE: written by recmod's save_tensors with the tensors expected() lists;
               torch.load must give a dict with exactly those tensors.
  OUT_FILE:    written here with torch.save(dict(module.state_dict())), for recmod's
               load_tensors to read back. (A bare state_dict() is an OrderedDict with
               _metadata, which libtorch 1.13's unpickler cannot read.)
Exit status 0 when all checks pass; messages on stderr otherwise.
"""
import sys

import torch


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
    loaded = torch.load(path)
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


if __name__ == "__main__":
    check_recmod_file(sys.argv[1])
    write_state_dict(sys.argv[2])
    print("torch_interop: ok")
