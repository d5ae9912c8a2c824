/*
 * What an operation handler sees. The job runner opens the input once, probes it, and hands the same
 * opened input to every operation of the job, so a probe + thumbnail + storyboard job reads the file's
 * header once. Handlers append their outputs to `outputs` and may add fields to `report`.
 */
#ifndef MEDIAWORKER_JOB_OPERATION_INTERNAL_H
#define MEDIAWORKER_JOB_OPERATION_INTERNAL_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "mediaworker/config.h"
#include "mediaworker/hwaccel.h"
#include "mediaworker/input.h"
#include "mediaworker/job.h"
#include "mediaworker/probe.h"

struct mw_job_context {
    const struct mw_config *cfg;
    const struct mw_job *job;
    struct mw_input *input;
    const struct mw_probe *probe;
    const char *input_path;          /* resolved absolute path of the input */
    const char *output_dir;          /* <output_root>/<user_id>/<job_id>, made by mw_job_output_dir */
    int marker_fd;                   /* the folder's claimed marker, locked shared; -1 until claimed */
    int64_t output_pixels;           /* charged so far against MW_MAX_OUTPUT_PIXELS */
    int64_t output_bytes;            /* charged so far against MW_MAX_OUTPUT_BYTES */
    int64_t deadline;                /* av_gettime_relative() value */
    AVBufferRef *hw_device;          /* the process's device for decoding, or NULL for software */
    struct mw_hwaccel_choice hwaccel;/* what was asked, what was got, and why not */
    int decoded_on_device;           /* an operation decoded on hw_device (transcoding decodes in software) */
    mw_progress_fn progress;
    void *progress_opaque;
    int operation_index;             /* for progress: which of operation_count is running */
    cJSON *outputs;                  /* array of output descriptors */
    cJSON *report;                   /* the new_file object being built */
    char primary_path[1024];         /* first output that represents the upload, relative to output_root */
    char error_detail[256];          /* handler's explanation of its failure, for the report */
};

struct mw_operation_handler {
    const char *type;
    /* Set when the operation only makes sense for a picture stream (a storyboard of a song does not): in a
     * job with other operations it is then skipped, and the report says so; alone, it fails NO_PICTURE. */
    int needs_video;
    /* Set when the operation writes files under the job's output folder. */
    int writes_files;
    /* Checks params before any work starts; MW_ERR_INVALID_MESSAGE with the reason in err. May be NULL. */
    int (*validate)(const cJSON *params, char *err, size_t err_size);
    /* Before any operation runs, after the probe: charges the pixels the operation will write to the job's
     * budget (mw_job_charge_pixels), so that an oversized request is refused up front. May be NULL. */
    int (*charge)(struct mw_job_context *ctx, const cJSON *params);
    /* Does the work; 0 or a negative error, with ctx->error_detail set when more than the code helps. */
    int (*run)(struct mw_job_context *ctx, const cJSON *params);
};

/* The handler for type, or NULL. */
const struct mw_operation_handler *mw_operation_find(const char *type);

/*
 * Makes and claims ctx->output_dir (once) for a handler about to write there: the folder's marker then
 * holds this message's digest and stays locked shared until mw_job_release_output_dir (output_folder.c
 * says why). A job that writes nothing (a probe, whose result is the report itself) leaves no empty folder
 * behind and costs no directory updates. MW_ERR_JOB_ID_CONFLICT when another message's outputs are there.
 */
int mw_job_output_dir(struct mw_job_context *ctx);

/*
 * Commits a successful job's result: checks that every output ctx->report lists is in place at its size,
 * then writes the manifest (MW_JOB_RESULT: version, digest, report) atomically. 0, or an error with
 * ctx->error_detail set; the job has then failed.
 */
int mw_job_commit_result(struct mw_job_context *ctx);

/*
 * After a failure: removes everything this job wrote into its folder, unless another attempt of the
 * same message holds the folder too or a committed result is there. 1 when removed, else 0.
 */
int mw_job_discard_unfinished(struct mw_job_context *ctx);

/* Drops the claim of mw_job_output_dir; accepts a context that never claimed. */
void mw_job_release_output_dir(struct mw_job_context *ctx);

/*
 * Counts count pictures of width x height that the operation's field (e.g. "thumbnail.sizes[2]") will
 * write. Returns 0, or MW_ERR_TOO_MANY_PIXELS with ctx->error_detail naming the field when one picture is
 * over MW_MAX_PIXELS or the job's total is over MW_MAX_OUTPUT_PIXELS.
 */
int mw_job_charge_pixels(struct mw_job_context *ctx, const char *field, int64_t width, int64_t height,
                         int64_t count);

/*
 * Counts bytes that the operation's field will write at most. Returns 0, or MW_ERR_TOO_MANY_BYTES with
 * ctx->error_detail naming the field when the job's total is over MW_MAX_OUTPUT_BYTES.
 */
int mw_job_charge_bytes(struct mw_job_context *ctx, const char *field, int64_t bytes);

/* The displayed size of the input's main picture (sample aspect ratio and rotation applied); 0 when none. */
int mw_job_display_size(const struct mw_job_context *ctx, int *width, int *height);

/* Opens the job's input (again: each caller reads it from the start). 0 or a negative error. */
int mw_job_open_input(struct mw_job_context *ctx, struct mw_input **in);

/*
 * Adds an output descriptor {type, path, bytes, ...} for a file written under ctx->output_dir; path is
 * reported relative to the output root. Returns the new object (owned by ctx->outputs) or NULL on ENOMEM.
 */
cJSON *mw_job_add_output(struct mw_job_context *ctx, const char *type, const char *file_name);

extern const struct mw_operation_handler mw_op_probe;
extern const struct mw_operation_handler mw_op_thumbnail;
extern const struct mw_operation_handler mw_op_storyboard;
extern const struct mw_operation_handler mw_op_transcode;

#endif
