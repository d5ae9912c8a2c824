/*
 * A bounded queue of frames between the decode thread and one encoder thread.
 *
 * The slots are allocated once; frames move in and out by reference (av_frame_move_ref), so no picture is
 * copied. The bound keeps decoding at most a few frames ahead of the slowest encoder, which caps memory
 * while still letting decode+scale of the next frames overlap the encode of the current ones. Either side
 * can abort, which wakes the other: a failed encoder must not leave the decoder blocked on a full queue.
 */
#include <pthread.h>

#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/mem.h>

#include "transcode_internal.h"

struct mw_frame_queue {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    /* All the following fields are protected by lock. */
    AVFrame **slots;
    int capacity, head, count;
    int ended;                 /* the producer pushed the end marker */
    int aborted;
};

int mw_frame_queue_new(struct mw_frame_queue **out, int capacity)
{
    struct mw_frame_queue *q = av_mallocz(sizeof(*q));
    int ret = AVERROR(ENOMEM);

    *out = NULL;
    if (!q)
        return ret;
    if (pthread_mutex_init(&q->lock, NULL)) {
        av_free(q);
        return ret;
    }
    if (pthread_cond_init(&q->changed, NULL)) {
        pthread_mutex_destroy(&q->lock);
        av_free(q);
        return ret;
    }
    q->capacity = capacity;
    if (!(q->slots = av_calloc((size_t)capacity, sizeof(*q->slots))))
        goto fail;
    for (int i = 0; i < capacity; i++)
        if (!(q->slots[i] = av_frame_alloc()))
            goto fail;
    *out = q;
    return 0;
fail:
    mw_frame_queue_free(&q);
    return ret;
}

int mw_frame_queue_push(struct mw_frame_queue *q, AVFrame *frame)
{
    int ret = 0;

    pthread_mutex_lock(&q->lock);
    while (!q->aborted && frame && q->count == q->capacity)
        pthread_cond_wait(&q->changed, &q->lock);
    if (q->aborted) {
        ret = AVERROR_EXIT;
    } else if (!frame) {
        q->ended = 1;
    } else {
        av_frame_move_ref(q->slots[(q->head + q->count) % q->capacity], frame);
        q->count++;
    }
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    return ret;
}

int mw_frame_queue_pop(struct mw_frame_queue *q, AVFrame *frame)
{
    int ret = 0;

    pthread_mutex_lock(&q->lock);
    while (!q->aborted && !q->count && !q->ended)
        pthread_cond_wait(&q->changed, &q->lock);
    if (q->aborted) {
        ret = AVERROR_EXIT;
    } else if (!q->count) {
        ret = AVERROR_EOF;
    } else {
        av_frame_move_ref(frame, q->slots[q->head]);
        q->head = (q->head + 1) % q->capacity;
        q->count--;
    }
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    return ret;
}

void mw_frame_queue_abort(struct mw_frame_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->aborted = 1;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

void mw_frame_queue_free(struct mw_frame_queue **pq)
{
    struct mw_frame_queue *q = pq ? *pq : NULL;

    if (!q)
        return;
    for (int i = 0; q->slots && i < q->capacity; i++)
        av_frame_free(&q->slots[i]);
    av_free(q->slots);
    pthread_cond_destroy(&q->changed);
    pthread_mutex_destroy(&q->lock);
    av_free(q);
    *pq = NULL;
}
