/*
 * Data Service reports over libcurl. The easy handle is created once and reused for every report of the
 * thread, so keep-alive connections survive between jobs; every request sets its own URL, body and
 * headers. CURLOPT_NOSIGNAL because the worker has threads; timeouts are libcurl's, not alarms.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <libavutil/error.h>
#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "mediaworker/backoff.h"
#include "mediaworker/error.h"
#include "mediaworker/job.h"
#include "mediaworker/log.h"
#include "mediaworker/reporter.h"
#include "mediaworker/text.h"
#include "curl_cancel_internal.h"

#define RETRY_BASE_MS 250
/* A slot holds a job process's result and a prefetched delivery while it waits: waits inside the slot stay
 * this short, and a longer Retry-After sends the message to a retry tier instead. */
#define IN_SLOT_WAIT_CAP_MS 5000

struct mw_reporter {
    const struct mw_config *cfg;
    CURL *curl;
    const atomic_int *cancel;
    struct mw_metrics *metrics;    /* may be NULL */
    char error[CURL_ERROR_SIZE];
    char response[256];            /* start of the last response body, for log lines */
    size_t response_len;
};

static size_t keep_response(char *data, size_t size, size_t count, void *opaque)
{
    struct mw_reporter *r = opaque;
    size_t len = size * count;
    size_t room = sizeof(r->response) - 1 - r->response_len;
    size_t take = len < room ? len : room;

    memcpy(r->response + r->response_len, data, take);
    r->response_len += take;
    r->response[r->response_len] = '\0';
    return len;
}

int mw_reporter_new(struct mw_reporter **pr, const struct mw_config *cfg)
{
    struct mw_reporter *r = av_mallocz(sizeof(*r));

    *pr = NULL;
    if (!r || !(r->curl = curl_easy_init())) {
        av_free(r);
        return AVERROR(ENOMEM);
    }
    r->cfg = cfg;
    *pr = r;
    return 0;
}

void mw_reporter_free(struct mw_reporter **pr)
{
    struct mw_reporter *r = pr ? *pr : NULL;

    if (!r)
        return;
    curl_easy_cleanup(r->curl);
    av_free(r);
    *pr = NULL;
}

void mw_reporter_set_cancel(struct mw_reporter *r, const atomic_int *cancel)
{
    r->cancel = cancel;
}

void mw_reporter_set_metrics(struct mw_reporter *r, struct mw_metrics *metrics)
{
    r->metrics = metrics;
}

enum mw_report_outcome mw_reporter_classify_status(long status, int *retry_in_slot)
{
    *retry_in_slot = 0;
    if (status >= 200 && status < 300)
        return MW_REPORT_ACCEPTED;
    if (status == 404 || status == 410)
        return MW_REPORT_USER_GONE;
    /* Redirects are not followed and credentials do not fix themselves in seconds: a person must act, and
     * the retry tiers keep the message meanwhile. */
    if ((status >= 300 && status < 400) || status == 401 || status == 403 || status == 407)
        return MW_REPORT_UNAVAILABLE;
    /* 409: a request with this Idempotency-Key is still in progress (the idempotency draft's meaning). */
    if (status >= 400 && status < 500 && status != 408 && status != 409 && status != 425 && status != 429)
        return MW_REPORT_REFUSED;
    *retry_in_slot = 1;
    return MW_REPORT_UNAVAILABLE;
}

int64_t mw_reporter_parse_retry_after(const char *value, time_t now)
{
    char *end;
    long long seconds;
    time_t when;

    if (!value)
        return -1;
    while (*value == ' ')
        value++;
    if (!*value)
        return -1;
    if (*value >= '0' && *value <= '9') {
        errno = 0;
        seconds = strtoll(value, &end, 10);
        while (*end == ' ')
            end++;
        if (errno || *end || seconds > INT64_MAX / 1000)
            return -1;
        return seconds * 1000;
    }
    when = curl_getdate(value, NULL);
    if (when == -1)
        return -1;
    return when > now ? (int64_t)(when - now) * 1000 : 0;
}

/*
 * The request id and job id were checked where they entered (printable ASCII ids); checked again here,
 * where a header is made of them, because a CR or LF in a header value would let its sender write the rest
 * of the request. The Idempotency-Key is scoped by user: job ids are the producer's, unique per user only.
 */
static int build_headers(const struct mw_reporter *r, int64_t user_id, const char *job_id, const char *request_id,
                         struct curl_slist **out)
{
    struct curl_slist *headers = NULL;
    struct curl_slist *next;
    char line[MW_CONFIG_URL_MAX + 64];
    const char *lines[5];
    int count = 0;
    char request_line[MW_REQUEST_ID_MAX + 32], key_line[MW_JOB_ID_MAX + 64];

    *out = NULL;
    if (mw_text_check(request_id, strlen(request_id), MW_REQUEST_ID_MAX - 1, MW_TEXT_ID, NULL) < 0 ||
        mw_text_check(job_id, strlen(job_id), MW_JOB_ID_MAX - 1, MW_TEXT_ID, NULL) < 0) {
        mw_log(MW_LOG_ERROR, "reporter", "refusing to send a report whose request id or job id is not a plain id");
        return MW_ERR_INVALID_MESSAGE;
    }
    snprintf(request_line, sizeof(request_line), "X-Request-ID: %s", request_id);
    snprintf(key_line, sizeof(key_line), "Idempotency-Key: %" PRId64 ":%s", user_id, job_id);
    lines[count++] = "Content-Type: application/json";
    /* No "Expect: 100-continue" round trip before a body of a few kilobytes. */
    lines[count++] = "Expect:";
    lines[count++] = request_line;
    lines[count++] = key_line;
    if (r->cfg->data_service_token[0]) {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", r->cfg->data_service_token);
        lines[count++] = line;
    }
    for (int i = 0; i < count; i++) {
        next = curl_slist_append(headers, lines[i]);
        if (!next) {
            curl_slist_free_all(headers);
            return AVERROR(ENOMEM);
        }
        headers = next;
    }
    *out = headers;
    return 0;
}

/*
 * One request; returns its outcome, sets *retry_after_ms (-1 when the server gave none) and whether
 * another try inside the slot may succeed.
 */
static enum mw_report_outcome attempt(struct mw_reporter *r, const char *url, const char *body,
                                      struct curl_slist *headers, int64_t *retry_after_ms, int *retry_in_slot,
                                      char *detail, size_t detail_size)
{
    struct curl_header *retry_after = NULL;
    long status = 0;
    CURLcode code;

    curl_easy_reset(r->curl);
    r->error[0] = '\0';
    r->response_len = 0;
    r->response[0] = '\0';
    *retry_after_ms = -1;
    curl_easy_setopt(r->curl, CURLOPT_URL, url);
    curl_easy_setopt(r->curl, CURLOPT_CUSTOMREQUEST, "PATCH");
    curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->curl, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT, (long)r->cfg->http_timeout_s);
    curl_easy_setopt(r->curl, CURLOPT_TIMEOUT, (long)r->cfg->http_timeout_s);
    curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, keep_response);
    curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->curl, CURLOPT_XFERINFOFUNCTION, mw_curl_cancel_progress);
    curl_easy_setopt(r->curl, CURLOPT_XFERINFODATA, &r->cancel);
    curl_easy_setopt(r->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(r->curl, CURLOPT_USERAGENT, "mediaworker/" MW_VERSION_STRING);
    code = curl_easy_perform(r->curl);
    if (code != CURLE_OK) {
        snprintf(detail, detail_size, "%s", r->error[0] ? r->error : curl_easy_strerror(code));
        /* Refused, reset, timed out, a TLS failure, an answer that is not HTTP (curl: "unsupported
         * protocol" for HTTP/0.9): the service or the path to it is broken, not this report. The URL was
         * checked at start-up, so none of these is the message's fault. */
        *retry_in_slot = 1;
        return MW_REPORT_UNAVAILABLE;
    }
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
    if (curl_easy_header(r->curl, "Retry-After", 0, CURLH_HEADER, -1, &retry_after) == CURLHE_OK)
        *retry_after_ms = mw_reporter_parse_retry_after(retry_after->value, time(NULL));
    snprintf(detail, detail_size, "HTTP %ld%s%.160s", status, r->response_len ? ": " : "", r->response);
    return mw_reporter_classify_status(status, retry_in_slot);
}

static enum mw_ds_outcome ds_outcome(enum mw_report_outcome outcome)
{
    switch (outcome) {
    case MW_REPORT_ACCEPTED:
        return MW_DS_OK;
    case MW_REPORT_USER_GONE:
        return MW_DS_GONE;
    case MW_REPORT_REFUSED:
        return MW_DS_PERMANENT;
    case MW_REPORT_UNAVAILABLE:
    case MW_REPORT_NOT_SENT:
        break;
    }
    return MW_DS_TRANSIENT;
}

static int cancelled(const struct mw_reporter *r)
{
    return r->cancel && atomic_load(r->cancel);
}

/* Sleeps ms in short steps so that a shutdown is not held up by a long backoff. */
static void pause_ms(const struct mw_reporter *r, int64_t ms)
{
    int64_t until = av_gettime_relative() + ms * 1000;

    while (!cancelled(r) && av_gettime_relative() < until)
        av_usleep(20000);
}

enum mw_report_outcome mw_reporter_send(struct mw_reporter *r, int64_t user_id, const char *job_id,
                                        const char *request_id, const cJSON *new_file, int64_t *retry_after_ms,
                                        char *detail, size_t detail_size)
{
    struct curl_slist *headers = NULL;
    cJSON *wrapper = cJSON_CreateObject();
    char url[MW_CONFIG_URL_MAX + 64];
    size_t base_len = strlen(r->cfg->data_service_url);
    enum mw_report_outcome outcome = MW_REPORT_UNAVAILABLE;
    char *body = NULL;
    int attempts = 0;
    int ret;

    *retry_after_ms = -1;
    snprintf(detail, detail_size, "out of memory");
    while (base_len && r->cfg->data_service_url[base_len - 1] == '/')
        base_len--;
    snprintf(url, sizeof(url), "%.*s/api/v1/users/%" PRId64 "/files", (int)base_len, r->cfg->data_service_url,
             user_id);
    if ((ret = build_headers(r, user_id, job_id, request_id, &headers)) < 0) {
        if (ret != AVERROR(ENOMEM)) {
            snprintf(detail, detail_size, "request id or job id refused");
            outcome = MW_REPORT_REFUSED;
        }
        goto end;
    }
    if (!wrapper || !cJSON_AddItemReferenceToObject(wrapper, "new_file", (cJSON *)new_file) ||
        !(body = cJSON_PrintUnformatted(wrapper)))
        goto end;
    for (int n = 0; n <= r->cfg->http_retries; n++) {
        int64_t delay_ms;
        int64_t started_us = av_gettime_relative();
        int retry_in_slot = 0;

        outcome = attempt(r, url, body, headers, retry_after_ms, &retry_in_slot, detail, detail_size);
        mw_metrics_ds_request(r->metrics, (double)(av_gettime_relative() - started_us) / 1e6, ds_outcome(outcome));
        attempts = n + 1;
        if (!retry_in_slot || n == r->cfg->http_retries || cancelled(r))
            break;
        if (*retry_after_ms > IN_SLOT_WAIT_CAP_MS) {
            mw_log(MW_LOG_WARN, "reporter", "report attempt %d failed (%s) with Retry-After %" PRId64
                   " ms, longer than a slot waits; leaving it to a retry tier", n + 1, detail, *retry_after_ms);
            break;
        }
        delay_ms = mw_backoff_delay_ms(n, RETRY_BASE_MS, IN_SLOT_WAIT_CAP_MS, mw_backoff_random());
        if (*retry_after_ms > delay_ms)
            delay_ms = *retry_after_ms;
        mw_log(MW_LOG_WARN, "reporter", "report attempt %d of %d failed (%s); retrying in %" PRId64 " ms", n + 1,
               r->cfg->http_retries + 1, detail, delay_ms);
        pause_ms(r, delay_ms);
    }
    if (outcome == MW_REPORT_UNAVAILABLE && attempts > 1) {
        size_t used = strlen(detail);
        snprintf(detail + used, detail_size - used, " (%d attempts)", attempts);
    }
    if (outcome == MW_REPORT_ACCEPTED)
        mw_log(MW_LOG_DEBUG, "reporter", "report accepted for user %" PRId64, user_id);
    else if (outcome == MW_REPORT_USER_GONE)
        mw_log(MW_LOG_WARN, "reporter", "user %" PRId64 " not found at %s (%s): the report is dropped", user_id, url,
               detail);
end:
    curl_slist_free_all(headers);
    cJSON_free(body);
    cJSON_Delete(wrapper);
    return outcome;
}
