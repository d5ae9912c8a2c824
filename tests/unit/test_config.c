#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mediaworker/config.h"
#include "mediaworker/error.h"

static void defaults_are_valid(void **state)
{
    struct mw_config cfg;
    char err[256] = "";

    (void)state;
    mw_config_defaults(&cfg);
    assert_int_equal(mw_config_validate(&cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.http_timeout_s, 10);
    assert_true(mw_config_job_processes(&cfg) >= 1);
    assert_int_equal(mw_config_slots(&cfg), 2 * mw_config_job_processes(&cfg));
    /* The deadline must stay below RabbitMQ's 30-minute consumer timeout. */
    assert_true(cfg.limits.job_deadline_s < 30 * 60);
}

static void seed_environment_names_are_read(void **state)
{
    struct mw_config cfg;
    char err[256] = "";

    (void)state;
    mw_config_defaults(&cfg);
    setenv("RABBITMQ_URL", "amqp://user:pw@broker:5672/vhost", 1);
    setenv("POSTGRES_DATA_SERVICE_URL", "http://data:8000", 1);
    setenv("HTTP_CLIENT_TIMEOUT", "25", 1);
    setenv("HTTP_CLIENT_RETRIES", "7", 1);
    setenv("MW_HWACCEL", "cuda", 1);
    assert_int_equal(mw_config_load_env(&cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.rabbitmq_url, "amqp://user:pw@broker:5672/vhost");
    assert_string_equal(cfg.data_service_url, "http://data:8000");
    assert_int_equal(cfg.http_timeout_s, 25);
    assert_int_equal(cfg.http_retries, 7);
    assert_int_equal(cfg.hwaccel, MW_HWACCEL_CUDA);
    unsetenv("RABBITMQ_URL");
    unsetenv("POSTGRES_DATA_SERVICE_URL");
    unsetenv("HTTP_CLIENT_TIMEOUT");
    unsetenv("HTTP_CLIENT_RETRIES");
    unsetenv("MW_HWACCEL");
}

static void invalid_values_name_the_variable_and_range(void **state)
{
    struct mw_config cfg;
    char err[256] = "";

    (void)state;
    mw_config_defaults(&cfg);
    setenv("HTTP_CLIENT_TIMEOUT", "12abc", 1);
    assert_int_equal(mw_config_load_env(&cfg, err, sizeof(err)), MW_ERR_CONFIG);
    assert_non_null(strstr(err, "HTTP_CLIENT_TIMEOUT"));
    assert_non_null(strstr(err, "from 1 to 300"));
    setenv("HTTP_CLIENT_TIMEOUT", "301", 1);
    assert_int_equal(mw_config_load_env(&cfg, err, sizeof(err)), MW_ERR_CONFIG);
    unsetenv("HTTP_CLIENT_TIMEOUT");

    setenv("MW_HWACCEL", "gpu", 1);
    assert_int_equal(mw_config_load_env(&cfg, err, sizeof(err)), MW_ERR_CONFIG);
    assert_non_null(strstr(err, "MW_HWACCEL"));
    assert_non_null(strstr(err, "auto|none|cuda|vaapi|qsv"));
    unsetenv("MW_HWACCEL");
}

static void flags_override_and_report_unknown(void **state)
{
    struct mw_config cfg;
    char err[256] = "";

    (void)state;
    mw_config_defaults(&cfg);
    assert_int_equal(mw_config_apply_flag(&cfg, "--slots", "3", err, sizeof(err)), 1);
    assert_int_equal(cfg.slots, 3);
    assert_int_equal(mw_config_apply_flag(&cfg, "--no-such-flag", "1", err, sizeof(err)), 0);
    assert_int_equal(mw_config_apply_flag(&cfg, "--slots", "257", err, sizeof(err)), MW_ERR_CONFIG);
    assert_non_null(strstr(err, "--slots"));
    assert_int_equal(mw_config_apply_flag(&cfg, "--slots", NULL, err, sizeof(err)), MW_ERR_CONFIG);
}

static void validation_checks_url_schemes(void **state)
{
    struct mw_config cfg;
    char err[256] = "";

    (void)state;
    mw_config_defaults(&cfg);
    snprintf(cfg.rabbitmq_url, sizeof(cfg.rabbitmq_url), "amqp://a,http://b");
    assert_int_equal(mw_config_validate(&cfg, err, sizeof(err)), MW_ERR_CONFIG);
    assert_non_null(strstr(err, "RABBITMQ_URL"));
    mw_config_defaults(&cfg);
    snprintf(cfg.data_service_url, sizeof(cfg.data_service_url), "ftp://data");
    assert_int_equal(mw_config_validate(&cfg, err, sizeof(err)), MW_ERR_CONFIG);
    assert_non_null(strstr(err, "POSTGRES_DATA_SERVICE_URL"));
}

static void passwords_are_masked(void **state)
{
    char out[256];

    (void)state;
    mw_config_mask_url("amqp://guest:secret@host:5672/", out, sizeof(out));
    assert_string_equal(out, "amqp://guest:****@host:5672/");
    mw_config_mask_url("amqps://a:p1@h1,amqp://h2:5672,amqp://b:p:2@h3/v", out, sizeof(out));
    assert_string_equal(out, "amqps://a:****@h1,amqp://h2:5672,amqp://b:****@h3/v");
    mw_config_mask_url("http://data:8080/path", out, sizeof(out));
    assert_string_equal(out, "http://data:8080/path");
    mw_config_mask_url("amqp://user:pw@h", out, 12);
    assert_int_equal(strlen(out), 11);
}

static void printed_config_hides_secrets(void **state)
{
    struct mw_config cfg;
    char printed[16384] = "";
    FILE *out;

    (void)state;
    mw_config_defaults(&cfg);
    snprintf(cfg.data_service_token, sizeof(cfg.data_service_token), "tok-very-secret");
    snprintf(cfg.rabbitmq_url, sizeof(cfg.rabbitmq_url), "amqp://u:hunter2@h/");
    out = fmemopen(printed, sizeof(printed) - 1, "w");
    assert_non_null(out);
    mw_config_print(&cfg, out);
    fclose(out);
    assert_null(strstr(printed, "tok-very-secret"));
    assert_null(strstr(printed, "hunter2"));
    assert_non_null(strstr(printed, "\"MW_DATA_SERVICE_TOKEN\":\t\"****\""));
}

static void codec_threads_share_the_cores(void **state)
{
    struct mw_config cfg;

    (void)state;
    mw_config_defaults(&cfg);
    cfg.codec_threads = 5;
    assert_int_equal(mw_config_codec_threads(&cfg), 5);
    cfg.codec_threads = 0;
    cfg.job_processes = 1000;
    assert_int_equal(mw_config_codec_threads(&cfg), 1);
    cfg.job_processes = 1;
    assert_int_equal(mw_config_codec_threads(&cfg), (int)sysconf(_SC_NPROCESSORS_ONLN));
}

/* Processes default to one per core (one per slot when only the slots are set); slots to twice the processes. */
static void job_processes_and_slots(void **state)
{
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    struct mw_config cfg;
    char err[256] = "";

    (void)state;
    mw_config_defaults(&cfg);
    assert_int_equal(mw_config_job_processes(&cfg), cores);
    assert_int_equal(mw_config_slots(&cfg), 2 * cores);
    cfg.slots = 1;
    assert_int_equal(mw_config_job_processes(&cfg), 1);
    assert_int_equal(mw_config_slots(&cfg), 1);
    cfg.slots = 3 * cores;
    assert_int_equal(mw_config_job_processes(&cfg), 3 * cores);
    cfg.slots = 0;
    cfg.job_processes = 3;
    assert_int_equal(mw_config_job_processes(&cfg), 3);
    assert_int_equal(mw_config_slots(&cfg), 6);
    assert_int_equal(mw_config_validate(&cfg, err, sizeof(err)), 0);
    cfg.slots = 2;
    assert_int_equal(mw_config_validate(&cfg, err, sizeof(err)), MW_ERR_CONFIG);
    assert_non_null(strstr(err, "MW_JOB_PROCESSES"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_valid),
        cmocka_unit_test(seed_environment_names_are_read),
        cmocka_unit_test(invalid_values_name_the_variable_and_range),
        cmocka_unit_test(flags_override_and_report_unknown),
        cmocka_unit_test(validation_checks_url_schemes),
        cmocka_unit_test(passwords_are_masked),
        cmocka_unit_test(printed_config_hides_secrets),
        cmocka_unit_test(codec_threads_share_the_cores),
        cmocka_unit_test(job_processes_and_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
