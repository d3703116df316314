/* Allocation-failure injection: make the n-th allocation fail for n = 0, 1, 2, ... through
 * every allocation point of block pool / kv cache / scheduler creation and of request
 * creation (add, fork). Each failure must return PL_ENOMEM, leave the out-pointer NULL and
 * leak nothing (live bytes back to where they were); the first n that no longer fails must
 * produce a working object. Also: no operation after creation allocates. */
#include <string.h>

#include "check.h"
#include "core/scheduler.h"
#include "util/alloc.h"

typedef int (*create_fn)(void **out);
typedef void (*destroy_fn)(void *obj);

static int mk_pool(void **out) {
  return pl_block_pool_create(64, 16, 1, (pl_block_pool **)out);
}
static void rm_pool(void *p) { pl_block_pool_destroy(p); }

static int mk_kv(void **out) {
  pl_kv_cache_params p = {.num_blocks = 64, .block_size = 16, .max_seqs = 8,
                          .max_model_len = 256, .enable_prefix_caching = 1};
  return pl_kv_cache_create(&p, (pl_kv_cache **)out);
}
static void rm_kv(void *p) { pl_kv_cache_destroy(p); }

static pl_sched_params sched_params(void) {
  pl_sched_params p = {.num_blocks = 64, .block_size = 16, .max_model_len = 256,
                       .max_num_seqs = 8, .max_num_batched_tokens = 128,
                       .kv_alloc = PL_KV_PAGED, .enable_prefix_caching = 1,
                       .policy = PL_SCHED_FCFS};
  return p;
}
static int mk_sched(void **out) {
  pl_sched_params p = sched_params();
  return pl_sched_create(&p, (pl_scheduler **)out);
}
static void rm_sched(void *p) { pl_sched_destroy(p); }

/* Returns the number of allocation points that were made to fail. */
static int inject(const char *name, create_fn mk, destroy_fn rm) {
  int n;
  for (n = 0; n < 1000; n++) {
    size_t live0 = pl_alloc_live_bytes();
    void *obj = (void *)1;
    pl_alloc_fail_after(n);
    int rc = mk(&obj);
    pl_alloc_fail_after(-1);
    if (rc == PL_OK) {
      CHECK(obj != NULL, "%s: created", name);
      rm(obj);
      CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
      break;
    }
    CHECK(rc == PL_ENOMEM, "%s: failure %d returned %d (%s)", name, n, rc, pl_last_error());
    CHECK(obj == NULL, "%s: out not cleared at failure %d", name, n);
    CHECK(pl_alloc_live_bytes() == live0, "%s: leak at failure %d: %zu bytes", name, n,
          pl_alloc_live_bytes() - live0);
  }
  printf("  %s: %d allocation points failed cleanly\n", name, n);
  return n;
}

static void test_creation(void) {
  CHECK(inject("block pool", mk_pool, rm_pool) >= 4, "pool allocation points");
  CHECK(inject("kv cache", mk_kv, rm_kv) >= 10, "kv allocation points");
  CHECK(inject("scheduler", mk_sched, rm_sched) >= 25, "scheduler allocation points");
}

/* add and fork under failure: the scheduler stays consistent and usable. */
static void test_requests(void) {
  pl_sched_params p = sched_params();
  pl_scheduler *s;
  CHECK_EQ_INT(pl_sched_create(&p, &s), PL_OK);
  int32_t pr[20];
  for (int i = 0; i < 20; i++)
    pr[i] = i + 1;
  pl_sched_req_params rp = {.id = 1, .prompt = pr, .n_prompt = 20, .max_tokens = 40};
  pl_sched_req *r = NULL;
  int fails = 0;
  for (int n = 0; n < 10; n++) {
    size_t live0 = pl_alloc_live_bytes();
    pl_alloc_fail_after(n);
    int rc = pl_sched_add(s, &rp, &r);
    pl_alloc_fail_after(-1);
    if (rc == PL_OK)
      break;
    fails++;
    CHECK(rc == PL_ENOMEM && r == NULL, "add failure %d: %d", n, rc);
    CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
    CHECK_EQ_INT(pl_sched_num_waiting(s), 0);
    CHECK_EQ_INT(pl_sched_check(s), PL_OK);
  }
  CHECK_EQ_INT(fails, 2);
  CHECK(r != NULL, "added");
  const pl_sched_output *o;
  CHECK_EQ_INT(pl_sched_schedule(s, &o), 20);
  fails = 0;
  pl_sched_req *c = NULL;
  for (int n = 0; n < 10; n++) {
    size_t live0 = pl_alloc_live_bytes();
    pl_alloc_fail_after(n);
    int rc = pl_sched_fork(s, r, 2, NULL, &c);
    pl_alloc_fail_after(-1);
    if (rc == PL_OK)
      break;
    fails++;
    CHECK(rc == PL_ENOMEM && c == NULL, "fork failure %d: %d", n, rc);
    CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
    CHECK_EQ_INT(pl_sched_num_running(s), 1);
    CHECK_EQ_INT(pl_sched_check(s), PL_OK);
  }
  CHECK_EQ_INT(fails, 2);
  CHECK(c != NULL && c->status == PL_REQ_RUNNING, "forked");
  /* Steady state: schedule / append / finish allocate nothing. */
  long a0 = pl_alloc_count();
  for (int k = 0; k < 10; k++) {
    CHECK_EQ_INT(pl_sched_append_token(s, r, 100 + k), PL_OK);
    CHECK_EQ_INT(pl_sched_append_token(s, c, 200 + k), PL_OK);
    CHECK_EQ_INT(pl_sched_schedule(s, &o), 2);
  }
  pl_sched_finish(s, c);
  CHECK_EQ_INT(pl_alloc_count(), a0);
  CHECK_EQ_INT(pl_sched_check(s), PL_OK);
  pl_sched_destroy(s);
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  test_creation();
  test_requests();
  CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  return check_summary("test_kv_allocfail");
}
