#!/usr/bin/env python3
"""Side by side on one device: the same ReformerLM training step in lucidrains' reformer-pytorch
(PyTorch) and in rewind (`rewind-bench model`), with the speed and memory ratios (issue 7).

For each depth and length, one fresh process per side takes `--warmup + --reps` training steps
(loss, backward, Adam update) of a freshly initialised model on random tokens:
  - reformer-pytorch: a worker process of this script (`--worker`), timed with
    torch.cuda.synchronize() around the forward + backward and around the Adam step; peak = the
    increase of torch.cuda.max_memory_allocated() (after reset_peak_memory_stats) over what was
    allocated before the step (parameters, Adam state, tokens), max over the steps;
  - rewind: `rewind-bench model --device D --optimizer adam --format json` with the same config,
    timed between rw::synchronize calls; peak = the device allocator's peak above what was live
    before the step (the same definition).
Both count the parameter gradients in the peak (torch: zero_grad(set_to_none=True)).
s/step is the best step (forward + backward + Adam); the median is in the JSON. A side that runs out
of memory or time is reported as such, and longer lengths at that depth are not tried for it.

Ratios: speed = reformer-pytorch s/step / rewind s/step, memory = reformer-pytorch peak / rewind
peak; > 1 means rewind is faster / uses less memory.

On the CPU (`--device cpu`, for testing at tiny sizes) PyTorch has no allocator counters, so its
peak and the memory ratio are '-'.

Requirements: python3 with torch (the GPU machine's image has it) and reformer_pytorch with its
imports, none of which the GPU machine has. tools/gpu_pack.sh puts their wheels (pure Python) in
.devcarry/wheels/; on a machine without network install them with
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \\
        --find-links .devcarry/wheels reformer-pytorch local-attention axial-positional-embedding \\
        product-key-memory colt5-attention hyper-connections torch-einops-utils einops
    export PYTHONPATH=/tmp/site
(einops, numpy and packaging are on the GPU image too; --no-deps keeps pip off the network).

Example (what tools/gpu_session.sh runs):
    python3 tools/bench/side_by_side.py --device cuda --rewind-bench .devcarry/bin/rewind-bench \\
        --lengths 4096,16384,65536 --depths 1,6 --out-prefix $OUT/side_by_side
"""
import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

# reformer-pytorch's settings that make its ReformerLM the model `rewind-bench model` builds, and
# why each is set (see the notes of the output for what still differs).
FIXED_REFORMER_PYTORCH_SETTINGS = {
    "attn_chunks": 1,                  # all heads' attention at once (rewind batches them too)
    "weight_tie": False,               # every layer has its own weights
    "lsh_dropout": 0.0,                # rewind-bench: no dropout anywhere
    "ff_dropout": 0.0,
    "post_attn_dropout": 0.0,
    "layer_dropout": 0.0,
    "ff_activation": None,             # nn.GELU (exact erf), as rewind's gelu
    "ff_glu": False,
    "random_rotations_per_head": True,  # rewind draws one rotation per head (and round)
    "use_scale_norm": False,           # pre-LayerNorm, as rewind
    "use_rezero": False,
    "use_full_attn": False,            # LSH attention at every length:
    "full_attn_thres": 0,              # (0: never switch to full attention)
    "reverse_thres": 0,                # reversible at every length (0: always)
    "num_mem_kv": 0,
    "one_value_head": False,
    "emb_dim": None,                   # embedding width = d_model
    "return_embeddings": False,
    "weight_tie_embedding": False,     # rewind-bench: untied output projection (with bias)
    "fixed_position_emb": False,
    "absolute_position_emb": False,
    "axial_position_emb": True,        # axial positions, as rewind (and no rotary embedding)
    "n_local_attn_heads": 0,
    "pkm_layers": (),
}

# What still differs between the two models, for the notes.
KNOWN_DIFFERENCES = [
    "Same function up to the randomness: shared-QK LSH attention with keys unit-normalised and "
    "logits scaled by d_head^-1/2, n_hashes rounds each with its own rotation per head, chunks of "
    "bucket_size that attend to themselves and one chunk back (wrapping across rounds), causal "
    "masking on original positions, a finite self-attention penalty, duplicates not counted, "
    "rounds combined by their logsumexps; reversible blocks y1 = x1 + Attn(LN(x2)), "
    "y2 = x2 + FF(LN(y1)) with the forward's buckets reused in backward; halves averaged, final "
    "LayerNorm, untied output projection.",
    "Buckets: reformer-pytorch uses L / bucket_size buckets per round; rewind is given the same "
    "count (--buckets), but above 64 buckets it hashes with two factorised rotations "
    "(b1 x b2 buckets) where reformer-pytorch uses one rotation of width n_buckets / 2 "
    "(O(L n_buckets) hashing).",
    "Rotations: reformer-pytorch with random_rotations_per_head draws them per (sequence, head); "
    "rewind per head, shared by the batch's sequences (the same at batch 1).",
    "Penalties: self-attention -5e4 (reformer-pytorch) vs rewind's per-dtype penalty; causal "
    "mask -finfo.max vs rewind's per-dtype hard mask: both give the same softmax in f32.",
    "Axial positions: reformer-pytorch sums the axis embeddings (each d_model wide); rewind "
    "concatenates them (widths summing to d_model). Same grid; different parameter count "
    "(negligible either way).",
    "Feed-forward chunks: reformer-pytorch's ff_chunks is a number of chunks, set to "
    "ceil(L / ff_chunk) to match rewind's ff_chunk positions per chunk; reformer-pytorch's chunks "
    "only split the forward (its backward holds every chunk's activations at once), rewind's "
    "recompute per chunk.",
    "Loss: reformer-pytorch's logits [B, L, vocab] are built whole and fed to F.cross_entropy "
    "(as its README trains); rewind's cross-entropy is chunked over --loss-chunk positions.",
    "Adam: both with lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay; PyTorch's default "
    "(foreach) implementation.",
    "Lengths must be multiples of 2 x bucket_size (reformer-pytorch asserts it).",
    "Matmul precision: full f32 on both sides (PyTorch's default keeps TF32 off for matmuls; "
    "rewind's TF32 is opt-in).",
]


def csv_ints(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'")
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def default_rewind_bench():
    """The rewind-bench this checkout most likely has: $REWIND_BENCH, the carried bundle, a build."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    candidates = [os.environ.get("REWIND_BENCH", "")]
    candidates += [os.path.join(root, ".devcarry", "bin", "rewind-bench")]
    candidates += [os.path.join(root, d, "tools", "bench", "rewind-bench")
                   for d in sorted(os.listdir(root)) if d.startswith("build")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    return shutil.which("rewind-bench") or ""


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Train the same ReformerLM with reformer-pytorch and with rewind on one "
                    "device; write a markdown table and JSON with the speed and memory ratios.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N")
    p.add_argument("--lengths", type=csv_ints, default=[4096, 16384, 65536],
                   help="sequence lengths (multiples of 2 x --bucket)")
    p.add_argument("--depths", type=csv_ints, default=[1, 6], help="numbers of layers")
    p.add_argument("--batch", type=int, default=1, help="sequences per batch")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-ff", type=int, default=1024, help="a multiple of --d-model")
    p.add_argument("--hashes", type=int, default=4, help="LSH hash rounds")
    p.add_argument("--bucket", type=int, default=64,
                   help="bucket size = chunk length (reformer-pytorch's bucket_size, rewind's "
                        "--chunk); buckets per round = L / bucket")
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--ff-chunk", type=int, default=4096,
                   help="positions per feed-forward chunk (0: unchunked)")
    p.add_argument("--loss-chunk", type=int, default=4096,
                   help="rewind: positions per chunk of the cross-entropy")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--reps", type=int, default=3, help="timed steps (best and median reported)")
    p.add_argument("--seed", type=int, default=0, help="reformer-pytorch's torch.manual_seed")
    p.add_argument("--rewind-bench", default=None,
                   help="the rewind-bench executable (default: $REWIND_BENCH, "
                        ".devcarry/bin/rewind-bench, build*/tools/bench/rewind-bench)")
    p.add_argument("--rewind-arg", action="append", default=[],
                   help="extra argument for rewind-bench model (repeatable), e.g. "
                        "--rewind-arg=--precision --rewind-arg=bf16")
    p.add_argument("--timeout", type=float, default=300,
                   help="seconds allowed per side and configuration")
    p.add_argument("--budget", type=float, default=0,
                   help="seconds for the whole run: a configuration expected to overrun it is "
                        "skipped, and no side runs past it by more than 5 s (0: no limit)")
    p.add_argument("--only", choices=["both", "torch", "rewind"], default="both",
                   help="run one side only (for debugging)")
    p.add_argument("--out-prefix", default="side_by_side",
                   help="write PREFIX.md and PREFIX.json")
    p.add_argument("--worker", nargs=2, type=int, metavar=("LENGTH", "DEPTH"),
                   help=argparse.SUPPRESS)  # internal: one reformer-pytorch measurement
    a = p.parse_args(argv)
    if a.device != "cpu" and a.device != "cuda" and not (
            a.device.startswith("cuda:") and a.device[5:].isdigit()):
        p.error(f"--device {a.device}: expected cpu, cuda or cuda:N")
    for name in ("batch", "d_model", "heads", "d_ff", "hashes", "bucket", "vocab", "reps",
                 "loss_chunk"):
        if getattr(a, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(a, name)}")
    if a.warmup < 0 or a.ff_chunk < 0:
        p.error("--warmup and --ff-chunk must be >= 0")
    if a.d_model % a.heads:
        p.error(f"--heads {a.heads} must divide --d-model {a.d_model}")
    if a.d_ff % a.d_model:
        p.error(f"--d-ff {a.d_ff} must be a multiple of --d-model {a.d_model} "
                "(reformer-pytorch's ff_mult)")
    bad = [L for L in a.lengths if L % (2 * a.bucket)]
    if bad:
        p.error(f"--lengths {','.join(map(str, bad))}: reformer-pytorch needs multiples of "
                f"2 x --bucket = {2 * a.bucket}")
    if a.worker is None and a.only != "torch":
        a.rewind_bench = a.rewind_bench or default_rewind_bench()
        if not a.rewind_bench or not os.access(a.rewind_bench, os.X_OK):
            p.error(f"--rewind-bench '{a.rewind_bench or ''}': no executable rewind-bench found "
                    "(build it, or pass its path)")
    return a


def default_axial_shape(n):
    """rewind's default axial grid for max_len n (models/reformer/reformer_config.cpp)."""
    a = 1
    while a * a < n:
        a *= 2
    first = max(1, a // 2)
    return (first, (n + first - 1) // first)


def reformer_pytorch_kwargs(a, length, depth):
    """Every ReformerLM argument, explicitly: the model `rewind-bench model` builds."""
    kwargs = dict(
        num_tokens=a.vocab,
        dim=a.d_model,
        depth=depth,
        max_seq_len=length,  # rewind-bench: max_len = the (one) length of the run
        heads=a.heads,
        dim_head=a.d_model // a.heads,
        bucket_size=a.bucket,
        n_hashes=a.hashes,
        ff_chunks=max(1, math.ceil(length / a.ff_chunk)) if a.ff_chunk > 0 else 1,
        causal=True,
        ff_mult=a.d_ff // a.d_model,
        axial_position_shape=default_axial_shape(length),
    )
    kwargs.update(FIXED_REFORMER_PYTORCH_SETTINGS)
    return kwargs


# --- the reformer-pytorch side (a worker process per configuration) ------------------------------

def torch_worker(a, length, depth):
    """One configuration's steps; prints one JSON object on stdout."""
    import torch
    import torch.nn.functional as F
    from reformer_pytorch import ReformerLM

    device = torch.device(a.device)
    on_gpu = device.type == "cuda"

    def sync():
        if on_gpu:
            torch.cuda.synchronize(device)

    torch.manual_seed(a.seed)
    model = ReformerLM(**reformer_pytorch_kwargs(a, length, depth)).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                           weight_decay=0)
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, a.vocab, (a.batch, length), generator=gen).to(device)
    targets = torch.randint(0, a.vocab, (a.batch, length), generator=gen).to(device)
    result = {"side": "reformer-pytorch", "length": length, "depth": depth,
              "params": sum(p.numel() for p in model.parameters()),
              "fwd_bwd_s": [], "optimizer_s": [], "step_s": [], "peak_bytes": None}
    if on_gpu:
        result["gpu"] = torch.cuda.get_device_name(device)
    peak = 0
    for step in range(a.warmup + a.reps):
        opt.zero_grad(set_to_none=True)
        sync()
        if on_gpu:
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        logits = model(tokens)
        loss = F.cross_entropy(logits.reshape(-1, a.vocab), targets.reshape(-1))
        loss.backward()
        del logits
        sync()
        t1 = time.perf_counter()
        opt.step()
        sync()
        t2 = time.perf_counter()
        if on_gpu:
            peak = max(peak, torch.cuda.max_memory_allocated(device) - before)
        if step == 0:
            result["first_loss"] = loss.item()
        if step >= a.warmup:
            result["fwd_bwd_s"].append(t1 - t0)
            result["optimizer_s"].append(t2 - t1)
            result["step_s"].append(t2 - t0)
    if on_gpu:
        result["peak_bytes"] = peak
    print(json.dumps(result))


def run_torch(a, length, depth, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(length), str(depth),
           "--only", "torch"] + passthrough_flags(a)
    return run_side(cmd, timeout, parse=lambda out: json.loads(out.strip().splitlines()[-1]))


def passthrough_flags(a):
    return ["--device", a.device, "--batch", str(a.batch), "--d-model", str(a.d_model),
            "--heads", str(a.heads), "--d-ff", str(a.d_ff), "--hashes", str(a.hashes),
            "--bucket", str(a.bucket), "--vocab", str(a.vocab), "--ff-chunk", str(a.ff_chunk),
            "--loss-chunk", str(a.loss_chunk), "--warmup", str(a.warmup), "--reps", str(a.reps),
            "--seed", str(a.seed)]


# --- the rewind side --------------------------------------------------------------------------

def rewind_command(a, length, depth):
    return [a.rewind_bench, "model", "--device", a.device, "--optimizer", "adam",
            "--format", "json", "--attention", "lsh",
            "--lengths", str(length), "--depths", str(depth), "--batch", str(a.batch),
            "--d-model", str(a.d_model), "--heads", str(a.heads), "--d-ff", str(a.d_ff),
            "--hashes", str(a.hashes), "--chunk", str(a.bucket),
            "--buckets", str(length // a.bucket), "--vocab", str(a.vocab),
            "--ff-chunk", str(a.ff_chunk), "--loss-chunk", str(a.loss_chunk),
            # rewind-bench's first rep is its warm-up: the best of all counts.
            "--reps", str(a.warmup + a.reps)] + a.rewind_arg


def parse_rewind(out):
    doc = json.loads(out)
    table = doc["tables"][0]
    row = table["rows"][0]
    return {"side": "rewind", "title": table["title"], "fwd_bwd_s": [row["fwd_bwd_s"]],
            "optimizer_s": [row.get("optimizer_s", 0)],
            "step_s": [row.get("step_s", row["fwd_bwd_s"])],
            "peak_bytes": row["peak_bytes"]}


def run_rewind(a, length, depth, timeout):
    return run_side(rewind_command(a, length, depth), timeout, parse=parse_rewind)


def run_side(cmd, timeout, parse):
    """Runs one side; {'error': ...} (OOM, timeout, failure) instead of raising."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout ({timeout:.0f} s)"}
    if p.returncode != 0:
        err = (p.stderr or "").strip().splitlines()
        text = "\n".join(err[-3:]) if err else f"exit status {p.returncode}"
        oom = "out of memory" in text.lower() or "outofmemory" in text.lower()
        return {"error": "OOM" if oom else f"failed: {text[-300:]}",
                "exit_code": p.returncode}
    try:
        return parse(p.stdout)
    except (ValueError, KeyError, IndexError) as e:
        return {"error": f"unreadable output ({e})"}


# --- the report --------------------------------------------------------------------------------

def best(r):
    return min(r["step_s"]) if r and "step_s" in r and r["step_s"] else None


def cell_s(r):
    if r is None:
        return "-"
    if "error" in r:
        return r["error"] if len(r["error"]) < 40 else r["error"][:37] + "..."
    return f"{best(r):.4f}"


def cell_mb(r):
    if r is None or "error" in r or r.get("peak_bytes") is None:
        return "-"
    return f"{r['peak_bytes'] / 1e6:.1f}"


def ratio(num, den, fmt="{:.2f}"):
    if num is None or den is None or den <= 0:
        return "-"
    return fmt.format(num / den)


def make_row(length, depth, batch, t, r):
    tb, rb = best(t) if t and "error" not in t else None, best(r) if r and "error" not in r else None
    tm = t.get("peak_bytes") if t and "error" not in t else None
    rm = r.get("peak_bytes") if r and "error" not in r else None
    return {
        "length": length, "depth": depth, "batch": batch,
        "reformer_pytorch_s_per_step": tb, "reformer_pytorch_peak_MB":
            None if tm is None else tm / 1e6,
        "rewind_s_per_step": rb, "rewind_peak_MB": None if rm is None else rm / 1e6,
        "speed_ratio": None if tb is None or rb is None else tb / rb,
        "memory_ratio": None if tm is None or not rm else tm / rm,
        "cells": [str(length), str(depth), cell_s(t), cell_mb(t), cell_s(r), cell_mb(r),
                  ratio(tb, rb), ratio(tm, rm)],
        "reformer_pytorch": t, "rewind": r,
    }


def markdown(rows, info, notes):
    head = ["length", "depth", "reformer-pytorch s/step", "reformer-pytorch peak MB",
            "rewind s/step", "rewind peak MB", "speed ratio", "memory ratio"]
    cells = [head] + [row["cells"] for row in rows]
    width = [max(len(c[i]) for c in cells) for i in range(len(head))]
    line = lambda c: "| " + " | ".join(v.ljust(w) for v, w in zip(c, width)) + " |"
    out = [f"- {k}: {v}" for k, v in info.items()]
    out += ["", line(head), "|" + "|".join("-" * (w + 2) for w in width) + "|"]
    out += [line(row["cells"]) for row in rows]
    out += [""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def run_info(a):
    info = {"device": a.device}
    try:
        import torch
        info["torch"] = torch.__version__
        if a.device != "cpu" and torch.cuda.is_available():
            info["device"] = f"{a.device} ({torch.cuda.get_device_name(torch.device(a.device))})"
    except ImportError:
        info["torch"] = "not importable"
    try:
        from importlib.metadata import version
        info["reformer_pytorch"] = version("reformer_pytorch")
    except Exception:  # noqa: BLE001 - any failure: say so, do not stop the report
        info["reformer_pytorch"] = "not importable"
    info["rewind-bench"] = a.rewind_bench or "-"
    info["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    info["config"] = (f"d_model {a.d_model}, {a.heads} heads, d_ff {a.d_ff}, {a.hashes} hashes, "
                      f"bucket/chunk {a.bucket} (L/{a.bucket} buckets), causal, vocab {a.vocab}, "
                      f"batch {a.batch}, reversible, ff chunk {a.ff_chunk} positions, Adam, f32"
                      + (f", rewind extra: {' '.join(a.rewind_arg)}" if a.rewind_arg else ""))
    info["steps"] = f"{a.warmup} warm-up + {a.reps} timed per side; s/step = the best step"
    info["command"] = " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])
    return info


def write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv):
    a = parse_args(argv)
    if a.worker:
        torch_worker(a, *a.worker)
        return 0
    start = time.monotonic()
    rows = []
    failed = {"torch": set(), "rewind": set()}  # depths at which a side already failed
    for depth in a.depths:
        last = None  # (length, seconds) of this depth's last configuration, both sides
        for length in sorted(a.lengths):
            elapsed = time.monotonic() - start
            # The next configuration's time, from the last one, linear in the length.
            estimate = 1.5 * last[1] * length / last[0] if last else 0
            if a.budget and elapsed + estimate > a.budget:
                skipped = {"error": "skipped (budget)"}
                rows.append(make_row(length, depth, a.batch, skipped, skipped))
                continue
            t0 = time.monotonic()
            sides = {}
            for side, runner in (("torch", run_torch), ("rewind", run_rewind)):
                if a.only not in ("both", side):
                    sides[side] = None
                elif depth in failed[side]:
                    sides[side] = {"error": "skipped (shorter failed)"}
                else:
                    timeout = a.timeout
                    if a.budget:  # never past the budget by more than a few seconds
                        timeout = min(timeout, max(5.0, a.budget - (time.monotonic() - start)))
                    print(f"side_by_side: {side}, depth {depth}, length {length}",
                          file=sys.stderr, flush=True)
                    sides[side] = runner(a, length, depth, timeout)
                    if "error" in sides[side]:
                        failed[side].add(depth)
                        print(f"side_by_side: {side}: {sides[side]['error']}", file=sys.stderr)
            last = (length, time.monotonic() - t0)
            rows.append(make_row(length, depth, a.batch, sides["torch"], sides["rewind"]))
    info = run_info(a)
    notes = ["speed ratio = reformer-pytorch s/step / rewind s/step; memory ratio = "
             "reformer-pytorch peak / rewind peak (> 1: rewind faster / smaller).",
             "s/step: forward + backward + Adam step, best of the timed steps (rewind-bench: "
             "best of warm-up + timed); on a GPU each time is read after a device "
             "synchronisation.",
             "peak: the device allocator's peak during a step above what was allocated before "
             "it (parameters, Adam state, tokens), parameter gradients included"
             + ("; PyTorch has no such counter on the CPU ('-')." if a.device == "cpu" else ".")]
    notes += KNOWN_DIFFERENCES
    md = markdown(rows, info, notes)
    doc = {"run": info, "notes": notes,
           "reformer_pytorch_settings": {k: (list(v) if isinstance(v, tuple) else v)
                                         for k, v in FIXED_REFORMER_PYTORCH_SETTINGS.items()},
           "rows": [{k: v for k, v in row.items() if k != "cells"} for row in rows]}
    out_dir = os.path.dirname(a.out_prefix)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    write_atomic(a.out_prefix + ".md", md)
    write_atomic(a.out_prefix + ".json", json.dumps(doc, indent=2) + "\n")
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
