#!/usr/bin/env python3
"""Plain PyTorch (eager) HARMamba forward: the same-run baseline for GPU timings.

The model of design.md §1 written the straightforward way (no fusions, a
sequential scan over time, flipped copies for the backward layer of each
pair), loading our safetensors files. Nothing here is used for serving.

  python3 bench/reference.py [--model FILE] [--batches 1,64,1024,8192]
                             [--device cuda] [--graph]
  python3 bench/reference.py --model DIR/model.safetensors \
      --check DIR/windows.f32 DIR/logits.f32     (from export_reference_case)

Without --model it builds random weights in the UCI-HAR shape (T 128, C 9,
6 classes); timings depend on shapes only. --check compares this model's
fp32 logits with the fused C++ CPU engine's and exits 1 above 1e-4
(norm-wise relative).
"""
import argparse
import json
import math
import struct
import sys
import time

import torch
import torch.nn.functional as F


def load_safetensors(path):
    """Returns ({name: float32 tensor}, {metadata key: value}), parsed by hand."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    metadata = header.pop("__metadata__", {})
    base = 8 + header_len
    tensors = {}
    for name, entry in header.items():
        if entry["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {entry['dtype']}, expected F32")
        begin, end = entry["data_offsets"]
        raw = bytearray(data[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=torch.float32) if raw else torch.empty(0)
        tensors[name] = t.reshape(entry["shape"])
    return tensors, metadata


def config_from_metadata(meta):
    def num(key):
        return json.loads(meta["harmamba." + key])
    return {
        "T": num("window_length"), "channels": num("channels"),
        "P": num("patch"), "S": num("stride"), "D": num("d_model"),
        "depth": num("depth"), "N": num("d_state"), "d_conv": num("d_conv"),
        "expand": num("expand"), "classes": num("classes"),
        "mean": num("mean"), "std": num("std"),
    }


def random_model(seed=0):
    """UCI-HAR-shaped weights at roughly the magnitudes of a trained model."""
    g = torch.Generator().manual_seed(seed)
    cfg = {"T": 128, "channels": [f"c{i}" for i in range(9)], "P": 16, "S": 16,
           "D": 64, "depth": 12, "N": 16, "d_conv": 4, "expand": 2,
           "classes": [f"k{i}" for i in range(6)], "mean": [0.0] * 9,
           "std": [1.0] * 9}
    D, N, P = cfg["D"], cfg["N"], cfg["P"]
    E, R = cfg["expand"] * D, math.ceil(D / 16)
    C = len(cfg["channels"])
    M = ((cfg["T"] - P) // cfg["S"] + 1) * C

    def rnd(*shape, std=0.02):
        return torch.randn(*shape, generator=g) * std

    w = {"patch_embed.proj.weight": rnd(D, 1, P, 1, std=P ** -0.5),
         "patch_embed.proj.bias": torch.zeros(D),
         "cls_token": rnd(1, 1, D), "pos_embed": rnd(1, M + 1, D),
         "norm_f.weight": torch.ones(D), "norm_f.bias": torch.zeros(D),
         "head.weight": rnd(len(cfg["classes"]), D),
         "head.bias": torch.zeros(len(cfg["classes"]))}
    for i in range(cfg["depth"]):
        p = f"layers.{i}."
        w[p + "norm.weight"] = torch.ones(D)
        w[p + "norm.bias"] = torch.zeros(D)
        w[p + "mixer.in_proj.weight"] = rnd(2 * E, D, std=D ** -0.5)
        w[p + "mixer.conv1d.weight"] = rnd(E, 1, 4, std=0.5)
        w[p + "mixer.conv1d.bias"] = rnd(E, std=0.1)
        w[p + "mixer.x_proj.weight"] = rnd(R + 2 * N, E, std=E ** -0.5)
        w[p + "mixer.dt_proj.weight"] = rnd(E, R, std=R ** -0.5)
        w[p + "mixer.dt_proj.bias"] = torch.full((E,), -4.0)
        w[p + "mixer.A_log"] = torch.log(torch.arange(1, N + 1.0)).repeat(E, 1)
        w[p + "mixer.D"] = torch.ones(E)
        w[p + "mixer.out_proj.weight"] = rnd(D, E, std=E ** -0.5 / math.sqrt(12))
    return w, cfg


class Harmamba:
    """design.md §1, eager PyTorch, float32."""

    def __init__(self, tensors, cfg, device):
        self.cfg = cfg
        self.w = {k: v.to(device=device, dtype=torch.float32) for k, v in tensors.items()}
        self.mean = torch.tensor(cfg["mean"], device=device)
        self.std = torch.tensor(cfg["std"], device=device)
        self.D = cfg["D"]
        self.E = cfg["expand"] * self.D
        self.N = cfg["N"]
        self.R = math.ceil(self.D / 16)

    def mixer(self, i, u):
        w, p = self.w, f"layers.{i}.mixer."
        Bsz, L, _ = u.shape
        E, N, R = self.E, self.N, self.R
        xz = u @ w[p + "in_proj.weight"].t()
        x, z = xz[..., :E], xz[..., E:]
        k = w[p + "conv1d.weight"].shape[-1]
        x = F.conv1d(x.transpose(1, 2), w[p + "conv1d.weight"], w[p + "conv1d.bias"],
                     padding=k - 1, groups=E)[..., :L].transpose(1, 2)
        x = F.silu(x)
        xdbl = x @ w[p + "x_proj.weight"].t()
        dt_low, Bm, Cm = xdbl[..., :R], xdbl[..., R:R + N], xdbl[..., R + N:]
        dt = F.softplus(dt_low @ w[p + "dt_proj.weight"].t() + w[p + "dt_proj.bias"])
        A = -torch.exp(w[p + "A_log"])                          # (E, N)
        decay = torch.exp(dt.unsqueeze(-1) * A)                 # (B, L, E, N)
        inp = (dt * x).unsqueeze(-1) * Bm.unsqueeze(2)          # (B, L, E, N)
        h = torch.zeros(Bsz, E, N, device=u.device)
        ys = []
        for t in range(L):
            h = decay[:, t] * h + inp[:, t]
            ys.append((h * Cm[:, t].unsqueeze(1)).sum(-1))
        y = torch.stack(ys, 1) + x * w[p + "D"]
        y = y * F.silu(z)
        return y @ w[p + "out_proj.weight"].t()

    def block(self, i, h, r):
        r = h if r is None else r + h
        normed = F.layer_norm(r, (self.D,), self.w[f"layers.{i}.norm.weight"],
                              self.w[f"layers.{i}.norm.bias"], 1e-5)
        return self.mixer(i, normed), r

    def __call__(self, windows):                                # (B, T, C)
        cfg, w = self.cfg, self.w
        Bsz, _, C = windows.shape
        P, S, D = cfg["P"], cfg["S"], self.D
        x = (windows - self.mean) / self.std
        patches = x.transpose(1, 2).unfold(2, P, S)             # (B, C, Np, P)
        tok = patches @ w["patch_embed.proj.weight"].reshape(D, P).t() \
            + w["patch_embed.proj.bias"]                        # (B, C, Np, D)
        tok = tok.permute(0, 2, 1, 3).reshape(Bsz, -1, D)       # token p*C + c
        h = torch.cat([w["cls_token"].expand(Bsz, 1, D), tok], 1) + w["pos_embed"]
        r = None
        for k in range(cfg["depth"] // 2):
            h_f, r_f = self.block(2 * k, h, r)
            h_b, r_b = self.block(2 * k + 1, h.flip(1),
                                  None if r is None else r.flip(1))
            h, r = h_f + h_b.flip(1), r_f + r_b.flip(1)
        out = F.layer_norm(r + h, (D,), w["norm_f.weight"], w["norm_f.bias"], 1e-5)
        return out[:, 0] @ w["head.weight"].t() + w["head.bias"]


def timed(fn, iters, device):
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fn()
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - start) / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--batches", default="1,64,1024,8192")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--graph", action="store_true",
                    help="also time batch 1 and 1024 replayed as a CUDA graph")
    ap.add_argument("--check", nargs=2, metavar=("WINDOWS_F32", "LOGITS_F32"))
    args = ap.parse_args()
    # Plain fp32 everywhere: cuDNN would otherwise run the convolution in TF32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    if args.model:
        tensors, meta = load_safetensors(args.model)
        cfg = config_from_metadata(meta)
        source = args.model
    else:
        tensors, cfg = random_model()
        source = "random weights (UCI-HAR shape)"
    model = Harmamba(tensors, cfg, args.device)
    T, C, K = cfg["T"], len(cfg["channels"]), len(cfg["classes"])
    print(f"reference: torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
          + f", model {source}, T {T} C {C} K {K}, fp32 eager")

    status = 0
    with torch.no_grad():
        if args.check:
            windows = torch.frombuffer(bytearray(open(args.check[0], "rb").read()),
                                       dtype=torch.float32).reshape(-1, T, C)
            want = torch.frombuffer(bytearray(open(args.check[1], "rb").read()),
                                    dtype=torch.float32).reshape(-1, K).double()
            got = model(windows.to(args.device)).double().cpu()
            err = ((got - want).norm() / want.norm()).item()
            same = (got.argmax(1) == want.argmax(1)).float().mean().item()
            print(f"check vs C++ CPU engine: {windows.shape[0]} windows, "
                  f"norm-wise relative error {err:.3e}, same argmax {same:.0%}")
            if not err <= 1e-4:
                status = 1

        print(f"{'batch':>6} {'mode':>6} {'ms/batch':>10} {'windows/s':>11}")
        for batch in [int(b) for b in args.batches.split(",")]:
            x = torch.randn(batch, T, C, device=args.device)
            iters = max(2, min(20, 2048 // batch))
            sec = timed(lambda: model(x), iters, args.device)
            print(f"{batch:>6} {'eager':>6} {sec * 1e3:>10.2f} {batch / sec:>11.0f}",
                  flush=True)
            if args.graph and args.device.startswith("cuda") and batch in (1, 1024):
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(2):
                        model(x)
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    model(x)
                sec = timed(graph.replay, iters, args.device)
                print(f"{batch:>6} {'graph':>6} {sec * 1e3:>10.2f} {batch / sec:>11.0f}",
                      flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
