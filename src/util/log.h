/* Leveled logging to stderr. The level comes from PAGELLM_LOG (error|warn|info|debug),
 * default info. Thread-safe (one fprintf per line). */
#ifndef PL_UTIL_LOG_H
#define PL_UTIL_LOG_H
enum { PL_LOG_ERROR, PL_LOG_WARN, PL_LOG_INFO, PL_LOG_DEBUG };
void pl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int pl_log_enabled(int level);
void pl_log_set_level(int level);
#define PL_ERROR(...) pl_log(PL_LOG_ERROR, __VA_ARGS__)
#define PL_WARN(...) pl_log(PL_LOG_WARN, __VA_ARGS__)
#define PL_INFO(...) pl_log(PL_LOG_INFO, __VA_ARGS__)
#define PL_DEBUG(...) pl_log(PL_LOG_DEBUG, __VA_ARGS__)
#endif
