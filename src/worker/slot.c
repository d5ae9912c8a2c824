/*
 * One slot thread: delivery -> job (in a job process taken from the pool, given back as soon as the job
 * ends) -> report -> verdict.
 *
 * The decisions, in order:
 *   - a delivery of an older connection is skipped (the broker already requeued it);
 *   - while draining, deliveries are left unacked (the broker requeues them when it closes), and one whose
 *     job had not started (its download is stopped, or it was waiting for a job process) is requeued
 *     without running and without counting as an attempt;
 *   - an invalid message is dead-lettered with its reason (x-mw-error), reported as failed when the user
 *     id is known, and never retried;
 *   - a transient job failure (job process lost, scratch disk full, ...) goes to the next retry tier; after
 *     the last one it is reported as failed and dead-lettered;
 *   - otherwise the result (processed, or a permanent failure) is reported, and the report's outcome
 *     decides: 2xx or 404 (user gone) ack; another 4xx dead-letters; retries exhausted go to a retry tier,
 *     where the redelivery runs the job again (the outputs are rewritten under the same names) and reports.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavutil/error.h>
#include <libavutil/mem.h>
#include <libavutil/random_seed.h>
#include <libavutil/sha.h>
#include <libavutil/time.h>

#include "mediaworker/download.h"
#include "mediaworker/error.h"
#include "mediaworker/events.h"
#include "mediaworker/jobpool.h"
#include "mediaworker/jobproc.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"
#include "mediaworker/reporter.h"
#include "mediaworker/slot.h"
#include "mediaworker/topology.h"

struct mw_slot {
    const struct mw_config *cfg;
    struct mw_broker *broker;
    struct mw_queue *deliveries;
    struct mw_slot_shared *shared;
    pthread_t thread;
    int started;
    atomic_int finished;
    struct mw_reporter *reporter;
};

/* State of one job while it runs: for the progress callback. */
struct running_job {
    struct mw_slot *slot;
    const struct mw_job *job;
    struct mw_event_throttle throttle;
};

int mw_slot_new(struct mw_slot **ps, const struct mw_config *cfg, struct mw_broker *broker,
                struct mw_queue *deliveries, struct mw_slot_shared *shared)
{
    struct mw_slot *s = av_mallocz(sizeof(*s));
    int ret;

    *ps = NULL;
    if (!s)
        return AVERROR(ENOMEM);
    s->cfg = cfg;
    s->broker = broker;
    s->deliveries = deliveries;
    s->shared = shared;
    ret = mw_reporter_new(&s->reporter, cfg);
    if (ret < 0) {
        av_free(s);
        return ret;
    }
    mw_reporter_set_cancel(s->reporter, &shared->abandon);
    mw_reporter_set_metrics(s->reporter, shared->metrics);
    *ps = s;
    return 0;
}

static void on_progress(void *opaque, const struct mw_progress *progress)
{
    struct running_job *run = opaque;
    cJSON *extra;

    if (!mw_events_progress_due(&run->throttle, progress->percent, av_gettime_relative()))
        return;
    extra = cJSON_CreateObject();
    if (extra && cJSON_AddStringToObject(extra, "phase", progress->phase ? progress->phase : "") &&
        cJSON_AddNumberToObject(extra, "percent", progress->percent) &&
        cJSON_AddNumberToObject(extra, "eta_s", progress->eta_s))
        mw_events_publish(run->slot->broker, "job.progress", run->job->job_id, run->job->request_id,
                          run->job->user_id, extra);
    cJSON_Delete(extra);
}

/* A new_file for a job that produced no report of its own (process died, message invalid). */
static cJSON *failed_report(const char *job_id, const char *name, int err, const char *reason)
{
    cJSON *report = cJSON_CreateObject();
    cJSON *error = NULL;
    char message[512];

    if (reason && *reason)
        snprintf(message, sizeof(message), "%s: %s", mw_err2str(err), reason);
    else
        snprintf(message, sizeof(message), "%s", mw_err2str(err));
    if (!report || !cJSON_AddStringToObject(report, "job_id", job_id) ||
        !cJSON_AddStringToObject(report, "name", name) || !cJSON_AddStringToObject(report, "status", "failed") ||
        !cJSON_AddNullToObject(report, "path") || !cJSON_AddArrayToObject(report, "outputs") ||
        !(error = cJSON_AddObjectToObject(report, "error")) ||
        !cJSON_AddStringToObject(error, "code", mw_error_code_name(err)) ||
        !cJSON_AddStringToObject(error, "message", message) ||
        !cJSON_AddBoolToObject(error, "permanent", mw_job_error_is_permanent(err))) {
        cJSON_Delete(report);
        return NULL;
    }
    return report;
}

/* Runs the job at place (taken from the pool): in its job process, or here with MW_ISOLATION=none. */
static int run_job(struct mw_slot *s, int place, struct mw_job *job, const struct mw_delivery *d, cJSON **result,
                   char *reason, size_t reason_size)
{
    struct running_job run = {.slot = s, .job = job};
    struct mw_job_message message = {job->job_id, job->user_id, d->body,         d->body_size,
                                     d->message_id, job->request_id, job->local_input};
    int64_t deadline = av_gettime_relative() + (int64_t)s->cfg->limits.job_deadline_s * 1000000;
    struct mw_jobproc *process = NULL;
    int ret;

    if (s->cfg->isolation == MW_ISOLATION_NONE)
        return mw_job_run(s->cfg, job, on_progress, &run, result);
    if ((ret = mw_jobpool_process(s->shared->pool, place, &process, reason, reason_size)) < 0)
        return ret;
    return mw_jobproc_run(process, &message, deadline, on_progress, &run, result, reason, reason_size);
}

/* Removes path, and below it up to depth levels of subdirectories; links are removed, never followed. */
static void remove_entry(const char *path, int depth)
{
    struct stat st;
    struct dirent *entry;
    DIR *dir;

    if (lstat(path, &st) < 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    if (depth > 0 && (dir = opendir(path))) {
        while ((entry = readdir(dir))) {
            char child[4096];
            if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, "..") &&
                snprintf(child, sizeof(child), "%s/%s", path, entry->d_name) < (int)sizeof(child))
                remove_entry(child, depth - 1);
        }
        closedir(dir);
    }
    rmdir(path);
}

/*
 * A job process killed while writing (a crash, the deadline, SIGKILL, or the whole worker killed before the
 * redelivery ran here) leaves its temporaries in the job's output directory: `name.tmp.<pid>` (atomic
 * writes), `.name.<pid>.tmp` (renditions) and `.hls.<pid>.tmp/` (HLS, two levels deep). Nothing else would
 * ever remove them. Output names are the worker's own and never contain ".tmp", so everything that does is a
 * temporary; once this slot's job process is done with the job, no writer of this job is left (the broker
 * hands a message to one consumer at a time; a message the producer published twice is the exception).
 */
static void remove_stale_temporaries(const struct mw_config *cfg, const struct mw_job *job)
{
    char dir[2048];
    struct dirent *entry;
    DIR *d;

    if (mw_job_output_path(cfg, job, dir, sizeof(dir)) < 0 || !(d = opendir(dir)))
        return;
    while ((entry = readdir(d))) {
        size_t len = strlen(entry->d_name);
        char path[4096];

        if ((strstr(entry->d_name, ".tmp.") || (len > 4 && !strcmp(entry->d_name + len - 4, ".tmp"))) &&
            snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name) < (int)sizeof(path)) {
            mw_log(MW_LOG_INFO, "slot", "removing a temporary left by an interrupted attempt: %s", entry->d_name);
            remove_entry(path, 2);
        }
    }
    closedir(d);
}

static void publish_outcome(struct mw_slot *s, const struct mw_job *job, const cJSON *result, int ok)
{
    cJSON *extra = cJSON_CreateObject();
    const cJSON *field;

    if (extra) {
        /* The event carries the report's summary, not the whole probe. */
        static const char *const keep[] = {"status", "path", "outputs", "error", NULL};
        for (const char *const *k = keep; *k; k++)
            if ((field = cJSON_GetObjectItemCaseSensitive(result, *k)))
                cJSON_AddItemToObject(extra, *k, cJSON_Duplicate(field, 1));
    }
    mw_events_publish(s->broker, ok ? "job.completed" : "job.failed", job->job_id, job->request_id, job->user_id,
                      extra);
    cJSON_Delete(extra);
}

/* What a job's report says about its input, its outputs and where it decoded. */
static void count_result(struct mw_metrics *m, const cJSON *result)
{
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(result, "probe"),
                                                           "format");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(format, "size");
    const cJSON *acceleration = cJSON_GetObjectItemCaseSensitive(result, "acceleration");
    const cJSON *output;

    if (cJSON_IsNumber(size) && size->valuedouble > 0)
        mw_metrics_add(m, MW_METRIC_BYTES_IN, (uint64_t)size->valuedouble);
    cJSON_ArrayForEach(output, cJSON_GetObjectItemCaseSensitive(result, "outputs")) {
        const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(output, "bytes");
        if (cJSON_IsNumber(bytes) && bytes->valuedouble > 0)
            mw_metrics_add(m, MW_METRIC_BYTES_OUT, (uint64_t)bytes->valuedouble);
    }
    if (cJSON_IsObject(acceleration))
        mw_metrics_acceleration(m, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(acceleration, "decode")),
                                cJSON_IsString(cJSON_GetObjectItemCaseSensitive(acceleration, "fallback")));
}

/* A job that will not run again: counted as a whole and under each of its operations. */
static void count_finished(struct mw_slot *s, const struct mw_job *job, int ok)
{
    mw_metrics_add(s->shared->metrics, ok ? MW_METRIC_JOBS_PROCESSED : MW_METRIC_JOBS_FAILED, 1);
    for (int i = 0; i < job->operation_count; i++)
        mw_metrics_job_operation(s->shared->metrics, job->operations[i].type, ok);
}

/* Reports and settles; takes d. */
static void report_and_settle(struct mw_slot *s, struct mw_delivery *d, const struct mw_job *job, int job_ret,
                              const cJSON *result, int final_failure)
{
    char detail[512];
    char reason[640];
    int ret = mw_reporter_send(s->reporter, job->user_id, job->job_id, job->request_id, result, detail,
                               sizeof(detail));

    if (atomic_load(&s->shared->abandon) && ret == MW_ERR_HTTP_TRANSIENT) {
        mw_broker_settle(s->broker, d, MW_VERDICT_REQUEUE, NULL);
        return;
    }
    switch (ret) {
    case 0:
    case MW_ERR_HTTP_GONE:
        if (ret == MW_ERR_HTTP_GONE) {
            mw_metrics_add(s->shared->metrics, MW_METRIC_USERS_GONE, 1);
            mw_log(MW_LOG_WARN, "slot", "user %" PRId64 " no longer exists (404); report dropped", job->user_id);
        }
        if (job_ret >= 0)
            mw_log(MW_LOG_INFO, "slot", "job completed and reported in %.3f s",
                   (double)(av_gettime_relative() - d->received_us) / 1e6);
        publish_outcome(s, job, result, job_ret >= 0);
        /* d belongs to the broker thread once settled. */
        if (final_failure) {
            const char *message = cJSON_GetStringValue(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(result, "error"), "message"));
            snprintf(reason, sizeof(reason), "%s", message ? message : mw_err2str(job_ret));
            count_finished(s, job, 0);
            mw_broker_settle(s->broker, d, MW_VERDICT_DEAD, reason);
        } else {
            count_finished(s, job, job_ret >= 0);
            mw_broker_settle(s->broker, d, MW_VERDICT_ACK, NULL);
        }
        return;
    case MW_ERR_HTTP_PERMANENT:
        snprintf(reason, sizeof(reason), "data service refused the report: %s", detail);
        mw_log(MW_LOG_ERROR, "slot", "%s", reason);
        count_finished(s, job, 0);
        mw_broker_settle(s->broker, d, MW_VERDICT_DEAD, reason);
        return;
    default:
        snprintf(reason, sizeof(reason), "data service unavailable: %s", detail);
        mw_log(MW_LOG_ERROR, "slot", "report failed after %d attempt(s): %s", s->cfg->http_retries + 1, detail);
        mw_broker_settle(s->broker, d, MW_VERDICT_RETRY, reason);
        return;
    }
}

/*
 * The job id of a message refused before it became a job: its message id when that is a usable id, else
 * one derived from the message id's bytes and the body, so that the failure report's Idempotency-Key differs
 * between different messages and stays the same for a redelivery of one.
 */
static void invalid_job_id(const struct mw_delivery *d, char *job_id, size_t size)
{
    struct AVSHA *sha;
    uint8_t hash[32];

    if (d->message_id[0] && mw_path_component_ok(d->message_id)) {
        snprintf(job_id, size, "%s", d->message_id);
        return;
    }
    if (!(sha = av_sha_alloc())) {
        snprintf(job_id, size, "invalid-%08x%08x", av_get_random_seed(), av_get_random_seed());
        return;
    }
    av_sha_init(sha, 256);
    av_sha_update(sha, (const uint8_t *)d->original_message_id, d->original_message_id_len);
    av_sha_update(sha, (const uint8_t *)"\n", 1);
    av_sha_update(sha, (const uint8_t *)d->body, d->body_size);
    av_sha_final(sha, hash);
    av_free(sha);
    snprintf(job_id, size, "invalid-%02x%02x%02x%02x%02x%02x%02x%02x", hash[0], hash[1], hash[2], hash[3], hash[4],
             hash[5], hash[6], hash[7]);
}

/* Takes d: dead-letters an invalid message, reporting it first when the user is known. */
static void reject_invalid(struct mw_slot *s, struct mw_delivery *d, int64_t user_id, const char *err)
{
    char job_id[MW_JOB_ID_MAX];
    cJSON *report = NULL;
    char detail[512];

    invalid_job_id(d, job_id, sizeof(job_id));
    if (!d->request_id[0])
        snprintf(d->request_id, sizeof(d->request_id), "mw-invalid-%08x", av_get_random_seed());
    mw_log_context_set(job_id, d->request_id);
    mw_log(MW_LOG_ERROR, "slot", "invalid message dead-lettered: %s", err);
    mw_metrics_add(s->shared->metrics, MW_METRIC_INVALID, 1);
    if (user_id > 0 && (report = failed_report(job_id, "", MW_ERR_INVALID_MESSAGE, err))) {
        int ret = mw_reporter_send(s->reporter, user_id, job_id, d->request_id, report, detail, sizeof(detail));
        if (ret < 0)
            mw_log(MW_LOG_WARN, "slot", "failure report for the invalid message not delivered: %s", detail);
    }
    mw_events_publish(s->broker, "job.failed", job_id, d->request_id, user_id, NULL);
    cJSON_Delete(report);
    mw_broker_settle(s->broker, d, MW_VERDICT_DEAD, err);
}

static void handle(struct mw_slot *s, struct mw_delivery *d)
{
    struct mw_job *job = NULL;
    cJSON *result = NULL;
    char err[256] = "";
    char reason[512] = "";
    char scratch[2048] = "";
    int64_t user_id = -1;
    int64_t started_us, waited_us = 0;
    int final_failure = 0;
    int place = -1;
    int ret;

    ret = mw_job_parse(d->body, d->body_size, d->message_id[0] ? d->message_id : NULL,
                       d->request_id[0] ? d->request_id : NULL, s->cfg, &job, &user_id, err, sizeof(err));
    if (ret < 0 || d->refused[0]) {
        mw_job_free(&job);
        reject_invalid(s, d, user_id, d->refused[0] ? d->refused : err);
        mw_log_context_set(NULL, NULL);
        return;
    }
    mw_log_context_set(job->job_id, job->request_id);
    /* A generated request id travels with retried copies, so every attempt logs and reports the same one. */
    if (!d->request_id[0])
        snprintf(d->request_id, sizeof(d->request_id), "%s", job->request_id);
    if (d->redelivered || d->failures) {
        mw_metrics_add(s->shared->metrics, MW_METRIC_REDELIVERIES, 1);
        mw_log(MW_LOG_INFO, "slot", "redelivered job (broker redelivered=%d, failed attempts so far %d)",
               d->redelivered, d->failures);
    }
    mw_log(MW_LOG_INFO, "slot", "job started for user %" PRId64 ": %s", job->user_id, job->path);
    mw_events_publish(s->broker, "job.started", job->job_id, job->request_id, job->user_id, NULL);
    /* URL inputs are fetched here, in the supervisor, under the network policy: job processes have no
     * network. A failed download is classified like any job failure (DOWNLOAD_FAILED is retried). */
    started_us = av_gettime_relative();
    /* A shutdown stops a download at once: the job would not start after it anyway (below). */
    ret = job->url[0] ? mw_download_job_input(s->cfg, job, &s->shared->draining, scratch, sizeof(scratch), reason,
                                              sizeof(reason))
                      : 0;
    if (ret >= 0) {
        int64_t wait_start = av_gettime_relative();
        place = mw_jobpool_acquire(s->shared->pool, &s->shared->draining);
        waited_us = av_gettime_relative() - wait_start;
    }
    /* A job that had not started when the shutdown began (its download stopped, or waiting for a job
     * process) does not start, and its attempt does not count: the message is requeued, for this worker's
     * successor or another one. */
    if (atomic_load(&s->shared->draining)) {
        mw_log(MW_LOG_INFO, "slot", "shutting down before the job started: requeued");
        if (place >= 0)
            mw_jobpool_release(s->shared->pool, place, 1);
        mw_download_job_cleanup(scratch, job);
        mw_broker_settle(s->broker, d, MW_VERDICT_REQUEUE, NULL);
        goto end;
    }
    if (ret >= 0) {
        reason[0] = '\0';
        ret = run_job(s, place, job, d, &result, reason, sizeof(reason));
        /* Given back before the report: the process takes the next job while the Data Service answers. */
        mw_jobpool_release(s->shared->pool, place, atomic_load(&s->shared->draining));
    }
    mw_metrics_job_duration(s->shared->metrics, (double)(av_gettime_relative() - started_us - waited_us) / 1e6);
    count_result(s->shared->metrics, result);
    mw_download_job_cleanup(scratch, job);
    remove_stale_temporaries(s->cfg, job);
    if (atomic_load(&s->shared->abandon)) {
        /* Stopped by the shutdown, not by the job: it runs again elsewhere. */
        mw_broker_settle(s->broker, d, MW_VERDICT_REQUEUE, NULL);
        goto end;
    }
    if (ret < 0 && !mw_job_error_is_permanent(ret)) {
        if (mw_topology_retry_tier(d->failures + 1, mw_broker_tiers(s->broker))) {
            char why[512];
            snprintf(why, sizeof(why), "%s%s%s", mw_err2str(ret), reason[0] ? ": " : "", reason);
            mw_broker_settle(s->broker, d, MW_VERDICT_RETRY, why);
            goto end;
        }
        final_failure = 1;
    }
    if (ret == MW_ERR_INVALID_MESSAGE || ret == MW_ERR_PATH_REFUSED || ret == MW_ERR_UNSUPPORTED_OP)
        final_failure = 1; /* the message itself is wrong: reported, and kept in the DLQ for a person */
    if (!result) /* the job process died before answering: the report says why */
        result = failed_report(job->job_id, job->name[0] ? job->name : job->path, ret, reason);
    if (!result) {
        mw_broker_settle(s->broker, d, MW_VERDICT_RETRY, "out of memory building the report");
        goto end;
    }
    report_and_settle(s, d, job, ret, result, final_failure);
end:
    mw_log_context_set(NULL, NULL);
    cJSON_Delete(result);
    mw_job_free(&job);
}

static void *slot_main(void *arg)
{
    struct mw_slot *s = arg;
    struct mw_delivery *d;

    while (mw_queue_pop(s->deliveries, (void **)&d, -1) == 0) {
        if (atomic_load(&s->shared->draining) || d->generation != mw_broker_generation(s->broker)) {
            /* Left unacked: the broker requeues it (on close, or it already did on the reconnect). */
            mw_delivery_free(&d);
            continue;
        }
        mw_metrics_gauge_add(s->shared->metrics, MW_METRIC_IN_FLIGHT, 1);
        handle(s, d);
        mw_metrics_gauge_add(s->shared->metrics, MW_METRIC_IN_FLIGHT, -1);
    }
    mw_jobpool_wait_idle(s->shared->pool, &s->shared->abandon);
    atomic_store(&s->finished, 1);
    return NULL;
}

int mw_slot_start(struct mw_slot *s)
{
    int ret = pthread_create(&s->thread, NULL, slot_main, s);

    if (ret)
        return AVERROR(ret);
    s->started = 1;
    return 0;
}

int mw_slot_finished(const struct mw_slot *s)
{
    return !s->started || atomic_load(&((struct mw_slot *)s)->finished);
}

void mw_slot_free(struct mw_slot **ps)
{
    struct mw_slot *s = ps ? *ps : NULL;

    if (!s)
        return;
    if (s->started)
        pthread_join(s->thread, NULL);
    mw_reporter_free(&s->reporter);
    av_free(s);
    *ps = NULL;
}
