/*
 * Path policy: where user-named files may come from and where outputs go.
 *
 * A message names its input relative to the configured input root. Everything that could make libav or
 * the filesystem reach somewhere else is refused before any open: absolute paths outside the root, ".."
 * components, symlinks that resolve outside the root, names that libav would read as a protocol or a
 * pattern ("concat:", "subfile,", "pipe:", "data:", "%d", "*"), control characters.
 */
#ifndef MEDIAWORKER_PATH_H
#define MEDIAWORKER_PATH_H

#include <stddef.h>

/*
 * Checks the text of a user-supplied relative path without touching the filesystem. Returns 0 or
 * MW_ERR_PATH_REFUSED with the reason (a static string) in *reason when reason is not NULL.
 */
int mw_path_check_text(const char *relative, const char **reason);

/*
 * Resolves relative under root and writes the canonical absolute path into resolved. An absolute path is
 * accepted only when it already lies under root. Returns 0, MW_ERR_PATH_REFUSED (policy, reason set),
 * MW_ERR_NOT_REGULAR_FILE, or AVERROR(errno) when the file cannot be resolved (e.g. AVERROR(ENOENT)).
 */
int mw_path_resolve(const char *root, const char *relative, char *resolved, size_t size, const char **reason);

/* True when name is safe as one component of an output path (job ids, user ids, output names). */
int mw_path_component_ok(const char *name);

/*
 * Creates dir and its parents with mode 0755 (like mkdir -p). Returns 0 or AVERROR(errno).
 */
int mw_path_mkdirs(const char *dir);

/*
 * Writes data to path atomically: a temporary name in the same directory, fsync, rename, fsync of the
 * directory. On failure nothing is left behind under either name. Returns 0 or AVERROR(errno).
 */
int mw_path_write_atomic(const char *path, const void *data, size_t size);

/*
 * Makes a finished temporary file final: fsync(tmp), rename(tmp, path), fsync of the directory. Media
 * writers that stream into tmp use this. On failure tmp is removed. Returns 0 or AVERROR(errno).
 */
int mw_path_commit(const char *tmp, const char *path);

#endif
