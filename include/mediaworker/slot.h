/*
 * Slot threads: each takes one delivery at a time from the deliveries queue and carries it to a verdict:
 * parse and validate, run (in a job process taken from the shared pool for the job alone, or in the thread
 * with MW_ISOLATION=none), report to the Data Service, then ack, retry or dead-letter through the broker.
 * A slot owns its reporter (one curl handle) and nothing else; what slots share is in struct mw_slot_shared.
 *
 * The ack is sent only after the report was accepted (or the failure is permanent and has been reported
 * or dead-lettered): at-least-once delivery, so everything a redelivery does must be idempotent, and is
 * (outputs have deterministic names, reports carry Idempotency-Key: <job_id>).
 */
#ifndef MEDIAWORKER_SLOT_H
#define MEDIAWORKER_SLOT_H

#include <stdatomic.h>
#include <stdint.h>

#include "mediaworker/broker.h"
#include "mediaworker/config.h"
#include "mediaworker/jobpool.h"
#include "mediaworker/metrics.h"
#include "mediaworker/queue.h"

/* What the supervisor and every slot share: flags, the job processes, and the metrics set. */
struct mw_slot_shared {
    atomic_int draining;          /* shutting down: take no new job */
    atomic_int abandon;           /* grace over: stop the running job, requeue it */
    struct mw_jobpool *pool;      /* owned by the supervisor */
    struct mw_metrics *metrics;   /* owned by the supervisor */
};

struct mw_slot;

/* Creates a slot. Everything given must outlive it. 0 or AVERROR(ENOMEM). */
int mw_slot_new(struct mw_slot **s, const struct mw_config *cfg, struct mw_broker *broker,
                struct mw_queue *deliveries, struct mw_slot_shared *shared);

/* Starts the slot's thread. 0 or AVERROR(errno). */
int mw_slot_start(struct mw_slot *s);

/* True once the slot's thread has returned (after the deliveries queue was closed and drained). */
int mw_slot_finished(const struct mw_slot *s);

/* Joins the thread if started, frees everything, sets *s to NULL; accepts NULL. */
void mw_slot_free(struct mw_slot **s);

#endif
