#include <stdio.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <libavcodec/avcodec.h>
#include <libavfilter/avfilter.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
#include <amqp.h>

#include "cli_internal.h"

static int run_config(const struct mw_config *cfg, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mw_config_print(cfg, stdout);
    return MW_EXIT_OK;
}

static void print_lib(const char *name, unsigned version)
{
    printf("%-14s %u.%u.%u\n", name, AV_VERSION_MAJOR(version), AV_VERSION_MINOR(version), AV_VERSION_MICRO(version));
}

/* Versions of the libraries this process actually loaded, which may differ from the headers built against. */
static int run_version(const struct mw_config *cfg, int argc, char **argv)
{
    const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);

    (void)cfg;
    (void)argc;
    (void)argv;
    printf("mediaworker    %s\n", MW_VERSION_STRING);
    printf("ffmpeg         %s\n", av_version_info());
    print_lib("libavformat", avformat_version());
    print_lib("libavcodec", avcodec_version());
    print_lib("libavutil", avutil_version());
    print_lib("libavfilter", avfilter_version());
    print_lib("libswscale", swscale_version());
    print_lib("libswresample", swresample_version());
    printf("rabbitmq-c     %s\n", amqp_version());
    printf("libcurl        %s\n", curl->version);
    printf("cJSON          %s\n", cJSON_Version());
    return MW_EXIT_OK;
}

const struct cli_command cli_cmd_config = {
    .name = "config",
    .usage = "[flags]",
    .summary = "print the effective configuration as JSON, secrets masked",
    .min_positional = 0,
    .max_positional = 0,
    .run = run_config,
};

const struct cli_command cli_cmd_version = {
    .name = "version",
    .usage = "",
    .summary = "print the versions of mediaworker and of the libraries it runs with",
    .min_positional = 0,
    .max_positional = 0,
    .run = run_version,
};
