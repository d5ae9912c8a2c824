/*
 * Metrics storage and the Prometheus text rendering.
 *
 * Labelled counters live in one small table of (family, label text) rows found by linear search: the label
 * values are few (operations, outcomes, decode devices) and an update is rare next to a job, so a hash
 * table would buy nothing. The table is bounded; a row that does not fit is counted under
 * operation/device "other" so memory cannot grow with whatever a report says. Histograms store
 * per-bucket (non-cumulative) counts and are made cumulative when rendered.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <libavutil/bprint.h>
#include <libavutil/error.h>
#include <libavutil/mem.h>

#include "mediaworker/metrics.h"

#define MAX_ROWS 64
/* Rows kept free for the "other" rows: two second-label values per family. */
#define OTHER_ROWS (2 * FAMILY_COUNT)
#define LABELS_MAX 160
#define MAX_BUCKETS 24

enum family {
    FAMILY_JOBS,
    FAMILY_ACCELERATION,
    FAMILY_COUNT
};

struct row {
    enum family family;
    char labels[LABELS_MAX];      /* rendered label pairs, without braces */
    uint64_t value;
};

struct histogram {
    const double *bounds;         /* upper bounds, ascending, without +Inf */
    int bound_count;
    uint64_t counts[MAX_BUCKETS + 1];   /* per bucket, the last one is (bounds[n-1], +Inf) */
    uint64_t count;
    double sum;
};

struct mw_metrics {
    char version[64];
    char broker_problem[256];    /* under lock */
    atomic_ullong counters[MW_METRIC_COUNTER_COUNT];
    atomic_llong gauges[MW_METRIC_GAUGE_COUNT];
    atomic_ullong restarts[MW_RESTART_CAUSE_COUNT];
    /* lock guards everything below. */
    pthread_mutex_t lock;
    struct row rows[MAX_ROWS];
    int row_count;
    struct histogram job_duration;
    struct histogram ds_latency;
    uint64_t ds_requests[MW_DS_OUTCOME_COUNT];
};

/* Jobs run from a few milliseconds (a probe) to the 25-minute deadline. */
static const double job_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                                    600, 1200, 1800};
/* A report is a millisecond on a LAN, and at most HTTP_CLIENT_TIMEOUT (up to 300 s). */
static const double ds_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                                   60, 300};

static const char *const counter_names[MW_METRIC_COUNTER_COUNT][2] = {
    [MW_METRIC_JOBS_PROCESSED] = {"jobs_processed_total", "Jobs reported as processed."},
    [MW_METRIC_JOBS_FAILED] = {"jobs_failed_total", "Jobs that ended failed (reported or dead-lettered)."},
    [MW_METRIC_RETRIES] = {"retries_total", "Deliveries sent to a retry tier."},
    [MW_METRIC_DEAD_LETTERS] = {"dead_letters_total", "Deliveries dead-lettered."},
    [MW_METRIC_REDELIVERIES] = {"redeliveries_total", "Jobs that arrived redelivered or as a retried copy."},
    [MW_METRIC_INVALID] = {"invalid_messages_total", "Invalid messages (also counted as dead letters)."},
    [MW_METRIC_USERS_GONE] = {"users_gone_total", "Reports answered 404 (user gone), acked and dropped."},
    [MW_METRIC_BROKER_RECONNECTS] = {"broker_reconnects_total", "Broker connections lost or refused."},
    [MW_METRIC_BYTES_IN] = {"input_bytes_total", "Sizes of the input files of jobs run."},
    [MW_METRIC_BYTES_OUT] = {"output_bytes_total", "Bytes of the outputs listed in reports."},
    [MW_METRIC_UNROUTABLE_COPIES] = {"unroutable_copies_total",
                                     "Retry or dead-letter copies the broker returned because no queue took them."},
    [MW_METRIC_RESULTS_REREPORTED] = {"results_rereported_total",
                                      "Results committed by an earlier attempt reported again instead of re-run."},
};

static const char *const gauge_names[MW_METRIC_GAUGE_COUNT][2] = {
    [MW_METRIC_IN_FLIGHT] = {"jobs_in_flight", "Deliveries a slot is working on."},
    [MW_METRIC_JOB_PROCESSES] = {"job_processes", "Job processes alive."},
    [MW_METRIC_JOBS_AS_ROOT] = {"jobs_run_as_root", "1 when jobs run as root because the switch to an "
                                "unprivileged user is impossible here."},
    [MW_METRIC_BROKER_CONSUMING] = {"broker_consuming", "1 while the work queue is consumed."},
    [MW_METRIC_DRAINING] = {"draining", "1 once shutdown started."},
    [MW_METRIC_COPIES_STUCK] = {"copies_unroutable", "1 while retry or dead-letter copies are held: returned "
                                "again after the topology was declared again, or refused by the broker (their "
                                "originals wait unacknowledged)."},
};

static const char *const restart_causes[MW_RESTART_CAUSE_COUNT] = {
    [MW_RESTART_CRASH] = "crash", [MW_RESTART_TIMEOUT] = "timeout", [MW_RESTART_MEMORY] = "memory",
    [MW_RESTART_CPU] = "cpu", [MW_RESTART_RECYCLE] = "recycle",
};

static const char *const ds_outcomes[MW_DS_OUTCOME_COUNT] = {
    [MW_DS_OK] = "ok", [MW_DS_TRANSIENT] = "transient", [MW_DS_PERMANENT] = "permanent", [MW_DS_GONE] = "gone",
};

static const char *const family_names[FAMILY_COUNT][2] = {
    [FAMILY_JOBS] = {"jobs_total", "Operations of finished jobs by outcome."},
    [FAMILY_ACCELERATION] = {"hwaccel_decodes_total", "Jobs by where they decoded and whether they fell back."},
};

int mw_metrics_new(struct mw_metrics **pm, const char *version)
{
    struct mw_metrics *m = av_mallocz(sizeof(*m));

    *pm = NULL;
    if (!m)
        return AVERROR(ENOMEM);
    snprintf(m->version, sizeof(m->version), "%s", version ? version : "");
    pthread_mutex_init(&m->lock, NULL);
    m->job_duration.bounds = job_bounds;
    m->job_duration.bound_count = (int)(sizeof(job_bounds) / sizeof(job_bounds[0]));
    m->ds_latency.bounds = ds_bounds;
    m->ds_latency.bound_count = (int)(sizeof(ds_bounds) / sizeof(ds_bounds[0]));
    *pm = m;
    return 0;
}

void mw_metrics_free(struct mw_metrics **pm)
{
    struct mw_metrics *m = pm ? *pm : NULL;

    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    av_free(m);
    *pm = NULL;
}

void mw_metrics_add(struct mw_metrics *m, enum mw_metric_counter counter, uint64_t n)
{
    if (m)
        atomic_fetch_add(&m->counters[counter], n);
}

uint64_t mw_metrics_get(const struct mw_metrics *m, enum mw_metric_counter counter)
{
    return m ? atomic_load(&((struct mw_metrics *)m)->counters[counter]) : 0;
}

void mw_metrics_gauge_add(struct mw_metrics *m, enum mw_metric_gauge gauge, int64_t delta)
{
    if (m)
        atomic_fetch_add(&m->gauges[gauge], delta);
}

void mw_metrics_gauge_set(struct mw_metrics *m, enum mw_metric_gauge gauge, int64_t value)
{
    if (m)
        atomic_store(&m->gauges[gauge], value);
}

int64_t mw_metrics_gauge_get(const struct mw_metrics *m, enum mw_metric_gauge gauge)
{
    return m ? atomic_load(&((struct mw_metrics *)m)->gauges[gauge]) : 0;
}

size_t mw_metrics_escape_label(const char *value, char *out, size_t out_size)
{
    size_t n = 0;

    if (!out_size)
        return 0;
    for (; value && *value; value++) {
        const char *piece = *value == '\\' ? "\\\\" : *value == '"' ? "\\\"" : *value == '\n' ? "\\n" : NULL;
        size_t len = piece ? 2 : 1;
        if (n + len >= out_size)
            break;
        if (piece)
            memcpy(out + n, piece, 2);
        else
            out[n] = *value;
        n += len;
    }
    out[n] = '\0';
    return n;
}

/* Adds n to the row (family, labels), creating it below limit rows; the caller holds the lock. 0, or -1
 * when the row would be new and the table is full up to limit. */
static int row_add(struct mw_metrics *m, enum family family, const char *labels, uint64_t n, int limit)
{
    for (int i = 0; i < m->row_count; i++) {
        if (m->rows[i].family == family && !strcmp(m->rows[i].labels, labels)) {
            m->rows[i].value += n;
            return 0;
        }
    }
    if (m->row_count >= limit)
        return -1;
    m->rows[m->row_count].family = family;
    snprintf(m->rows[m->row_count].labels, LABELS_MAX, "%s", labels);
    m->rows[m->row_count].value = n;
    m->row_count++;
    return 0;
}

/* name="value",name2="value2" with the first value escaped; a value too long to be a sane label is cut. */
static void labelled_add(struct mw_metrics *m, enum family family, const char *first_name, const char *first,
                         const char *second_name, const char *second)
{
    char escaped[96];
    char labels[LABELS_MAX];

    mw_metrics_escape_label(first && *first ? first : "unknown", escaped, sizeof(escaped));
    snprintf(labels, sizeof(labels), "%s=\"%s\",%s=\"%s\"", first_name, escaped, second_name, second);
    pthread_mutex_lock(&m->lock);
    if (row_add(m, family, labels, 1, MAX_ROWS - OTHER_ROWS) < 0) {
        snprintf(labels, sizeof(labels), "%s=\"other\",%s=\"%s\"", first_name, second_name, second);
        row_add(m, family, labels, 1, MAX_ROWS);
    }
    pthread_mutex_unlock(&m->lock);
}

void mw_metrics_job_operation(struct mw_metrics *m, const char *operation, int ok)
{
    if (m)
        labelled_add(m, FAMILY_JOBS, "operation", operation, "outcome", ok ? "processed" : "failed");
}

void mw_metrics_acceleration(struct mw_metrics *m, const char *decode_device, int fallback)
{
    if (m)
        labelled_add(m, FAMILY_ACCELERATION, "decode", decode_device, "fallback", fallback ? "yes" : "no");
}

static void observe(struct histogram *h, double value)
{
    int i = 0;

    while (i < h->bound_count && value > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += value;
}

void mw_metrics_job_duration(struct mw_metrics *m, double seconds)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    observe(&m->job_duration, seconds);
    pthread_mutex_unlock(&m->lock);
}

void mw_metrics_ds_request(struct mw_metrics *m, double seconds, enum mw_ds_outcome outcome)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    observe(&m->ds_latency, seconds);
    m->ds_requests[outcome]++;
    pthread_mutex_unlock(&m->lock);
}

void mw_metrics_restart(struct mw_metrics *m, enum mw_restart_cause cause)
{
    if (m)
        atomic_fetch_add(&m->restarts[cause], 1);
}

static void family_header(AVBPrint *bp, const char *name, const char *type, const char *help)
{
    av_bprintf(bp, "# HELP mediaworker_%s %s\n# TYPE mediaworker_%s %s\n", name, help, name, type);
}

static void render_histogram(AVBPrint *bp, const char *name, const char *help, const struct histogram *h)
{
    uint64_t cumulative = 0;

    family_header(bp, name, "histogram", help);
    for (int i = 0; i < h->bound_count; i++) {
        cumulative += h->counts[i];
        av_bprintf(bp, "mediaworker_%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                   (unsigned long long)cumulative);
    }
    cumulative += h->counts[h->bound_count];
    av_bprintf(bp, "mediaworker_%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
    av_bprintf(bp, "mediaworker_%s_sum %.9g\nmediaworker_%s_count %llu\n", name, h->sum, name,
               (unsigned long long)h->count);
}

/* The parts under the lock; the caller holds it. */
static void render_locked(const struct mw_metrics *m, AVBPrint *bp)
{
    for (int f = 0; f < FAMILY_COUNT; f++) {
        family_header(bp, family_names[f][0], "counter", family_names[f][1]);
        for (int i = 0; i < m->row_count; i++)
            if (m->rows[i].family == (enum family)f)
                av_bprintf(bp, "mediaworker_%s{%s} %llu\n", family_names[f][0], m->rows[i].labels,
                           (unsigned long long)m->rows[i].value);
    }
    render_histogram(bp, "job_duration_seconds", "Time to run a job (download and processing).",
                     &m->job_duration);
    render_histogram(bp, "data_service_request_duration_seconds", "Data Service requests, each attempt.",
                     &m->ds_latency);
    family_header(bp, "data_service_requests_total", "counter", "Data Service requests by outcome class.");
    for (int i = 0; i < MW_DS_OUTCOME_COUNT; i++)
        av_bprintf(bp, "mediaworker_data_service_requests_total{outcome=\"%s\"} %llu\n", ds_outcomes[i],
                   (unsigned long long)m->ds_requests[i]);
}

int mw_metrics_render(const struct mw_metrics *cm, char **text, size_t *size)
{
    /* Only the lock is written to. */
    struct mw_metrics *m = (struct mw_metrics *)cm;
    AVBPrint bp;
    char version[160];
    int ret;

    *text = NULL;
    *size = 0;
    av_bprint_init(&bp, 4096, AV_BPRINT_SIZE_UNLIMITED);
    mw_metrics_escape_label(m->version, version, sizeof(version));
    family_header(&bp, "build_info", "gauge", "Build of the running worker; always 1.");
    av_bprintf(&bp, "mediaworker_build_info{version=\"%s\"} 1\n", version);
    for (int i = 0; i < MW_METRIC_COUNTER_COUNT; i++) {
        family_header(&bp, counter_names[i][0], "counter", counter_names[i][1]);
        av_bprintf(&bp, "mediaworker_%s %llu\n", counter_names[i][0],
                   (unsigned long long)atomic_load(&m->counters[i]));
    }
    for (int i = 0; i < MW_METRIC_GAUGE_COUNT; i++) {
        family_header(&bp, gauge_names[i][0], "gauge", gauge_names[i][1]);
        av_bprintf(&bp, "mediaworker_%s %lld\n", gauge_names[i][0], (long long)atomic_load(&m->gauges[i]));
    }
    family_header(&bp, "job_process_restarts_total", "counter", "Job processes replaced, by cause.");
    for (int i = 0; i < MW_RESTART_CAUSE_COUNT; i++)
        av_bprintf(&bp, "mediaworker_job_process_restarts_total{cause=\"%s\"} %llu\n", restart_causes[i],
                   (unsigned long long)atomic_load(&m->restarts[i]));
    pthread_mutex_lock(&m->lock);
    render_locked(m, &bp);
    pthread_mutex_unlock(&m->lock);
    if (!av_bprint_is_complete(&bp)) {
        av_bprint_finalize(&bp, NULL);
        return AVERROR(ENOMEM);
    }
    *size = bp.len;
    ret = av_bprint_finalize(&bp, text);
    if (ret < 0)
        *size = 0;
    return ret;
}

void mw_metrics_broker_problem(struct mw_metrics *m, const char *text)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    snprintf(m->broker_problem, sizeof(m->broker_problem), "%s", text ? text : "");
    pthread_mutex_unlock(&m->lock);
}

int mw_metrics_ready(const struct mw_metrics *m, int need_job_process, char *reason, size_t reason_size)
{
    const char *why = NULL;

    if (mw_metrics_gauge_get(m, MW_METRIC_DRAINING)) {
        why = "draining";
    } else if (!mw_metrics_gauge_get(m, MW_METRIC_BROKER_CONSUMING)) {
        pthread_mutex_lock((pthread_mutex_t *)&m->lock);
        snprintf(reason, reason_size, "broker not connected or not consuming%s%s", m->broker_problem[0] ? ": " : "",
                 m->broker_problem);
        pthread_mutex_unlock((pthread_mutex_t *)&m->lock);
        return 0;
    }
    else if (need_job_process && mw_metrics_gauge_get(m, MW_METRIC_JOB_PROCESSES) <= 0)
        why = "no job process running";
    else if (mw_metrics_gauge_get(m, MW_METRIC_COPIES_STUCK))
        why = "retry and dead-letter copies find no queue (see the log); their originals are requeued";
    if (why) {
        snprintf(reason, reason_size, "%s", why);
        return 0;
    }
    /* Ready, since jobs run; but an operator reading this should know the sandbox lacks its user layer. */
    snprintf(reason, reason_size, "%s", mw_metrics_gauge_get(m, MW_METRIC_JOBS_AS_ROOT)
                                            ? "ready, but jobs run as root (set MW_JOB_USER or allow CAP_SETUID)"
                                            : "ready");
    return 1;
}
