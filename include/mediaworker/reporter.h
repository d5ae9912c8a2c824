/*
 * The Data Service client: PATCH {POSTGRES_DATA_SERVICE_URL}/api/v1/users/{user_id}/files with
 * {"new_file": ...}, headers X-Request-ID, Idempotency-Key: <job_id> and, when configured, Authorization:
 * Bearer <MW_DATA_SERVICE_TOKEN>.
 *
 * One reporter per thread (it owns one reused libcurl easy handle, so connections are kept alive).
 * 408, 429, 5xx, timeouts and connection failures are retried HTTP_CLIENT_RETRIES times with exponential
 * backoff and jitter, honouring Retry-After; 404 means the user is gone; other 4xx are permanent. Only
 * http and https are spoken, and redirects are not followed (a report is not sent where it was not
 * configured to go).
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
 * Sends the report. Returns 0 on a 2xx, MW_ERR_HTTP_GONE on 404, MW_ERR_HTTP_PERMANENT on another 4xx (or
 * a report that cannot be serialised), MW_ERR_HTTP_TRANSIENT when every attempt failed transiently or the
 * cancel flag was raised. detail receives a one-line description of the last failure.
 */
int mw_reporter_send(struct mw_reporter *r, int64_t user_id, const char *job_id, const char *request_id,
                     const cJSON *new_file, char *detail, size_t detail_size);

/* Classifies an HTTP status: 0 (2xx), MW_ERR_HTTP_GONE, MW_ERR_HTTP_TRANSIENT or MW_ERR_HTTP_PERMANENT. */
int mw_reporter_classify_status(long status);

/*
 * Parses a Retry-After value (delta seconds or an HTTP date, relative to now) into milliseconds, at least
 * 0. Returns -1 when the value is absent or unparseable.
 */
int64_t mw_reporter_parse_retry_after(const char *value, time_t now);

#endif
