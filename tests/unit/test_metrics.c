/* The metrics set: exposition text, histogram bucket math, label escaping, readiness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <libavutil/mem.h>

#include "mediaworker/metrics.h"

/* The value of the sample line that starts with `prefix ` (name and labels exactly), or -1 when absent. */
static double sample(const char *text, const char *prefix)
{
    size_t len = strlen(prefix);

    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        double v;
        if (!strncmp(line, prefix, len) && line[len] == ' ' && sscanf(line + len + 1, "%lf", &v) == 1)
            return v;
    }
    return -1;
}

static char *render(struct mw_metrics *m)
{
    char *text = NULL;
    size_t size = 0;

    assert_int_equal(mw_metrics_render(m, &text, &size), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), size);
    return text;
}

static void escapes_label_values(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(mw_metrics_escape_label("plain", out, sizeof(out)), 5);
    assert_string_equal(out, "plain");
    mw_metrics_escape_label("a\"b\\c\nd", out, sizeof(out));
    assert_string_equal(out, "a\\\"b\\\\c\\nd");
    /* A cut never leaves half an escape behind. */
    mw_metrics_escape_label("ab\"", out, 4);
    assert_string_equal(out, "ab");
    mw_metrics_escape_label(NULL, out, sizeof(out));
    assert_string_equal(out, "");
}

static void histogram_buckets_are_cumulative(void **state)
{
    struct mw_metrics *m = NULL;
    char *text;

    (void)state;
    assert_int_equal(mw_metrics_new(&m, "1.2.3"), 0);
    mw_metrics_job_duration(m, 0.001);   /* first bucket */
    mw_metrics_job_duration(m, 0.005);   /* on a bound: le is inclusive */
    mw_metrics_job_duration(m, 0.3);
    mw_metrics_job_duration(m, 4000);    /* above every bound: only +Inf */
    text = render(m);
    assert_true(sample(text, "mediaworker_job_duration_seconds_bucket{le=\"0.005\"}") == 2);
    assert_true(sample(text, "mediaworker_job_duration_seconds_bucket{le=\"0.25\"}") == 2);
    assert_true(sample(text, "mediaworker_job_duration_seconds_bucket{le=\"0.5\"}") == 3);
    assert_true(sample(text, "mediaworker_job_duration_seconds_bucket{le=\"1800\"}") == 3);
    assert_true(sample(text, "mediaworker_job_duration_seconds_bucket{le=\"+Inf\"}") == 4);
    assert_true(sample(text, "mediaworker_job_duration_seconds_count") == 4);
    assert_true(sample(text, "mediaworker_job_duration_seconds_sum") > 4000.30 &&
                sample(text, "mediaworker_job_duration_seconds_sum") < 4000.31);
    assert_non_null(strstr(text, "# TYPE mediaworker_job_duration_seconds histogram\n"));
    assert_non_null(strstr(text, "mediaworker_build_info{version=\"1.2.3\"} 1\n"));
    av_free(text);
    mw_metrics_free(&m);
    assert_null(m);
}

static void labelled_counters_and_classes(void **state)
{
    struct mw_metrics *m = NULL;
    char *text;

    (void)state;
    assert_int_equal(mw_metrics_new(&m, "x"), 0);
    mw_metrics_job_operation(m, "probe", 1);
    mw_metrics_job_operation(m, "probe", 1);
    mw_metrics_job_operation(m, "thumbnail", 0);
    mw_metrics_job_operation(m, "we\"ird", 1);
    mw_metrics_acceleration(m, "software", 1);
    mw_metrics_ds_request(m, 0.002, MW_DS_OK);
    mw_metrics_ds_request(m, 0.2, MW_DS_TRANSIENT);
    mw_metrics_ds_request(m, 0.2, MW_DS_GONE);
    mw_metrics_restart(m, MW_RESTART_TIMEOUT);
    mw_metrics_add(m, MW_METRIC_BYTES_IN, 1000);
    mw_metrics_add(m, MW_METRIC_BYTES_IN, 24);
    mw_metrics_gauge_add(m, MW_METRIC_IN_FLIGHT, 2);
    mw_metrics_gauge_add(m, MW_METRIC_IN_FLIGHT, -1);
    text = render(m);
    assert_true(sample(text, "mediaworker_jobs_total{operation=\"probe\",outcome=\"processed\"}") == 2);
    assert_true(sample(text, "mediaworker_jobs_total{operation=\"thumbnail\",outcome=\"failed\"}") == 1);
    assert_true(sample(text, "mediaworker_jobs_total{operation=\"we\\\"ird\",outcome=\"processed\"}") == 1);
    assert_true(sample(text, "mediaworker_hwaccel_decodes_total{decode=\"software\",fallback=\"yes\"}") == 1);
    assert_true(sample(text, "mediaworker_data_service_requests_total{outcome=\"transient\"}") == 1);
    assert_true(sample(text, "mediaworker_data_service_requests_total{outcome=\"permanent\"}") == 0);
    assert_true(sample(text, "mediaworker_data_service_request_duration_seconds_bucket{le=\"0.0025\"}") == 1);
    assert_true(sample(text, "mediaworker_data_service_request_duration_seconds_count") == 3);
    assert_true(sample(text, "mediaworker_job_process_restarts_total{cause=\"timeout\"}") == 1);
    assert_true(sample(text, "mediaworker_job_process_restarts_total{cause=\"crash\"}") == 0);
    assert_true(sample(text, "mediaworker_input_bytes_total") == 1024);
    assert_true(sample(text, "mediaworker_jobs_in_flight") == 1);
    assert_int_equal(mw_metrics_get(m, MW_METRIC_BYTES_IN), 1024);
    av_free(text);
    mw_metrics_free(&m);
}

static void label_table_overflow_goes_to_other(void **state)
{
    struct mw_metrics *m = NULL;
    char name[32];
    char *text;

    (void)state;
    assert_int_equal(mw_metrics_new(&m, "x"), 0);
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "device%d", i);
        mw_metrics_acceleration(m, name, 0);
    }
    text = render(m);
    assert_true(sample(text, "mediaworker_hwaccel_decodes_total{decode=\"device0\",fallback=\"no\"}") == 1);
    assert_true(sample(text, "mediaworker_hwaccel_decodes_total{decode=\"other\",fallback=\"no\"}") > 0);
    av_free(text);
    mw_metrics_free(&m);
}

static void readiness(void **state)
{
    struct mw_metrics *m = NULL;
    char reason[64];

    (void)state;
    assert_int_equal(mw_metrics_new(&m, "x"), 0);
    assert_int_equal(mw_metrics_ready(m, 1, reason, sizeof(reason)), 0);
    assert_non_null(strstr(reason, "broker"));
    mw_metrics_gauge_set(m, MW_METRIC_BROKER_CONSUMING, 1);
    assert_int_equal(mw_metrics_ready(m, 1, reason, sizeof(reason)), 0);
    assert_non_null(strstr(reason, "job process"));
    assert_int_equal(mw_metrics_ready(m, 0, reason, sizeof(reason)), 1);
    mw_metrics_gauge_add(m, MW_METRIC_JOB_PROCESSES, 1);
    assert_int_equal(mw_metrics_ready(m, 1, reason, sizeof(reason)), 1);
    mw_metrics_gauge_set(m, MW_METRIC_DRAINING, 1);
    assert_int_equal(mw_metrics_ready(m, 1, reason, sizeof(reason)), 0);
    assert_string_equal(reason, "draining");
    mw_metrics_free(&m);
    /* Updates on a NULL set are no-ops (the one-shot CLI has none). */
    mw_metrics_add(NULL, MW_METRIC_RETRIES, 1);
    mw_metrics_job_duration(NULL, 1);
    mw_metrics_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escapes_label_values),
        cmocka_unit_test(histogram_buckets_are_cumulative),
        cmocka_unit_test(labelled_counters_and_classes),
        cmocka_unit_test(label_table_overflow_goes_to_other),
        cmocka_unit_test(readiness),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
