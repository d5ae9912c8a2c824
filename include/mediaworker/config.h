/*
 * Configuration.
 *
 * One plain struct, filled with defaults by mw_config_defaults(), then from the environment, then from
 * command-line flags, and validated once at start-up. After that it is immutable and travels as
 * `const struct mw_config *`. Every option has an environment variable and a flag, declared in one table
 * in config.c; the seed's variable names (RABBITMQ_URL, POSTGRES_DATA_SERVICE_URL, HTTP_CLIENT_TIMEOUT,
 * HTTP_CLIENT_RETRIES) are kept, all others are MW_*.
 */
#ifndef MEDIAWORKER_CONFIG_H
#define MEDIAWORKER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mediaworker/log.h"

#define MW_CONFIG_URL_MAX  1024
#define MW_CONFIG_PATH_MAX 1024
#define MW_CONFIG_NAME_MAX 128

enum mw_hwaccel {
    MW_HWACCEL_AUTO,
    MW_HWACCEL_NONE,
    MW_HWACCEL_CUDA,
    MW_HWACCEL_VAAPI,
    MW_HWACCEL_QSV,
};

enum mw_isolation {
    MW_ISOLATION_PROCESS,
    MW_ISOLATION_NONE,
};

enum mw_queue_type {
    MW_QUEUE_CLASSIC,
    MW_QUEUE_QUORUM,
};

/* Limits applied to every input before and while libav reads it. */
struct mw_limits {
    int64_t max_input_bytes;
    int64_t max_pixels;           /* width * height of any picture, read or written */
    int64_t max_output_pixels;    /* width * height of all the pictures one job writes, summed */
    int64_t max_output_bytes;     /* what one job's renditions may hold at their bitrate caps, summed */
    int64_t max_duration_ms;
    int max_streams;
    int64_t probesize;            /* bytes libav may read to find the streams */
    int64_t analyzeduration_ms;
    int job_deadline_s;           /* wall clock for one job, enforced by the interrupt callback too */
};

struct mw_config {
    /* Broker */
    char rabbitmq_url[MW_CONFIG_URL_MAX];       /* one URL, or several separated by commas (a cluster) */
    char exchange[MW_CONFIG_NAME_MAX];
    char queue[MW_CONFIG_NAME_MAX];
    enum mw_queue_type queue_type;
    char retry_delays[MW_CONFIG_NAME_MAX];      /* seconds per retry tier, comma separated */
    char attempt_key[MW_CONFIG_URL_MAX];        /* signs x-mw-attempt; empty = derived from rabbitmq_url */
    char events_exchange[MW_CONFIG_NAME_MAX];
    int heartbeat_s;
    char amqp_cacert[MW_CONFIG_PATH_MAX];       /* CA bundle for amqps://; empty = the system bundle */

    /* Data Service */
    char data_service_url[MW_CONFIG_URL_MAX];
    char data_service_token[MW_CONFIG_URL_MAX];
    int http_timeout_s;
    int http_retries;

    /* Files */
    char input_root[MW_CONFIG_PATH_MAX];
    char output_root[MW_CONFIG_PATH_MAX];
    char scratch_dir[MW_CONFIG_PATH_MAX];
    char default_operations[MW_CONFIG_NAME_MAX];

    /* URL inputs (downloaded by the supervisor) */
    int64_t url_max_bytes;
    int url_timeout_s;
    int url_max_redirects;
    char url_allow_networks[MW_CONFIG_URL_MAX]; /* CIDRs exempt from the private-address deny list */

    /* Jobs */
    struct mw_limits limits;
    int slots;                                  /* deliveries in flight (= prefetch); 0: twice the job processes */
    int job_processes;                          /* 0: MW_SLOTS when set, else one per core */
    enum mw_isolation isolation;
    int job_memory_mb;
    int job_cpu_s;
    int job_file_size_mb;
    int jobs_per_process;
    char job_user[MW_CONFIG_NAME_MAX];          /* empty: job processes keep the supervisor's user */
    int codec_threads;                          /* 0: derived from cores / job processes */
    enum mw_hwaccel hwaccel;
    char hwaccel_device[MW_CONFIG_NAME_MAX];

    /* Service */
    char http_listen[MW_CONFIG_NAME_MAX];       /* metrics and health endpoint, host:port; empty = off */
    int shutdown_grace_s;
    enum mw_log_level log_level;
    enum mw_log_format log_format;
};

/* Fills cfg with the defaults. */
void mw_config_defaults(struct mw_config *cfg);

/*
 * Applies every recognised environment variable that is set. On the first invalid value returns
 * MW_ERR_CONFIG and writes a message naming the variable and the accepted values into err; cfg may then
 * hold the values applied before it.
 */
int mw_config_load_env(struct mw_config *cfg, char *err, size_t err_size);

/*
 * Applies one command-line flag ("--http-client-timeout") with its value. Returns 1 when the flag is a
 * configuration flag and was applied, 0 when it is not one of ours, MW_ERR_CONFIG (message in err) when the
 * value is invalid.
 */
int mw_config_apply_flag(struct mw_config *cfg, const char *flag, const char *value, char *err, size_t err_size);

/* Checks relations between options (URL schemes, distinct roots). MW_ERR_CONFIG with a message on failure. */
int mw_config_validate(const struct mw_config *cfg, char *err, size_t err_size);

/* Prints the effective configuration as JSON (variable name -> value) with secrets masked. */
void mw_config_print(const struct mw_config *cfg, FILE *out);

/* Prints one line per option: flag, variable, default, accepted values. For --help. */
void mw_config_print_help(FILE *out);

/*
 * Copies url into out with any password replaced by "****" (amqp://user:****@host/). Each URL of a
 * comma-separated list is masked.
 */
void mw_config_mask_url(const char *url, char *out, size_t out_size);

/*
 * For processes that must not hold credentials (job processes): clears in cfg every option that is a
 * secret or a URL that may carry a password, over its whole field; and tells whether an environment entry
 * ("NAME=value") sets one of them.
 */
void mw_config_clear_credentials(struct mw_config *cfg);
int mw_config_is_credential_variable(const char *entry);

/*
 * How many job processes run the libav work (jobs at once) and how many deliveries are in flight (slots, the
 * prefetch): the configured values, else one process per core (one per slot when only MW_SLOTS is set) and
 * twice as many slots as processes, so that a process starts the next job while a finished one is being
 * reported.
 */
int mw_config_job_processes(const struct mw_config *cfg);
int mw_config_slots(const struct mw_config *cfg);

/* Codec threads for one job: the configured value, or cores divided by job processes (at least 1). */
int mw_config_codec_threads(const struct mw_config *cfg);

#endif
