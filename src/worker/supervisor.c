/*
 * The supervisor: wiring, signals and the shutdown sequence.
 *
 * Signals are blocked in every thread and taken synchronously here with sigtimedwait(), so no handler
 * runs in the middle of libav, libcurl or rabbitmq-c. Shutdown order matters for at-least-once delivery:
 * stop consuming first; let the slots finish (their verdicts reach the broker thread); only then stop the
 * broker thread, which applies those verdicts, waits for outstanding publisher confirms and requeues
 * whatever is still unacknowledged before it closes the connection.
 *
 * The metrics set and the http endpoint live longest: created before any other thread, stopped after all
 * of them, so /healthz answers and /readyz says "draining" for the whole shutdown.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libavutil/error.h>
#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "mediaworker/broker.h"
#include "mediaworker/download.h"
#include "mediaworker/error.h"
#include "mediaworker/httpd.h"
#include "mediaworker/log.h"
#include "mediaworker/metrics.h"
#include "mediaworker/path.h"
#include "mediaworker/queue.h"
#include "mediaworker/slot.h"
#include "mediaworker/supervisor.h"

#define POLL_INTERVAL_MS 100

struct supervisor {
    const struct mw_config *cfg;
    sigset_t signals;
    struct mw_queue *deliveries;
    struct mw_broker *broker;
    struct mw_slot **slots;
    int slot_count;
    struct mw_slot_shared shared;
    struct mw_metrics *metrics;
    struct mw_httpd *httpd;
};

/* Waits up to timeout_ms (negative = forever) for SIGTERM/SIGINT; returns the signal or 0. */
static int wait_signal(const struct supervisor *sv, int timeout_ms)
{
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    int sig;

    do {
        sig = timeout_ms < 0 ? sigwaitinfo(&sv->signals, NULL) : sigtimedwait(&sv->signals, NULL, &ts);
    } while (sig < 0 && errno == EINTR);
    return sig > 0 ? sig : 0;
}

static int all_slots_finished(const struct supervisor *sv)
{
    for (int i = 0; i < sv->slot_count; i++)
        if (!mw_slot_finished(sv->slots[i]))
            return 0;
    return 1;
}

static int start(struct supervisor *sv)
{
    const struct mw_config *cfg = sv->cfg;
    int slots = mw_config_slots(cfg);
    int ret;

    if ((ret = mw_path_mkdirs(cfg->output_root)) < 0 || (ret = mw_path_mkdirs(cfg->scratch_dir)) < 0) {
        mw_log(MW_LOG_ERROR, "supervisor", "cannot create MW_OUTPUT_ROOT/MW_SCRATCH_DIR: %s", mw_err2str(ret));
        return ret;
    }
    mw_download_scratch_sweep(cfg);
    if (access(cfg->input_root, R_OK | X_OK) < 0)
        mw_log(MW_LOG_WARN, "supervisor", "MW_INPUT_ROOT %s is not readable: %s", cfg->input_root, strerror(errno));
    if ((ret = mw_metrics_new(&sv->metrics, MW_VERSION_STRING)) < 0)
        return ret;
    sv->shared.metrics = sv->metrics;
    /* First, so a port that is taken stops the start before anything is consumed. */
    if ((ret = mw_httpd_new(&sv->httpd, cfg, sv->metrics)) < 0)
        return ret;
    /* Room for every slot's delivery plus those of a connection that was just replaced. */
    if ((ret = mw_queue_new(&sv->deliveries, (size_t)slots * 4 + 16)) < 0 ||
        (ret = mw_broker_new(&sv->broker, cfg, sv->deliveries, slots, sv->metrics)) < 0 ||
        (ret = mw_jobpool_new(&sv->shared.pool, cfg, sv->metrics, mw_config_job_processes(cfg))) < 0)
        return ret;
    sv->slots = av_calloc((size_t)slots, sizeof(*sv->slots));
    if (!sv->slots)
        return AVERROR(ENOMEM);
    for (int i = 0; i < slots; i++) {
        if ((ret = mw_slot_new(&sv->slots[i], cfg, sv->broker, sv->deliveries, &sv->shared)) < 0)
            return ret;
        sv->slot_count++;
        if ((ret = mw_slot_start(sv->slots[i])) < 0)
            return ret;
    }
    return mw_broker_start(sv->broker);
}

/* Lets running jobs finish within the grace period (cut short by a second signal), then abandons them. */
static void drain(struct supervisor *sv)
{
    int64_t until = av_gettime_relative() + (int64_t)sv->cfg->shutdown_grace_s * 1000000;

    atomic_store(&sv->shared.draining, 1);
    /* Deliveries waiting for a job process go back to the queue now instead of running in the grace. */
    mw_jobpool_wake(sv->shared.pool);
    mw_metrics_gauge_set(sv->metrics, MW_METRIC_DRAINING, 1);
    mw_broker_cancel(sv->broker);
    mw_queue_close(sv->deliveries);
    while (!all_slots_finished(sv)) {
        int sig = wait_signal(sv, POLL_INTERVAL_MS);
        if (sig) {
            mw_log(MW_LOG_WARN, "supervisor", "second signal (%s): stopping the jobs in flight now",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
            break;
        }
        if (av_gettime_relative() >= until) {
            mw_log(MW_LOG_WARN, "supervisor", "shutdown grace of %d s is over: stopping the jobs in flight",
                   sv->cfg->shutdown_grace_s);
            break;
        }
    }
    if (all_slots_finished(sv))
        return;
    atomic_store(&sv->shared.abandon, 1);
    mw_jobpool_abandon(sv->shared.pool);
}

static void stop(struct supervisor *sv)
{
    struct mw_broker_stats stats = {0};
    struct mw_delivery *d;

    if (sv->cfg->isolation == MW_ISOLATION_NONE && atomic_load(&sv->shared.abandon) && !all_slots_finished(sv)) {
        /* A job running in a slot thread cannot be interrupted; closing the connection requeues it. */
        mw_log(MW_LOG_WARN, "supervisor", "jobs run in-process (MW_ISOLATION=none) cannot be stopped; exiting");
        mw_broker_stop(sv->broker, NULL);
        _exit(0);
    }
    if (sv->deliveries)
        mw_queue_close(sv->deliveries);
    for (int i = 0; i < sv->slot_count; i++)
        mw_slot_free(&sv->slots[i]);
    av_freep(&sv->slots);
    mw_jobpool_free(&sv->shared.pool);
    if (sv->broker)
        mw_broker_stop(sv->broker, &stats);
    mw_broker_free(&sv->broker);
    while (sv->deliveries && mw_queue_pop(sv->deliveries, (void **)&d, 0) == 0)
        mw_delivery_free(&d);
    mw_queue_free(&sv->deliveries);
    mw_log(MW_LOG_INFO, "supervisor",
           "stopped: %" PRIu64 " processed, %" PRIu64 " failed, %" PRIu64 " retried, %" PRIu64 " dead-lettered (%"
           PRIu64 " invalid), %" PRIu64 " users gone, %" PRIu64 " redelivered; broker: %" PRIu64 " delivered, %"
           PRIu64 " acked, %" PRIu64 " requeued, %" PRIu64 " reconnects",
           mw_metrics_get(sv->metrics, MW_METRIC_JOBS_PROCESSED), mw_metrics_get(sv->metrics, MW_METRIC_JOBS_FAILED),
           mw_metrics_get(sv->metrics, MW_METRIC_RETRIES), mw_metrics_get(sv->metrics, MW_METRIC_DEAD_LETTERS),
           mw_metrics_get(sv->metrics, MW_METRIC_INVALID), mw_metrics_get(sv->metrics, MW_METRIC_USERS_GONE),
           mw_metrics_get(sv->metrics, MW_METRIC_REDELIVERIES), stats.delivered, stats.acked, stats.requeued,
           stats.reconnects);
    mw_httpd_free(&sv->httpd);
    mw_metrics_free(&sv->metrics);
}

int mw_supervisor_run(const struct mw_config *cfg)
{
    struct supervisor sv = {.cfg = cfg};
    int ret;
    int sig;

    sigemptyset(&sv.signals);
    sigaddset(&sv.signals, SIGTERM);
    sigaddset(&sv.signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sv.signals, NULL);
    /* A peer closing a socket must be an error return, not the death of the worker. */
    signal(SIGPIPE, SIG_IGN);
    ret = start(&sv);
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "supervisor", "cannot start the worker: %s", mw_err2str(ret));
        stop(&sv);
        return ret;
    }
    mw_log(MW_LOG_INFO, "supervisor", "serving %s with %d slot(s) and %d job process(es), isolation %s",
           cfg->queue, mw_config_slots(cfg), mw_config_job_processes(cfg),
           cfg->isolation == MW_ISOLATION_NONE ? "none" : "process");
    sig = wait_signal(&sv, -1);
    mw_log(MW_LOG_INFO, "supervisor", "%s received: finishing the jobs in flight (grace %d s)",
           sig == SIGINT ? "SIGINT" : "SIGTERM", cfg->shutdown_grace_s);
    drain(&sv);
    stop(&sv);
    return 0;
}
