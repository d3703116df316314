/* OpenAI request validation (src/server/openai_req.c): every field's type and range checks,
 * the error shape (status + the parameter named), defaults, unknown fields, prompt forms,
 * chat message normalization and the context-length budget. No model needed. */
#include <string.h>

#include "check.h"
#include "server/openai_req.h"
#include "util/alloc.h"

static pl_oai_request req;
static pl_oai_error err;

static int parse(pl_oai_kind kind, const char *body) {
  return pl_oai_parse(kind, body, strlen(body), &req, &err);
}

/* The body must fail with `status` naming `param` ("" = null). */
#define BAD(kind, body, st, prm)                                                              \
  do {                                                                                        \
    int rc_ = parse(kind, body);                                                              \
    CHECK(rc_ < 0, "accepted: %s", body);                                                     \
    if (rc_ < 0) {                                                                            \
      CHECK(err.status == (st), "%s: status %d", body, err.status);                           \
      CHECK(!strcmp(err.param, prm), "%s: param '%s' (want '%s'): %s", body, err.param, prm,  \
            err.message);                                                                     \
      CHECK(err.message[0] != '\0');                                                          \
    } else {                                                                                  \
      pl_oai_request_free(&req);                                                              \
    }                                                                                         \
  } while (0)

#define GOOD(kind, body)                                                                      \
  do {                                                                                        \
    int rc_ = parse(kind, body);                                                              \
    CHECK(rc_ == 0, "rejected: %s -> %s (%s)", body, err.message, err.param);                 \
  } while (0)

static void test_defaults(void) {
  GOOD(PL_OAI_COMPLETIONS, "{\"prompt\": \"hi\"}");
  CHECK(req.model == NULL);
  CHECK_EQ_INT(req.n_prompts, 1);
  CHECK(req.prompts[0].text && !strcmp(req.prompts[0].text, "hi"));
  CHECK_EQ_INT(req.n, 1);
  CHECK_EQ_INT(req.max_tokens, -1);
  CHECK_EQ_INT(req.logprobs, -1);
  CHECK_EQ_INT(req.stream, 0);
  CHECK_EQ_INT(req.add_special_tokens, -1);
  CHECK_NEAR(req.sp.temperature, 1.0, 0);
  CHECK_NEAR(req.sp.top_p, 1.0, 0);
  CHECK(req.sp.seed < 0);
  CHECK_EQ_INT(req.sp.n_stop, 0);
  CHECK_EQ_INT(pl_oai_resolve_max_tokens(&req, 5, 256, &err), 16); /* OpenAI's default */
  CHECK_EQ_INT(pl_oai_resolve_max_tokens(&req, 250, 256, &err), 6); /* capped to the room */
  pl_oai_request_free(&req);
}

static void test_sampling_fields(void) {
  GOOD(PL_OAI_COMPLETIONS,
       "{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,"
       "\"min_p\":0.05,\"repetition_penalty\":1.1,\"presence_penalty\":-1.5,"
       "\"frequency_penalty\":2,\"seed\":42,\"max_tokens\":7,\"n\":3,\"stop\":[\"a\",\"bc\"],"
       "\"stop_token_ids\":[2,3],\"logit_bias\":{\"5\":-100,\"7\":3.5},\"logprobs\":2,"
       "\"ignore_eos\":true,\"min_tokens\":2,\"priority\":-3,\"user\":\"u1\",\"echo\":false,"
       "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
  CHECK(!strcmp(req.model, "m"));
  CHECK_NEAR(req.sp.temperature, 0.5, 1e-6);
  CHECK_NEAR(req.sp.top_p, 0.9, 1e-6);
  CHECK_EQ_INT(req.sp.top_k, 40);
  CHECK_NEAR(req.sp.min_p, 0.05, 1e-6);
  CHECK_NEAR(req.sp.repetition_penalty, 1.1, 1e-6);
  CHECK_NEAR(req.sp.presence_penalty, -1.5, 1e-6);
  CHECK_NEAR(req.sp.frequency_penalty, 2, 1e-6);
  CHECK_EQ_INT(req.sp.seed, 42);
  CHECK_EQ_INT(req.max_tokens, 7);
  CHECK_EQ_INT(req.n, 3);
  CHECK_EQ_INT(req.sp.n, 3);
  CHECK_EQ_INT(req.sp.n_stop, 2);
  CHECK(!strcmp(req.sp.stop[1], "bc"));
  CHECK_EQ_INT(req.sp.n_stop_token_ids, 2);
  CHECK_EQ_INT(req.sp.stop_token_ids[1], 3);
  CHECK_EQ_INT(req.sp.n_logit_bias, 2);
  CHECK_EQ_INT(req.sp.logit_bias_ids[0], 5);
  CHECK_NEAR(req.sp.logit_bias[0], -100, 0);
  CHECK_NEAR(req.sp.logit_bias[1], 3.5, 0);
  CHECK_EQ_INT(req.logprobs, 2);
  CHECK_EQ_INT(req.sp.logprobs, 2);
  CHECK_EQ_INT(req.sp.ignore_eos, 1);
  CHECK_EQ_INT(req.sp.min_tokens, 2);
  CHECK_EQ_INT(req.sp.priority, -3);
  CHECK(!strcmp(req.user, "u1"));
  CHECK_EQ_INT(req.stream, 1);
  CHECK_EQ_INT(req.include_usage, 1);
  CHECK_EQ_INT(pl_oai_check_token_ids(&req, 512, &err), 0);
  CHECK(pl_oai_check_token_ids(&req, 6, &err) < 0); /* logit_bias 7 out of range */
  CHECK(!strcmp(err.param, "logit_bias"));
  pl_oai_request_free(&req);

  /* null means "default", integral reals are integers, top_k -1 = off */
  GOOD(PL_OAI_COMPLETIONS, "{\"prompt\":\"x\",\"temperature\":null,\"max_tokens\":5.0,"
                           "\"top_k\":-1,\"stop\":\"end\",\"seed\":-7}");
  CHECK_NEAR(req.sp.temperature, 1.0, 0);
  CHECK_EQ_INT(req.max_tokens, 5);
  CHECK_EQ_INT(req.sp.top_k, 0);
  CHECK_EQ_INT(req.sp.n_stop, 1);
  CHECK(req.sp.seed >= 0); /* negative seeds stay reproducible (not "random") */
  pl_oai_request_free(&req);
}

static void test_bad_values(void) {
  pl_oai_kind C = PL_OAI_COMPLETIONS;
  BAD(C, "{\"prompt\":\"x\",\"temperature\":\"hot\"}", 400, "temperature");
  BAD(C, "{\"prompt\":\"x\",\"temperature\":true}", 400, "temperature");
  BAD(C, "{\"prompt\":\"x\",\"temperature\":-0.1}", 400, "temperature");
  BAD(C, "{\"prompt\":\"x\",\"temperature\":2.5}", 400, "temperature");
  BAD(C, "{\"prompt\":\"x\",\"top_p\":0}", 400, "top_p");
  BAD(C, "{\"prompt\":\"x\",\"top_p\":1.01}", 400, "top_p");
  BAD(C, "{\"prompt\":\"x\",\"top_k\":-2}", 400, "top_k");
  BAD(C, "{\"prompt\":\"x\",\"min_p\":1.5}", 400, "min_p");
  BAD(C, "{\"prompt\":\"x\",\"repetition_penalty\":0}", 400, "repetition_penalty");
  BAD(C, "{\"prompt\":\"x\",\"presence_penalty\":3}", 400, "presence_penalty");
  BAD(C, "{\"prompt\":\"x\",\"frequency_penalty\":-2.1}", 400, "frequency_penalty");
  BAD(C, "{\"prompt\":\"x\",\"max_tokens\":0}", 400, "max_tokens");
  BAD(C, "{\"prompt\":\"x\",\"max_tokens\":-5}", 400, "max_tokens");
  BAD(C, "{\"prompt\":\"x\",\"max_tokens\":1.5}", 400, "max_tokens");
  BAD(C, "{\"prompt\":\"x\",\"max_tokens\":1e30}", 400, "max_tokens");
  BAD(C, "{\"prompt\":\"x\",\"max_tokens\":\"10\"}", 400, "max_tokens");
  BAD(C, "{\"prompt\":\"x\",\"n\":0}", 400, "n");
  BAD(C, "{\"prompt\":\"x\",\"n\":1000000}", 400, "n");
  BAD(C, "{\"prompt\":\"x\",\"best_of\":3}", 400, "best_of");
  BAD(C, "{\"prompt\":\"x\",\"seed\":\"abc\"}", 400, "seed");
  BAD(C, "{\"prompt\":\"x\",\"stop\":5}", 400, "stop");
  BAD(C, "{\"prompt\":\"x\",\"stop\":[\"a\",3]}", 400, "stop");
  BAD(C, "{\"prompt\":\"x\",\"stop\":[\"\"]}", 400, "stop");
  BAD(C, "{\"prompt\":\"x\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\","
         "\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}", 400, "stop");
  BAD(C, "{\"prompt\":\"x\",\"stop_token_ids\":[-1]}", 400, "stop_token_ids");
  BAD(C, "{\"prompt\":\"x\",\"logit_bias\":{\"abc\":1}}", 400, "logit_bias");
  BAD(C, "{\"prompt\":\"x\",\"logit_bias\":{\"5\":101}}", 400, "logit_bias");
  BAD(C, "{\"prompt\":\"x\",\"logit_bias\":[1]}", 400, "logit_bias");
  BAD(C, "{\"prompt\":\"x\",\"logprobs\":21}", 400, "logprobs");
  BAD(C, "{\"prompt\":\"x\",\"logprobs\":true}", 400, "logprobs");
  BAD(C, "{\"prompt\":\"x\",\"stream\":\"yes\"}", 400, "stream");
  BAD(C, "{\"prompt\":\"x\",\"stream_options\":{\"include_usage\":true}}", 400, "stream_options");
  BAD(C, "{\"prompt\":\"x\",\"stream\":true,\"stream_options\":5}", 400, "stream_options");
  BAD(C, "{\"prompt\":\"x\",\"min_tokens\":10,\"max_tokens\":5}", 400, "min_tokens");
  BAD(C, "{\"prompt\":\"x\",\"echo\":true,\"logprobs\":1}", 400, "echo");
  BAD(C, "{\"prompt\":\"x\",\"suffix\":\"s\"}", 400, "suffix");
  BAD(C, "{\"prompt\":\"x\",\"response_format\":{\"type\":\"xml\"}}", 400,
      "response_format");
  BAD(C, "{\"prompt\":\"x\",\"guided_json\":{\"type\":\"object\",\"not\":{}}}", 400,
      "guided_json");
  BAD(C, "{\"prompt\":\"x\",\"guided_regex\":\"a\",\"grammar\":\"root ::= \\\"a\\\"\"}", 400,
      "grammar");
  BAD(C, "{\"prompt\":\"x\",\"include_stop_str_in_output\":true}", 400,
      "include_stop_str_in_output");
  BAD(C, "{\"prompt\":\"x\",\"model\":5}", 400, "model");
  BAD(C, "{\"prompt\":\"x\",\"user\":[1]}", 400, "user");
  BAD(C, "{\"prompt\":\"x\",\"ignore_eos\":1}", 400, "ignore_eos");
  BAD(C, "{\"prompt\":\"x\",\"priority\":1e12}", 400, "priority");
}

static void test_prompts(void) {
  pl_oai_kind C = PL_OAI_COMPLETIONS;
  BAD(C, "{}", 400, "prompt");
  BAD(C, "{\"prompt\":null}", 400, "prompt");
  BAD(C, "{\"prompt\":5}", 400, "prompt");
  BAD(C, "{\"prompt\":[]}", 400, "prompt");
  BAD(C, "{\"prompt\":[[]]}", 400, "prompt[0]");
  BAD(C, "{\"prompt\":[1,\"a\"]}", 400, "prompt");
  BAD(C, "{\"prompt\":[\"a\",[1]]}", 400, "prompt[1]");
  BAD(C, "{\"prompt\":[1,-2]}", 400, "prompt");
  BAD(C, "{\"prompt\":[1,2.5]}", 400, "prompt");
  BAD(C, "{\"prompt\":[1,99999999999]}", 400, "prompt");
  GOOD(C, "{\"prompt\":\"\"}"); /* empty text is allowed (BOS only) */
  pl_oai_request_free(&req);
  GOOD(C, "{\"prompt\":[1,2,3]}");
  CHECK_EQ_INT(req.n_prompts, 1);
  CHECK(req.prompts[0].text == NULL);
  CHECK_EQ_INT(req.prompts[0].n_ids, 3);
  CHECK_EQ_INT(req.prompts[0].ids[2], 3);
  CHECK(pl_oai_check_token_ids(&req, 3, &err) < 0);
  CHECK(!strcmp(err.param, "prompt"));
  CHECK_EQ_INT(pl_oai_check_token_ids(&req, 4, &err), 0);
  pl_oai_request_free(&req);
  GOOD(C, "{\"prompt\":[\"a\",\"b\"],\"n\":2}");
  CHECK_EQ_INT(req.n_prompts, 2);
  CHECK_EQ_INT(req.prompt_is_batch, 1);
  CHECK(!strcmp(req.prompts[1].text, "b"));
  pl_oai_request_free(&req);
  GOOD(C, "{\"prompt\":[[1],[2,3]]}");
  CHECK_EQ_INT(req.n_prompts, 2);
  CHECK_EQ_INT(req.prompts[1].n_ids, 2);
  pl_oai_request_free(&req);
  BAD(C, "{\"prompt\":[\"a\",\"b\"],\"n\":100}", 400, "n"); /* 200 choices */
}

static void test_chat(void) {
  pl_oai_kind H = PL_OAI_CHAT;
  BAD(H, "{}", 400, "messages");
  BAD(H, "{\"messages\":[]}", 400, "messages");
  BAD(H, "{\"messages\":{}}", 400, "messages");
  BAD(H, "{\"messages\":[5]}", 400, "messages[0]");
  BAD(H, "{\"messages\":[{\"content\":\"x\"}]}", 400, "messages[0].role");
  BAD(H, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400, "messages[0].role");
  BAD(H, "{\"messages\":[{\"role\":\"user\"}]}", 400, "messages[0].content");
  BAD(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\","
         "\"content\":5}]}", 400, "messages[1].content");
  BAD(H, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
         "\"image_url\":{\"url\":\"x\"}}]}]}", 400, "messages[0].content");
  BAD(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", 400,
      "top_logprobs");
  BAD(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":2}", 400,
      "logprobs");
  BAD(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}",
      400, "tool_choice");
  BAD(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
         "\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"function\","
         "\"function\":{\"name\":\"g\"}}}", 400, "tool_choice");
  BAD(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", 400, "tools");
  BAD(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":0}",
      400, "max_completion_tokens");

  GOOD(H, "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\","
          "\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
          "{\"role\":\"assistant\",\"content\":null}],\"logprobs\":true,\"top_logprobs\":3,"
          "\"max_tokens\":9,\"max_completion_tokens\":4,\"chat_template_kwargs\":{\"x\":1}}");
  CHECK_EQ_INT(req.msgs.n, 3);
  /* text parts are joined with "\n" */
  const pl_chat_field *c1 = pl_chat_msg_field(&req.msgs.msgs[1], "content");
  CHECK(c1 && !c1->is_json && !strcmp(c1->val, "a\nb") && c1->len == 3);
  const pl_chat_field *c2 = pl_chat_msg_field(&req.msgs.msgs[2], "content");
  CHECK(c2 && c2->is_json && c2->len == 4 && !memcmp(c2->val, "null", 4));
  CHECK_EQ_INT(req.logprobs, 3);
  CHECK_EQ_INT(req.max_tokens, 4); /* max_completion_tokens wins */
  CHECK(req.template_kwargs != NULL);
  CHECK_EQ_INT(req.add_generation_prompt, 1);
  /* chat's default budget is the rest of the context */
  CHECK_EQ_INT(pl_oai_resolve_max_tokens(&req, 10, 256, &err), 4);
  pl_oai_request_free(&req);

  GOOD(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
  CHECK_EQ_INT(pl_oai_resolve_max_tokens(&req, 10, 256, &err), 246);
  CHECK_EQ_INT(req.logprobs, -1);
  pl_oai_request_free(&req);
  GOOD(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true}");
  CHECK_EQ_INT(req.logprobs, 0);
  pl_oai_request_free(&req);
}

static void test_context_budget(void) {
  GOOD(PL_OAI_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":100}");
  CHECK_EQ_INT(pl_oai_resolve_max_tokens(&req, 100, 256, &err), 100);
  CHECK_EQ_INT(pl_oai_resolve_max_tokens(&req, 200, 256, &err), PL_ETOOLONG);
  CHECK_EQ_INT(err.status, 400);
  CHECK(!strcmp(err.param, "max_tokens"));
  CHECK(err.code && !strcmp(err.code, "context_length_exceeded"));
  CHECK(strstr(err.message, "maximum context length is 256") != NULL);
  CHECK_EQ_INT(pl_oai_resolve_max_tokens(&req, 256, 256, &err), PL_ETOOLONG);
  CHECK(!strcmp(err.param, "prompt"));
  CHECK(pl_oai_resolve_max_tokens(&req, 0, 256, &err) < 0); /* empty after tokenization */
  pl_oai_request_free(&req);
}

static void test_json_errors(void) {
  BAD(PL_OAI_COMPLETIONS, "", 400, "");
  BAD(PL_OAI_COMPLETIONS, "{\"prompt\": \"x\"", 400, "");
  BAD(PL_OAI_COMPLETIONS, "[1,2]", 400, "");
  BAD(PL_OAI_COMPLETIONS, "\"prompt\"", 400, "");
  BAD(PL_OAI_COMPLETIONS, "{\"prompt\": \"\xff\xfe\"}", 400, "");      /* invalid UTF-8 */
  BAD(PL_OAI_COMPLETIONS, "{\"prompt\": \"\\ud800\"}", 400, "");       /* lone surrogate */
  BAD(PL_OAI_COMPLETIONS, "{\"prompt\": \"a\\u0000b\"}", 400, "");     /* embedded NUL */
  /* not NUL-terminated input: the parser must respect the length */
  const char body[] = "{\"prompt\":\"abc\"}garbage";
  CHECK_EQ_INT(pl_oai_parse(PL_OAI_COMPLETIONS, body, 16, &req, &err), 0);
  pl_oai_request_free(&req);
}

static void test_unknown_fields(void) {
  GOOD(PL_OAI_COMPLETIONS, "{\"prompt\":\"x\",\"frobnicate\":1,\"metadata\":{}}");
  CHECK(strstr(req.ignored, "frobnicate") != NULL);
  CHECK(strstr(req.ignored, "metadata") != NULL);
  CHECK(strstr(req.ignored, "prompt") == NULL);
  pl_oai_request_free(&req);
  /* a chat-only field in a completions request is unknown there */
  GOOD(PL_OAI_COMPLETIONS, "{\"prompt\":\"x\",\"messages\":[]}");
  CHECK(strstr(req.ignored, "messages") != NULL);
  pl_oai_request_free(&req);
}

static void test_tokenize_detokenize(void) {
  GOOD(PL_OAI_TOKENIZE, "{\"prompt\":\"hello\",\"add_special_tokens\":false,"
                        "\"return_token_strs\":true}");
  CHECK_EQ_INT(req.add_special_tokens, 0);
  CHECK_EQ_INT(req.return_token_strs, 1);
  pl_oai_request_free(&req);
  GOOD(PL_OAI_TOKENIZE, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
  CHECK(req.msgs.msgs != NULL);
  pl_oai_request_free(&req);
  BAD(PL_OAI_TOKENIZE, "{}", 400, "prompt");
  BAD(PL_OAI_TOKENIZE, "{\"prompt\":\"a\",\"messages\":[]}", 400, "messages");
  BAD(PL_OAI_TOKENIZE, "{\"prompt\":[\"a\",\"b\"]}", 400, "prompt");
  GOOD(PL_OAI_DETOKENIZE, "{\"tokens\":[1,2]}");
  CHECK_EQ_INT(req.prompts[0].n_ids, 2);
  pl_oai_request_free(&req);
  GOOD(PL_OAI_DETOKENIZE, "{\"tokens\":[]}");
  CHECK_EQ_INT(req.prompts[0].n_ids, 0);
  pl_oai_request_free(&req);
  BAD(PL_OAI_DETOKENIZE, "{}", 400, "tokens");
  BAD(PL_OAI_DETOKENIZE, "{\"tokens\":\"abc\"}", 400, "tokens");
  BAD(PL_OAI_DETOKENIZE, "{\"tokens\":[1,\"a\"]}", 400, "tokens");
}

/* Every allocation failure inside the parser is reported, never a crash or a leak. */
static void test_alloc_failures(void) {
  const char *body = "{\"prompt\":[[1,2],[3]],\"stop\":[\"a\",\"b\"],\"stop_token_ids\":[1],"
                     "\"logit_bias\":{\"1\":2}}";
  size_t live0 = pl_alloc_live_bytes();
  for (long k = 0; k < 40; k++) {
    pl_alloc_fail_after(k);
    int rc = parse(PL_OAI_COMPLETIONS, body);
    pl_alloc_fail_after(-1);
    if (rc == 0)
      pl_oai_request_free(&req);
    else
      CHECK(err.status == 500 || err.status == 400);
    CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  }
}

int main(void) {
  test_defaults();
  test_sampling_fields();
  test_bad_values();
  test_prompts();
  test_chat();
  test_context_budget();
  test_json_errors();
  test_unknown_fields();
  test_tokenize_detokenize();
  test_alloc_failures();
  return check_summary("test_openai_req");
}
