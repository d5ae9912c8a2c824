/*
 * Logging.
 *
 * One process-wide sink, configured once in main() before any thread starts, writing either JSON lines
 * (the default when stderr is not a terminal, for log collectors) or human-readable text. Each thread
 * carries a log context (job id, request id) that every line it writes includes, so a job's lines can be
 * found without every call site passing the ids around. libav's own messages are routed through the same
 * sink by one thread-safe callback, so they carry the job's ids as well.
 *
 * Levels mean: ERROR a job or the service failed (logged once, where understood), WARN something went
 * wrong and was recovered, INFO job lifecycle, DEBUG per stage (never per frame).
 */
#ifndef MEDIAWORKER_LOG_H
#define MEDIAWORKER_LOG_H

#include <stdio.h>

enum mw_log_level {
    MW_LOG_ERROR,
    MW_LOG_WARN,
    MW_LOG_INFO,
    MW_LOG_DEBUG,
};

enum mw_log_format {
    MW_LOG_FORMAT_AUTO,
    MW_LOG_FORMAT_JSON,
    MW_LOG_FORMAT_TEXT,
};

/* Configures the sink. Not thread-safe: call from main() before starting threads. sink NULL = stderr. */
void mw_log_setup(enum mw_log_level level, enum mw_log_format format, FILE *sink);

/* Routes av_log() into mw_log and sets libav's level to match ours. Call once, after mw_log_setup(). */
void mw_log_route_libav(void);

/* Sets this thread's context; either may be NULL to clear it. The strings are copied (truncated if long). */
void mw_log_context_set(const char *job_id, const char *request_id);

/* Copies this thread's context out (empty strings when none), so a worker thread can take it over. */
void mw_log_context_get(char *job_id, size_t job_id_size, char *request_id, size_t request_id_size);

/* True when a message at level would be written (to skip expensive formatting). */
int mw_log_enabled(enum mw_log_level level);

#if defined(__GNUC__)
#define MW_PRINTF(fmt_index, args_index) __attribute__((format(printf, fmt_index, args_index)))
#else
#define MW_PRINTF(fmt_index, args_index)
#endif

/* Writes one line. component names the module ("probe", "broker"); it is a static string. */
void mw_log(enum mw_log_level level, const char *component, const char *fmt, ...) MW_PRINTF(3, 4);

/* Parses "error|warn|info|debug" and "json|text|auto"; return 0 or AVERROR(EINVAL). */
int mw_log_level_parse(const char *text, enum mw_log_level *level);
int mw_log_format_parse(const char *text, enum mw_log_format *format);
const char *mw_log_level_name(enum mw_log_level level);
const char *mw_log_format_name(enum mw_log_format format);

#endif
