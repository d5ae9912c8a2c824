/*
 * Error codes of mediaworker.
 *
 * Every function that can fail returns 0 on success and a negative AVERROR on failure: system errors as
 * AVERROR(errno), libav's own codes as they come, and ours as FFERRTAG('M','W',x,y) tags so that all three
 * share one integer space and one formatter (mw_strerror). The table below is the only place a code and
 * its message are written, so they cannot drift apart.
 */
#ifndef MEDIAWORKER_ERROR_H
#define MEDIAWORKER_ERROR_H

#include <stddef.h>

#include <libavutil/error.h>

/*
 * X(name, tag byte 1, tag byte 2, class, message). The class is what a retry can do about the error, the one
 * place that is decided (see enum mw_error_class).
 */
#define MW_ERRNO_MAP(X)                                                                                     \
    X(PATH_REFUSED,      'P', 'R', MESSAGE,   "input path refused by the path policy")                      \
    X(NOT_REGULAR_FILE,  'N', 'R', INPUT,     "input is not a regular file")                                \
    X(INPUT_TOO_LARGE,   'I', 'L', INPUT,     "input file is larger than the configured limit")             \
    X(FORMAT_REFUSED,    'F', 'R', INPUT,     "container format is not on the allowed list")                \
    X(CODEC_REFUSED,     'C', 'R', INPUT,     "codec is not on the allowed list")                           \
    X(TOO_MANY_STREAMS,  'T', 'S', INPUT,     "input has more streams than the configured limit")           \
    X(TOO_MANY_PIXELS,   'T', 'P', INPUT,     "picture is larger than the configured pixel limit")          \
    X(TOO_LONG,          'T', 'L', INPUT,     "input duration is longer than the configured limit")         \
    X(TOO_MANY_BYTES,    'T', 'B', INPUT,     "outputs asked for are larger than the job's byte budget")    \
    X(DEADLINE,          'D', 'L', INPUT,     "job deadline passed")                                        \
    X(NO_MEDIA_STREAM,   'N', 'M', INPUT,     "input has no usable audio or video stream")                  \
    X(NO_PICTURE,        'N', 'P', INPUT,     "input has no usable picture")                                \
    X(INVALID_MESSAGE,   'I', 'M', MESSAGE,   "job message is invalid")                                     \
    X(JOB_ID_CONFLICT,   'J', 'I', INPUT,       "job id already names the outputs of a different message")  \
    X(UNSUPPORTED_OP,    'U', 'O', MESSAGE,   "operation is not supported")                                 \
    X(CONFIG,            'C', 'F', INPUT,       "invalid configuration")                                    \
    X(OUTPUT_CHECK,      'O', 'C', INPUT,     "output failed verification")                                 \
    X(RUNAWAY,           'R', 'A', INPUT,     "output frame count ran far beyond the input duration")       \
    X(HTTP_TRANSIENT,    'H', 'T', TRANSIENT, "data service request failed, may be retried")                \
    X(HTTP_PERMANENT,    'H', 'P', INPUT,     "data service refused the request")                           \
    X(HTTP_GONE,         'H', 'G', INPUT,     "data service says the user no longer exists")                \
    X(BROKER,            'B', 'R', TRANSIENT, "message broker error")                                       \
    X(JOB_CRASHED,       'J', 'C', INPUT,     "job process crashed")                                        \
    X(JOB_MEMORY,        'J', 'M', INPUT,     "job process hit its memory limit")                           \
    X(JOB_KILLED,        'J', 'K', INPUT,     "job process was killed from outside (SIGKILL), twice")       \
    X(JOB_CPU,           'J', 'U', INPUT,     "job process hit its CPU-time limit")                         \
    X(JOB_LOST,          'J', 'L', TRANSIENT, "job process could not take the job")                         \
    X(JOB_PROTOCOL,      'J', 'P', INPUT,     "job process answered something other than its job's result") \
    X(URL_REFUSED,       'U', 'R', INPUT,     "URL refused by the network policy")                          \
    X(DOWNLOAD_TOO_LARGE,'D', 'T', INPUT,     "download is larger than the configured limit")               \
    X(DOWNLOAD_REJECTED, 'D', 'R', INPUT,     "the server refused the download")                            \
    X(DOWNLOAD_FAILED,   'D', 'F', TRANSIENT, "download failed, may be retried")

#define MW_ERROR_TAG(a, b) FFERRTAG('M', 'W', (a), (b))

enum mw_error {
#define MW_ERROR_ENUM(name, a, b, cls, msg) MW_ERR_##name = MW_ERROR_TAG(a, b),
    MW_ERRNO_MAP(MW_ERROR_ENUM)
#undef MW_ERROR_ENUM
};

/*
 * What a retry can do about an error. The delivery verdict (src/worker/verdict.c) acts on it; the report's
 * error.permanent is "not TRANSIENT".
 */
enum mw_error_class {
    MW_ERROR_CLASS_INPUT,       /* the upload (or what was asked of it) fails every time: reported failed */
    MW_ERROR_CLASS_MESSAGE,     /* the message itself is wrong: reported failed, kept in the DLQ for a person */
    MW_ERROR_CLASS_TRANSIENT,   /* the worker's surroundings failed (disk, memory, network): retried */
};

/* The class of err: ours from the table above; errno codes of resources that run out are TRANSIENT. */
enum mw_error_class mw_error_class(int err);

/* Longest message mw_strerror writes, including the terminator. */
#define MW_ERROR_MAX_STRING 128

/*
 * Writes the message for err (ours, libav's or errno's) into buf and returns buf. Never fails: an
 * unknown code gives a generic message with the number.
 */
const char *mw_strerror(int err, char *buf, size_t size);

/* Stable machine-readable name of err for reports and metric labels, e.g. "PATH_REFUSED", "ENOMEM". */
const char *mw_error_code_name(int err);

/* Convenience for log arguments: a compound-literal buffer that lives until the end of the full expression. */
#define mw_err2str(err) mw_strerror((err), (char[MW_ERROR_MAX_STRING]){0}, MW_ERROR_MAX_STRING)

#endif
