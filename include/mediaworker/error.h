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

/* X(name, tag byte 1, tag byte 2, message). */
#define MW_ERRNO_MAP(X)                                                                         \
    X(PATH_REFUSED,      'P', 'R', "input path refused by the path policy")                     \
    X(NOT_REGULAR_FILE,  'N', 'R', "input is not a regular file")                               \
    X(INPUT_TOO_LARGE,   'I', 'L', "input file is larger than the configured limit")            \
    X(FORMAT_REFUSED,    'F', 'R', "container format is not on the allowed list")               \
    X(CODEC_REFUSED,     'C', 'R', "codec is not on the allowed list")                          \
    X(TOO_MANY_STREAMS,  'T', 'S', "input has more streams than the configured limit")          \
    X(TOO_MANY_PIXELS,   'T', 'P', "picture is larger than the configured pixel limit")         \
    X(TOO_LONG,          'T', 'L', "input duration is longer than the configured limit")        \
    X(TOO_MANY_BYTES,    'T', 'B', "outputs asked for are larger than the job's byte budget")   \
    X(DEADLINE,          'D', 'L', "job deadline passed")                                       \
    X(NO_MEDIA_STREAM,   'N', 'M', "input has no usable audio or video stream")                 \
    X(NO_PICTURE,        'N', 'P', "input has no usable picture")                               \
    X(INVALID_MESSAGE,   'I', 'M', "job message is invalid")                                    \
    X(JOB_ID_CONFLICT,   'J', 'I', "job id already names the outputs of a different message")  \
    X(UNSUPPORTED_OP,    'U', 'O', "operation is not supported")                                \
    X(CONFIG,            'C', 'F', "invalid configuration")                                     \
    X(OUTPUT_CHECK,      'O', 'C', "output failed verification")                                \
    X(RUNAWAY,           'R', 'A', "output frame count ran far beyond the input duration")     \
    X(HTTP_TRANSIENT,    'H', 'T', "data service request failed, may be retried")               \
    X(HTTP_PERMANENT,    'H', 'P', "data service refused the request")                          \
    X(HTTP_GONE,         'H', 'G', "data service says the user no longer exists")               \
    X(BROKER,            'B', 'R', "message broker error")                                      \
    X(JOB_CRASHED,       'J', 'C', "job process crashed")                                       \
    X(JOB_MEMORY,        'J', 'M', "job process hit its memory limit")                          \
    X(JOB_CPU,           'J', 'U', "job process hit its CPU-time limit")                        \
    X(JOB_LOST,          'J', 'L', "job process could not take the job")                        \
    X(JOB_PROTOCOL,      'J', 'P', "job process answered something other than its job's result") \
    X(URL_REFUSED,       'U', 'R', "URL refused by the network policy")                         \
    X(DOWNLOAD_TOO_LARGE,'D', 'T', "download is larger than the configured limit")              \
    X(DOWNLOAD_REJECTED, 'D', 'R', "the server refused the download")                           \
    X(DOWNLOAD_FAILED,   'D', 'F', "download failed, may be retried")

#define MW_ERROR_TAG(a, b) FFERRTAG('M', 'W', (a), (b))

enum mw_error {
#define MW_ERROR_ENUM(name, a, b, msg) MW_ERR_##name = MW_ERROR_TAG(a, b),
    MW_ERRNO_MAP(MW_ERROR_ENUM)
#undef MW_ERROR_ENUM
};

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
