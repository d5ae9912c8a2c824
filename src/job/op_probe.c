#include <string.h>

#include <libavutil/error.h>

#include "mediaworker/error.h"
#include "mediaworker/path.h"
#include "op_params_internal.h"
#include "operation_internal.h"

static int validate_probe(const cJSON *params, char *err, size_t err_size)
{
    int write_file = 0;

    return mw_param_bool(params, "probe", "file", &write_file, err, err_size);
}

/* The full probe is in every report already, so by default the operation writes nothing: a durable copy
 * (two fsyncs and a rename) would cost more than the probe itself. `"file": true` also leaves it beside
 * the other outputs as probe.json, for consumers that read outputs rather than reports. */
static int run_probe(struct mw_job_context *ctx, const cJSON *params)
{
    char path[2048];
    int write_file = 0;
    cJSON *json = NULL;
    char *text = NULL;
    int ret = mw_param_bool(params, "probe", "file", &write_file, ctx->error_detail, sizeof(ctx->error_detail));

    if (ret < 0 || !write_file)
        return ret;
    ret = mw_job_output_dir(ctx);
    if (ret < 0)
        return ret;
    json = mw_probe_to_json(ctx->probe);
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
    .validate = validate_probe,
    .run = run_probe,
};
