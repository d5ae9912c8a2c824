#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libavutil/error.h>
#include <libavutil/log.h>

#include "mediaworker/log.h"
#include "mediaworker/text.h"

/* Set once in mw_log_setup() before threads exist, then only read. */
static enum mw_log_level max_level = MW_LOG_INFO;
static enum mw_log_format sink_format = MW_LOG_FORMAT_TEXT;
static FILE *sink_stream;
/* Serialises whole lines so that concurrent threads never interleave within one. */
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;

struct log_context {
    char job_id[80];
    char request_id[128];
    /* libav emits one line in several calls; the pieces are collected here until the newline. */
    char libav_line[1024];
    int libav_print_prefix;
};

static _Thread_local struct log_context thread_context = {.libav_print_prefix = 1};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void mw_log_setup(enum mw_log_level level, enum mw_log_format format, FILE *sink)
{
    sink_stream = sink ? sink : stderr;
    max_level = level;
    if (format == MW_LOG_FORMAT_AUTO)
        format = isatty(fileno(sink_stream)) ? MW_LOG_FORMAT_TEXT : MW_LOG_FORMAT_JSON;
    sink_format = format;
}

int mw_log_enabled(enum mw_log_level level)
{
    return level <= max_level;
}

void mw_log_context_set(const char *job_id, const char *request_id)
{
    snprintf(thread_context.job_id, sizeof(thread_context.job_id), "%s", job_id ? job_id : "");
    snprintf(thread_context.request_id, sizeof(thread_context.request_id), "%s", request_id ? request_id : "");
}

void mw_log_context_get(char *job_id, size_t job_id_size, char *request_id, size_t request_id_size)
{
    snprintf(job_id, job_id_size, "%s", thread_context.job_id);
    snprintf(request_id, request_id_size, "%s", thread_context.request_id);
}

/* Appends text to out as the inside of a JSON string. */
static size_t json_escape(char *out, size_t size, size_t used, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p && used + 7 < size; p++) {
        if (*p == '"' || *p == '\\') {
            out[used++] = '\\';
            out[used++] = (char)*p;
        } else if (*p < 0x20) {
            used += (size_t)snprintf(out + used, size - used, "\\u%04x", *p);
        } else {
            out[used++] = (char)*p;
        }
    }
    out[used] = '\0';
    return used;
}

static void format_time(char *buf, size_t size)
{
    struct timespec now;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", now.tv_nsec / 1000000);
}

/*
 * Every value printed into a line may hold text from outside (a file name, a libav message about a hostile
 * file, an id): control characters and invalid UTF-8 are written as \xNN, so nobody can end a line and
 * forge the next one, and a JSON line stays valid UTF-8.
 */
static void write_line(enum mw_log_level level, const char *raw_component, const char *raw_message)
{
    char line[4096];
    char when[40];
    char component[64], message[2048];
    size_t used;
    struct log_context escaped;
    const struct log_context *ctx = &escaped;

    enum mw_text_escape_mode mode = sink_format == MW_LOG_FORMAT_JSON ? MW_ESCAPE_INVALID_ONLY : MW_ESCAPE_CONTROLS;

    mw_text_escape(raw_component, component, sizeof(component), mode);
    mw_text_escape(raw_message, message, sizeof(message), mode);
    mw_text_escape(thread_context.job_id, escaped.job_id, sizeof(escaped.job_id), mode);
    mw_text_escape(thread_context.request_id, escaped.request_id, sizeof(escaped.request_id), mode);

    format_time(when, sizeof(when));
    if (sink_format == MW_LOG_FORMAT_JSON) {
        used = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", when,
                                level_names[level]);
        used = json_escape(line, sizeof(line), used, component);
        if (ctx->job_id[0]) {
            used += (size_t)snprintf(line + used, sizeof(line) - used, "\",\"job_id\":\"");
            used = json_escape(line, sizeof(line), used, ctx->job_id);
        }
        if (ctx->request_id[0] && used < sizeof(line)) {
            used += (size_t)snprintf(line + used, sizeof(line) - used, "\",\"request_id\":\"");
            used = json_escape(line, sizeof(line), used, ctx->request_id);
        }
        if (used < sizeof(line))
            used += (size_t)snprintf(line + used, sizeof(line) - used, "\",\"msg\":\"");
        used = json_escape(line, sizeof(line) - 4, used, message);
        snprintf(line + used, sizeof(line) - used, "\"}\n");
    } else {
        used = (size_t)snprintf(line, sizeof(line), "%s %-5s [%s]", when, level_names[level], component);
        if (ctx->job_id[0] && used < sizeof(line))
            used += (size_t)snprintf(line + used, sizeof(line) - used, " job=%s", ctx->job_id);
        if (ctx->request_id[0] && used < sizeof(line))
            used += (size_t)snprintf(line + used, sizeof(line) - used, " req=%s", ctx->request_id);
        if (used < sizeof(line))
            snprintf(line + used, sizeof(line) - used, " %s\n", message);
    }
    pthread_mutex_lock(&sink_lock);
    fputs(line, sink_stream ? sink_stream : stderr);
    fflush(sink_stream ? sink_stream : stderr);
    pthread_mutex_unlock(&sink_lock);
}

void mw_log(enum mw_log_level level, const char *component, const char *fmt, ...)
{
    char message[2048];
    va_list args;

    if (!mw_log_enabled(level))
        return;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    write_line(level, component, message);
}

/*
 * libav's errors are usually recoverable from the job's point of view (a damaged packet, a missing
 * reference), so they become WARN; the job logs its own ERROR once if it fails. Its warnings and chatter
 * are DEBUG.
 */
static enum mw_log_level from_libav_level(int av_level)
{
    if (av_level <= AV_LOG_ERROR)
        return MW_LOG_WARN;
    return MW_LOG_DEBUG;
}

static void libav_callback(void *avcl, int av_level, const char *fmt, va_list args)
{
    struct log_context *ctx = &thread_context;
    enum mw_log_level level;
    char piece[1024];
    size_t len;

    if (av_level > av_log_get_level())
        return;
    level = from_libav_level(av_level);
    if (!mw_log_enabled(level))
        return;
    av_log_format_line2(avcl, av_level, fmt, args, piece, sizeof(piece), &ctx->libav_print_prefix);
    len = strlen(ctx->libav_line);
    snprintf(ctx->libav_line + len, sizeof(ctx->libav_line) - len, "%s", piece);
    len = strlen(ctx->libav_line);
    /* A line too long for the buffer is written cut off: waiting for its newline, which no longer fits,
     * would swallow every later libav line of this thread. */
    if (len && (ctx->libav_line[len - 1] == '\n' || len >= sizeof(ctx->libav_line) - 1)) {
        if (ctx->libav_line[len - 1] == '\n')
            ctx->libav_line[len - 1] = '\0';
        write_line(level, "libav", ctx->libav_line);
        ctx->libav_line[0] = '\0';
    }
}

void mw_log_route_libav(void)
{
    av_log_set_level(max_level >= MW_LOG_DEBUG ? AV_LOG_WARNING : AV_LOG_ERROR);
    av_log_set_callback(libav_callback);
}

int mw_log_level_parse(const char *text, enum mw_log_level *level)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (!strcmp(text, level_names[i])) {
            *level = (enum mw_log_level)i;
            return 0;
        }
    }
    return AVERROR(EINVAL);
}

int mw_log_format_parse(const char *text, enum mw_log_format *format)
{
    if (!strcmp(text, "auto"))
        *format = MW_LOG_FORMAT_AUTO;
    else if (!strcmp(text, "json"))
        *format = MW_LOG_FORMAT_JSON;
    else if (!strcmp(text, "text"))
        *format = MW_LOG_FORMAT_TEXT;
    else
        return AVERROR(EINVAL);
    return 0;
}

const char *mw_log_level_name(enum mw_log_level level)
{
    return level_names[level];
}

const char *mw_log_format_name(enum mw_log_format format)
{
    switch (format) {
    case MW_LOG_FORMAT_JSON: return "json";
    case MW_LOG_FORMAT_TEXT: return "text";
    default:                 return "auto";
    }
}
