/*
 * mediaworker thumbnail FILE... -o OUT: one poster per input (several sizes with --width 160,320,...),
 * all in one process so a batch pays the start-up once. With one input and one size OUT is the file; with
 * several inputs (or OUT ending in '/' or naming a directory) OUT is a directory and each image is named
 * after its input. Several sizes add "-<width>" before the extension.
 *
 * A batch runs on as many threads as the configuration gives a job (one decoder thread each: across files
 * is where the parallelism is), and prints one JSON line per input, in input order, once all are done.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "cli_internal.h"
#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"
#include "mediaworker/thumbnail.h"

static const char *opt_output, *opt_at, *opt_width, *opt_height, *opt_fit, *opt_select, *opt_format, *opt_quality;
static int opt_upscale;

static const struct cli_option thumbnail_options[] = {
    {"--output", "-o", "OUT", &opt_output, NULL, "output file, or directory for several inputs (required)"},
    {"--at", NULL, "POS", &opt_at, NULL, "position: seconds, hh:mm:ss or percent (default 50%)"},
    {"--width", "-w", "N[,N..]", &opt_width, NULL, "width(s) in pixels; several give several files"},
    {"--height", NULL, "N", &opt_height, NULL, "height in pixels"},
    {"--fit", NULL, "MODE", &opt_fit, NULL, "contain (default) or cover (crop to width x height)"},
    {"--select", NULL, "MODE", &opt_select, NULL, "keyframe (default), exact or best"},
    {"--format", "-f", "FMT", &opt_format, NULL, "jpeg, png or webp (default: from OUT, else jpeg)"},
    {"--quality", "-q", "N", &opt_quality, NULL, "1..100 for jpeg/webp (default 85)"},
    {"--upscale", NULL, NULL, NULL, &opt_upscale, "allow output larger than the picture"},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

struct thumbnail_plan {
    struct mw_thumbnail_request req;
    struct mw_thumbnail_output outputs[MW_THUMBNAIL_MAX_SIZES];
    char paths[MW_THUMBNAIL_MAX_SIZES][4096];
    int widths[MW_THUMBNAIL_MAX_SIZES];
    int width_count;
    int to_directory;
};

static int parse_widths(const char *text, struct thumbnail_plan *plan)
{
    char buffer[256];
    char *save = NULL;

    snprintf(buffer, sizeof(buffer), "%s", text);
    for (char *item = strtok_r(buffer, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (plan->width_count == MW_THUMBNAIL_MAX_SIZES ||
            cli_parse_int(item, 1, MW_THUMBNAIL_MAX_SIDE, &plan->widths[plan->width_count]) < 0)
            return AVERROR(EINVAL);
        plan->width_count++;
    }
    return plan->width_count ? 0 : AVERROR(EINVAL);
}

static int usage_error(const char *what)
{
    fprintf(stderr, "mediaworker thumbnail: invalid %s (see --help)\n", what);
    return MW_EXIT_USAGE;
}

/* Turns the options into a request; returns -1 when valid, else the exit code. */
static int build_plan(struct thumbnail_plan *plan, int input_count, int threads)
{
    struct mw_size_request size = {0};
    enum mw_image_format format = MW_IMAGE_JPEG;
    const char *extension = opt_output ? strrchr(opt_output, '.') : NULL;
    struct stat st;
    int quality = 0;

    memset(plan, 0, sizeof(*plan));
    if (!opt_output || !*opt_output)
        return usage_error("command line: -o OUT is required");
    plan->to_directory = input_count > 1 || opt_output[strlen(opt_output) - 1] == '/' ||
                         (stat(opt_output, &st) == 0 && S_ISDIR(st.st_mode));
    if (opt_format ? mw_image_format_parse(opt_format, &format) < 0
                   : !plan->to_directory && extension && mw_image_format_parse(extension + 1, &format) < 0)
        return usage_error("--format");
    if (mw_position_parse(opt_at ? opt_at : "50%", &plan->req.at) < 0)
        return usage_error("--at");
    if (opt_select && mw_select_parse(opt_select, &plan->req.select) < 0)
        return usage_error("--select");
    if (opt_width && parse_widths(opt_width, plan) < 0)
        return usage_error("--width");
    if (opt_height && cli_parse_int(opt_height, 1, MW_THUMBNAIL_MAX_SIDE, &size.height) < 0)
        return usage_error("--height");
    if (opt_quality && cli_parse_int(opt_quality, 1, 100, &quality) < 0)
        return usage_error("--quality");
    if (opt_fit && strcmp(opt_fit, "contain") && strcmp(opt_fit, "cover"))
        return usage_error("--fit");
    size.fit = opt_fit && !strcmp(opt_fit, "cover") ? MW_FIT_COVER : MW_FIT_CONTAIN;
    size.upscale = opt_upscale;
    if (!plan->width_count)
        plan->widths[plan->width_count++] = 0;
    plan->req.threads = threads;
    plan->req.output_count = plan->width_count;
    plan->req.outputs = plan->outputs;
    for (int i = 0; i < plan->width_count; i++) {
        plan->outputs[i].size = size;
        plan->outputs[i].size.width = plan->widths[i];
        plan->outputs[i].format = format;
        plan->outputs[i].quality = quality;
        plan->outputs[i].path = plan->paths[i];
    }
    return -1;
}

/* Fills the output paths for input. */
static int name_outputs(struct thumbnail_plan *plan, const char *input)
{
    for (int i = 0; i < plan->width_count; i++) {
        const char *ext = mw_image_format_extension(plan->outputs[i].format);
        char suffix[32] = "";
        char stem[1024];
        int written;

        if (plan->width_count > 1)
            snprintf(suffix, sizeof(suffix), "-%d", plan->widths[i]);
        if (plan->to_directory) {
            const char *base = strrchr(input, '/');
            const char *dot;
            base = base ? base + 1 : input;
            dot = strrchr(base, '.');
            snprintf(stem, sizeof(stem), "%.*s", dot && dot != base ? (int)(dot - base) : (int)strlen(base), base);
            written = snprintf(plan->paths[i], sizeof(plan->paths[i]), "%s%s%s%s.%s", opt_output,
                               opt_output[strlen(opt_output) - 1] == '/' ? "" : "/", stem, suffix, ext);
        } else if (plan->width_count > 1) {
            const char *dot = strrchr(opt_output, '.');
            const char *slash = strrchr(opt_output, '/');
            int stem_length = dot && (!slash || dot > slash) ? (int)(dot - opt_output) : (int)strlen(opt_output);
            written = snprintf(plan->paths[i], sizeof(plan->paths[i]), "%.*s%s.%s", stem_length, opt_output,
                               suffix, ext);
        } else {
            written = snprintf(plan->paths[i], sizeof(plan->paths[i]), "%s", opt_output);
        }
        if (written < 0 || written >= (int)sizeof(plan->paths[i]))
            return AVERROR(ENAMETOOLONG);
    }
    return 0;
}

static cJSON *result_json(const char *input, const struct thumbnail_plan *plan, const struct mw_thumbnail_result *r)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *outputs;

    if (!root || !cJSON_AddStringToObject(root, "file", input) ||
        !cJSON_AddStringToObject(root, "source", r->source) ||
        !cJSON_AddStringToObject(root, "select", mw_select_name(plan->req.select)) ||
        !cJSON_AddNumberToObject(root, "time", (double)r->time_us / 1e6) ||
        !cJSON_AddNumberToObject(root, "score", round(r->score.score * 1000) / 1000) ||
        !(outputs = cJSON_AddArrayToObject(root, "outputs")))
        goto fail;
    for (int i = 0; i < plan->req.output_count; i++) {
        const struct mw_thumbnail_output *o = &plan->outputs[i];
        cJSON *js = cJSON_CreateObject();
        if (!js || !cJSON_AddItemToArray(outputs, js) || !cJSON_AddStringToObject(js, "path", o->path) ||
            !cJSON_AddStringToObject(js, "format", mw_image_format_name(o->format)) ||
            !cJSON_AddNumberToObject(js, "width", o->width) || !cJSON_AddNumberToObject(js, "height", o->height) ||
            !cJSON_AddNumberToObject(js, "bytes", (double)o->bytes))
            goto fail;
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

/* Describes one input's outcome as JSON text into *text (cJSON_free; NULL when memory ran out). */
static int thumbnail_one(const struct mw_config *cfg, struct thumbnail_plan *plan, const char *input, int pretty,
                         char **text)
{
    struct mw_thumbnail_result result = {0};
    struct mw_input *in = NULL;
    struct mw_probe *probe = NULL;
    int64_t deadline = av_gettime_relative() + (int64_t)cfg->limits.job_deadline_s * 1000000;
    cJSON *json = NULL;
    int ret;

    ret = name_outputs(plan, input);
    if (ret >= 0)
        ret = mw_input_open_file(&in, input, &cfg->limits, deadline);
    if (ret >= 0)
        ret = mw_probe_input(in, &probe);
    if (ret >= 0)
        ret = mw_thumbnail_make(in, probe, &plan->req, &result);
    if (ret >= 0) {
        json = result_json(input, plan, &result);
        if (!json)
            ret = AVERROR(ENOMEM);
    }
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "thumbnail", "%s: %s", input, mw_err2str(ret));
        json = cli_failure_json(input, ret, NULL);
    }
    *text = json ? (pretty ? cJSON_Print(json) : cJSON_PrintUnformatted(json)) : NULL;
    cJSON_Delete(json);
    mw_probe_free(&probe);
    mw_input_close(&in);
    return ret;
}

struct batch {
    const struct mw_config *cfg;
    const struct thumbnail_plan *plan;     /* template; each worker copies it for its own paths */
    char **inputs;
    int count;
    char **results;                        /* JSON text per input */
    int *failed;
    atomic_int next;
};

static void *batch_worker(void *opaque)
{
    struct batch *b = opaque;
    struct thumbnail_plan *plan = av_malloc(sizeof(*plan));

    if (!plan) {
        for (int i = atomic_fetch_add(&b->next, 1); i < b->count; i = atomic_fetch_add(&b->next, 1))
            b->failed[i] = 1;
        return NULL;
    }
    *plan = *b->plan;
    plan->req.outputs = plan->outputs;
    for (int i = 0; i < plan->req.output_count; i++)
        plan->outputs[i].path = plan->paths[i];
    for (int i = atomic_fetch_add(&b->next, 1); i < b->count; i = atomic_fetch_add(&b->next, 1))
        b->failed[i] = thumbnail_one(b->cfg, plan, b->inputs[i], b->count == 1, &b->results[i]) < 0;
    av_free(plan);
    return NULL;
}

/* Runs the batch on up to `workers` threads, the calling one included (alone if none can start). */
static void run_batch(struct batch *b, int workers)
{
    pthread_t threads[16];
    int started = 0;

    if (workers > (int)(sizeof(threads) / sizeof(threads[0])))
        workers = (int)(sizeof(threads) / sizeof(threads[0]));
    for (int i = 1; i < workers && i < b->count; i++) {
        if (pthread_create(&threads[started], NULL, batch_worker, b) != 0)
            break;
        started++;
    }
    batch_worker(b);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
}

static int run_thumbnail(const struct mw_config *cfg, int argc, char **argv)
{
    struct thumbnail_plan *plan = av_mallocz(sizeof(*plan));
    struct batch b = {.cfg = cfg, .inputs = argv, .count = argc};
    int workers = mw_config_codec_threads(cfg);
    int failures = 0;
    int ret = plan ? build_plan(plan, argc, argc > 1 ? 1 : workers) : MW_EXIT_JOB_FAILED;

    if (ret >= 0)
        goto end;
    if (plan->to_directory && mw_path_mkdirs(opt_output) < 0) {
        fprintf(stderr, "mediaworker thumbnail: cannot create %s: %s\n", opt_output, strerror(errno));
        ret = MW_EXIT_JOB_FAILED;
        goto end;
    }
    /* Each file needs a few large frame buffers for a moment; from fresh mmaps the kernel must zero them
     * file after file, which costs a batch about a quarter of its time. Keep them in the heap instead. */
    if (argc > 1 && (!mallopt(M_MMAP_THRESHOLD, 64 << 20) || !mallopt(M_TRIM_THRESHOLD, 128 << 20)))
        mw_log(MW_LOG_DEBUG, "thumbnail", "malloc tuning refused; continuing with the defaults");
    b.plan = plan;
    b.results = av_calloc((size_t)argc, sizeof(*b.results));
    b.failed = av_calloc((size_t)argc, sizeof(*b.failed));
    if (!b.results || !b.failed) {
        ret = MW_EXIT_JOB_FAILED;
        goto end;
    }
    run_batch(&b, workers);
    for (int i = 0; i < argc; i++) {
        if (b.results[i])
            printf("%s\n", b.results[i]);
        failures += b.failed[i];
    }
    fflush(stdout);
    ret = failures ? MW_EXIT_JOB_FAILED : MW_EXIT_OK;
end:
    if (b.results)
        for (int i = 0; i < argc; i++)
            cJSON_free(b.results[i]);
    av_free(b.results);
    av_free(b.failed);
    av_free(plan);
    return ret;
}

const struct cli_command cli_cmd_thumbnail = {
    .name = "thumbnail",
    .usage = "FILE... -o OUT [--at 50%|SECONDS] [--width N[,N..]] [--height N] [--fit contain|cover] "
             "[--select keyframe|exact|best] [--format jpeg|png|webp] [--quality N]",
    .summary = "write a poster image for each file and print what was written as JSON",
    .options = thumbnail_options,
    .min_positional = 1,
    .max_positional = -1,
    .one_job = 1,
    .run = run_thumbnail,
};
