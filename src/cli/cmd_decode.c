#include <stdio.h>

#include <libavutil/time.h>

#include "cli_internal.h"
#include "mediaworker/decode_check.h"
#include "mediaworker/error.h"
#include "mediaworker/hwaccel.h"
#include "mediaworker/log.h"

static void print_result(const char *path, const struct mw_decode_stats *stats, const struct mw_hwaccel_choice *choice,
                         int err)
{
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;

    if (root && cJSON_AddStringToObject(root, "file", path) &&
        cJSON_AddNumberToObject(root, "frames", (double)stats->frames) &&
        cJSON_AddNumberToObject(root, "corrupt_frames", (double)stats->corrupt_frames) &&
        cJSON_AddNumberToObject(root, "seconds", stats->seconds) &&
        cJSON_AddNumberToObject(root, "fps", stats->seconds > 0 ? (double)stats->frames / stats->seconds : 0) &&
        mw_hwaccel_report(root, choice, stats->on_device) >= 0 &&
        (err >= 0 || (cJSON_AddStringToObject(root, "error", mw_error_code_name(err)) &&
                      cJSON_AddStringToObject(root, "message", mw_err2str(err)))))
        text = cJSON_PrintUnformatted(root);
    if (text)
        printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(root);
}

/* Decodes each file to the end and prints one JSON line per file: frames, speed, and where it decoded. */
static int run_decode(const struct mw_config *cfg, int argc, char **argv)
{
    struct mw_hwaccel_choice choice;
    AVBufferRef *device = NULL;
    int failures = 0;
    int ret = mw_hwaccel_shared(cfg, &device, &choice);

    if (ret < 0)
        return MW_EXIT_JOB_FAILED;
    for (int i = 0; i < argc; i++) {
        struct mw_decode_stats stats = {0};
        struct mw_input *in = NULL;
        int64_t deadline = av_gettime_relative() + (int64_t)cfg->limits.job_deadline_s * 1000000;

        ret = mw_input_open_file(&in, argv[i], &cfg->limits, deadline);
        if (ret >= 0)
            ret = mw_decode_check(in, mw_config_codec_threads(cfg), device, &stats);
        if (ret < 0) {
            mw_log(MW_LOG_ERROR, "decode", "%s: %s", argv[i], mw_err2str(ret));
            failures++;
        }
        print_result(argv[i], &stats, &choice, ret);
        mw_input_close(&in);
    }
    av_buffer_unref(&device);
    fflush(stdout);
    return failures ? MW_EXIT_JOB_FAILED : MW_EXIT_OK;
}

const struct cli_command cli_cmd_decode = {
    .name = "decode",
    .usage = "FILE...",
    .summary = "decode every video frame of each file and print frames, speed and where decoding ran",
    .min_positional = 1,
    .max_positional = -1,
    .one_job = 1,
    .run = run_decode,
};
