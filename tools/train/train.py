#!/usr/bin/env python3
"""Train pagellm's bundled default model: a byte-level BPE tokenizer and a small Llama
(RMSNorm, RoPE, SwiGLU, GQA, tied embeddings) on public-domain / BSD English text from
Debian packages, then export GGUF (F16) with full tokenizer metadata and the golden files
the C tests compare against. One GPU run (about 4.5 minutes on an H100).

    sh tools/train/get_corpus.sh && python3 tools/train/build_corpus.py      # here (stdlib)
    python3 tools/train/train.py --corpus .devcarry/corpus --out STAGE --compile   # GPU

STAGE receives, in the repository's layout:
  models/pagellm-default.gguf           GGUF v3, 2-D weights F16, norms F32, gpt2 tokenizer
  models/pagellm-default.tokenizer.json the Hugging Face tokenizer (tokenizers library)
  tests/golden/default-model/*          goldens computed with transformers' LlamaForCausalLM
                                        in float32 on the exported (F16-rounded) weights
  docs/train-loss.png                   loss curve (tests/golden/default-model/train-loss.csv,
                                        train-report.json: the numbers, hyper-parameters, timings)

Needs torch, tokenizers, transformers, regex, matplotlib, numpy (all on the GPU machine).
Everything is seeded (--seed); cuDNN/cuBLAS kernels may still make the bf16 training run
differ in the last bits between machines, so the shipped files, not a rerun, are the reference.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import convert_hf_to_gguf as C  # noqa: E402

EOT = "<|endoftext|>"
CHAT_TEMPLATE = ("{% for message in messages %}{{ message['content'] }}\n\n{% endfor %}")


# ------------------------------------------------------------------------------------ model
class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.h, self.kv, self.hd = a.heads, a.kv_heads, a.dim // a.heads
        self.q_proj = nn.Linear(a.dim, self.h * self.hd, bias=False)
        self.k_proj = nn.Linear(a.dim, self.kv * self.hd, bias=False)
        self.v_proj = nn.Linear(a.dim, self.kv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.h * self.hd, a.dim, bias=False)
        self.drop = a.dropout

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.h // self.kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.drop if self.training else 0.0)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.h * self.hd))


class MLP(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.gate_proj = nn.Linear(a.dim, a.ffn, bias=False)
        self.up_proj = nn.Linear(a.dim, a.ffn, bias=False)
        self.down_proj = nn.Linear(a.ffn, a.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.input_layernorm = RMSNorm(a.dim, a.eps)
        self.self_attn = Attention(a)
        self.post_attention_layernorm = RMSNorm(a.dim, a.eps)
        self.mlp = MLP(a)
        self.drop = nn.Dropout(a.dropout)

    def forward(self, x, cos, sin):
        x = x + self.drop(self.self_attn(self.input_layernorm(x), cos, sin))
        return x + self.drop(self.mlp(self.post_attention_layernorm(x)))


class Inner(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.dim)
        self.layers = nn.ModuleList([Layer(a) for _ in range(a.layers)])
        self.norm = RMSNorm(a.dim, a.eps)


class Llama(nn.Module):
    """Parameter names match transformers' LlamaForCausalLM (lm_head tied to embed_tokens)."""

    def __init__(self, a):
        super().__init__()
        self.a = a
        self.model = Inner(a)
        hd = a.dim // a.heads
        inv = 1.0 / (a.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ang = torch.outer(torch.arange(a.ctx, dtype=torch.float32), inv)
        emb = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.emb_drop = nn.Dropout(a.dropout)
        std = 0.02
        for n, p in self.named_parameters():
            if p.ndim == 2:
                s = std / math.sqrt(2 * a.layers) if n.endswith(("o_proj.weight", "down_proj.weight")) else std
                nn.init.normal_(p, 0.0, s)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.emb_drop(self.model.embed_tokens(idx))
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        x = self.model.norm(x)
        return x @ self.model.embed_tokens.weight.t().to(x.dtype)


# ------------------------------------------------------------------------------- tokenizer
def bytes_to_unicode():
    """GPT-2's reversible byte <-> printable-unicode map used by byte-level BPE."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    m, extra = {}, 0
    for b in range(256):
        if b in keep:
            m[b] = chr(b)
        else:
            m[b] = chr(256 + extra)
            extra += 1
    return m


class RefBPE:
    """Independent GPT-2-style encoder (regex pre-split, byte map, rank-ordered merges) used
    to check that the trained tokenizer is exactly what a llama.cpp 'gpt2'/'gpt-2' vocab does."""

    def __init__(self, tokenizer_json):
        import regex
        tj = json.load(open(tokenizer_json, encoding="utf-8"))
        self.vocab = dict(tj["model"]["vocab"])
        self.special = {t["content"]: t["id"] for t in tj["added_tokens"] if t.get("special")}
        merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
        self.pat = regex.compile(C.GPT2_PATTERN)
        self.spat = regex.compile("|".join(regex.escape(s) for s in self.special)) if self.special else None
        self.bmap = bytes_to_unicode()

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            best, bi = None, -1
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            a, b = parts[bi], parts[bi + 1]
            out, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        return parts

    def encode(self, text):
        ids, pos = [], 0
        chunks = []
        if self.spat:
            for m in self.spat.finditer(text):
                chunks.append((text[pos:m.start()], False))
                chunks.append((m.group(0), True))
                pos = m.end()
        chunks.append((text[pos:], False))
        for s, special in chunks:
            if special:
                ids.append(self.special[s])
                continue
            for piece in self.pat.findall(s):
                word = "".join(self.bmap[b] for b in piece.encode("utf-8"))
                ids.extend(self.vocab[p] for p in self._bpe(word))
        return ids


def train_tokenizer(texts, vocab_size, path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok.save(path)
    return tok


# ---------------------------------------------------------------------------------- utils
def lr_at(step, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = min(1.0, (step - a.warmup) / max(1, a.max_steps - a.warmup))
    return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def amp(on):
    import contextlib
    return torch.autocast("cuda", dtype=torch.bfloat16) if on else contextlib.nullcontext()


@torch.no_grad()
def eval_loss(model, val, ctx, dev, autocast=True, max_windows=10 ** 9, fn=None):
    """Mean NLL over non-overlapping ctx-token windows of val (each from position 0)."""
    was_training = model.training
    model.eval()
    n = min((len(val) - 1) // ctx, max_windows)
    tot, cnt = 0.0, 0
    for i in range(0, n, 16):
        j = min(n, i + 16)
        x = torch.stack([val[w * ctx:w * ctx + ctx] for w in range(i, j)]).to(dev).long()
        y = torch.stack([val[w * ctx + 1:w * ctx + ctx + 1] for w in range(i, j)]).to(dev).long()
        with amp(autocast and dev == "cuda"):
            lg = fn(x) if fn else model(x)
        tot += F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), y.reshape(-1), reduction="sum").item()
        cnt += y.numel()
    model.train(was_training)
    return tot / cnt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=".devcarry/corpus")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--max-steps", type=int, default=3000, help="cosine length of explore runs")
    ap.add_argument("--sweep-dropout", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    ap.add_argument("--explore-time", type=float, default=60.0, help="seconds cap per explore run")
    ap.add_argument("--anneal-mult", type=float, default=1.15,
                    help="annealed run length = best explore step x this")
    ap.add_argument("--anneal-time", type=float, default=80.0)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--patience", type=int, default=4, help="evals without improvement")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--name", default="pagellm-default")
    a = ap.parse_args()
    t_start = time.time()
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    out = a.out
    dm_dir = os.path.join(out, "tests/golden/default-model")
    models_dir = os.path.join(out, "models")
    docs_dir = os.path.join(out, "docs")
    hf_dir = os.path.join(out, "hf-" + a.name)
    for d in (dm_dir, models_dir, docs_dir, hf_dir):
        os.makedirs(d, exist_ok=True)
    report = {"args": vars(a), "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
              "torch": torch.__version__}

    # ---------------- data + tokenizer
    def load(split):
        return [json.loads(l) for l in open(os.path.join(a.corpus, split + ".jsonl"), encoding="utf-8")]
    import zlib
    train_docs, valid_docs = load("train"), load("valid")
    # dev split (early stopping / model selection) carved from train, so that the valid split
    # (the reported held-out perplexity) is used for nothing else
    is_dev = [zlib.crc32(("%s/%s" % (d["src"], d["id"])).encode()) % 50 == 1 for d in train_docs]
    dev_docs = [d for d, k in zip(train_docs, is_dev) if k]
    train_docs = [d for d, k in zip(train_docs, is_dev) if not k]
    t0 = time.time()
    tok_path = os.path.join(hf_dir, "tokenizer.json")
    tok = train_tokenizer([d["text"] for d in train_docs], a.vocab, tok_path)
    assert tok.get_vocab_size() == a.vocab, tok.get_vocab_size()
    eot = tok.token_to_id(EOT)
    assert eot == 0
    report["tokenizer_train_s"] = time.time() - t0

    def stream(docs):
        enc = tok.encode_batch([d["text"] for d in docs])
        ids = []
        for e in enc:
            ids.append(eot)
            ids.extend(e.ids)
        ids.append(eot)
        return torch.tensor(ids, dtype=torch.int32)
    train_ids, dev_ids, val_ids = stream(train_docs), stream(dev_docs), stream(valid_docs)
    report["dev_tokens"] = len(dev_ids)
    report["train_tokens"] = len(train_ids)
    report["valid_tokens"] = len(val_ids)
    report["bytes_per_token_train"] = sum(len(d["text"].encode()) for d in train_docs) / len(train_ids)
    print("tokenizer %.1fs; train %d tokens, valid %d tokens, %.2f bytes/token" % (
        report["tokenizer_train_s"], len(train_ids), len(val_ids), report["bytes_per_token_train"]), flush=True)

    # ---------------- model: a small sweep over dropout, then one annealed run
    a.vocab = tok.get_vocab_size()
    data = train_ids.to(dev)
    ar = torch.arange(a.ctx + 1, device=dev)

    def run(tag, dropout, max_steps, time_cap):
        """One training run; early-stops on the dev split; returns the best-dev checkpoint."""
        torch.manual_seed(a.seed)
        ra = argparse.Namespace(**vars(a))
        ra.dropout, ra.max_steps = dropout, max_steps
        raw = Llama(ra).to(dev)
        decay = [p for n, p in raw.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in raw.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=(dev == "cuda"))
        model = raw
        if a.compile:
            try:
                model = torch.compile(raw)
            except Exception as e:  # noqa: BLE001
                print("torch.compile failed, running eager:", e)
        gen = torch.Generator(device="cpu").manual_seed(a.seed)

        def batch():
            off = torch.randint(0, len(data) - a.ctx - 1, (a.batch,), generator=gen).to(dev)
            w = data[off[:, None] + ar[None, :]].long()
            return w[:, :-1], w[:, 1:]

        rows, best, best_step, best_state, bad = [], float("inf"), -1, None, 0
        t0 = time.time()
        t_steady = t0
        acc, acc_n, step = 0.0, 0, 0
        raw.train()
        while step < max_steps:
            lr = lr_at(step, ra)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = batch()
            with amp(dev == "cuda"):
                lg = model(x)
            loss = F.cross_entropy(lg.float().view(-1, lg.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(raw.parameters(), 1.0)
            opt.step()
            acc += loss.detach()
            acc_n += 1
            step += 1
            if step == 1:
                if dev == "cuda":
                    torch.cuda.synchronize()
                t_first = time.time() - t0
                t_steady = time.time()
            last = step == max_steps or time.time() - t_steady > time_cap
            if step % 10 == 0 or last:
                tl = (acc / acc_n).item()
                acc, acc_n = 0.0, 0
                row = {"step": step, "tokens": step * a.batch * a.ctx, "lr": lr, "train_loss": tl,
                       "dev_loss": None, "elapsed_s": time.time() - t0}
                if step % a.eval_every == 0 or last:
                    vl = eval_loss(raw, dev_ids, a.ctx, dev)
                    row["dev_loss"] = vl
                    if vl < best:
                        best, best_step, bad = vl, step, 0
                        best_state = {k: v.detach().clone() for k, v in raw.state_dict().items()}
                    else:
                        bad += 1
                    if step % (4 * a.eval_every) == 0 or last or bad > a.patience:
                        print("[%s] step %5d  lr %.2e  train %.4f  dev %.4f  best %.4f@%d  %.0fs" % (
                            tag, step, lr, tl, vl, best, best_step, row["elapsed_s"]), flush=True)
                rows.append(row)
                if bad > a.patience:
                    break
            if last:
                break
        st = {"tag": tag, "dropout": dropout, "max_steps": max_steps, "steps": step,
              "best_dev_loss": best, "best_step": best_step, "first_step_s": t_first,
              "run_s": time.time() - t0,
              "tokens_per_s_after_first_step": (step - 1) * a.batch * a.ctx / max(1e-9, time.time() - t_steady),
              "early_stopped": bad > a.patience}
        print("[%s] done: %s" % (tag, json.dumps(st)), flush=True)
        del model, opt
        return best, best_state, rows, st

    runs = []
    for dp in a.sweep_dropout:
        runs.append(run("explore-dropout-%.2f" % dp, dp, a.max_steps, a.explore_time))
    bi = min(range(len(runs)), key=lambda i: runs[i][0])
    best_dp, best_step = runs[bi][3]["dropout"], runs[bi][3]["best_step"]
    n_final = max(a.warmup + 100, int(round(best_step * a.anneal_mult)))
    runs.append(run("anneal-dropout-%.2f" % best_dp, best_dp, n_final, a.anneal_time))
    ki = min(range(len(runs)), key=lambda i: runs[i][0])
    best, best_state, rows, kept = runs[ki]
    report["runs"] = [r[3] for r in runs]
    report["kept_run"] = kept["tag"]
    report["best_dev_loss_bf16"] = best
    report["train_s_total"] = sum(r[3]["run_s"] for r in runs)
    print("kept %s (dev loss %.4f at step %d)" % (kept["tag"], best, kept["best_step"]), flush=True)
    a.dropout = kept["dropout"]
    raw = Llama(a).to(dev)
    raw.load_state_dict(best_state)
    raw.eval()
    n_params = sum(p.numel() for p in raw.parameters())
    report["n_params"] = n_params
    best_step = kept["best_step"]

    # ---------------- loss curves (all runs; CSV + PNG)
    with open(os.path.join(dm_dir, "train-loss.csv"), "w") as f:
        f.write("run,step,tokens,lr,train_loss,dev_loss,elapsed_s\n")
        for r_ in runs:
            for r in r_[2]:
                f.write("%s,%d,%d,%.6g,%.5f,%s,%.1f\n" % (
                    r_[3]["tag"], r["step"], r["tokens"], r["lr"], r["train_loss"],
                    "" if r["dev_loss"] is None else "%.5f" % r["dev_loss"], r["elapsed_s"]))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
        for i, r_ in enumerate(runs):
            rr, st_ = r_[2], r_[3]
            c = "C%d" % i
            ev = [r for r in rr if r["dev_loss"] is not None]
            ax.plot([r["step"] for r in rr], [r["train_loss"] for r in rr], color=c, lw=0.8, alpha=0.55)
            ax.plot([r["step"] for r in ev], [r["dev_loss"] for r in ev], "o-", color=c, ms=2.5, lw=1.2,
                    label="%s (dev best %.3f%s)" % (st_["tag"], st_["best_dev_loss"],
                                                    ", kept" if st_["tag"] == kept["tag"] else ""))
        ax.set_xlabel("step (%d sequences x %d tokens); thin lines: train loss (dropout on)" % (a.batch, a.ctx))
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title("%s: %.1fM params, trained on %s" % (a.name, n_params / 1e6, report["device"]))
        allr = [r for r_ in runs for r in r_[2]]
        ax.set_ylim(bottom=max(0.0, min(r["train_loss"] for r in allr) - 0.2), top=6.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(docs_dir, "train-loss.png"))
    except Exception as e:  # noqa: BLE001
        print("plot failed:", e)

    # ---------------- export (F16 2-D weights, F32 norms), HF folder + GGUF
    sd = {k: v.detach().float().cpu() for k, v in raw.state_dict().items()}
    st = {}
    for k, v in sd.items():
        if v.ndim == 2:
            st[k] = ("F16", v.half().numpy())
        else:
            st[k] = ("F32", v.numpy())
    C.write_safetensors(os.path.join(hf_dir, "model.safetensors"), st, {"format": "pt"})
    hd = a.dim // a.heads
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": a.vocab,
           "hidden_size": a.dim, "intermediate_size": a.ffn, "num_hidden_layers": a.layers,
           "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": hd,
           "max_position_embeddings": a.ctx, "rms_norm_eps": a.eps, "rope_theta": a.rope_theta,
           "rope_scaling": None, "tie_word_embeddings": True, "hidden_act": "silu",
           "attention_bias": False, "mlp_bias": False, "bos_token_id": eot, "eos_token_id": eot,
           "torch_dtype": "float16"}
    json.dump(cfg, open(os.path.join(hf_dir, "config.json"), "w"), indent=2)
    json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": EOT, "eos_token": EOT,
               "unk_token": None, "model_max_length": a.ctx,
               "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHAT_TEMPLATE},
              open(os.path.join(hf_dir, "tokenizer_config.json"), "w"), indent=2)
    gguf_path = os.path.join(models_dir, a.name + ".gguf")
    C.convert(hf_dir, gguf_path, outtype="f16", name=a.name)
    import shutil
    shutil.copy(tok_path, os.path.join(models_dir, a.name + ".tokenizer.json"))
    report["gguf_bytes"] = os.path.getsize(gguf_path)

    # ---------------- goldens from the exported weights, transformers float32 on CPU
    from transformers import AutoModelForCausalLM
    try:
        hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        hf = AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32, attn_implementation="eager")
    hf.eval()
    torch.set_num_threads(min(16, os.cpu_count() or 1))
    # same rounded weights in our own model class (float32, CPU): the two implementations agree?
    mine = Llama(a)
    mine.load_state_dict({k: torch.from_numpy(np.asarray(v[1], np.float32)) for k, v in st.items()})
    mine.eval()
    W = 512
    starts = [int(i * (len(val_ids) - W) / 4) for i in range(4)]   # spread over the sources
    held = torch.cat([val_ids[s_:s_ + W] for s_ in starts]).long()
    with torch.no_grad():
        x = held.view(4, W)
        l_hf = hf(input_ids=x).logits.float()
        l_me = mine(x).float()
        report["impl_parity_max_abs_diff"] = float((l_hf - l_me).abs().max())
        nll = F.cross_entropy(l_hf[:, :-1].reshape(-1, a.vocab), x[:, 1:].reshape(-1), reduction="none")
    nll = nll.view(4, W - 1)
    held.numpy().astype("<i4").tofile(os.path.join(dm_dir, "heldout_tokens.i32"))
    nll.numpy().astype("<f4").tofile(os.path.join(dm_dir, "heldout_nll.f32"))
    ppl = {"windows": 4, "window_tokens": W,
           "note": "each window is evaluated on its own from position 0 (no BOS added); token t+1 "
                   "of a window is predicted from tokens 0..t of the same window. Windows are "
                   "taken at token offsets window_starts of the held-out split (valid.jsonl)",
           "window_starts": starts,
           "tokens_file": "heldout_tokens.i32", "tokens_shape": [4, W],
           "nll_file": "heldout_nll.f32", "nll_shape": [4, W - 1],
           "mean_nll": float(nll.mean()), "ppl": float(torch.exp(nll.mean())),
           "per_window_mean_nll": [float(v) for v in nll.mean(1)]}
    # whole held-out split, float32, exported weights
    vl32 = eval_loss(hf, val_ids, W, "cpu", autocast=False, fn=lambda t: hf(input_ids=t).logits)
    ppl["full_valid_split_mean_nll"] = vl32
    ppl["full_valid_split_ppl"] = math.exp(vl32)
    ppl["full_valid_split_tokens"] = ((len(val_ids) - 1) // W) * W
    json.dump(ppl, open(os.path.join(dm_dir, "perplexity.json"), "w"), indent=1)
    report["heldout"] = ppl
    print("held-out (4x512) ppl %.3f; full valid split ppl %.3f; parity %.2e" % (
        ppl["ppl"], ppl["full_valid_split_ppl"], report["impl_parity_max_abs_diff"]), flush=True)

    prompts = ["In the beginning", "The LORD is my shepherd", "A computer is", "Love is",
               "The hacker", "Q: What is the meaning of life?\nA:"]
    gens = []
    with torch.no_grad():
        for i, ptxt in enumerate(prompts):
            pid = [eot] + tok.encode(ptxt).ids
            out = hf(input_ids=torch.tensor([pid]), use_cache=True)
            pkv = out.past_key_values
            if i == 0:
                lg0 = out.logits[0].float().numpy().astype("<f4")
                lg0.tofile(os.path.join(dm_dir, "prompt0_logits.f32"))
            ids, margins = [], []
            for _ in range(64):
                v, ix = torch.topk(out.logits[0, -1].float(), 2)
                ids.append(int(ix[0]))
                margins.append(float(v[0] - v[1]))
                out = hf(input_ids=ix[:1].view(1, 1), past_key_values=pkv, use_cache=True)
                pkv = out.past_key_values
            full = hf(input_ids=torch.tensor([pid + ids])).logits[0]
            ok = full[len(pid) - 1:-1].argmax(-1).tolist() == ids
            gens.append({"prompt": ptxt, "prompt_ids": pid, "generated_ids": ids,
                         "text": tok.decode(ids), "min_top2_margin": min(margins),
                         "top2_margins": [round(m, 5) for m in margins], "kv_cache_matches_full": ok})
            print("[%s] -> %r" % (ptxt, tok.decode(ids)), flush=True)
    json.dump({"n_new": 64, "bos_prepended": True, "eos_id": eot,
               "note": "greedy, float32, transformers LlamaForCausalLM on the exported F16-rounded "
                       "weights; generation does not stop at EOS (<|endoftext|>, id 0)",
               "prompt0_logits_file": "prompt0_logits.f32",
               "prompt0_logits_shape": [len(gens[0]["prompt_ids"]), a.vocab],
               "cases": gens}, open(os.path.join(dm_dir, "greedy.json"), "w"), indent=1)

    # numpy llama.cpp-semantics forward over the GGUF for prompt 0 (checks the export path)
    sys.path.insert(0, os.path.join(HERE, "..", "golden"))
    import gguf_ref as R
    g = R.GGUF(gguf_path)
    ref = R.forward(g, gens[0]["prompt_ids"])
    report["gguf_numpy_ref_prompt0_max_abs_diff"] = float(np.abs(ref - lg0).max())
    print("gguf numpy ref vs transformers, prompt 0: %.2e" % report["gguf_numpy_ref_prompt0_max_abs_diff"])

    # tokenizer vectors, checked against an independent GPT-2 BPE implementation
    ref_bpe = RefBPE(tok_path)
    texts = ["Hello world", " Hello world", "In the beginning God created the heaven and the earth.",
             "I can't believe it's 2024!", "   leading spaces", "tabs\tand\nnewlines\n\n",
             "Ünïcödé naïve café — “quotes”", "emoji 🙂 ok", "numbers 1234567890 3.14159",
             "<|endoftext|>after special", "don't DON'T we'll they're I'M", "a\u00a0b  c   d",
             "", " ", "xxxxxxxxxx", "The LORD is my shepherd; I shall not want.",
             "    if (x) {\n        return 0;\n    }\n", "hacker's jargon: foo, bar & baz!?"]
    texts += [d["text"][:400] for d in valid_docs[:40]]
    vecs, mism = [], 0
    for t in texts:
        hid = tok.encode(t).ids
        rid = ref_bpe.encode(t)
        mism += hid != rid
        vecs.append({"text": t, "ids": hid})
    big = 0
    for d in valid_docs:
        big += tok.encode(d["text"]).ids != ref_bpe.encode(d["text"])
    report["tokenizer_ref_mismatches"] = {"vectors": mism, "valid_docs": big, "valid_docs_n": len(valid_docs)}
    json.dump({"note": "ids without BOS; special tokens in text are parsed (<|endoftext|> -> 0); "
                       "pre-tokenizer: GPT-2 regex (llama.cpp 'gpt-2')",
               "vocab": "models/%s.gguf" % a.name, "cases": vecs},
              open(os.path.join(dm_dir, "tokenizer.json"), "w"), indent=1, ensure_ascii=False)
    print("tokenizer vs reference BPE mismatches:", report["tokenizer_ref_mismatches"], flush=True)

    # a few sampled continuations for docs/MODEL.md (temperature 0.8, top-k 40)
    samples = []
    gsmp = torch.Generator().manual_seed(a.seed)
    with torch.no_grad():
        for ptxt in prompts[:4]:
            pid = [eot] + tok.encode(ptxt).ids
            out = hf(input_ids=torch.tensor([pid]), use_cache=True)
            pkv, ids = out.past_key_values, []
            for _ in range(80):
                lg = out.logits[0, -1].float() / 0.8
                v, ix = torch.topk(lg, 40)
                nxt = ix[torch.multinomial(torch.softmax(v, -1), 1, generator=gsmp)]
                if int(nxt) == eot:
                    break
                ids.append(int(nxt))
                out = hf(input_ids=nxt.view(1, 1), past_key_values=pkv, use_cache=True)
                pkv = out.past_key_values
            samples.append({"prompt": ptxt, "text": tok.decode(ids)})
    report["samples_t0.8_k40"] = samples
    report["total_s"] = time.time() - t_start
    json.dump(report, open(os.path.join(dm_dir, "train-report.json"), "w"), indent=1, ensure_ascii=False)
    print("done in %.0fs" % report["total_s"])


if __name__ == "__main__":
    main()
