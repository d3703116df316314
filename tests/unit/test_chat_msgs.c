/* A chat's messages parsed in place (server/chat_msgs.c) against the same body parsed by
 * jansson: every body is parsed twice, once as is (the in-place parser takes it when it can)
 * and once with an escaped top-level key added, which it always leaves to jansson. Both must
 * give the same verdict (status, param, message) and, when accepted, render to the same text
 * (every message as JSON, and ChatML). The in-place parser must take the valid bodies (else
 * this would test jansson against itself) and decline what jansson refuses. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engine/engine_access.h"
#include "pagellm.h"
#include "server/openai_req.h"
#include "template/chat_template.h"
#include "util/alloc.h"

static pl_chat_template *dump_t, *chatml_t;

static char *render(pl_chat_template *t, const pl_oai_request *r) {
  pl_chat_render_params p;
  pl_chat_render_params_default(&p);
  p.msgs = r->msgs.msgs;
  p.n_msgs = r->msgs.n;
  char *out = NULL;
  if (pl_chat_template_render(t, &p, &out, NULL) < 0)
    return NULL;
  return out;
}

/* expect_inplace: 1 taken in place, 0 declined (jansson's path either way for the second);
 * checked for accepted bodies. */
static void same(const char *messages, int expect_inplace) {
  char a[8192], b[8192];
  /* the same length, so that jansson's error positions agree */
  snprintf(a, sizeof a, "{\"user\":     \"t\",\"messages\":%s,\"max_tokens\":3}", messages);
  snprintf(b, sizeof b, "{\"\\u0075ser\":\"t\",\"messages\":%s,\"max_tokens\":3}", messages);
  pl_oai_request ra, rb;
  pl_oai_error ea, eb;
  int rca = pl_oai_parse(PL_OAI_CHAT, a, strlen(a), &ra, &ea);
  int rcb = pl_oai_parse(PL_OAI_CHAT, b, strlen(b), &rb, &eb);
  CHECK(rca == rcb, "%s: %d vs %d (%s | %s)", messages, rca, rcb, ea.message, eb.message);
  if (rca < 0 || rcb < 0) {
    CHECK(ea.status == eb.status && !strcmp(ea.param, eb.param) &&
              !strcmp(ea.message, eb.message),
          "%s: %d %s '%s' vs %d %s '%s'", messages, ea.status, ea.param, ea.message, eb.status,
          eb.param, eb.message);
    if (rca == 0)
      pl_oai_request_free(&ra);
    if (rcb == 0)
      pl_oai_request_free(&rb);
    return;
  }
  CHECK((ra.msgs.body != NULL) == expect_inplace, "%s: in place %d", messages,
        ra.msgs.body != NULL);
  CHECK(rb.msgs.body == NULL, "%s: the escaped key must leave it to jansson", messages);
  CHECK(ra.user && !strcmp(ra.user, "t") && rb.user && !strcmp(rb.user, "t"));
  pl_chat_template *ts[2] = {dump_t, chatml_t};
  for (int k = 0; k < 2; k++) {
    char *ta = render(ts[k], &ra), *tb = render(ts[k], &rb);
    CHECK(ta && tb && !strcmp(ta, tb), "%s:\n  in place: %s\n  jansson:  %s", messages,
          ta ? ta : "(failed)", tb ? tb : "(failed)");
    pl_free(ta);
    pl_free(tb);
  }
  pl_oai_request_free(&ra);
  pl_oai_request_free(&rb);
}

/* The engine's API takes plain C and JSON text (JSON stays at the server's edge): the same
 * render as the template given jansson values. */
static void engine_api(void) {
  static const char tmpl[] =
      "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}"
      "{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% endif %}|{% endfor %}"
      "{{ tools | tojson }}|{{ flag }}|{{ num }}|{{ messages | length }}";
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  ep.model_path = data_path("models/tinystories-280K.gguf");
  ep.chat_template = tmpl;
  ep.n_threads = 1;
  ep.kv_cache_bytes = 1u << 20;
  pl_engine *e = NULL;
  CHECK(pl_engine_create(&ep, &e) == 0, "%s", pl_last_error());
  if (!e)
    return;
  const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                      "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\","
                      "\"maximum\":0.1}}}}}]";
  const char *kwargs = "{\"flag\":true,\"num\":1.25,\"messages\":\"not these\"}";
  const char *calls = "[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                      "\"arguments\":\"{\\\"x\\\": 0.05}\"}}]";
  pl_chat_field f[5] = {{"role", "user", 4, 0}, {"content", "hi", 2, 0},
                        {"role", "assistant", 9, 0}, {"content", "null", 4, 1},
                        {"tool_calls", calls, strlen(calls), 1}};
  pl_chat_msg m[2] = {{f, 2}, {f + 2, 3}};
  char *got = NULL;
  size_t n = 0;
  CHECK(pl_engine_render_chat(e, m, 2, tools, kwargs, 1, 0, &got, &n) == 0, "%s",
        pl_last_error());
  /* the same through jansson values */
  char json_msgs[512];
  snprintf(json_msgs, sizeof json_msgs, "[{\"role\":\"user\",\"content\":\"hi\"},"
           "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":%s}]", calls);
  json_t *jm = json_loads(json_msgs, 0, NULL), *jt = json_loads(tools, 0, NULL),
         *jk = json_loads(kwargs, 0, NULL);
  pl_chat_render_params p;
  pl_chat_render_params_default(&p);
  p.messages = jm;
  p.tools = jt;
  p.extra = jk;
  p.bos_token = pl_engine_bos_text(e)[0] ? pl_engine_bos_text(e) : NULL;
  p.eos_token = pl_engine_eos_text(e)[0] ? pl_engine_eos_text(e) : NULL;
  char *want = NULL;
  CHECK(pl_chat_template_render(pl_engine_chat_template(e), &p, &want, NULL) == 0, "%s",
        pl_last_error());
  CHECK(got && want && !strcmp(got, want), "engine API: %s\n  jansson: %s", got ? got : "",
        want ? want : "");
  CHECK(got && strstr(got, "|True|1.25|2") && strstr(got, "\"maximum\": 0.1") &&
        strstr(got, "\"arguments\": {\"x\": 0.05}"), "%s", got ? got : "");
  pl_free(got);
  pl_free(want);
  /* no tools, no variables: the template sees none */
  CHECK(pl_engine_render_chat(e, m, 1, NULL, NULL, 1, 0, &got, &n) == 0, "%s", pl_last_error());
  CHECK(got && strstr(got, "user:hi|null||"), "%s", got ? got : "");
  pl_free(got);
  CHECK(pl_engine_render_chat(e, m, 1, "[1,", NULL, 1, 0, &got, &n) == PL_EINVAL && !got);
  json_decref(jm);
  json_decref(jt);
  json_decref(jk);
  pl_engine_destroy(e);
}

int main(void) {
  CHECK(pl_chat_template_parse("{{ messages | tojson }}|{{ messages[0].content }}", &dump_t) == 0);
  CHECK(pl_chat_template_builtin("chatml", &chatml_t) == 0);
  size_t live0 = pl_alloc_live_bytes();

  engine_api();

  /* taken in place */
  same("[{\"role\":\"user\",\"content\":\"hello\"}]", 1);
  same(" [ {\"role\" : \"system\" ,\"content\":\"be brief\"} ,\n\t{\"role\":\"user\",\r\n"
       "\"content\":\"hi\"} ] ", 1);
  same("[{\"role\":\"user\",\"content\":\"q\\\"b\\\\s\\/l\\b\\f\\n\\r\\tend\"}]", 1);
  same("[{\"role\":\"user\",\"content\":\"\\u00e9\\u20AC\\ud83d\\ude00 \\u0041\"}]", 1);
  same("[{\"role\":\"user\",\"content\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \x7f\"}]", 1);
  same("[{\"role\":\"user\",\"content\":\"\"}]", 1);
  same("[{\"role\":\"assistant\",\"content\":null},{\"role\":\"user\",\"content\":\"x\"}]", 1);
  same("[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\"}]", 1);
  same("[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":null,"
       "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
       "\"arguments\":\"{\\\"a\\\": 1.5e3, \\\"b\\\": [true, null, -2]}\"}}]},"
       "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"42\"}]", 1);
  same("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
       "{\"type\":\"text\",\"text\":\"b\\u00e9\"}],\"name\":\"n\",\"x\":{\"k\":[1,2.25,"
       "\"s\"]},\"y\":-0.5,\"z\":false}]", 1);
  same("[{\"content\":\"first\",\"role\":\"user\",\"extra\":12345678901234}]", 1);

  /* refused: the in-place parser must decline and jansson's error stand */
  same("[]", 1); /* empty: taken, then refused by the validation */
  same("[{\"role\":\"user\",\"content\":\"\xff\"}]", 0);          /* invalid UTF-8 */
  same("[{\"role\":\"user\",\"content\":\"\xc0\xaf\"}]", 0);      /* overlong */
  same("[{\"role\":\"user\",\"content\":\"\xed\xa0\x80\"}]", 0);  /* UTF-8 surrogate */
  same("[{\"role\":\"user\",\"content\":\"\xf4\x90\x80\x80\"}]", 0); /* > U+10FFFF */
  same("[{\"role\":\"user\",\"content\":\"\\ud800\"}]", 0);       /* lone high surrogate */
  same("[{\"role\":\"user\",\"content\":\"\\udc00x\"}]", 0);      /* lone low surrogate */
  same("[{\"role\":\"user\",\"content\":\"\\ud800\\u0041\"}]", 0);
  same("[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]", 0);     /* NUL */
  same("[{\"role\":\"user\",\"content\":\"a\x01\"}]", 0);         /* control character */
  same("[{\"role\":\"user\",\"content\":\"\\x\"}]", 0);           /* bad escape */
  same("[{\"role\":\"user\",\"content\":\"\\u12g4\"}]", 0);
  same("[{\"role\":\"user\",\"role\":\"user\",\"content\":\"x\"}]", 0); /* duplicate key */
  same("[{\"role\":\"user\",\"content\":\"x\",\"n\":{\"a\":1,\"a\":2}}]", 0);
  same("[{\"role\":\"user\",\"content\":\"x\",\"n\":01}]", 0);    /* bad number */
  same("[{\"role\":\"user\",\"content\":\"x\",}]", 0);            /* trailing comma */
  same("[{\"role\":\"user\",\"content\":\"x\"},]", 0);
  same("[{\"role\":\"user\" \"content\":\"x\"}]", 0);
  same("[{\"role\":\"user\",\"content\":\"x\"}}]", 0);            /* unbalanced */
  same("[\"hi\"]", 0);                                            /* not an object */
  same("[{\"role\":\"user\",\"content\":\"x\"}, 3]", 0);
  same("[{\"r\\u006fle\":\"user\",\"content\":\"x\"}]", 0);       /* escaped key: jansson */
  same("null", 0);
  same("{\"role\":\"user\"}", 0);
  /* taken, then refused by the validation with the same words */
  same("[{\"role\":\"wizard\",\"content\":\"x\"}]", 1);
  same("[{\"content\":\"x\"}]", 1);
  same("[{\"role\":\"user\"}]", 1);
  same("[{\"role\":\"user\",\"content\":7}]", 1);
  same("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]", 1);
  same("[{\"role\":1,\"content\":\"x\"}]", 1);

  /* more fields than the in-place parser keeps apart: jansson's path */
  char many[4096] = "[{\"role\":\"user\",\"content\":\"x\"";
  for (int i = 0; i < 70; i++)
    snprintf(many + strlen(many), sizeof many - strlen(many), ",\"f%d\":\"%d\"", i, i);
  strcat(many, "}]");
  same(many, 0);

  /* a body whose messages are not its only long part, and a second "messages" key */
  const char *dup = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"messages\":[]}";
  pl_oai_request r;
  pl_oai_error e;
  CHECK(pl_oai_parse(PL_OAI_CHAT, dup, strlen(dup), &r, &e) < 0 && e.status == 400 &&
        strstr(e.message, "duplicate"), "%s", e.message);

  /* A long chat is not made a JSON tree: a few allocations, not several per message (jansson
   * allocates through the counting allocator, as the server sets it up). */
  json_set_alloc_funcs(pl_malloc_raw, pl_free_raw);
  size_t n_msgs = 2000, cap = n_msgs * 64 + 64, len = 0;
  char *big = pl_malloc(cap);
  len += (size_t)snprintf(big, cap, "{\"messages\":[");
  for (size_t i = 0; i < n_msgs; i++)
    len += (size_t)snprintf(big + len, cap - len, "%s{\"role\":\"%s\",\"content\":\"m%zu\"}",
                            i ? "," : "", i % 2 ? "assistant" : "user", i);
  len += (size_t)snprintf(big + len, cap - len, "],\"max_tokens\":2}");
  long a0 = pl_alloc_count();
  CHECK(pl_oai_parse(PL_OAI_CHAT, big, len, &r, &e) == 0, "%s", e.message);
  long allocs = pl_alloc_count() - a0;
  CHECK(r.msgs.body != NULL && r.msgs.n == n_msgs);
  CHECK(allocs < 100, "%ld allocations to parse %zu messages", allocs, n_msgs);
  char *text = render(chatml_t, &r);
  CHECK(text && strstr(text, "<|im_start|>assistant\nm1999<|im_end|>\n"));
  pl_free(text);
  pl_oai_request_free(&r);
  pl_free(big);
  json_set_alloc_funcs(malloc, free);

  CHECK(pl_alloc_live_bytes() == live0, "leaked %zu bytes", pl_alloc_live_bytes() - live0);
  pl_chat_template_free(dump_t);
  pl_chat_template_free(chatml_t);
  return check_summary("test_chat_msgs");
}
