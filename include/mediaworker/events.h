/*
 * Job events on the events exchange (topic), so an upload UI can follow a job without polling:
 * job.started, job.progress (throttled), job.completed, job.failed. Each is a JSON object
 * {"event", "job_id", "user_id", "request_id", "ts", ...extra}. Events are best effort: they are not
 * confirmed and are dropped when the broker thread is far behind.
 */
#ifndef MEDIAWORKER_EVENTS_H
#define MEDIAWORKER_EVENTS_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "mediaworker/broker.h"
#include "mediaworker/job.h"

/* Publishes event type ("job.started", ...) for the job ids given; extra (may be NULL) fields are merged in. */
void mw_events_publish(struct mw_broker *b, const char *type, const char *job_id, const char *request_id,
                       int64_t user_id, const cJSON *extra);

/* Throttle for job.progress: at most one per second, and only when the percentage moved. */
struct mw_event_throttle {
    int64_t last_us;
    double last_percent;
};

/* True when a progress event at percent should be sent now (and records it as sent). */
int mw_events_progress_due(struct mw_event_throttle *t, double percent, int64_t now_us);

#endif
