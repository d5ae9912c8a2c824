/*
 * The Data Service client: PATCH {POSTGRES_DATA_SERVICE_URL}/api/v1/users/{user_id}/files with
 * {"new_file": ...}, headers X-Request-ID, Idempotency-Key: <job_id> and, when configured, Authorization:
 * Bearer <MW_DATA_SERVICE_TOKEN>.
 *
 * One reporter per thread (it owns one reused libcurl easy handle, so connections are kept alive).
 * What each answer means for the message is the verdict's (verdict.h); only http and https are spoken,
 * and redirects are not followed (a report is not sent where it was not configured to go).
 */
#ifndef MEDIAWORKER_REPORTER_H
#define MEDIAWORKER_REPORTER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "mediaworker/config.h"
#include "mediaworker/metrics.h"
#include "mediaworker/verdict.h"

struct mw_reporter;

/* Creates a reporter for cfg (which must outlive it). 0 or AVERROR(ENOMEM). */
int mw_reporter_new(struct mw_reporter **r, const struct mw_config *cfg);

/* Frees the reporter and sets *r to NULL; accepts NULL. */
void mw_reporter_free(struct mw_reporter **r);

/* A flag that, once non-zero, ends retries and transfers early (shutdown); may be NULL. */
void mw_reporter_set_cancel(struct mw_reporter *r, const atomic_int *cancel);

/* Where each request's latency and outcome class are counted; may be NULL (the default). */
void mw_reporter_set_metrics(struct mw_reporter *r, struct mw_metrics *metrics);

/*
 * Sends the report, retrying inside the call (HTTP_CLIENT_RETRIES times, backoff with jitter, waits of at
 * most a few seconds) only where a retry soon may succeed: 408, 409, 425, 429, 5xx, no answer, an answer
 * that is not HTTP. Returns the outcome of the last attempt (never MW_REPORT_NOT_SENT; UNAVAILABLE when
 * the cancel flag was raised or memory ran out), sets *retry_after_ms from its Retry-After (-1 when none)
 * and writes a one-line description of it into detail.
 */
enum mw_report_outcome mw_reporter_send(struct mw_reporter *r, int64_t user_id, const char *job_id,
                                        const char *request_id, const cJSON *new_file, int64_t *retry_after_ms,
                                        char *detail, size_t detail_size);

/* The outcome of an HTTP status (see verdict.h), and whether a retry inside the slot is worth it. */
enum mw_report_outcome mw_reporter_classify_status(long status, int *retry_in_slot);

/*
 * Parses a Retry-After value (delta seconds or an HTTP date, relative to now) into milliseconds, at least
 * 0. Returns -1 when the value is absent or unparseable.
 */
int64_t mw_reporter_parse_retry_after(const char *value, time_t now);

#endif
