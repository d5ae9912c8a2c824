/*
 * Jobs: the v1 message, parsed and validated, and running its operations.
 *
 * A message is JSON: {"job_id"?, "user_id", "file_info": {"path" | "url", "name"?, "content_type"?},
 * "operations"?: [{"type": ..., ...}]}. The seed form (user_id + file_info alone) is valid and gets the
 * configured default operations. Parsing never touches the filesystem; the path policy is applied when the
 * job runs (mw_job_run), where the input root is known.
 */
#ifndef MEDIAWORKER_JOB_H
#define MEDIAWORKER_JOB_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "mediaworker/config.h"

#define MW_JOB_ID_MAX      80
#define MW_REQUEST_ID_MAX  128
#define MW_JOB_MAX_OPERATIONS 16
#define MW_JOB_DIGEST_SIZE 65   /* sha256 in hex, NUL-terminated */
/* In each output folder: the digest of the message whose outputs it holds (also the folder's lock). */
#define MW_JOB_MARKER ".mw-job"
/* In the output folder of a successful job: its committed result (the digest and the report). */
#define MW_JOB_RESULT ".mw-result.json"

struct mw_operation {
    char type[32];
    cJSON *params;             /* the operation's JSON object; owned by the job */
};

struct mw_job {
    char job_id[MW_JOB_ID_MAX];
    char request_id[MW_REQUEST_ID_MAX];
    char digest[MW_JOB_DIGEST_SIZE];   /* sha256 of the message body: which work this job id names */
    int64_t user_id;           /* -1 when the message did not carry a usable one */
    char path[1024];           /* file_info.path as given (relative to the input root) */
    char url[2048];            /* file_info.url, when the file must be downloaded */
    char local_input[1024];    /* absolute path of the downloaded copy of url, set by whoever downloaded it */
    int input_fd;              /* the input, opened by a job process before it confined itself; -1: by path */
    char name[256];
    char content_type[128];
    int operation_count;
    struct mw_operation operations[MW_JOB_MAX_OPERATIONS];
};

/*
 * Parses and validates a message body. message_id and request_id come from the AMQP properties/headers
 * and may be NULL: the job id then derives from a hash of the body (so a redelivery gets the same id), and
 * a request id is generated. On success returns 0 and *out (free with mw_job_free). On failure returns
 * MW_ERR_INVALID_MESSAGE, writes a reason naming the field into err, and *out is NULL; user_id_out (may be
 * NULL) then receives the user id if the message had a valid one, else -1, so the failure can be reported.
 */
int mw_job_parse(const char *body, size_t length, const char *message_id, const char *request_id,
                 const struct mw_config *cfg, struct mw_job **out, int64_t *user_id_out, char *err, size_t err_size);

/*
 * Checks that MW_DEFAULT_OPERATIONS names known operations (comma or space separated), at start-up: a typo
 * there would otherwise make every message without "operations" invalid. 0, or an error with the reason.
 */
int mw_job_check_default_operations(const struct mw_config *cfg, char *err, size_t err_size);

/* The sha256 of a message body in hex, as struct mw_job's digest. 0 or AVERROR(ENOMEM). */
int mw_job_digest(const char *body, size_t length, char digest[MW_JOB_DIGEST_SIZE]);

/*
 * The job's output folder, <output_root>/<user_id>/<job_id>: the one place it is named. 0, or
 * AVERROR(ENAMETOOLONG) when it does not fit in size.
 */
int mw_job_output_path(const struct mw_config *cfg, const struct mw_job *job, char *dir, size_t size);

/*
 * Where the job's input is: file_info.path resolved under the input root (path policy applied), or the
 * downloaded copy of file_info.url. 0 with the absolute path in input_path, or an error (MW_ERR_PATH_REFUSED,
 * MW_ERR_NOT_REGULAR_FILE, AVERROR(ENOENT), MW_ERR_UNSUPPORTED_OP for a URL not yet downloaded) with a
 * reason in detail.
 */
int mw_job_locate_input(const struct mw_config *cfg, const struct mw_job *job, char *input_path, size_t size,
                        char *detail, size_t detail_size);

/* True when some operation of the job writes files (a probe alone writes none). */
int mw_job_writes_outputs(const struct mw_job *job);

/*
 * The result an earlier attempt of this message committed: 1 with its report (the new_file object, owned
 * by the caller) in *report when the folder's manifest is this message's (same digest and job id), says
 * processed, and every output it lists is still a regular file of its size inside the job's folder; else
 * 0 and *report NULL. Reads only; the manifest is the job process's writing, so it is checked like its
 * answers are.
 */
int mw_job_committed_result(const struct mw_config *cfg, const struct mw_job *job, cJSON **report);

/*
 * Once no job process works on the job any more: a folder with a committed result keeps it and loses the
 * temporaries of interrupted writes; a folder without one is unfinished work and is removed as a whole
 * (with the empty folder a job process was given). Leaves alone a folder another attempt of the same
 * message is working in, and one that holds another message's outputs. 1 when it removed unfinished work.
 */
int mw_job_tidy_output_folder(const struct mw_config *cfg, const struct mw_job *job);

/* Frees a job and sets *job to NULL; accepts NULL. */
void mw_job_free(struct mw_job **job);

/* Progress of the running operation, for events and the CLI's progress bar. */
struct mw_progress {
    const char *phase;         /* "probe", "thumbnail", "transcode:720p", ... */
    int64_t done, total;       /* frames (or another unit) done and expected; total 0 when unknown */
    double percent;            /* 0..100 over the whole job */
    double speed;              /* media seconds per wall second, 0 when unknown */
    double eta_s;              /* seconds left, negative when unknown */
};

typedef void (*mw_progress_fn)(void *opaque, const struct mw_progress *progress);

/*
 * Runs every operation of job in this process: resolves the input under cfg->input_root, writes outputs
 * atomically under <output_root>/<user_id>/<job_id>/, and builds the report's "new_file" object into
 * *result (always set on return, even on failure, unless memory ran out). Returns 0 when the job
 * succeeded, else the error of the first failing operation (also described in the result). progress may
 * be NULL.
 */
int mw_job_run(const struct mw_config *cfg, const struct mw_job *job, mw_progress_fn progress, void *opaque,
               cJSON **result);

/*
 * A failed report (the new_file object) for a job that could not run at all, e.g. because its URL input
 * could not be downloaded. Returns a new object owned by the caller, or NULL when out of memory.
 */
cJSON *mw_job_failure_report(const struct mw_job *job, int err, const char *detail);

#endif
