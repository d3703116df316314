// Seeded random text for tokenizer differential tests: mixed scripts, emoji (ZWJ sequences,
// flags, skin tones, variation selectors), whitespace runs of many kinds, digit runs, code,
// contractions (including case-folding traps like 'ſ and 'K), combining marks (NFD text) and
// special-token look-alikes. Only valid Unicode scalar values: JS strings cannot carry
// ill-formed UTF-8, which the C tests cover instead.

export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ["the", "The", "THE", "hello", "World", "tokenizer", "naïve", "Straße", "x", "a", "I", "don", "ok",
  "ünïcödé", "übermäßig", "façade", "coöperate", "lorem", "ipsum", "supercalifragilistic", "HTTPServer", "camelCase",
  "snake_case", "kebab-case", "v1.2.3", "e.g.", "U.S.A."];
const CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'ve", "'m", "'M", "'ll", "'LL", "'d", "'D", "\u2019s",
  "'\u017f", "'\u212a", "''", "'"];
const SPACES = [" ", " ", " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\u00a0", "\u3000",
  "\u2028", "\u000b", "\u000c", "\u0085", "\u2003", "\u200b", " \t \n"];
const PUNCT = [".", ",", "!", "?", "...", ":", ";", "-", "—", "–", "(", ")", "[", "]", "{", "}", "\"", "“", "”", "«", "»",
  "¿", "¡", "%", "$", "€", "£", "@", "#", "&", "*", "/", "\\", "|", "~", "^", "`", "_", "+", "=", "<", ">", "。", "、", "！"];
const CODE = ["#include <stdio.h>", "int main() {", "return 0;", "}", "=>", "!==", "&&", "||", "->", "::", "//", "/*", "*/",
  "<div class=\"x\">", "</div>", "print(f\"{x:>8}\")", "SELECT * FROM t;", "\tif (a < b) {\n\t\tb++;\n\t}", "    def f(self):",
  "0x1F", "1e-9", "a[i] += b[j];", "`code`", "```", "$HOME/.config", "C:\\Users\\x"];
const SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
  "<|start_header_id|>", "<|reserved_special_token_5|>", "<s>", "</s>", "[INST]", "<think>", "</think>",
  "<tool_call>", "<|fim_prefix|>", "<|im_start", "im_end|>", "<|", "|>", "<||>"];
const SCRIPTS = ["你好世界", "中文分词测试", "こんにちは", "カタカナ", "ｶﾀｶﾅ", "안녕하세요", "한국어", "مرحبا بالعالم", "שלום",
  "नमस्ते दुनिया", "สวัสดีครับ", "Привет, мир", "Γειά σου", "Tiếng Việt", "ግዕዝ", "ᚠᚢᚦ", "ꙮ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
  "𝟙𝟚𝟛", "①②③", "½ ⅓", "x²+y³", "∑√∞≤≥≠", "ℌ𝔢𝔩𝔩𝔬", "ﬁﬂ", "Ǆǅǆ", "İı", "ǰ"];
const EMOJI = ["😀", "😂", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🇺🇸", "🇯🇵", "❤️", "✅", "🦙", "🤖", "☃", "⭐", "🏳️‍🌈", "1️⃣",
  "🧑🏿‍🚀", "💩"];
const COMBINING = ["e\u0301", "a\u0308", "o\u0302\u0323", "n\u0303", "\u1100\u1161\u11a8", "A\u030a", "\u0301",
  "c\u0327", "u\u0308\u0301", "i\u0307"];

// Code points from ranges with letters, marks, numbers and symbols (never surrogates).
const RANGES = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x6ff], [0x900, 0x97f],
  [0xe00, 0xe7f], [0x1100, 0x11ff], [0x2000, 0x206f], [0x2100, 0x214f], [0x3040, 0x30ff], [0x4e00, 0x4fff],
  [0xac00, 0xacff], [0xff00, 0xffef], [0x1f300, 0x1f6ff], [0x1d400, 0x1d4ff], [0x20000, 0x2001f]];

export function randomText(rnd, maxPieces = 24) {
  const pick = (arr) => arr[Math.floor(rnd() * arr.length)];
  const n = 1 + Math.floor(rnd() * maxPieces);
  let s = "";
  for (let i = 0; i < n; i++) {
    const r = rnd();
    if (r < 0.22) s += pick(WORDS);
    else if (r < 0.34) s += pick(SPACES);
    else if (r < 0.42) s += pick(PUNCT);
    else if (r < 0.48) s += pick(CONTRACTIONS);
    else if (r < 0.54) s += String(Math.floor(rnd() * 10 ** (1 + Math.floor(rnd() * 12))));
    else if (r < 0.61) s += pick(CODE);
    else if (r < 0.66) s += pick(SPECIAL);
    else if (r < 0.75) s += pick(SCRIPTS);
    else if (r < 0.81) s += pick(EMOJI);
    else if (r < 0.86) s += pick(COMBINING);
    else {
      const [lo, hi] = pick(RANGES);
      const k = 1 + Math.floor(rnd() * 6);
      for (let j = 0; j < k; j++) s += String.fromCodePoint(lo + Math.floor(rnd() * (hi - lo + 1)));
    }
  }
  return s;
}

// A long document (> 8 KiB, so the tokenizer's word cache is in play) from repeated pieces.
export function longText(rnd, bytes = 20000) {
  let s = "";
  while (Buffer.byteLength(s) < bytes) s += randomText(rnd, 40) + (rnd() < 0.5 ? " " : "\n");
  return s;
}
