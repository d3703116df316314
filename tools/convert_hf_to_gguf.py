#!/usr/bin/env python3
"""Convert a Hugging Face (or MLX affine-quantized) safetensors model folder of the Llama family
(llama, mistral, qwen2, qwen3) to a GGUF v3 file that llama.cpp-style loaders read.

    python3 tools/convert_hf_to_gguf.py MODEL_DIR OUT.gguf [--outtype f32|f16|bf16|auto]
            [--name NAME] [--no-tokenizer] [--tokenizer-pre NAME]

Needs Python 3.8+ and numpy only (safetensors files are parsed here, not with the safetensors
package). Written for pagellm; the key and tensor names follow llama.cpp's gguf-py constants.

What it writes
  * general.architecture = llama (llama and mistral), qwen2, qwen3; general.name,
    general.file_type (0 all F32, 1 mostly F16, 32 mostly BF16).
  * {arch}.vocab_size, context_length, embedding_length, block_count, feed_forward_length,
    attention.head_count, attention.head_count_kv, attention.key_length,
    attention.value_length, attention.layer_norm_rms_epsilon, rope.freq_base,
    rope.dimension_count; rope.scaling.{type,factor,original_context_length} for "linear" and
    "yarn" scaling. Llama-3 ("llama3") scaling is stored the way llama.cpp stores it: as a
    tensor rope_freqs.weight of head_dim/2 F32 frequency divisors (the angle of pair i is
    pos * freq_base^(-2i/n_rot) / rope_freqs[i]); no scaling keys are written for it.
  * Tensors token_embd, output_norm, output (absent when the embeddings are tied),
    blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, attn_q_norm, attn_k_norm, ffn_norm,
    ffn_gate, ffn_up, ffn_down}.weight and blk.N.attn_{q,k,v}.bias (qwen2).
    Dims are in ggml order (ne0 = the contiguous, input dimension first).
  * For arch llama the rows of attn_q / attn_k (and their biases) are permuted per head from
    Hugging Face's "half split" RoPE layout (pairs (i, i+d/2)) to the interleaved layout
    (pairs (2i, 2i+1)) that llama.cpp's normal RoPE uses. qwen2/qwen3 keep Hugging Face's layout
    and use NEOX RoPE, as in llama.cpp.
  * --outtype: f32 = every tensor F32; f16/bf16 = 2-D tensors F16/BF16, 1-D tensors F32;
    auto (default) = 2-D tensors keep the source type (F32, F16 or BF16; MLX-quantized
    sources are dequantized to F32), 1-D tensors F32.
  * Tokenizer (unless --no-tokenizer, and only when tokenizer.json holds a byte-level BPE
    model): tokenizer.ggml.model "gpt2", .pre (detected: "gpt-2", "llama-bpe", "qwen2"; or
    --tokenizer-pre), .tokens, .token_type (1 normal, 3 control = special added tokens,
    4 user-defined = other added tokens, 5 unused = padding), .merges, bos/eos/unknown/
    padding ids and add_bos_token/add_eos_token from tokenizer_config.json, and
    tokenizer.chat_template when the folder has one.

MLX sources: a config.json "quantization": {"group_size", "bits"} (or "quantization_config")
marks affine-quantized Linear/Embedding weights: W.weight is uint32 [out, in*bits/32] with
element j of each word in bits [j*bits, (j+1)*bits), W.scales and W.biases are [out, in/gs];
w = scales * q + biases. They are dequantized here.
"""
import argparse
import glob
import json
import os
import struct
import sys

import numpy as np

# ---------------------------------------------------------------- GGUF constants
GGUF_MAGIC = 0x46554747  # "GGUF" little-endian
GGUF_VERSION = 3
GGUF_ALIGN = 32
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, \
    T_UINT64, T_INT64, T_FLOAT64 = range(13)
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
GGML_TYPE_NAME = {GGML_F32: "F32", GGML_F16: "F16", GGML_BF16: "BF16"}
FTYPE_ALL_F32, FTYPE_MOSTLY_F16, FTYPE_MOSTLY_BF16 = 0, 1, 32
TOK_NORMAL, TOK_UNKNOWN, TOK_CONTROL, TOK_USER_DEFINED, TOK_UNUSED, TOK_BYTE = 1, 2, 3, 4, 5, 6


# ---------------------------------------------------------------- bf16 helpers
def bf16_bits_to_f32(u16):
    return (np.asarray(u16, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (uint16). NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = ((u >> 16) & 1) + np.uint32(0x7FFF)
    out = ((u + r) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    if nan.any():
        out[nan] = 0x7FC0
    return out


# ---------------------------------------------------------------- safetensors I/O
ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
             "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
             "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
             "BOOL": np.bool_}


def read_safetensors(path):
    """Returns {name: (dtype_str, ndarray)}; BF16 comes back as raw uint16 bits."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n).decode("utf-8"))
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + n
    out = {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dt = ST_DTYPES[info["dtype"]]
        arr = np.frombuffer(buf[base + b:base + e].tobytes(), dtype=dt).reshape(info["shape"])
        out[name] = (info["dtype"], arr)
    return out


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (dtype_str, ndarray)} in the order given (BF16 as uint16 bits)."""
    hdr, off, blobs = {}, 0, []
    for name, (dt, arr) in tensors.items():
        b = np.ascontiguousarray(arr).astype(ST_DTYPES[dt], copy=False).tobytes()
        hdr[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        hdr["__metadata__"] = metadata
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_model_tensors(model_dir):
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
        files = [os.path.join(model_dir, f) for f in files]
    else:
        files = sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))
    if not files:
        raise SystemExit("no .safetensors files in %s" % model_dir)
    out = {}
    for f in files:
        out.update(read_safetensors(f))
    return out


# ---------------------------------------------------------------- GGUF writer
class GGUFWriter:
    def __init__(self):
        self.kv = []       # (key, type, value, elem_type)
        self.tensors = []  # (name, ggml_type, ndarray in final storage dtype)

    def add(self, key, vtype, value, elem_type=None):
        self.kv.append((key, vtype, value, elem_type))

    def add_u32(self, k, v): self.add(k, T_UINT32, int(v))
    def add_i32(self, k, v): self.add(k, T_INT32, int(v))
    def add_f32(self, k, v): self.add(k, T_FLOAT32, float(v))
    def add_bool(self, k, v): self.add(k, T_BOOL, bool(v))
    def add_str(self, k, v): self.add(k, T_STRING, str(v))
    def add_arr(self, k, elem_type, values): self.add(k, T_ARRAY, list(values), elem_type)

    def add_tensor(self, name, arr, ggml_type):
        want = {GGML_F32: np.float32, GGML_F16: np.float16, GGML_BF16: np.uint16}[ggml_type]
        if arr.dtype != want:
            raise ValueError("%s: storage dtype %s does not match ggml type %d" % (name, arr.dtype, ggml_type))
        self.tensors.append((name, ggml_type, np.ascontiguousarray(arr)))

    @staticmethod
    def _str(s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def _scalar(self, t, v):
        if t == T_STRING:
            return self._str(v)
        fmt = {T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h", T_UINT32: "<I",
               T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?", T_UINT64: "<Q", T_INT64: "<q",
               T_FLOAT64: "<d"}[t]
        return struct.pack(fmt, v)

    def write(self, path, alignment=GGUF_ALIGN):
        out = bytearray()
        out += struct.pack("<IIQQ", GGUF_MAGIC, GGUF_VERSION, len(self.tensors), len(self.kv))
        for key, t, v, et in self.kv:
            out += self._str(key) + struct.pack("<I", t)
            if t == T_ARRAY:
                out += struct.pack("<IQ", et, len(v))
                if et == T_STRING:
                    for s in v:
                        out += self._str(s)
                else:
                    dt = {T_INT32: "<i4", T_UINT32: "<u4", T_FLOAT32: "<f4", T_UINT8: "<u1",
                          T_INT8: "<i1", T_INT64: "<i8", T_UINT64: "<u8", T_FLOAT64: "<f8",
                          T_BOOL: "<u1", T_UINT16: "<u2", T_INT16: "<i2"}[et]
                    out += np.asarray(v, dtype=dt).tobytes()
            else:
                out += self._scalar(t, v)
        offs, off = [], 0
        for name, gt, arr in self.tensors:
            off = (off + alignment - 1) // alignment * alignment
            offs.append(off)
            off += arr.nbytes
        for (name, gt, arr), o in zip(self.tensors, offs):
            dims = list(reversed(arr.shape))  # ggml order: ne0 (contiguous) first
            out += self._str(name) + struct.pack("<I", len(dims))
            for d in dims:
                out += struct.pack("<Q", d)
            out += struct.pack("<IQ", gt, o)
        out += b"\0" * ((alignment - len(out) % alignment) % alignment)
        with open(path, "wb") as f:
            f.write(out)
            pos = 0
            for (name, gt, arr), o in zip(self.tensors, offs):
                f.write(b"\0" * (o - pos))
                f.write(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
                pos = o + arr.nbytes


# ---------------------------------------------------------------- HF config helpers
ARCH_OF = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}


def rope_params(cfg):
    """(theta, scaling dict or None) from either the legacy keys (rope_theta, rope_scaling)
    or transformers 5's rope_parameters."""
    rp = cfg.get("rope_parameters") or {}
    theta = cfg.get("rope_theta", rp.get("rope_theta", 10000.0))
    sc = cfg.get("rope_scaling")
    if sc is None and rp:
        t = rp.get("rope_type", rp.get("type", "default"))
        sc = None if t == "default" else dict(rp)
    if sc is not None:
        sc = dict(sc)
        sc["rope_type"] = sc.get("rope_type", sc.get("type"))
        if sc["rope_type"] in (None, "default"):
            sc = None
    return float(theta), sc


def llama3_rope_factors(theta, head_dim, sc, cfg):
    factor = float(sc.get("factor", 8.0))
    lo = float(sc.get("low_freq_factor", 1.0))
    hi = float(sc.get("high_freq_factor", 4.0))
    old = float(sc.get("original_max_position_embeddings",
                       cfg.get("original_max_position_embeddings", 8192)))
    lo_wl, hi_wl = old / lo, old / hi
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    fac = []
    for f in inv:
        wl = 2 * np.pi / float(f)
        if wl < hi_wl:
            fac.append(1.0)
        elif wl > lo_wl:
            fac.append(factor)
        else:
            s = (old / wl - lo) / (hi - lo)
            fac.append(1.0 / ((1 - s) / factor + s))
    return np.asarray(fac, dtype=np.float32)


def permute_rows(w, n_head):
    """HF half-split RoPE rows -> interleaved rows, per head (weights [rows, cols] or bias)."""
    shape = w.shape
    return (w.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
            .swapaxes(1, 2).reshape(shape))


def to_f32(dt, arr):
    if dt == "BF16":
        return bf16_bits_to_f32(arr)
    return np.asarray(arr, dtype=np.float32)


def mlx_quant_params(cfg, prefix):
    q = cfg.get("quantization") or cfg.get("quantization_config")
    if not q:
        return None
    per = q.get(prefix)
    if isinstance(per, dict):
        return int(per["group_size"]), int(per["bits"])
    if per is False:
        return None
    return int(q["group_size"]), int(q["bits"])


def mlx_dequantize(wq, scales, biases, group_size, bits):
    """wq uint32 [out, in*bits/32]; scales/biases float [out, in/group_size] -> float32 [out, in]."""
    el = 32 // bits
    shifts = (np.arange(el, dtype=np.uint32) * bits).astype(np.uint32)
    q = (wq[..., None] >> shifts) & np.uint32((1 << bits) - 1)
    q = q.reshape(wq.shape[0], -1).astype(np.float32)
    s = np.repeat(np.asarray(scales, np.float32), group_size, axis=1)
    b = np.repeat(np.asarray(biases, np.float32), group_size, axis=1)
    return s * q + b


HF_TO_GGUF = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    if hf.startswith("model.layers."):
        rest = hf[len("model.layers."):]
        n, _, suffix = rest.partition(".")
        if suffix in HF_TO_GGUF:
            return "blk.%d.%s" % (int(n), HF_TO_GGUF[suffix])
    return None


# ---------------------------------------------------------------- tokenizer
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def detect_pre(tj):
    pt = tj.get("pre_tokenizer") or {}

    def regexes(p):
        if p.get("type") == "Sequence":
            for x in p.get("pretokenizers", []):
                yield from regexes(x)
        elif p.get("type") == "Split":
            pat = p.get("pattern", {})
            yield pat.get("Regex") or pat.get("String") or ""
        elif p.get("type") == "ByteLevel" and p.get("use_regex", True):
            yield GPT2_PATTERN

    rs = list(regexes(pt))
    if len(rs) == 1 and rs[0] == GPT2_PATTERN:
        return "gpt-2"
    if len(rs) == 1 and "(?i:'s|'t|'re|'ve|'m|'ll|'d)" in rs[0]:
        if "\\p{N}{1,3}" in rs[0]:
            return "llama-bpe"
        if "\\p{N}|" in rs[0]:
            return "qwen2"
    return None


def add_tokenizer(w, model_dir, cfg, pre_override=None):
    tjp = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(tjp):
        return False
    tj = json.load(open(tjp, encoding="utf-8"))
    model = tj["model"]
    if model.get("type") != "BPE":
        raise SystemExit("tokenizer.json: only BPE models are supported (got %r)" % model.get("type"))
    vocab = dict(model["vocab"])
    special, added = set(), set()
    for at in tj.get("added_tokens", []):
        vocab[at["content"]] = at["id"]
        (special if at.get("special") else added).add(at["id"])
    n = max(int(cfg.get("vocab_size", 0)), max(vocab.values()) + 1)
    tokens = [None] * n
    for s, i in vocab.items():
        tokens[i] = s
    types = []
    for i in range(n):
        if tokens[i] is None:
            tokens[i] = "[PAD%d]" % i
            types.append(TOK_UNUSED)
        elif i in special:
            types.append(TOK_CONTROL)
        elif i in added:
            types.append(TOK_USER_DEFINED)
        else:
            types.append(TOK_NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    pre = pre_override or detect_pre(tj)
    if pre is None:
        raise SystemExit("cannot tell the pre-tokenizer; pass --tokenizer-pre NAME")
    w.add_str("tokenizer.ggml.model", "gpt2")
    w.add_str("tokenizer.ggml.pre", pre)
    w.add_arr("tokenizer.ggml.tokens", T_STRING, tokens)
    w.add_arr("tokenizer.ggml.token_type", T_INT32, types)
    w.add_arr("tokenizer.ggml.merges", T_STRING, merges)
    tc = {}
    tcp = os.path.join(model_dir, "tokenizer_config.json")
    if os.path.exists(tcp):
        tc = json.load(open(tcp, encoding="utf-8"))

    def tok_id(v):
        if isinstance(v, dict):
            v = v.get("content")
        return vocab.get(v) if isinstance(v, str) else None

    for key, cfg_key in (("bos", "bos_token_id"), ("eos", "eos_token_id"),
                         ("unknown", None), ("padding", "pad_token_id")):
        tk = {"unknown": "unk_token", "padding": "pad_token"}.get(key, key + "_token")
        i = tok_id(tc.get(tk))
        if i is None and cfg_key and isinstance(cfg.get(cfg_key), int):
            i = cfg[cfg_key]
        if i is not None:
            w.add_u32("tokenizer.ggml.%s_token_id" % key, i)
    for k in ("add_bos_token", "add_eos_token"):
        if isinstance(tc.get(k), bool):
            w.add_bool("tokenizer.ggml." + k, tc[k])
    tmpl = tc.get("chat_template")
    jp = os.path.join(model_dir, "chat_template.jinja")
    if tmpl is None and os.path.exists(jp):
        tmpl = open(jp, encoding="utf-8").read()
    if isinstance(tmpl, str):
        w.add_str("tokenizer.chat_template", tmpl)
    return True


# ---------------------------------------------------------------- conversion
def convert(model_dir, out_path, outtype="auto", name=None, tokenizer=True, tokenizer_pre=None,
            verbose=True):
    cfg = json.load(open(os.path.join(model_dir, "config.json"), encoding="utf-8"))
    mt = cfg.get("model_type")
    if mt not in ARCH_OF:
        raise SystemExit("unsupported model_type %r (supported: %s)" % (mt, ", ".join(ARCH_OF)))
    arch = ARCH_OF[mt]
    n_embd = int(cfg["hidden_size"])
    n_head = int(cfg["num_attention_heads"])
    n_kv = int(cfg.get("num_key_value_heads") or n_head)
    head_dim = int(cfg.get("head_dim") or n_embd // n_head)
    theta, sc = rope_params(cfg)
    raw = load_model_tensors(model_dir)

    # Dequantize MLX affine weights; everything else to (dtype_str, array) unchanged.
    tensors = {}
    for k, (dt, arr) in raw.items():
        if k.endswith((".scales", ".biases")) and k.rsplit(".", 1)[0] + ".weight" in raw:
            continue
        base = k[:-len(".weight")] if k.endswith(".weight") else None
        if base and dt == "U32" and base + ".scales" in raw:
            gs_bits = mlx_quant_params(cfg, base)
            if gs_bits is None:
                raise SystemExit("%s is uint32 but config.json has no quantization" % k)
            s, b = raw[base + ".scales"], raw[base + ".biases"]
            arr = mlx_dequantize(arr, to_f32(*s), to_f32(*b), *gs_bits)
            tensors[k] = ("QF32", arr)
        else:
            tensors[k] = (dt, arr)

    w = GGUFWriter()
    w.add_str("general.architecture", arch)
    w.add_str("general.name", name or os.path.basename(os.path.normpath(model_dir)))
    ftype = {"f32": FTYPE_ALL_F32, "f16": FTYPE_MOSTLY_F16, "bf16": FTYPE_MOSTLY_BF16}.get(outtype)
    if ftype is None:  # auto: from the embedding's source type
        edt = tensors["model.embed_tokens.weight"][0]
        ftype = {"F16": FTYPE_MOSTLY_F16, "BF16": FTYPE_MOSTLY_BF16}.get(edt, FTYPE_ALL_F32)
    w.add_u32("general.file_type", ftype)
    p = arch + "."
    w.add_u32(p + "vocab_size", int(cfg["vocab_size"]))
    w.add_u32(p + "context_length", int(cfg.get("max_position_embeddings", 2048)))
    w.add_u32(p + "embedding_length", n_embd)
    w.add_u32(p + "block_count", int(cfg["num_hidden_layers"]))
    w.add_u32(p + "feed_forward_length", int(cfg["intermediate_size"]))
    w.add_u32(p + "attention.head_count", n_head)
    w.add_u32(p + "attention.head_count_kv", n_kv)
    w.add_u32(p + "attention.key_length", head_dim)
    w.add_u32(p + "attention.value_length", head_dim)
    w.add_f32(p + "attention.layer_norm_rms_epsilon", float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_f32(p + "rope.freq_base", theta)
    w.add_u32(p + "rope.dimension_count", head_dim)
    extra = []
    if sc is not None:
        rt = sc["rope_type"]
        if rt == "linear":
            w.add_str(p + "rope.scaling.type", "linear")
            w.add_f32(p + "rope.scaling.factor", float(sc["factor"]))
        elif rt == "yarn":
            w.add_str(p + "rope.scaling.type", "yarn")
            w.add_f32(p + "rope.scaling.factor", float(sc["factor"]))
            w.add_u32(p + "rope.scaling.original_context_length",
                      int(sc["original_max_position_embeddings"]))
        elif rt == "llama3":
            extra.append(("rope_freqs.weight", llama3_rope_factors(theta, head_dim, sc, cfg)))
        else:
            raise SystemExit("unsupported rope scaling type %r" % rt)
    if tokenizer:
        add_tokenizer(w, model_dir, cfg, tokenizer_pre)

    def order(k):
        if k == "model.embed_tokens.weight":
            return (0, 0, k)
        if k.startswith("model.layers."):
            return (1, int(k.split(".")[2]), k)
        return (2, 0, k)

    for k in sorted(tensors, key=order):
        dt, arr = tensors[k]
        gname = gguf_name(k)
        if gname is None:
            if k.endswith("rotary_emb.inv_freq"):
                continue
            raise SystemExit("unexpected tensor %s" % k)
        if arch == "llama" and (".attn_q." in gname or ".attn_k." in gname):
            arr = permute_rows(np.asarray(arr), n_head if ".attn_q." in gname else n_kv)
        if arr.ndim >= 2 and outtype == "f16" or arr.ndim >= 2 and outtype == "auto" and dt == "F16":
            data, gt = to_f32(dt, arr).astype(np.float16) if dt != "F16" else np.asarray(arr), GGML_F16
        elif arr.ndim >= 2 and outtype == "bf16" or arr.ndim >= 2 and outtype == "auto" and dt == "BF16":
            data, gt = (np.asarray(arr, np.uint16) if dt == "BF16" else f32_to_bf16_bits(to_f32(dt, arr))), GGML_BF16
        else:
            data, gt = to_f32(dt, arr), GGML_F32
        w.add_tensor(gname, data, gt)
    for gname, arr in extra:
        w.add_tensor(gname, arr, GGML_F32)
    w.write(out_path)
    if verbose:
        print("wrote %s: arch %s, %d tensors, %d keys, %.1f KiB" %
              (out_path, arch, len(w.tensors), len(w.kv), os.path.getsize(out_path) / 1024))
    return out_path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--outtype", default="auto", choices=["auto", "f32", "f16", "bf16"])
    ap.add_argument("--name")
    ap.add_argument("--no-tokenizer", action="store_true")
    ap.add_argument("--tokenizer-pre")
    a = ap.parse_args()
    convert(a.model_dir, a.out, a.outtype, a.name, not a.no_tokenizer, a.tokenizer_pre)


if __name__ == "__main__":
    sys.exit(main())
