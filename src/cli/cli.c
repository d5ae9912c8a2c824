/*
 * Command dispatch and the set-up every command shares: configuration from the environment, then flags,
 * validated once; logging configured and libav's log routed before anything can start a thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <libavutil/error.h>
#include <libavutil/mem.h>

#include "cli_internal.h"
#include "mediaworker/error.h"
#include "mediaworker/job.h"
#include "mediaworker/log.h"
#include "mediaworker/netpolicy.h"

static const struct cli_command *const commands[] = {
    &cli_cmd_probe,
    &cli_cmd_thumbnail,
    &cli_cmd_storyboard,
    &cli_cmd_transcode,
    &cli_cmd_run,
    &cli_cmd_serve,
    &cli_cmd_submit,
    &cli_cmd_job_process,
    &cli_cmd_config,
    &cli_cmd_decode,
    &cli_cmd_caps,
    &cli_cmd_version,
};

#define COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))

static void print_usage(FILE *out)
{
    fprintf(out, "usage: mediaworker <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        if (!commands[i]->hidden)
            fprintf(out, "  %-11s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out, "\n'mediaworker <command> --help' describes a command and the configuration flags.\n"
                 "exit status: 0 ok, 1 the job or input failed, 2 usage or configuration error\n");
}

void cli_print_command_help(const struct cli_command *cmd, FILE *out)
{
    fprintf(out, "usage: mediaworker %s %s\n\n%s\n", cmd->name, cmd->usage, cmd->summary);
    if (cmd->options) {
        fprintf(out, "\noptions:\n");
        for (const struct cli_option *opt = cmd->options; opt->name; opt++) {
            char spelled[64];
            snprintf(spelled, sizeof(spelled), "%s%s%s%s%s", opt->short_name ? opt->short_name : "",
                     opt->short_name ? ", " : "", opt->name, opt->value_name ? " " : "",
                     opt->value_name ? opt->value_name : "");
            fprintf(out, "  %-28s %s\n", spelled, opt->help);
        }
    }
    fprintf(out, "\n");
    mw_config_print_help(out);
    fprintf(out, "\nexit status: 0 ok, 1 the job or input failed, 2 usage or configuration error\n");
}

static const struct cli_option *find_option(const struct cli_command *cmd, const char *name)
{
    if (!cmd->options)
        return NULL;
    for (const struct cli_option *opt = cmd->options; opt->name; opt++)
        if (!strcmp(opt->name, name) || (opt->short_name && !strcmp(opt->short_name, name)))
            return opt;
    return NULL;
}

int cli_parse(const struct cli_command *cmd, struct mw_config *cfg, int argc, char **argv, int *positional_count)
{
    char err[256];
    int count = 0;

    for (int i = 0; i < argc; i++) {
        char name[64];
        const char *arg = argv[i];
        const char *value = NULL;
        const char *equals;
        const struct cli_option *opt;
        int ret;

        if (arg[0] != '-' || !arg[1] || !strcmp(arg, "--")) {
            if (!strcmp(arg, "--"))
                for (i++; i < argc; i++)
                    argv[count++] = argv[i];
            else
                argv[count++] = argv[i];
            continue;
        }
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            cli_print_command_help(cmd, stdout);
            return MW_EXIT_OK;
        }
        equals = strchr(arg, '=');
        snprintf(name, sizeof(name), "%.*s", equals ? (int)(equals - arg) : (int)strlen(arg), arg);
        opt = find_option(cmd, name);
        if (opt && !opt->value_name) {
            *opt->enabled = 1;
            continue;
        }
        value = equals ? equals + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        if (opt) {
            if (!value) {
                fprintf(stderr, "mediaworker %s: %s needs a value\n", cmd->name, name);
                return MW_EXIT_USAGE;
            }
            *opt->value = value;
        } else {
            ret = mw_config_apply_flag(cfg, name, value, err, sizeof(err));
            if (ret < 0) {
                fprintf(stderr, "mediaworker %s: %s\n", cmd->name, err);
                return MW_EXIT_USAGE;
            }
            if (ret == 0) {
                fprintf(stderr, "mediaworker %s: unknown option %s (see --help)\n", cmd->name, name);
                return MW_EXIT_USAGE;
            }
        }
        if (!equals)
            i++;
    }
    if (count < cmd->min_positional || (cmd->max_positional >= 0 && count > cmd->max_positional)) {
        fprintf(stderr, "usage: mediaworker %s %s\n", cmd->name, cmd->usage);
        return MW_EXIT_USAGE;
    }
    *positional_count = count;
    return -1;
}

int cli_parse_int(const char *text, int min, int max, int *out)
{
    char *end = NULL;
    long value;

    errno = 0;
    value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < min || value > max)
        return AVERROR(EINVAL);
    *out = (int)value;
    return 0;
}

cJSON *cli_failure_json(const char *file, int err, const char *detail)
{
    cJSON *json = cJSON_CreateObject();
    cJSON *error = json ? cJSON_AddObjectToObject(json, "error") : NULL;
    char message[512];

    snprintf(message, sizeof(message), "%s%s%s", mw_err2str(err), detail && *detail ? ": " : "",
             detail ? detail : "");
    if (!error || !cJSON_AddStringToObject(error, "code", mw_error_code_name(err)) ||
        !cJSON_AddStringToObject(error, "message", message) || !cJSON_AddStringToObject(json, "file", file)) {
        cJSON_Delete(json);
        return NULL;
    }
    return json;
}

void cli_print_failure(const char *file, int err, const char *detail)
{
    cJSON *json = cli_failure_json(file, err, detail);
    char *text = json ? cJSON_Print(json) : NULL;

    if (text)
        printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(json);
}

int cli_read_file(const char *path, char **data, size_t *size)
{
    FILE *file = fopen(path, "rb");
    char *buffer = NULL;
    long length;
    int ret = 0;

    *data = NULL;
    if (!file)
        return AVERROR(errno);
    if (fseek(file, 0, SEEK_END) < 0 || (length = ftell(file)) < 0 || fseek(file, 0, SEEK_SET) < 0) {
        ret = AVERROR(errno);
        goto end;
    }
    buffer = av_malloc((size_t)length + 1);
    if (!buffer) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    if (fread(buffer, 1, (size_t)length, file) != (size_t)length) {
        ret = AVERROR(EIO);
        goto end;
    }
    buffer[length] = '\0';
    *data = buffer;
    *size = (size_t)length;
    buffer = NULL;
end:
    av_free(buffer);
    fclose(file);
    return ret;
}

int cli_main(int argc, char **argv)
{
    const struct cli_command *cmd = NULL;
    struct mw_config cfg;
    struct mw_netpolicy policy;
    char err[256];
    int positional = 0;
    int ret;

    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MW_EXIT_USAGE : MW_EXIT_OK;
    }
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        if (!strcmp(argv[1], commands[i]->name))
            cmd = commands[i];
    if (!cmd) {
        fprintf(stderr, "mediaworker: unknown command \"%s\"\n\n", argv[1]);
        print_usage(stderr);
        return MW_EXIT_USAGE;
    }
    mw_config_defaults(&cfg);
    if (mw_config_load_env(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "mediaworker: configuration error: %s\n", err);
        return MW_EXIT_USAGE;
    }
    ret = cli_parse(cmd, &cfg, argc - 2, argv + 2, &positional);
    if (ret >= 0)
        return ret;
    /* Each download parses the network allow-list again; checked here too, so that a typo in it stops
     * `serve` and `run` at start instead of failing every job with a URL input. */
    if (mw_config_validate(&cfg, err, sizeof(err)) < 0 || mw_job_check_default_operations(&cfg, err, sizeof(err)) < 0 ||
        mw_netpolicy_parse(&policy, cfg.url_allow_networks, err, sizeof(err)) < 0) {
        fprintf(stderr, "mediaworker: configuration error: %s\n", err);
        return MW_EXIT_USAGE;
    }
    /* Job processes only divide the machine among the jobs `serve` runs at once. A command that runs one job
     * is alone, and the codec threads default (cores / job processes) must then give it every core, as
     * ffmpeg would. */
    if (cmd->one_job)
        cfg.job_processes = 1;
    mw_log_setup(cfg.log_level, cfg.log_format, stderr);
    mw_log_route_libav();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "mediaworker: libcurl failed to initialise\n");
        return MW_EXIT_USAGE;
    }
    ret = cmd->run(&cfg, positional, argv + 2);
    curl_global_cleanup();
    return ret;
}
