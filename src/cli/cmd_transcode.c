/*
 * `mediaworker transcode FILE -o DIR [--preset web] [--renditions 720,480] [--hls] [--no-remux]`: the
 * transcode operation on one local file, without a job. Outputs go into DIR under the same names a job
 * gives them; the list of outputs is printed as JSON on stdout, a progress bar is drawn on stderr when it
 * is a terminal.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavutil/time.h>

#include "cli_internal.h"
#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"
#include "mediaworker/probe.h"
#include "mediaworker/transcode.h"

static const char *output_dir;
static const char *preset_name;
static const char *rendition_list;
static int hls;
static int no_remux;

static const struct cli_option transcode_options[] = {
    {"--output", "-o", "DIR", &output_dir, NULL, "directory for the outputs (created; required)"},
    {"--preset", NULL, "NAME", &preset_name, NULL, "preset (default web)"},
    {"--renditions", NULL, "H,H..", &rendition_list, NULL, "heights of the renditions, e.g. 1080,720,480"},
    {"--hls", NULL, NULL, NULL, &hls, "also write HLS playlists and segments under DIR/hls"},
    {"--no-remux", NULL, NULL, NULL, &no_remux, "always re-encode, even a web-compliant input"},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

/* "1080,720" -> heights; 0 or AVERROR(EINVAL) for anything that is not a list of positive numbers. */
static int parse_heights(const char *text, struct mw_transcode_options *opt)
{
    const char *cursor = text;

    while (*cursor) {
        char *end;
        long value;

        errno = 0;
        value = strtol(cursor, &end, 10);
        if (errno || end == cursor || value < MW_TRANSCODE_MIN_HEIGHT || value > MW_TRANSCODE_MAX_HEIGHT ||
            (*end && *end != ',') || opt->height_count == MW_TRANSCODE_MAX_RENDITIONS)
            return AVERROR(EINVAL);
        opt->heights[opt->height_count++] = (int)value;
        cursor = *end ? end + 1 : end;
    }
    return opt->height_count ? 0 : AVERROR(EINVAL);
}

static void draw_progress(void *opaque, const struct mw_progress *p)
{
    int width = 30;
    int filled = (int)(p->percent / 100.0 * width + 0.5);
    char bar[64];
    char eta[32] = "--";

    (void)opaque;
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[width] = '\0';
    if (p->eta_s >= 0)
        snprintf(eta, sizeof(eta), "%d:%02d", (int)p->eta_s / 60, (int)p->eta_s % 60);
    fprintf(stderr, "\r%s [%s] %5.1f%%  %lld/%lld frames  %.2fx  ETA %s ", p->phase, bar, p->percent,
            (long long)p->done, (long long)p->total, p->speed, eta);
    fflush(stderr);
}

static int print_result(const struct mw_transcode_result *result)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *outputs = root ? cJSON_AddArrayToObject(root, "outputs") : NULL;
    char *text = NULL;
    int ret = AVERROR(ENOMEM);

    if (!outputs || !cJSON_AddBoolToObject(root, "remuxed", result->remuxed))
        goto end;
    for (int i = 0; i < result->count; i++) {
        const struct mw_transcode_output *o = &result->outputs[i];
        cJSON *out = cJSON_CreateObject();

        if (!out || !cJSON_AddItemToArray(outputs, out)) {
            cJSON_Delete(out);
            goto end;
        }
        if (!cJSON_AddStringToObject(out, "type", o->type) || !cJSON_AddStringToObject(out, "path", o->name) ||
            !cJSON_AddNumberToObject(out, "width", o->width) || !cJSON_AddNumberToObject(out, "height", o->height) ||
            !cJSON_AddNumberToObject(out, "duration", o->duration_s) ||
            !cJSON_AddStringToObject(out, "codec", o->codec))
            goto end;
    }
    if (!(text = cJSON_Print(root)))
        goto end;
    printf("%s\n", text);
    ret = 0;
end:
    cJSON_free(text);
    cJSON_Delete(root);
    return ret;
}

static int run_transcode(const struct mw_config *cfg, int argc, char **argv)
{
    struct mw_transcode_options opt = {
        .preset = mw_preset_find(preset_name ? preset_name : "web"),
        .hls = hls,
        .allow_remux = !no_remux,
        .threads = mw_config_codec_threads(cfg),
        .limits = &cfg->limits,
        .progress = isatty(STDERR_FILENO) ? draw_progress : NULL,
    };
    struct mw_transcode_result result = {0};
    struct mw_input *in = NULL;
    struct mw_probe *probe = NULL;
    int64_t deadline = av_gettime_relative() + (int64_t)cfg->limits.job_deadline_s * 1000000;
    int ret;

    (void)argc;
    if (!output_dir || !opt.preset || (rendition_list && parse_heights(rendition_list, &opt) < 0)) {
        fprintf(stderr, "mediaworker transcode: %s\n", !output_dir ? "-o DIR is required"
                                                       : !opt.preset ? "unknown preset (known: web)"
                                                                     : "--renditions wants heights like 1080,720");
        return MW_EXIT_USAGE;
    }
    if ((ret = mw_path_mkdirs(output_dir)) < 0 || (ret = mw_input_open_file(&in, argv[0], &cfg->limits, deadline)) < 0 ||
        (ret = mw_probe_input(in, &probe)) < 0)
        goto end;
    ret = mw_transcode_run(in, probe, output_dir, &opt, &result);
    if (opt.progress)
        fprintf(stderr, "\n");
    if (ret >= 0)
        ret = print_result(&result);
end:
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "transcode", "%s: %s%s%s", argv[0], mw_err2str(ret), result.detail[0] ? ": " : "",
               result.detail);
        cli_print_failure(argv[0], ret, result.detail);
    }
    mw_probe_free(&probe);
    mw_input_close(&in);
    return ret < 0 ? MW_EXIT_JOB_FAILED : MW_EXIT_OK;
}

const struct cli_command cli_cmd_transcode = {
    .name = "transcode",
    .usage = "FILE -o DIR [--preset web] [--renditions 1080,720,480] [--hls] [--no-remux]",
    .summary = "make web-playable MP4 renditions (and HLS) of FILE in DIR; prints the outputs as JSON",
    .options = transcode_options,
    .min_positional = 1,
    .max_positional = 1,
    .one_job = 1,
    .run = run_transcode,
};
