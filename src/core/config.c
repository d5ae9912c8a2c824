/*
 * The option table is the single description of every setting: its environment variable, its flag, where
 * it lives in struct mw_config, its type and accepted range, and whether it is a secret. Parsing,
 * validation messages, `mediaworker config` and --help are all driven from it, so adding an option is one
 * line here plus one field in the struct.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mediaworker/config.h"
#include "mediaworker/error.h"

_Static_assert(sizeof(enum mw_hwaccel) == sizeof(int), "enums are stored through int pointers");
_Static_assert(sizeof(enum mw_log_level) == sizeof(int), "enums are stored through int pointers");

enum option_kind {
    OPT_STRING,
    OPT_URL,      /* string; a password inside is masked when printed */
    OPT_SECRET,   /* string; masked entirely when printed */
    OPT_INT,
    OPT_INT64,
    OPT_CHOICE,   /* int holding the index into choices */
};

struct option_spec {
    const char *env;
    const char *flag;
    enum option_kind kind;
    size_t offset;
    size_t size;
    long long min, max;
    const char *const *choices;
    const char *help;
};

static const char *const hwaccel_choices[] = {"auto", "none", "cuda", "vaapi", "qsv", NULL};
static const char *const isolation_choices[] = {"process", "none", NULL};
static const char *const queue_type_choices[] = {"classic", "quorum", NULL};
static const char *const log_level_choices[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_format_choices[] = {"auto", "json", "text", NULL};

#define FIELD(member) offsetof(struct mw_config, member), sizeof(((struct mw_config *)0)->member)
#define STR(env, flag, member, help)    {env, flag, OPT_STRING, FIELD(member), 0, 0, NULL, help}
#define URL(env, flag, member, help)    {env, flag, OPT_URL, FIELD(member), 0, 0, NULL, help}
#define SECRET(env, flag, member, help) {env, flag, OPT_SECRET, FIELD(member), 0, 0, NULL, help}
#define INT(env, flag, member, lo, hi, help)   {env, flag, OPT_INT, FIELD(member), lo, hi, NULL, help}
#define INT64(env, flag, member, lo, hi, help) {env, flag, OPT_INT64, FIELD(member), lo, hi, NULL, help}
#define CHOICE(env, flag, member, list, help)  {env, flag, OPT_CHOICE, FIELD(member), 0, 0, list, help}

static const struct option_spec options[] = {
    URL("RABBITMQ_URL", "--rabbitmq-url", rabbitmq_url, "broker URL(s), comma separated for a cluster"),
    STR("MW_EXCHANGE", "--exchange", exchange, "work exchange (direct)"),
    STR("MW_QUEUE", "--queue", queue, "work queue; also the routing key"),
    CHOICE("MW_QUEUE_TYPE", "--queue-type", queue_type, queue_type_choices, "work queue type"),
    STR("MW_RETRY_DELAYS", "--retry-delays", retry_delays, "seconds per retry tier, comma separated"),
    SECRET("MW_ATTEMPT_KEY", "--attempt-key", attempt_key,
           "secret the workers of a queue sign their attempt counts with (default: from RABBITMQ_URL)"),
    STR("MW_EVENTS_EXCHANGE", "--events-exchange", events_exchange, "topic exchange for job events"),
    STR("MW_AMQP_CACERT", "--amqp-cacert", amqp_cacert, "CA certificates for amqps:// (empty = system bundle)"),
    INT("MW_HEARTBEAT", "--heartbeat", heartbeat_s, 0, 600, "AMQP heartbeat seconds (0 = off)"),
    URL("POSTGRES_DATA_SERVICE_URL", "--data-service-url", data_service_url, "Data Service base URL"),
    SECRET("MW_DATA_SERVICE_TOKEN", "--data-service-token", data_service_token, "bearer token for the Data Service"),
    INT("HTTP_CLIENT_TIMEOUT", "--http-client-timeout", http_timeout_s, 1, 300, "seconds per Data Service request"),
    INT("HTTP_CLIENT_RETRIES", "--http-client-retries", http_retries, 0, 20, "retries of a failed report"),
    STR("MW_INPUT_ROOT", "--input-root", input_root, "directory every file_info.path resolves under"),
    STR("MW_OUTPUT_ROOT", "--output-root", output_root, "directory outputs are written under"),
    STR("MW_SCRATCH_DIR", "--scratch-dir", scratch_dir, "per-job temporary files"),
    INT64("MW_URL_MAX_BYTES", "--url-max-bytes", url_max_bytes, 1, INT64_MAX, "largest file_info.url download"),
    INT("MW_URL_TIMEOUT", "--url-timeout", url_timeout_s, 1, 86400, "seconds a file_info.url download may take"),
    INT("MW_URL_MAX_REDIRECTS", "--url-max-redirects", url_max_redirects, 0, 20, "redirects a download may follow"),
    STR("MW_URL_ALLOW_NETWORKS", "--url-allow-networks", url_allow_networks,
        "CIDR list downloads may reach although private/loopback"),
    STR("MW_DEFAULT_OPERATIONS", "--default-operations", default_operations, "operations when a message names none"),
    INT64("MW_MAX_INPUT_BYTES", "--max-input-bytes", limits.max_input_bytes, 1, INT64_MAX, "largest input file"),
    INT64("MW_MAX_PIXELS", "--max-pixels", limits.max_pixels, 1, (long long)1 << 32, "largest width*height"),
    INT64("MW_MAX_OUTPUT_PIXELS", "--max-output-pixels", limits.max_output_pixels, 1, (long long)1 << 40,
          "pixels of all images one job writes"),
    INT64("MW_MAX_OUTPUT_BYTES", "--max-output-bytes", limits.max_output_bytes, 1, INT64_MAX,
          "bytes one job's transcodes may write, at their bitrate caps"),
    INT64("MW_MAX_DURATION_MS", "--max-duration-ms", limits.max_duration_ms, 1, INT64_MAX / 1000, "longest input"),
    INT("MW_MAX_STREAMS", "--max-streams", limits.max_streams, 1, 1024, "most streams in one input"),
    INT64("MW_PROBESIZE", "--probesize", limits.probesize, 32, (long long)1 << 31, "bytes read to find streams"),
    INT64("MW_ANALYZE_DURATION_MS", "--analyze-duration-ms", limits.analyzeduration_ms, 0, 600000,
          "media time read to find stream parameters"),
    INT("MW_JOB_DEADLINE", "--job-deadline", limits.job_deadline_s, 1, 86400, "seconds one job may run"),
    INT("MW_SLOTS", "--slots", slots, 0, 256, "deliveries in flight, the prefetch count (0 = twice the job processes)"),
    INT("MW_JOB_PROCESSES", "--job-processes", job_processes, 0, 256,
        "job processes, jobs run at once (0 = MW_SLOTS when set, else one per core)"),
    CHOICE("MW_ISOLATION", "--isolation", isolation, isolation_choices, "run jobs in job processes or in-process"),
    INT("MW_JOB_MEMORY_MB", "--job-memory-mb", job_memory_mb, 64, 1 << 20, "address-space cap of a job process"),
    INT("MW_JOB_CPU_SECONDS", "--job-cpu-seconds", job_cpu_s, 1, 1 << 24, "CPU-time cap of a job process"),
    INT("MW_JOB_FILE_SIZE_MB", "--job-file-size-mb", job_file_size_mb, 1, 1 << 24, "largest file a job may write"),
    STR("MW_JOB_USER", "--job-user", job_user, "user jobs run as when the worker is root (unset: uid 65534)"),
    INT("MW_JOBS_PER_PROCESS", "--jobs-per-process", jobs_per_process, 1, 1000000, "recycle a job process after"),
    INT("MW_CODEC_THREADS", "--codec-threads", codec_threads, 0, 256,
        "codec threads per job (0 = cores / job processes; all cores for one-job commands)"),
    CHOICE("MW_HWACCEL", "--hwaccel", hwaccel, hwaccel_choices, "hardware acceleration"),
    STR("MW_HWACCEL_DEVICE", "--hwaccel-device", hwaccel_device, "device for hardware acceleration"),
    STR("MW_HTTP_LISTEN", "--http-listen", http_listen, "metrics/health address host:port (empty = off)"),
    INT("MW_SHUTDOWN_GRACE", "--shutdown-grace", shutdown_grace_s, 0, 86400, "seconds in-flight jobs get on SIGTERM"),
    CHOICE("MW_LOG_LEVEL", "--log-level", log_level, log_level_choices, "log level"),
    CHOICE("MW_LOG_FORMAT", "--log-format", log_format, log_format_choices, "log format (auto: text on a terminal)"),
};

void mw_config_defaults(struct mw_config *cfg)
{
    *cfg = (struct mw_config){
        .rabbitmq_url = "amqp://guest:guest@localhost:5672/",
        .exchange = "media",
        .queue = "media.process",
        .queue_type = MW_QUEUE_CLASSIC,
        .retry_delays = "10,60,300",
        .events_exchange = "media.events",
        .heartbeat_s = 30,
        .data_service_url = "http://localhost:8080",
        .http_timeout_s = 10,
        .http_retries = 3,
        .input_root = "/var/lib/mediaworker/uploads",
        .output_root = "/var/lib/mediaworker/outputs",
        .scratch_dir = "/var/tmp/mediaworker",
        .default_operations = "probe,thumbnail",
        .url_max_bytes = (int64_t)4 << 30,
        .url_timeout_s = 600,
        .url_max_redirects = 3,
        .limits = {
            .max_input_bytes = (int64_t)20 << 30,
            .max_pixels = 7680 * 4320,
            /* Four 8K pictures' worth: a poster in 8 sizes, a storyboard of a long film, far below what
             * costs a node minutes of CPU and a gigabyte. */
            .max_output_pixels = (int64_t)4 * 7680 * 4320,
            /* 16 GiB: the default ladder with HLS for over an hour of 1080p, more than a job can encode
             * before MW_JOB_DEADLINE on a CPU node; an hours-long upload asking for 4K is refused. */
            .max_output_bytes = (int64_t)16 << 30,
            .max_duration_ms = (int64_t)6 * 3600 * 1000,
            .max_streams = 32,
            .probesize = 10 << 20,
            .analyzeduration_ms = 10000,
            /* Below RabbitMQ's default 30-minute consumer timeout, so a slow job fails instead of the
             * broker closing the channel under every other job in flight. */
            .job_deadline_s = 25 * 60,
        },
        .isolation = MW_ISOLATION_PROCESS,
        .job_memory_mb = 4096,
        .job_cpu_s = 3600,
        .job_file_size_mb = 16384,
        /* A replacement costs ~60 ms of dynamic linking (libav and its codec libraries); a job process is
         * also replaced above half its memory cap, so the count is only a backstop. */
        .jobs_per_process = 1000,
        .codec_threads = 0,
        .hwaccel = MW_HWACCEL_AUTO,
        .http_listen = "127.0.0.1:9090",
        .shutdown_grace_s = 60,
        .log_level = MW_LOG_INFO,
        .log_format = MW_LOG_FORMAT_AUTO,
    };
}

static void describe_accepted(const struct option_spec *opt, char *buf, size_t size)
{
    size_t used = 0;

    switch (opt->kind) {
    case OPT_INT:
    case OPT_INT64:
        snprintf(buf, size, "an integer from %lld to %lld", opt->min, opt->max);
        break;
    case OPT_CHOICE:
        buf[0] = '\0';
        for (const char *const *c = opt->choices; *c && used < size; c++)
            used += (size_t)snprintf(buf + used, size - used, "%s%s", c == opt->choices ? "one of " : "|", *c);
        break;
    default:
        snprintf(buf, size, "a string shorter than %zu bytes", opt->size);
        break;
    }
}

static int set_value(struct mw_config *cfg, const struct option_spec *opt, const char *source, const char *value,
                     char *err, size_t err_size)
{
    char *field = (char *)cfg + opt->offset;
    char accepted[160];
    long long number;
    char *end;

    switch (opt->kind) {
    case OPT_STRING:
    case OPT_URL:
    case OPT_SECRET:
        if (strlen(value) >= opt->size)
            goto invalid;
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case OPT_INT:
    case OPT_INT64:
        errno = 0;
        number = strtoll(value, &end, 10);
        if (errno || end == value || *end || number < opt->min || number > opt->max)
            goto invalid;
        if (opt->kind == OPT_INT)
            *(int *)field = (int)number;
        else
            *(int64_t *)field = number;
        return 0;
    case OPT_CHOICE:
        for (int i = 0; opt->choices[i]; i++) {
            if (!strcmp(value, opt->choices[i])) {
                *(int *)field = i;
                return 0;
            }
        }
        goto invalid;
    }
invalid:
    describe_accepted(opt, accepted, sizeof(accepted));
    snprintf(err, err_size, "%s: invalid value \"%.64s\": expected %s", source, value, accepted);
    return MW_ERR_CONFIG;
}

int mw_config_load_env(struct mw_config *cfg, char *err, size_t err_size)
{
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        const char *value = getenv(options[i].env);
        int ret;

        if (!value)
            continue;
        ret = set_value(cfg, &options[i], options[i].env, value, err, err_size);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int mw_config_apply_flag(struct mw_config *cfg, const char *flag, const char *value, char *err, size_t err_size)
{
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        int ret;

        if (strcmp(flag, options[i].flag))
            continue;
        if (!value) {
            snprintf(err, err_size, "%s needs a value", flag);
            return MW_ERR_CONFIG;
        }
        ret = set_value(cfg, &options[i], flag, value, err, err_size);
        return ret < 0 ? ret : 1;
    }
    return 0;
}

static int has_scheme(const char *url, const char *const *schemes)
{
    for (; *schemes; schemes++)
        if (!strncmp(url, *schemes, strlen(*schemes)))
            return 1;
    return 0;
}

int mw_config_validate(const struct mw_config *cfg, char *err, size_t err_size)
{
    static const char *const amqp_schemes[] = {"amqp://", "amqps://", NULL};
    static const char *const http_schemes[] = {"http://", "https://", NULL};
    char urls[MW_CONFIG_URL_MAX];
    char *save = NULL;

    memcpy(urls, cfg->rabbitmq_url, sizeof(urls));
    for (char *url = strtok_r(urls, ",", &save); url; url = strtok_r(NULL, ",", &save)) {
        while (*url == ' ')
            url++;
        if (!has_scheme(url, amqp_schemes)) {
            snprintf(err, err_size, "RABBITMQ_URL: each URL must start with amqp:// or amqps://");
            return MW_ERR_CONFIG;
        }
    }
    if (!has_scheme(cfg->data_service_url, http_schemes)) {
        snprintf(err, err_size, "POSTGRES_DATA_SERVICE_URL: must start with http:// or https://");
        return MW_ERR_CONFIG;
    }
    if (!cfg->input_root[0] || !cfg->output_root[0] || !cfg->scratch_dir[0]) {
        snprintf(err, err_size, "MW_INPUT_ROOT, MW_OUTPUT_ROOT and MW_SCRATCH_DIR must not be empty");
        return MW_ERR_CONFIG;
    }
    if (cfg->slots > 0 && cfg->job_processes > cfg->slots) {
        snprintf(err, err_size, "MW_JOB_PROCESSES (%d) above MW_SLOTS (%d): the extra processes would never get a job",
                 cfg->job_processes, cfg->slots);
        return MW_ERR_CONFIG;
    }
    return 0;
}

static void append(char *out, size_t out_size, size_t *used, const char *text, size_t len)
{
    if (*used + 1 >= out_size)
        return;
    if (len > out_size - 1 - *used)
        len = out_size - 1 - *used;
    memcpy(out + *used, text, len);
    *used += len;
    out[*used] = '\0';
}

void mw_config_mask_url(const char *url, char *out, size_t out_size)
{
    size_t used = 0;

    if (!out_size)
        return;
    out[0] = '\0';
    /* Each URL of the list is "scheme://user:password@host/...": keep user and host, hide the password. */
    for (;;) {
        size_t len = strcspn(url, ",");
        const char *authority = strstr(url, "://");
        const char *colon = NULL;
        const char *at = NULL;

        if (authority && authority < url + len) {
            authority += 3;
            for (const char *p = authority; p < url + len && *p != '/'; p++) {
                if (*p == '@')
                    at = p;
                else if (*p == ':' && !at && !colon)
                    colon = p;
            }
        }
        if (at && colon && colon < at) {
            append(out, out_size, &used, url, (size_t)(colon - url) + 1);
            append(out, out_size, &used, "****", 4);
            append(out, out_size, &used, at, (size_t)(url + len - at));
        } else {
            append(out, out_size, &used, url, len);
        }
        if (url[len] != ',')
            break;
        append(out, out_size, &used, ",", 1);
        url += len + 1;
    }
}

static int is_credential(const struct option_spec *o)
{
    return o->kind == OPT_SECRET || o->kind == OPT_URL;
}

void mw_config_clear_credentials(struct mw_config *cfg)
{
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
        if (is_credential(&options[i]))
            memset((char *)cfg + options[i].offset, 0, options[i].size);
}

int mw_config_is_credential_variable(const char *entry)
{
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        size_t len = strlen(options[i].env);
        if (is_credential(&options[i]) && !strncmp(entry, options[i].env, len) && entry[len] == '=')
            return 1;
    }
    return 0;
}

/* The printable value of one option, secrets masked; numbers are returned as text too. */
static void format_value(const struct mw_config *cfg, const struct option_spec *opt, char *buf, size_t size)
{
    const char *field = (const char *)cfg + opt->offset;

    switch (opt->kind) {
    case OPT_STRING:
        snprintf(buf, size, "%s", field);
        break;
    case OPT_URL:
        mw_config_mask_url(field, buf, size);
        break;
    case OPT_SECRET:
        snprintf(buf, size, "%s", field[0] ? "****" : "");
        break;
    case OPT_INT:
        snprintf(buf, size, "%d", *(const int *)field);
        break;
    case OPT_INT64:
        snprintf(buf, size, "%lld", (long long)*(const int64_t *)field);
        break;
    case OPT_CHOICE:
        snprintf(buf, size, "%s", opt->choices[*(const int *)field]);
        break;
    }
}

void mw_config_print(const struct mw_config *cfg, FILE *out)
{
    cJSON *root = cJSON_CreateObject();
    char value[MW_CONFIG_URL_MAX];
    char *text;

    if (!root)
        return;
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        const struct option_spec *opt = &options[i];
        int numeric = opt->kind == OPT_INT || opt->kind == OPT_INT64;

        format_value(cfg, opt, value, sizeof(value));
        if (!(numeric ? cJSON_AddNumberToObject(root, opt->env, strtod(value, NULL))
                      : cJSON_AddStringToObject(root, opt->env, value)))
            break;
    }
    text = cJSON_Print(root);
    if (text)
        fprintf(out, "%s\n", text);
    cJSON_free(text);
    cJSON_Delete(root);
}

void mw_config_print_help(FILE *out)
{
    struct mw_config defaults;
    char accepted[160];
    char value[MW_CONFIG_URL_MAX];

    mw_config_defaults(&defaults);
    fprintf(out, "Configuration (flag / environment variable: meaning; accepted values; default):\n");
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        describe_accepted(&options[i], accepted, sizeof(accepted));
        format_value(&defaults, &options[i], value, sizeof(value));
        fprintf(out, "  %-24s %-26s %s; %s; default \"%s\"\n", options[i].flag, options[i].env, options[i].help,
                accepted, value);
    }
}

/* Clamped to the options' own range, so a derived count is one the option could have been set to. */
static int online_cores(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    return cores <= 0 ? 1 : cores > 256 ? 256 : (int)cores;
}

int mw_config_job_processes(const struct mw_config *cfg)
{
    if (cfg->job_processes > 0)
        return cfg->job_processes;
    return cfg->slots > 0 ? cfg->slots : online_cores();
}

int mw_config_slots(const struct mw_config *cfg)
{
    return cfg->slots > 0 ? cfg->slots : 2 * mw_config_job_processes(cfg);
}

int mw_config_codec_threads(const struct mw_config *cfg)
{
    int threads;

    if (cfg->codec_threads > 0)
        return cfg->codec_threads;
    threads = online_cores() / mw_config_job_processes(cfg);
    return threads > 0 ? threads : 1;
}
