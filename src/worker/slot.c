/*
 * One slot thread: delivery -> job (in a job process taken from the pool, given back as soon as the job
 * ends) -> report -> settlement.
 *
 * The slot decides nothing about the message itself: it gathers the facts (is the message valid, how did
 * the job end, what did the Data Service answer) and does what mw_verdict_decide() says next, until the
 * verdict is a settlement the broker thread carries out (verdict.h has the rules). What it does decide:
 * a delivery of an older connection is skipped (the broker already requeued it), and while draining,
 * deliveries not yet started are left unacked (the broker requeues them when it closes).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

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
#include "mediaworker/verdict.h"

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
        !cJSON_AddBoolToObject(error, "permanent", mw_error_class(err) != MW_ERROR_CLASS_TRANSIENT)) {
        cJSON_Delete(report);
        return NULL;
    }
    return report;
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

/* Everything the slot knows about one delivery while it works on it. */
struct attempt {
    struct mw_delivery *d;
    struct mw_job *job;
    struct mw_delivery_facts facts;
    cJSON *result;              /* the job's report (new_file), once there is one */
    char reason[512];           /* why the job failed, where its process could not say */
    char answer[512];           /* the Data Service's last answer */
    char scratch[2048];         /* where a URL input was downloaded */
    int64_t busy_us;            /* time spent running the job, without waiting for a job process */
};

/* Takes d: an invalid message is dead-lettered; a known user is told first, as a courtesy. */
static void reject_invalid(struct mw_slot *s, struct mw_delivery *d, int64_t user_id, const char *err)
{
    struct mw_delivery_facts facts = {.invalid = 1, .attempts = d->failures, .retry_after_ms = -1};
    struct mw_verdict verdict = mw_verdict_decide(&facts);
    char job_id[MW_JOB_ID_MAX];
    cJSON *report = NULL;
    char answer[512];
    int64_t retry_after_ms;

    invalid_job_id(d, job_id, sizeof(job_id));
    if (!d->request_id[0])
        snprintf(d->request_id, sizeof(d->request_id), "mw-invalid-%08x", av_get_random_seed());
    mw_log_context_set(job_id, d->request_id);
    mw_log(MW_LOG_ERROR, "slot", "invalid message dead-lettered: %s", err);
    mw_metrics_add(s->shared->metrics, MW_METRIC_INVALID, 1);
    if (user_id > 0 && (report = failed_report(job_id, "", MW_ERR_INVALID_MESSAGE, err)) &&
        mw_reporter_send(s->reporter, user_id, job_id, d->request_id, report, &retry_after_ms, answer,
                         sizeof(answer)) != MW_REPORT_ACCEPTED)
        mw_log(MW_LOG_WARN, "slot", "failure report for the invalid message not delivered: %s", answer);
    mw_events_publish(s->broker, "job.failed", job_id, d->request_id, user_id, NULL);
    cJSON_Delete(report);
    mw_broker_settle(s->broker, d, &verdict, err);
}

/*
 * An earlier attempt of this message finished the job and committed its result (the report is what
 * failed, or the process was killed before it could answer): the result is reported again, the job is not
 * run again.
 */
static void take_committed_result(struct mw_slot *s, struct attempt *a)
{
    cJSON *committed = NULL;

    if (!mw_job_committed_result(s->cfg, a->job, &committed))
        return;
    mw_log(MW_LOG_INFO, "slot", "the job's result was committed by an earlier attempt: reporting it again");
    mw_metrics_add(s->shared->metrics, MW_METRIC_RESULTS_REREPORTED, 1);
    cJSON_Delete(a->result);
    a->result = committed;
    a->facts.committed = 1;
    a->facts.job_error = 0;
}

/* Runs the job once: in a job process taken from the pool and given back at once, or here with
 * MW_ISOLATION=none. A URL input is fetched first (here, in the supervisor, under the network policy:
 * job processes have no network). */
static void run_once(struct mw_slot *s, struct attempt *a)
{
    struct running_job run = {.slot = s, .job = a->job};
    struct mw_job_message message = {a->job->job_id, a->job->user_id, a->d->body,        a->d->body_size,
                                     a->d->message_id, a->job->request_id, a->job->local_input};
    int64_t deadline = av_gettime_relative() + (int64_t)s->cfg->limits.job_deadline_s * 1000000;
    struct mw_jobproc *process = NULL;
    int64_t started_us = av_gettime_relative();
    int place = -1;
    int ret = 0;

    a->reason[0] = '\0';
    cJSON_Delete(a->result);
    a->result = NULL;
    /* A shutdown stops a download at once: the job would not start after it anyway (below). */
    if (a->facts.runs == 0 && a->job->url[0])
        ret = mw_download_job_input(s->cfg, a->job, &s->shared->draining, a->scratch, sizeof(a->scratch), a->reason,
                                    sizeof(a->reason));
    if (ret >= 0) {
        int64_t wait_start = av_gettime_relative();
        place = mw_jobpool_acquire(s->shared->pool, &s->shared->draining);
        started_us += av_gettime_relative() - wait_start;
    }
    /* A job that had not started when the shutdown began (its download stopped, or waiting for a job
     * process) does not start, and its attempt does not count. */
    if (atomic_load(&s->shared->draining)) {
        mw_log(MW_LOG_INFO, "slot", "shutting down before the job started");
        if (place >= 0)
            mw_jobpool_release(s->shared->pool, place, 1);
        a->facts.stopped = 1;
        return;
    }
    if (ret >= 0 && s->cfg->isolation == MW_ISOLATION_NONE)
        ret = mw_job_run(s->cfg, a->job, on_progress, &run, &a->result);
    else if (ret >= 0 && (ret = mw_jobpool_process(s->shared->pool, place, &process, a->reason,
                                                   sizeof(a->reason))) >= 0)
        ret = mw_jobproc_run(process, &message, deadline, on_progress, &run, &a->result, a->reason,
                             sizeof(a->reason));
    /* Given back before the report: the process takes the next job while the Data Service answers. */
    if (place >= 0)
        mw_jobpool_release(s->shared->pool, place, atomic_load(&s->shared->draining));
    a->busy_us += av_gettime_relative() - started_us;
    a->facts.runs++;
    a->facts.job_error = ret < 0 ? ret : 0;
    /* Stopped by the shutdown, not by the job: it runs again elsewhere. */
    a->facts.stopped = atomic_load(&s->shared->abandon);
    /* No job process works on the job now: unfinished work leaves nothing behind. A process killed after
     * it committed its result (before it could answer) finished the job all the same. */
    mw_job_tidy_output_folder(s->cfg, a->job);
    if (ret < 0 && !a->facts.stopped)
        take_committed_result(s, a);
    if (ret == MW_ERR_JOB_KILLED && a->facts.runs == 1)
        mw_log(MW_LOG_WARN, "slot", "job process killed from outside (%s); running the job once more", a->reason);
}

static void report(struct mw_slot *s, struct attempt *a)
{
    const struct mw_job *job = a->job;

    if (!a->result) /* the job process died before answering: the report says why */
        a->result = failed_report(job->job_id, job->name[0] ? job->name : job->path, a->facts.job_error,
                                  a->reason);
    if (!a->result) {
        snprintf(a->answer, sizeof(a->answer), "out of memory building the report");
        a->facts.report = MW_REPORT_UNAVAILABLE;
        return;
    }
    a->facts.report = mw_reporter_send(s->reporter, job->user_id, job->job_id, job->request_id, a->result,
                                       &a->facts.retry_after_ms, a->answer, sizeof(a->answer));
    if (a->facts.report == MW_REPORT_UNAVAILABLE && atomic_load(&s->shared->abandon))
        a->facts.stopped = 1;
}

/* The x-mw-error of a retried or dead-lettered copy: what went wrong, in the words of whoever said it. */
static void copy_reason(const struct attempt *a, char *out, size_t size)
{
    const char *message = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(a->result, "error"), "message"));

    if (a->facts.report == MW_REPORT_REFUSED)
        snprintf(out, size, "data service refused the report: %s", a->answer);
    else if (a->facts.report == MW_REPORT_UNAVAILABLE)
        snprintf(out, size, "data service unavailable: %s", a->answer);
    else if (message)
        snprintf(out, size, "%s", message);
    else
        snprintf(out, size, "%s%s%s", mw_err2str(a->facts.job_error), a->reason[0] ? ": " : "", a->reason);
}

/* Takes a->d: hands the verdict to the broker thread, with what the logs, metrics and events say of it. */
static void settle(struct mw_slot *s, struct attempt *a, const struct mw_verdict *v)
{
    int reported = a->facts.report == MW_REPORT_ACCEPTED || a->facts.report == MW_REPORT_USER_GONE;
    int ok = a->facts.job_error >= 0;
    char reason[640] = "";

    mw_log(MW_LOG_DEBUG, "slot", "verdict: %s (%s)", mw_action_name(v->action), v->rule);
    if (a->facts.report == MW_REPORT_USER_GONE)
        mw_metrics_add(s->shared->metrics, MW_METRIC_USERS_GONE, 1);
    if (a->facts.report == MW_REPORT_REFUSED)
        mw_log(MW_LOG_ERROR, "slot", "data service refused the report: %s", a->answer);
    else if (a->facts.report == MW_REPORT_UNAVAILABLE && v->action != MW_ACTION_REQUEUE)
        mw_log(MW_LOG_ERROR, "slot", "report failed: %s", a->answer);
    switch (v->action) {
    case MW_ACTION_ACK:
        if (ok)
            mw_log(MW_LOG_INFO, "slot", "job completed and reported in %.3f s",
                   (double)(av_gettime_relative() - a->d->received_us) / 1e6);
        break;
    case MW_ACTION_REQUEUE:
        mw_log(MW_LOG_INFO, "slot", "%s", v->rule);
        break;
    default:
        copy_reason(a, reason, sizeof(reason));
        break;
    }
    if (reported)
        publish_outcome(s, a->job, a->result, ok);
    if (v->action == MW_ACTION_ACK || v->action == MW_ACTION_DEAD)
        count_finished(s, a->job, ok && v->action == MW_ACTION_ACK);
    mw_broker_settle(s->broker, a->d, v, reason);
    a->d = NULL;
}

static void handle(struct mw_slot *s, struct mw_delivery *d)
{
    struct attempt a = {.d = d};
    char err[256] = "";
    int64_t user_id = -1;
    int ret;

    ret = mw_job_parse(d->body, d->body_size, d->message_id[0] ? d->message_id : NULL,
                       d->request_id[0] ? d->request_id : NULL, s->cfg, &a.job, &user_id, err, sizeof(err));
    if (ret < 0 || d->refused[0]) {
        mw_job_free(&a.job);
        reject_invalid(s, d, user_id, d->refused[0] ? d->refused : err);
        mw_log_context_set(NULL, NULL);
        return;
    }
    a.facts = (struct mw_delivery_facts){.attempts = d->failures, .tiers = mw_broker_tiers(s->broker),
                                         .delays_s = mw_broker_delays(s->broker), .retry_after_ms = -1};
    mw_log_context_set(a.job->job_id, a.job->request_id);
    /* A generated request id travels with retried copies, so every attempt logs and reports the same one. */
    if (!d->request_id[0])
        snprintf(d->request_id, sizeof(d->request_id), "%s", a.job->request_id);
    if (d->redelivered || d->failures) {
        mw_metrics_add(s->shared->metrics, MW_METRIC_REDELIVERIES, 1);
        mw_log(MW_LOG_INFO, "slot", "redelivered job (broker redelivered=%d, failed attempts so far %d)",
               d->redelivered, d->failures);
    }
    take_committed_result(s, &a);
    if (!a.facts.committed) {
        mw_log(MW_LOG_INFO, "slot", "job started for user %" PRId64 ": %s", a.job->user_id, a.job->path);
        mw_events_publish(s->broker, "job.started", a.job->job_id, a.job->request_id, a.job->user_id, NULL);
    }
    while (a.d) {
        struct mw_verdict verdict = mw_verdict_decide(&a.facts);

        switch (verdict.action) {
        case MW_ACTION_RUN:
        case MW_ACTION_RUN_AGAIN:
            run_once(s, &a);
            if (a.facts.runs)
                count_result(s->shared->metrics, a.result);
            break;
        case MW_ACTION_REPORT:
            report(s, &a);
            break;
        default:
            settle(s, &a, &verdict);
            break;
        }
    }
    if (a.facts.runs)
        mw_metrics_job_duration(s->shared->metrics, (double)a.busy_us / 1e6);
    mw_download_job_cleanup(a.scratch, a.job);
    mw_log_context_set(NULL, NULL);
    cJSON_Delete(a.result);
    mw_job_free(&a.job);
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
