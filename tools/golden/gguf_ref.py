#!/usr/bin/env python3
"""A small GGUF reader and a float64 numpy reference forward pass with llama.cpp semantics
(arch llama: interleaved "normal" RoPE; qwen2/qwen3: NEOX RoPE; rope_freqs divisors; linear
rope scaling; GQA; qwen2 QKV bias; qwen3 per-head q/k RMSNorm; tied output).

It checks our GGUF converter against Hugging Face transformers: the logits this computes from
the converted .gguf must match the ones transformers computes from the safetensors folder.

    python3 tools/golden/gguf_ref.py MODEL.gguf 1 2 3 4     # prints the last row's top logits
"""
import struct
import sys

import numpy as np

T_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
         11: "<q", 12: "<d"}
T_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class GGUF:
    def __init__(self, path):
        self.path = path
        self.buf = open(path, "rb").read()
        self.pos = 0
        magic, self.version, n_t, n_kv = struct.unpack_from("<IIQQ", self.buf, 0)
        if magic != 0x46554747:
            raise ValueError("not a GGUF file")
        self.pos = 24
        self.meta = {}
        self.types = {}
        for _ in range(n_kv):
            k = self._str()
            t = self._u32()
            self.types[k] = t
            self.meta[k] = self._val(t)
        self.tinfo = {}
        order = []
        for _ in range(n_t):
            name = self._str()
            nd = self._u32()
            dims = [struct.unpack_from("<Q", self.buf, self.pos + 8 * i)[0] for i in range(nd)]
            self.pos += 8 * nd
            gt = self._u32()
            off = struct.unpack_from("<Q", self.buf, self.pos)[0]
            self.pos += 8
            self.tinfo[name] = (gt, dims, off)
            order.append(name)
        self.tensor_names = order
        align = self.meta.get("general.alignment", 32)
        self.data = (self.pos + align - 1) // align * align

    def _u32(self):
        v = struct.unpack_from("<I", self.buf, self.pos)[0]
        self.pos += 4
        return v

    def _str(self):
        n = struct.unpack_from("<Q", self.buf, self.pos)[0]
        self.pos += 8
        s = self.buf[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def _val(self, t):
        if t == 8:
            return self._str()
        if t == 9:
            et = self._u32()
            n = struct.unpack_from("<Q", self.buf, self.pos)[0]
            self.pos += 8
            if et == 8:
                return [self._str() for _ in range(n)]
            v = list(struct.unpack_from("<%d%s" % (n, T_FMT[et][1]), self.buf, self.pos))
            self.pos += n * T_SIZE[et]
            return v
        v = struct.unpack_from(T_FMT[t], self.buf, self.pos)[0]
        self.pos += T_SIZE[t]
        return v

    def tensor(self, name, dtype=np.float64):
        """numpy array in row-major order (shape = reversed ggml dims), dequantized."""
        gt, dims, off = self.tinfo[name]
        n = int(np.prod(dims))
        start = self.data + off
        if gt == 0:
            a = np.frombuffer(self.buf, np.float32, n, start)
        elif gt == 1:
            a = np.frombuffer(self.buf, np.float16, n, start)
        elif gt == 30:
            a = (np.frombuffer(self.buf, np.uint16, n, start).astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError("ggml type %d not handled by the reference" % gt)
        return a.astype(dtype).reshape(list(reversed(dims)))

    def has(self, name):
        return name in self.tinfo


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, n_rot, base, freq_factors, freq_scale, neox):
    """x [T, H, D]; rotate the first n_rot dims."""
    half = n_rot // 2
    inv = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot) / freq_factors
    ang = pos[:, None].astype(np.float64) * freq_scale * inv[None, :]   # [T, half]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    y = x.copy()
    if neox:
        a, b = x[..., :half], x[..., half:n_rot]
        y[..., :half] = a * c - b * s
        y[..., half:n_rot] = a * s + b * c
    else:
        a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        y[..., 0:n_rot:2] = a * c - b * s
        y[..., 1:n_rot:2] = a * s + b * c
    return y


def forward(g, ids, cache=None):
    """Full-sequence forward from position 0; returns float64 logits [T, vocab]."""
    m = g.meta
    arch = m["general.architecture"]
    p = arch + "."
    n_embd = m[p + "embedding_length"]
    n_layer = m[p + "block_count"]
    n_head = m[p + "attention.head_count"]
    n_kv = m.get(p + "attention.head_count_kv", n_head)
    hd = m.get(p + "attention.key_length", n_embd // n_head)
    eps = m[p + "attention.layer_norm_rms_epsilon"]
    base = m.get(p + "rope.freq_base", 10000.0)
    n_rot = m.get(p + "rope.dimension_count", hd)
    freq_scale = 1.0
    if m.get(p + "rope.scaling.type") == "linear":
        freq_scale = 1.0 / m[p + "rope.scaling.factor"]
    elif m.get(p + "rope.scaling.type") not in (None, "none"):
        raise ValueError("reference handles no %s scaling" % m[p + "rope.scaling.type"])
    ff = g.tensor("rope_freqs.weight") if g.has("rope_freqs.weight") else np.ones(n_rot // 2)
    neox = arch in ("qwen2", "qwen3")
    W = cache if cache is not None else {}

    def T(name):
        if name not in W:
            W[name] = g.tensor(name)
        return W[name]

    ids = np.asarray(ids)
    n = len(ids)
    pos = np.arange(n)
    x = T("token_embd.weight")[ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for l in range(n_layer):
        b = "blk.%d." % l
        h = rmsnorm(x, T(b + "attn_norm.weight"), eps)
        q = h @ T(b + "attn_q.weight").T
        k = h @ T(b + "attn_k.weight").T
        v = h @ T(b + "attn_v.weight").T
        if g.has(b + "attn_q.bias"):
            q = q + T(b + "attn_q.bias")
            k = k + T(b + "attn_k.bias")
            v = v + T(b + "attn_v.bias")
        q = q.reshape(n, n_head, hd)
        k = k.reshape(n, n_kv, hd)
        v = v.reshape(n, n_kv, hd)
        if g.has(b + "attn_q_norm.weight"):
            q = rmsnorm(q, T(b + "attn_q_norm.weight"), eps)
            k = rmsnorm(k, T(b + "attn_k_norm.weight"), eps)
        q = rope(q, pos, n_rot, base, ff, freq_scale, neox)
        k = rope(k, pos, n_rot, base, ff, freq_scale, neox)
        out = np.zeros((n, n_head, hd))
        grp = n_head // n_kv
        for hh in range(n_head):
            kv = hh // grp
            s = q[:, hh, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            out[:, hh, :] = s @ v[:, kv, :]
        x = x + out.reshape(n, n_head * hd) @ T(b + "attn_output.weight").T
        h = rmsnorm(x, T(b + "ffn_norm.weight"), eps)
        gt = h @ T(b + "ffn_gate.weight").T
        up = h @ T(b + "ffn_up.weight").T
        x = x + (gt / (1 + np.exp(-gt)) * up) @ T(b + "ffn_down.weight").T
    x = rmsnorm(x, T("output_norm.weight"), eps)
    out_w = T("output.weight") if g.has("output.weight") else T("token_embd.weight")
    return x @ out_w.T


if __name__ == "__main__":
    g = GGUF(sys.argv[1])
    if sys.argv[2:3] == ["--meta"]:
        for k, v in g.meta.items():
            if isinstance(v, list):
                v = "[%d] %s ..." % (len(v), v[:6])
            elif isinstance(v, str) and len(v) > 200:
                v = v[:200] + "..."
            print("%-45s %s" % (k, v))
        for n in g.tensor_names[:12] + ["..."] + g.tensor_names[-3:]:
            if n in g.tinfo:
                print("%-30s type %d dims %s" % (n, g.tinfo[n][0], g.tinfo[n][1]))
        sys.exit(0)
    ids = [int(a) for a in sys.argv[2:]] or [0]
    lg = forward(g, ids)
    top = np.argsort(-lg[-1])[:5]
    print({int(t): float(lg[-1, t]) for t in top})
