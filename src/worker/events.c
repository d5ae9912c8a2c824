#include <stdio.h>
#include <time.h>

#include "mediaworker/events.h"

#define PROGRESS_INTERVAL_US 1000000

void mw_events_publish(struct mw_broker *b, const char *type, const char *job_id, const char *request_id,
                       int64_t user_id, const cJSON *extra)
{
    cJSON *event = cJSON_CreateObject();
    const cJSON *field;
    char *text = NULL;

    if (!event || !cJSON_AddStringToObject(event, "event", type) ||
        !cJSON_AddStringToObject(event, "job_id", job_id) ||
        !cJSON_AddStringToObject(event, "request_id", request_id) ||
        !(user_id > 0 ? cJSON_AddNumberToObject(event, "user_id", (double)user_id)
                      : cJSON_AddNullToObject(event, "user_id")) ||
        !cJSON_AddNumberToObject(event, "ts", (double)time(NULL)))
        goto end;
    cJSON_ArrayForEach(field, extra) {
        cJSON *copy = cJSON_Duplicate(field, 1);
        if (!copy || !cJSON_AddItemToObject(event, field->string, copy)) {
            cJSON_Delete(copy);
            goto end;
        }
    }
    text = cJSON_PrintUnformatted(event);
    if (text)
        mw_broker_publish_event(b, type, text);
end:
    cJSON_free(text);
    cJSON_Delete(event);
}

int mw_events_progress_due(struct mw_event_throttle *t, double percent, int64_t now_us)
{
    if (t->last_us && now_us - t->last_us < PROGRESS_INTERVAL_US)
        return 0;
    if (t->last_us && percent - t->last_percent < 1.0)
        return 0;
    t->last_us = now_us;
    t->last_percent = percent;
    return 1;
}
