/*
 * The broker thread: the only code that touches the AMQP connection.
 *
 * It connects (rotating through a cluster's URLs, with backoff and jitter), declares the topology, sets the
 * prefetch to the number of slots and consumes. Each delivery becomes a struct mw_delivery pushed onto the
 * deliveries queue the slots pop from. Verdicts (ack, requeue, retry, dead-letter) and events come back
 * through mw_broker_settle() / mw_broker_publish_event(), which only enqueue a command and wake the
 * thread: a slot never waits for the network here.
 *
 * Every delivery carries the generation of the connection it arrived on. After a reconnect the old
 * deliveries are void (the broker has requeued them); a verdict for one is dropped, never applied to a
 * delivery tag of the new channel, and slots skip old deliveries they have not started.
 *
 * Retries and dead letters are republished copies (with x-mw-attempt / x-mw-error headers) sent in
 * publisher-confirm mode; the original is acked only once the broker confirmed the copy, so a crash
 * between the two duplicates a message rather than losing it.
 */
#ifndef MEDIAWORKER_BROKER_H
#define MEDIAWORKER_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "mediaworker/config.h"
#include "mediaworker/job.h"
#include "mediaworker/metrics.h"
#include "mediaworker/queue.h"
#include "mediaworker/verdict.h"

struct mw_delivery {
    uint64_t generation;          /* connection generation it arrived on */
    uint64_t tag;                 /* delivery tag on that connection's channel */
    int redelivered;              /* the broker's redelivered flag */
    int failures;                 /* x-mw-attempt: failed attempts before this delivery */
    char message_id[MW_JOB_ID_MAX];       /* checked (printable ASCII); "" when absent or refused */
    char request_id[MW_REQUEST_ID_MAX];   /* X-Request-ID header, checked; "" when absent or refused */
    char refused[96];                     /* why the properties refuse the message ("" when they do not) */
    char original_message_id[255];        /* the message id's bytes as sent, for republished copies only */
    size_t original_message_id_len;
    char *body;                   /* NUL-terminated copy of the body */
    size_t body_size;
    int64_t received_us;          /* av_gettime_relative() at arrival */
};

/* Frees a delivery and sets *d to NULL; accepts NULL. */
void mw_delivery_free(struct mw_delivery **d);

struct mw_broker_stats {
    uint64_t delivered, redelivered, acked, requeued, retried, dead_lettered, reconnects, stale_verdicts;
};

struct mw_broker;

/*
 * Creates the broker for cfg (which must outlive it); deliveries are pushed onto `deliveries` (not owned).
 * prefetch is the number of unacknowledged deliveries the broker may hand us. metrics (may be NULL, must
 * outlive the broker) gets reconnects and whether the work queue is being consumed. Returns 0,
 * MW_ERR_CONFIG (bad MW_RETRY_DELAYS, logged) or AVERROR(ENOMEM).
 */
int mw_broker_new(struct mw_broker **b, const struct mw_config *cfg, struct mw_queue *deliveries, int prefetch,
                  struct mw_metrics *metrics);

/* Starts the broker thread. 0 or AVERROR(errno). */
int mw_broker_start(struct mw_broker *b);

/* Number of retry tiers (from MW_RETRY_DELAYS). */
int mw_broker_tiers(const struct mw_broker *b);

/* Current connection generation (0 before the first connection). Thread-safe. */
uint64_t mw_broker_generation(const struct mw_broker *b);

/*
 * Hands the verdict for d (ack, requeue, retry, dead-letter) to the broker thread, which takes ownership
 * of d and carries it out as it is. reason (may be NULL) goes into the x-mw-error header of retried and
 * dead-lettered copies. Thread-safe; waits only if the command queue is full.
 */
void mw_broker_settle(struct mw_broker *b, struct mw_delivery *d, const struct mw_verdict *verdict,
                      const char *reason);

/* The configured retry delays (mw_broker_tiers() entries), for the verdict. */
const int *mw_broker_delays(const struct mw_broker *b);

/* Publishes body to the events exchange with routing_key, best effort (dropped when the queue is full). */
void mw_broker_publish_event(struct mw_broker *b, const char *routing_key, const char *body);

/* Stops consuming (basic.cancel): no new deliveries; verdicts keep being applied. Thread-safe. */
void mw_broker_cancel(struct mw_broker *b);

/*
 * Stops the thread: applies the verdicts already queued, waits briefly for outstanding confirms, requeues
 * every delivery still unacknowledged, closes the connection and joins. Then copies the counters.
 */
void mw_broker_stop(struct mw_broker *b, struct mw_broker_stats *stats);

/* Frees the broker (stopping it first if needed) and sets *b to NULL; accepts NULL. */
void mw_broker_free(struct mw_broker **b);

#endif
