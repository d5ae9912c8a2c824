/*
 * The worker's metrics: counters, gauges and histograms, rendered in the Prometheus text exposition format
 * for /metrics, plus the state /readyz decides on.
 *
 * One handle, created by the supervisor before any thread starts and freed after they all stopped. Slot
 * threads, the broker thread, job-process handles and reporters update it; the http thread renders it.
 * Unlabelled counters and gauges are atomics; labelled counters (whose label values are discovered at run
 * time, like an operation or a decode device) and histograms share one mutex, held only for a few
 * additions or while copying into the rendering buffer, never across I/O.
 *
 * Every update function accepts a NULL handle and does nothing, so code shared with the one-shot CLI
 * commands (`run`) needs no special case.
 */
#ifndef MEDIAWORKER_METRICS_H
#define MEDIAWORKER_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum mw_metric_counter {
    MW_METRIC_JOBS_PROCESSED,     /* jobs reported as processed */
    MW_METRIC_JOBS_FAILED,        /* jobs that ended failed (reported, or dead-lettered after their run) */
    MW_METRIC_RETRIES,            /* deliveries sent to a retry tier */
    MW_METRIC_DEAD_LETTERS,       /* deliveries dead-lettered */
    MW_METRIC_REDELIVERIES,       /* deliveries that were redelivered or retried copies */
    MW_METRIC_INVALID,            /* invalid messages (dead-lettered too) */
    MW_METRIC_USERS_GONE,         /* reports answered 404 */
    MW_METRIC_BROKER_RECONNECTS,  /* broker sessions lost or refused */
    MW_METRIC_BYTES_IN,           /* input file sizes of jobs run */
    MW_METRIC_BYTES_OUT,          /* output bytes listed in reports */
    MW_METRIC_UNROUTABLE_COPIES,  /* retry or dead-letter copies the broker returned (no queue took them) */
    MW_METRIC_RESULTS_REREPORTED, /* committed results of earlier attempts reported again, not re-run */
    MW_METRIC_COUNTER_COUNT
};

enum mw_metric_gauge {
    MW_METRIC_IN_FLIGHT,          /* deliveries a slot is working on */
    MW_METRIC_JOB_PROCESSES,      /* job processes alive */
    MW_METRIC_BROKER_CONSUMING,   /* 1 while the broker thread consumes the work queue */
    MW_METRIC_DRAINING,           /* 1 once a shutdown signal arrived */
    MW_METRIC_JOBS_AS_ROOT,       /* 1 when job processes could not drop root (no CAP_SETUID) */
    MW_METRIC_COPIES_STUCK,       /* 1 while copies find no queue even after the topology was declared again */
    MW_METRIC_GAUGE_COUNT
};

enum mw_restart_cause {
    MW_RESTART_CRASH,
    MW_RESTART_TIMEOUT,
    MW_RESTART_MEMORY,
    MW_RESTART_CPU,
    MW_RESTART_RECYCLE,
    MW_RESTART_CAUSE_COUNT
};

/* Data Service request outcomes; a 2xx is MW_DS_OK. */
enum mw_ds_outcome {
    MW_DS_OK,
    MW_DS_TRANSIENT,
    MW_DS_PERMANENT,
    MW_DS_GONE,
    MW_DS_OUTCOME_COUNT
};

struct mw_metrics;

/* Creates an empty set; version goes into mediaworker_build_info. 0 or AVERROR(ENOMEM). */
int mw_metrics_new(struct mw_metrics **m, const char *version);

/* Frees the set and sets *m to NULL; accepts NULL. No other thread may still use it. */
void mw_metrics_free(struct mw_metrics **m);

void mw_metrics_add(struct mw_metrics *m, enum mw_metric_counter counter, uint64_t n);
uint64_t mw_metrics_get(const struct mw_metrics *m, enum mw_metric_counter counter);
void mw_metrics_gauge_add(struct mw_metrics *m, enum mw_metric_gauge gauge, int64_t delta);
void mw_metrics_gauge_set(struct mw_metrics *m, enum mw_metric_gauge gauge, int64_t value);
int64_t mw_metrics_gauge_get(const struct mw_metrics *m, enum mw_metric_gauge gauge);

/*
 * One operation of a finished job: mediaworker_jobs_total{operation, outcome="processed"|"failed"}. A job
 * with several operations counts once under each (the job as a whole: MW_METRIC_JOBS_PROCESSED/FAILED).
 */
void mw_metrics_job_operation(struct mw_metrics *m, const char *operation, int ok);

/* Wall time of one run of a job (download, if any, and processing): mediaworker_job_duration_seconds. */
void mw_metrics_job_duration(struct mw_metrics *m, double seconds);

/* One Data Service request (one attempt) and how it ended. */
void mw_metrics_ds_request(struct mw_metrics *m, double seconds, enum mw_ds_outcome outcome);

/* A job process that had to be replaced, and why. */
void mw_metrics_restart(struct mw_metrics *m, enum mw_restart_cause cause);

/* Where a job decoded (the report's acceleration.decode) and whether it fell back to software. */
void mw_metrics_acceleration(struct mw_metrics *m, const char *decode_device, int fallback);

/*
 * Renders everything in the text exposition format (version 0.0.4) into a new NUL-terminated buffer
 * *text (free with av_free) of *size bytes. 0 or AVERROR(ENOMEM) with *text NULL.
 */
int mw_metrics_render(const struct mw_metrics *m, char **text, size_t *size);

/*
 * Escapes a label value for the exposition format (backslash, double quote and newline) into out, always
 * NUL-terminated; a value that does not fit is cut at a character boundary. Returns the length written.
 */
size_t mw_metrics_escape_label(const char *value, char *out, size_t out_size);

/*
 * Whether the worker should be sent work: not draining, the broker consuming, and (with job processes) at
 * least one of them alive. Returns 1, or 0 with a short reason.
 */
/* Why the broker cannot be used ("" when it can), for /readyz. Copied; thread-safe; m may be NULL. */
void mw_metrics_broker_problem(struct mw_metrics *m, const char *text);

int mw_metrics_ready(const struct mw_metrics *m, int need_job_process, char *reason, size_t reason_size);

#endif
