/* Whole-file reads into pl_malloc'd, NUL-terminated buffers (templates, JSON configs,
 * tokenizer files, stdin). */
#ifndef PL_UTIL_FILE_H
#define PL_UTIL_FILE_H
#include <stddef.h>
#include <stdio.h>

/* Read f to EOF. *out gets the bytes plus a terminating NUL (free with pl_free), *len their
 * count (len may be NULL). Errors: PL_ENOMEM, PL_EIO (read error), PL_ERANGE (more than max
 * bytes); *out is NULL then. `what` names the source in the message. Does not close f. */
int pl_read_stream(FILE *f, const char *what, size_t max, char **out, size_t *len);
/* The same for a path; PL_EIO naming the path and the reason when it cannot be opened. */
int pl_read_file(const char *path, size_t max, char **out, size_t *len);
#endif
