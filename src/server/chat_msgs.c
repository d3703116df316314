/* Chat messages for the template, parsed in place from the body (see chat_msgs.h). */
#include "server/chat_msgs.h"

#include <string.h>

#include "server/json_guard.h"
#include "server/strbuf.h"
#include "util/alloc.h"
#include "util/error.h"

#define MAX_FIELDS 64 /* more fields in one message: left to jansson (duplicates by hashing) */

static size_t skip_ws(const char *b, size_t n, size_t i) {
  while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
    i++;
  return i;
}

/* b[i] is '"': the index past the closing quote, or n when there is none. *esc: a backslash. */
static size_t skip_string(const char *b, size_t n, size_t i, int *esc) {
  for (i++; i < n; i++) {
    if (b[i] == '\\') {
      *esc = 1;
      i++;
    } else if (b[i] == '"') {
      return i + 1;
    }
  }
  return n;
}

/* The end of the value at b[i] (a scalar ends at ',', '}', ']' or whitespace at its own
 * level), or n when the text ends first. Structure only: jansson judges the rest. */
static size_t skip_value(const char *b, size_t n, size_t i) {
  int depth = 0, esc = 0;
  while (i < n) {
    char c = b[i];
    if (c == '"') {
      i = skip_string(b, n, i, &esc);
      if (depth == 0)
        return i;
      continue;
    }
    if (c == '[' || c == '{') {
      depth++;
    } else if (c == ']' || c == '}') {
      if (depth == 0)
        return i;
      if (--depth == 0)
        return i + 1;
    } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
      return i;
    }
    i++;
  }
  return n;
}

int pl_chat_msgs_find(const char *b, size_t n, size_t *vs, size_t *ve) {
  size_t i = skip_ws(b, n, 0);
  int found = 0;
  if (i >= n || b[i] != '{')
    return PL_EINVAL;
  i = skip_ws(b, n, i + 1);
  if (i < n && b[i] == '}')
    return PL_EINVAL;
  while (i < n) {
    if (b[i] != '"')
      return PL_EINVAL;
    int esc = 0;
    size_t ks = i + 1, ke = skip_string(b, n, i, &esc);
    if (ke >= n || esc)
      return PL_EINVAL; /* an escaped key may spell "messages": jansson decides */
    int is_msgs = ke - 1 - ks == 8 && !memcmp(b + ks, "messages", 8);
    i = skip_ws(b, n, ke);
    if (i >= n || b[i] != ':')
      return PL_EINVAL;
    i = skip_ws(b, n, i + 1);
    size_t s = i;
    i = skip_value(b, n, i);
    if (i >= n || i == s)
      return PL_EINVAL;
    if (is_msgs) {
      if (found++)
        return PL_EINVAL; /* duplicate: jansson's error */
      *vs = s;
      *ve = i;
    }
    i = skip_ws(b, n, i);
    if (i < n && b[i] == '}')
      return found ? 0 : PL_EINVAL;
    if (i >= n || b[i] != ',')
      return PL_EINVAL;
    i = skip_ws(b, n, i + 1);
  }
  return PL_EINVAL;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static long hex4(const char *b, size_t n, size_t i) {
  if (i + 4 > n)
    return -1;
  long v = 0;
  for (int k = 0; k < 4; k++) {
    int h = hexval(b[i + k]);
    if (h < 0)
      return -1;
    v = v * 16 + h;
  }
  return v;
}

static size_t put_utf8(char *o, unsigned long cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* The string at b[*i] == '"', checked as jansson checks it; with write, unescaped in place
 * (from the byte after the opening quote) and NUL-terminated. *len: its unescaped length.
 * *esc: it had an escape. PL_EINVAL when jansson would refuse it. */
static int scan_string(char *b, size_t n, size_t *i, int write, size_t *len, int *esc) {
  size_t r = *i + 1, w = r, start = r;
  char tmp[4];
  while (r < n) {
    unsigned char c = (unsigned char)b[r];
    if (c == '"') {
      if (write)
        b[w] = '\0'; /* w <= r: at most the closing quote */
      *len = w - start;
      *i = r + 1;
      return 0;
    }
    if (c < 0x20)
      return PL_EINVAL; /* a control character */
    if (c == '\\') {
      *esc = 1;
      if (r + 1 >= n)
        return PL_EINVAL;
      char e = b[r + 1], out = 0;
      switch (e) {
      case '"': out = '"'; break;
      case '\\': out = '\\'; break;
      case '/': out = '/'; break;
      case 'b': out = '\b'; break;
      case 'f': out = '\f'; break;
      case 'n': out = '\n'; break;
      case 'r': out = '\r'; break;
      case 't': out = '\t'; break;
      case 'u': break;
      default: return PL_EINVAL;
      }
      if (e != 'u') {
        if (write)
          b[w] = out;
        w++;
        r += 2;
        continue;
      }
      long cp = hex4(b, n, r + 2);
      size_t used = 6;
      if (cp <= 0)
        return PL_EINVAL; /* bad digits, or \u0000 (jansson refuses it without ALLOW_NUL) */
      if (cp >= 0xDC00 && cp <= 0xDFFF)
        return PL_EINVAL; /* a lone low surrogate */
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (r + 7 >= n || b[r + 6] != '\\' || b[r + 7] != 'u')
          return PL_EINVAL;
        long lo = hex4(b, n, r + 8);
        if (lo < 0xDC00 || lo > 0xDFFF)
          return PL_EINVAL;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        used = 12;
      }
      size_t k = put_utf8(tmp, (unsigned long)cp);
      if (write)
        memcpy(b + w, tmp, k); /* k < used: never past r */
      w += k;
      r += used;
      continue;
    }
    int k = c < 0x80 ? 1 : pl_utf8_seq((const unsigned char *)b + r, n - r);
    if (k == 0)
      return PL_EINVAL; /* invalid UTF-8 */
    if (write && w != r)
      memmove(b + w, b + r, (size_t)k);
    w += (size_t)k;
    r += (size_t)k;
  }
  return PL_EINVAL;
}

/* One pass over the array: check (write 0: counts messages and fields, checks JSON values
 * with jansson) or unescape and fill (write 1, after a check passed). */
static int scan_array(char *a, size_t n, int write, pl_chat_msgs *out, size_t *n_msgs,
                      size_t *n_fields) {
  size_t i = skip_ws(a, n, 0);
  *n_msgs = *n_fields = 0;
  if (i >= n || a[i] != '[')
    return PL_EINVAL;
  i = skip_ws(a, n, i + 1);
  if (i < n && a[i] == ']')
    return skip_ws(a, n, i + 1) == n ? 0 : PL_EINVAL;
  for (;;) {
    if (i >= n || a[i] != '{')
      return PL_EINVAL; /* not an object: jansson's path names it */
    if (write)
      pl_chat_msgs_begin(out, *n_msgs);
    (*n_msgs)++;
    const char *keys[MAX_FIELDS];
    size_t klens[MAX_FIELDS], nk = 0;
    i = skip_ws(a, n, i + 1);
    if (i < n && a[i] == '}') {
      i++;
    } else {
      for (;;) {
        if (i >= n || a[i] != '"' || nk == MAX_FIELDS)
          return PL_EINVAL;
        size_t ks = i + 1, klen = 0, vlen = 0;
        int esc = 0;
        PL_TRY(scan_string(a, n, &i, 0, &klen, &esc));
        if (esc)
          return PL_EINVAL; /* escaped keys: jansson's path */
        for (size_t k = 0; k < nk; k++)
          if (klens[k] == klen && !memcmp(keys[k], a + ks, klen))
            return PL_EINVAL; /* a duplicate key: jansson's error */
        keys[nk] = a + ks;
        klens[nk++] = klen;
        i = skip_ws(a, n, i);
        if (i >= n || a[i] != ':')
          return PL_EINVAL;
        i = skip_ws(a, n, i + 1);
        if (i >= n)
          return PL_EINVAL;
        if (a[i] == '"') {
          size_t vs = i + 1;
          PL_TRY(scan_string(a, n, &i, write, &vlen, &esc));
          if (write) {
            a[ks + klen] = '\0'; /* the key's closing quote */
            pl_chat_msgs_add_field(out, a + ks, a + vs, vlen, 0);
          }
        } else {
          size_t vs = i;
          i = skip_value(a, n, i);
          if (i >= n || i == vs)
            return PL_EINVAL;
          if (!write) { /* jansson checks what the in-place parser leaves to it */
            json_t *v = NULL;
            int rc = pl_json_loadb(a + vs, i - vs, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &v,
                                   NULL);
            json_decref(v);
            PL_TRY(rc);
          } else {
            a[ks + klen] = '\0';
            pl_chat_msgs_add_field(out, a + ks, a + vs, i - vs, 1);
          }
        }
        (*n_fields)++;
        i = skip_ws(a, n, i);
        if (i < n && a[i] == ',') {
          i = skip_ws(a, n, i + 1);
          continue;
        }
        if (i < n && a[i] == '}') {
          i++;
          break;
        }
        return PL_EINVAL;
      }
    }
    i = skip_ws(a, n, i);
    if (i < n && a[i] == ',') {
      i = skip_ws(a, n, i + 1);
      continue;
    }
    if (i < n && a[i] == ']')
      return skip_ws(a, n, i + 1) == n ? 0 : PL_EINVAL;
    return PL_EINVAL;
  }
}

int pl_chat_msgs_parse_inplace(char *a, size_t n, pl_chat_msgs *out) {
  memset(out, 0, sizeof *out);
  size_t n_msgs, n_fields;
  PL_TRY(scan_array(a, n, 0, out, &n_msgs, &n_fields));
  PL_TRY(pl_chat_msgs_init(out, n_msgs, n_fields));
  int rc = scan_array(a, n, 1, out, &n_msgs, &n_fields);
  if (rc < 0) { /* cannot happen after the check; never leave a half-written body behind */
    pl_chat_msgs_free(out);
    return pl_fail(PL_EINTERNAL, "in-place message parse disagrees with its check");
  }
  return 0;
}

int pl_chat_msgs_init(pl_chat_msgs *m, size_t n, size_t n_fields) {
  memset(m, 0, sizeof *m);
  m->msgs = pl_calloc(n ? n : 1, sizeof *m->msgs);
  m->cap_fields = n_fields + n + 1;
  m->fields = pl_malloc(m->cap_fields * sizeof *m->fields);
  if (!m->msgs || !m->fields) {
    pl_chat_msgs_free(m);
    return pl_fail(PL_ENOMEM, "out of memory");
  }
  m->n = n;
  return 0;
}

void pl_chat_msgs_begin(pl_chat_msgs *m, size_t i) {
  if (i > 0)
    m->n_fields++; /* the spare slot of message i - 1 (content added by the validation) */
  m->cur = i;
  m->msgs[i].fields = m->fields + m->n_fields;
  m->msgs[i].n = 0;
}

void pl_chat_msgs_add_field(pl_chat_msgs *m, const char *key, const char *val, size_t len,
                            int is_json) {
  m->fields[m->n_fields++] = (pl_chat_field){key, val, len, is_json};
  m->msgs[m->cur].n++;
}

int pl_chat_msgs_own(pl_chat_msgs *m, char *s) {
  if (m->n_owned == m->cap_owned) {
    size_t cap = m->cap_owned ? 2 * m->cap_owned : 8;
    char **o = pl_realloc(m->owned, cap * sizeof *o);
    if (!o) {
      pl_free(s);
      return pl_fail(PL_ENOMEM, "out of memory");
    }
    m->owned = o;
    m->cap_owned = cap;
  }
  m->owned[m->n_owned++] = s;
  return 0;
}

pl_chat_field *pl_chat_msg_field(const pl_chat_msg *msg, const char *key) {
  for (size_t k = 0; k < msg->n; k++)
    if (!strcmp(msg->fields[k].key, key))
      return (pl_chat_field *)&msg->fields[k];
  return NULL;
}

void pl_chat_msgs_free(pl_chat_msgs *m) {
  for (size_t i = 0; i < m->n_owned; i++)
    pl_free(m->owned[i]);
  pl_free(m->owned);
  pl_free(m->fields);
  pl_free(m->msgs);
  pl_free(m->body);
  memset(m, 0, sizeof *m);
}
