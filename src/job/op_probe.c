#include <string.h>

#include <libavutil/error.h>

#include "mediaworker/error.h"
#include "mediaworker/path.h"
#include "operation_internal.h"

/* Every report carries the probe summary; the operation also leaves the full probe beside the other
 * outputs as probe.json, for consumers that want more than the report holds. */
static int run_probe(struct mw_job_context *ctx, const cJSON *params)
{
    char path[2048];
    cJSON *json = mw_probe_to_json(ctx->probe);
    char *text = NULL;
    int ret;

    (void)params;
    if (!json || !(text = cJSON_Print(json))) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    snprintf(path, sizeof(path), "%s/probe.json", ctx->output_dir);
    ret = mw_path_write_atomic(path, text, strlen(text));
    if (ret < 0)
        goto end;
    if (!mw_job_add_output(ctx, "probe", "probe.json"))
        ret = AVERROR(ENOMEM);
end:
    cJSON_free(text);
    cJSON_Delete(json);
    return ret;
}

const struct mw_operation_handler mw_op_probe = {
    .type = "probe",
    .validate = NULL,
    .run = run_probe,
};
