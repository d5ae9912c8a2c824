/*
 * Ring buffer guarded by one mutex; `not_empty` wakes poppers, `not_full` wakes pushers. Timed waits use
 * CLOCK_MONOTONIC so a wall-clock jump cannot stretch or cut a timeout.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include <libavutil/error.h>
#include <libavutil/mem.h>

#include "mediaworker/queue.h"

struct mw_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    /* All the following fields are protected by lock. */
    void **items;
    size_t capacity;
    size_t head;          /* index of the oldest item */
    size_t count;
    int closed;
};

int mw_queue_new(struct mw_queue **pq, size_t capacity)
{
    struct mw_queue *q = NULL;
    pthread_condattr_t attr;
    *pq = NULL;
    if (!capacity)
        return AVERROR(EINVAL);
    q = av_mallocz(sizeof(*q));
    if (!q || !(q->items = av_calloc(capacity, sizeof(*q->items)))) {
        av_free(q);
        return AVERROR(ENOMEM);
    }
    q->capacity = capacity;
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->not_empty, &attr);
    pthread_cond_init(&q->not_full, &attr);
    pthread_condattr_destroy(&attr);
    *pq = q;
    return 0;
}

void mw_queue_free(struct mw_queue **pq)
{
    struct mw_queue *q = pq ? *pq : NULL;

    if (!q)
        return;
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->lock);
    av_free(q->items);
    av_free(q);
    *pq = NULL;
}

static struct timespec deadline_after(int timeout_ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Waits on cond until woken or the deadline; returns 0 or ETIMEDOUT. Caller holds q->lock. */
static int wait_on(struct mw_queue *q, pthread_cond_t *cond, int timeout_ms, const struct timespec *deadline)
{
    if (timeout_ms == 0)
        return ETIMEDOUT;
    if (timeout_ms < 0)
        return pthread_cond_wait(cond, &q->lock);
    return pthread_cond_timedwait(cond, &q->lock, deadline);
}

int mw_queue_push(struct mw_queue *q, void *item, int timeout_ms)
{
    struct timespec deadline = deadline_after(timeout_ms > 0 ? timeout_ms : 0);
    int ret = 0;

    pthread_mutex_lock(&q->lock);
    while (!q->closed && q->count == q->capacity) {
        if (wait_on(q, &q->not_full, timeout_ms, &deadline) == ETIMEDOUT) {
            ret = AVERROR(EAGAIN);
            goto end;
        }
    }
    if (q->closed) {
        ret = AVERROR_EOF;
        goto end;
    }
    q->items[(q->head + q->count) % q->capacity] = item;
    q->count++;
    pthread_cond_signal(&q->not_empty);
end:
    pthread_mutex_unlock(&q->lock);
    return ret;
}

int mw_queue_pop(struct mw_queue *q, void **item, int timeout_ms)
{
    struct timespec deadline = deadline_after(timeout_ms > 0 ? timeout_ms : 0);
    int ret = 0;

    *item = NULL;
    pthread_mutex_lock(&q->lock);
    while (!q->count && !q->closed) {
        if (wait_on(q, &q->not_empty, timeout_ms, &deadline) == ETIMEDOUT) {
            ret = AVERROR(EAGAIN);
            goto end;
        }
    }
    if (!q->count) {
        ret = AVERROR_EOF;
        goto end;
    }
    *item = q->items[q->head];
    q->head = (q->head + 1) % q->capacity;
    q->count--;
    pthread_cond_signal(&q->not_full);
end:
    pthread_mutex_unlock(&q->lock);
    return ret;
}

void mw_queue_close(struct mw_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
}

size_t mw_queue_length(struct mw_queue *q)
{
    size_t count;

    pthread_mutex_lock(&q->lock);
    count = q->count;
    pthread_mutex_unlock(&q->lock);
    return count;
}
